"""Does the pipeline keep what real recordings have? Third-octave levels, input vs output.

The promise (issue 9): the missing high band is generated and everything the input already
had is kept. This benchmark runs the real-world pipeline (:class:`audiosr.api.Upsampler`, band
limits detected per channel, as the CLI runs it) on real recordings, as they are and through
real coders and resamplers (the inputs and the cache of ``bench_detector.py``: lame 128/192,
ffmpeg AAC, Opus, Vorbis, sox resampling), with the engines that need no download, and
compares the output's third-octave band levels with the input's (resampled to 48 kHz).

The measure is :func:`audiosr.eval.kept.content_loss_db`: a band *has content* when the
input's level there lies within ``--edge-db`` (80) dB of its loudest band and 6 dB above its
noise floor, below 95 % of the input's Nyquist; an input *loses content* when the output lies
more than ``--loss-db`` (3) dB below the input in any such band. Counted per kind of input
and engine, for two variants of the pipeline:

* ``keep`` (the default): a detected band limit deletes nothing: what the pre-filter took from
  the engine's input is added back to its output;
* ``replace`` (``PipelineOptions(keep_above_cutoff=False)``, the behaviour before): the band
  above the detected limit is the engine's alone, so a band limit read too low deletes real
  content, and ``sinc`` (which generates nothing) shows it as silence.

Re-run (after ``bench_detector.py`` has filled its cache, or it encodes what is missing):
    python benchmarks/bench_keep.py                 # development packages
    python benchmarks/bench_keep.py --heldout --deb-root /tmp/debs
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "src"))
sys.path.insert(0, str(HERE))

import bench_detector as det  # noqa: E402  (sources, encoders and cache of the detector bench)

log = logging.getLogger("bench_keep")

KINDS = ("original", "mp3-128", "mp3-192", "aac-128", "opus-32", "vorbis-q0", "rs-22k", "rs-32k")
ENGINES = ("sinc", "dsp")
VARIANTS = ("replace", "keep")
def _measure(args: tuple[str, argparse.Namespace]) -> list[dict]:
    path, a = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from audiosr.api import Upsampler, make_engine
    from audiosr.audio_io import resample
    from audiosr.eval.kept import content_loss_db
    from audiosr.pipeline import PipelineOptions

    torch.set_num_threads(1)
    key = hashlib.sha1(f"{path}:15.0:peak0.5".encode()).hexdigest()[:16]
    folder = a.cache / key
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "original.wav"
    if not src.exists():  # the detector bench's excerpt: 15 s from the middle, peak 0.5
        det._measure_file((path, path, det.Settings(a.cache, 15.0, 80.0, None, a.timeout)))
    sr0 = sf.info(str(src)).samplerate
    engines = {name: make_engine(name) for name in ENGINES}
    rows = []
    for kind in KINDS:
        if kind in det.RS_RATES and det.RS_RATES[kind] >= sr0:
            continue
        out = folder / f"{kind}.wav"
        try:
            if kind != "original" and not out.exists():
                det._encode(kind, src, sr0, out, a.timeout)
            x, sr = sf.read(str(src if kind == "original" else out), dtype="float32",
                            always_2d=True)  # fmt: skip
        except Exception as err:  # noqa: BLE001 - an encoder failure skips that input
            log.warning("%s %s: %s", path, kind, str(err).splitlines()[0][:120])
            continue
        x = x[: int(a.seconds * sr)].T.copy()  # [C, T]
        x48 = resample(x, sr, 48_000) if sr != 48_000 else x
        nyq = det.RS_RATES.get(kind, sr) / 2
        for eng in ENGINES:
            for variant in VARIANTS:
                opts = PipelineOptions(keep_above_cutoff=variant == "keep")
                t0 = time.perf_counter()
                y, report = Upsampler(engines[eng], opts).process(x, sr)
                dt = time.perf_counter() - t0
                worst = content_loss_db(x48, y.numpy(), nyq, edge_db=a.edge_db)
                rows.append(dict(path=path, kind=kind, engine=eng, variant=variant,
                                 loss=float(worst.max()), cut=min(report.cutoffs_hz),
                                 passthrough=report.passthrough, seconds=dt))  # fmt: skip
    return rows


def _table(rows: list[dict], loss_db: float) -> str:
    head = "| kind | inputs | " + " | ".join(
        f"{e} {v}: lose content (worst dB)" for e in ENGINES for v in VARIANTS
    )
    lines = [head + " |", "|---|---|" + "---|" * (len(ENGINES) * len(VARIANTS))]
    for kind in (*KINDS, "all"):
        rs = [r for r in rows if kind in ("all", r["kind"])]
        if not rs:
            continue
        cells = []
        for e in ENGINES:
            for v in VARIANTS:
                sel = [r["loss"] for r in rs if r["engine"] == e and r["variant"] == v]
                bad = [s for s in sel if s > loss_db]
                cells.append(f"{len(bad)} ({max(sel):.1f})" if sel else "-")
        n = len({(r["path"], r["kind"]) for r in rs})
        lines.append(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="*", help="folders or Debian package names")
    ap.add_argument("--heldout", action="store_true", help="measure the held-out packages")
    ap.add_argument("--deb-root", type=Path, default=None)
    ap.add_argument("--per-package", type=int, default=3, help="files per source (default 3)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of each input")
    ap.add_argument("--edge-db", type=float, default=80.0)
    ap.add_argument("--loss-db", type=float, default=3.0)
    ap.add_argument("--cache", type=Path, default=Path("/tmp") / "audiosr_bench_detector")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--list", action="store_true", help="print every input that loses content")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sources = args.sources or list(det.HELDOUT_PACKAGES if args.heldout else det.DEV_PACKAGES)
    paths = []
    for s in sources:
        files = (sorted(p for p in Path(s).rglob("*") if p.suffix.lower() in det.AUDIO_EXT)
                 if Path(s).is_dir() else det._package_files(s, args.deb_root))  # fmt: skip
        paths += [str(p) for p in det._pick(files, args.per_package, 1.0)]
    t0 = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for rs in pool.map(_measure, [(p, args) for p in paths]):
            rows.extend(rs)
    secs = np.array([r["seconds"] for r in rows])
    print(f"\n{len(paths)} recordings from {len(sources)} sources, "
          f"{len({(r['path'], r['kind']) for r in rows})} inputs of {args.seconds:.0f} s, "
          f"{time.perf_counter() - t0:.0f} s; pipeline per input: median {np.median(secs):.2f} s; "
          f"loss: output more than {args.loss_db:.0f} dB under the input in a third-octave "
          f"band with content")  # fmt: skip
    if args.list:
        for r in rows:
            if r["loss"] > args.loss_db:
                print(f"{r['engine']:5s} {r['variant']:8s} {r['kind']:10s} cut "
                      f"{r['cut'] / 1e3:5.1f} kHz loss {r['loss']:5.1f} dB  {r['path']}")
    print("\n" + _table(rows, args.loss_db))
    return 0


if __name__ == "__main__":
    sys.exit(main())
