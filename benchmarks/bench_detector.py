"""Band-limit detector on real recordings, as they are and through real encoders.

For every source file (excerpts of at most ``--seconds``, at the file's own rate), the
detector (:func:`audiosr.dsp.bandwidth.detect_cutoff_hz`, run as the pipeline runs it: all
channels, native rate) reads the original and the same audio through real coders and
resamplers (the command-line tools of Debian's lame, ffmpeg, opus-tools, vorbis-tools, sox):

* ``mp3-128`` / ``mp3-192``: ``lame -b 128`` / ``-b 192`` (CBR);
* ``aac-128``: ``ffmpeg -c:a aac -b:a 128k`` (FFmpeg's native AAC coder);
* ``opus-32``: ``opusenc --bitrate 32`` (stereo at 32 kbps: a super-wideband cut), decoded at
  48 kHz as opusdec does;
* ``vorbis-q0``: ``oggenc -q 0``;
* ``rs-8k`` ... ``rs-32k``: ``sox rate -v`` down to that rate and back up to the file's rate
  (only rates below the file's own).

Excerpts are normalised to a peak of 0.5 (the detector does not depend on the level; clipped
coder output would). The true edge, a documented measure independent of the detector: the
long-term spectrum is a Welch average (Hann, 4096-point frames at 44.1/48 kHz, scaled with the
rate, all channels) in dB, smoothed by a running median over 250 Hz so that isolated tones do
not count as a band;

* original: the highest frequency where that curve lies within ``--edge-db`` (80) dB of the
  loudest bin of the unsmoothed spectrum, and 6 dB above the file's noise floor (the 5th
  percentile of the curve above 1 kHz: 8-bit and noisy files have a floor within 80 dB);
* coded or resampled: the highest frequency that passes the same test AND where the coder kept
  the band: the coded curve lies no more than 20 dB below the original's. That is
  min(coder cutoff, original's edge), read from the files themselves.

Reported per kind of input: ``short``, how often the detected cutoff lies below the true edge
by more than ``max(--margin-hz, --margin-frac * edge)`` (500 Hz / 5 %): real content removed
by the pre-filter; the median and worst shortfall among those; ``cliffs``, how many coded
inputs lost at least 1 kHz of the original's band (the coder's cliff lies inside it), and
``miss``, how often such a cliff is detected more than the same margin above it (the residue
is kept and less is generated: the lesser evil), with the median overshoot. ``--baseline
REV`` measures the detector of a git revision on the same inputs (its
``src/audiosr/dsp/bandwidth.py``).

Sources are folders or Debian package names (installed, or unpacked under ``--deb-root``:
``apt-get download PKG && dpkg-deb -x PKG_*.deb DEB_ROOT/PKG``). The default development set
is :data:`DEV_PACKAGES`; ``--heldout`` measures :data:`HELDOUT_PACKAGES` instead, kept out of
every design decision of the detector. Encodes are cached under ``--cache``.

Re-run with (about 10 minutes on 2 cores the first time, ~1 minute with the cache):
    apt-get install lame ffmpeg opus-tools vorbis-tools sox <the packages below>
    python benchmarks/bench_detector.py --baseline main
    python benchmarks/bench_detector.py --baseline main --heldout --deb-root /tmp/debs
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import ndimage, signal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

log = logging.getLogger("bench_detector")

# Development set: real recordings (music with steep natural roll-offs, speech, effects) from
# Debian packages. None of the reserved evaluation packages of the project is among them.
DEV_PACKAGES = (
    "xmoto-data", "hedgewars-data", "supertux-data", "frozen-bubble-data",
    "extremetuxracer-data", "sound-theme-freedesktop", "oxygen-sounds", "fillets-ng-data",
    "caveexpress-data", "bzflag-data", "pingus-data", "ktuberling-data", "hyperrogue-music",
    "drascula-music", "neverball-data", "pokerth-data", "openttd-opensfx", "blobwars-data",
    "lbreakout2-data", "chromium-bsu-data", "kobodeluxe-data", "alsa-utils",
)  # fmt: skip
# Held out: the project's evaluation packages (tools/dsp_prior/README.md; redeclipse-data, 860
# MB, is left out for its size).
HELDOUT_PACKAGES = ("marsshooter-data", "freeorion-data", "flare-game", "csound-doc")
# Never touched (reserved for independent evaluation of the project).
FORBIDDEN = {
    "tuxpaint-stamps-default", "klettres-data", "megaglest-data", "0ad-data", "lmms-common",
    "lmms", "warzone2100-music", "wesnoth-1.16-music", "hydrogen-drumkits", "sonic-pi-samples",
}  # fmt: skip
AUDIO_EXT = {".wav", ".ogg", ".flac", ".mp3", ".opus", ".oga"}
KINDS = ("original", "mp3-128", "mp3-192", "aac-128", "opus-32", "vorbis-q0",
         "rs-8k", "rs-11k", "rs-16k", "rs-22k", "rs-32k")  # fmt: skip
RS_RATES = {"rs-8k": 8000, "rs-11k": 11025, "rs-16k": 16000, "rs-22k": 22050, "rs-32k": 32000}
# A coded band counts as kept while it lies at most this far below the original.
KEPT_DB = 20.0
FLOOR_MARGIN_DB = 6.0  # the true edge lies this far above the file's noise floor


@dataclass(frozen=True)
class Settings:
    """What one worker needs (picklable)."""

    cache: Path
    seconds: float
    edge_db: float
    baseline_path: str | None
    timeout_s: float


# ------------------------------------------------------------------------------------------
# Sources


def _package_files(pkg: str, deb_root: Path | None) -> list[Path]:
    if pkg in FORBIDDEN or pkg.startswith("lmms"):
        raise SystemExit(f"{pkg} is reserved for independent evaluation: never used here")
    if deb_root is not None and (deb_root / pkg).is_dir():
        return sorted(p for p in (deb_root / pkg).rglob("*") if p.suffix.lower() in AUDIO_EXT)
    try:
        out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        log.warning("%s: not installed and not under --deb-root; skipped", pkg)
        return []
    return sorted(
        Path(line) for line in out.stdout.splitlines()
        if Path(line).suffix.lower() in AUDIO_EXT and Path(line).is_file()
    )  # fmt: skip


def _pick(files: list[Path], n: int, min_s: float) -> list[Path]:
    """Up to ``n`` readable files of at least ``min_s`` seconds, evenly spread over the sorted
    list (deterministic)."""
    ok = []
    for p in files:
        try:
            info = sf.info(str(p))
        except (sf.LibsndfileError, RuntimeError):
            continue
        if info.frames >= min_s * info.samplerate and info.samplerate >= 8000:
            ok.append(p)
    if len(ok) <= n:
        return ok
    return [ok[i] for i in np.linspace(0, len(ok) - 1, n).round().astype(int)]


# ------------------------------------------------------------------------------------------
# Encoders


def _run(cmd: list[str], timeout: float) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)


def _encode(kind: str, wav: Path, sr: int, out: Path, timeout: float) -> Path:
    """``wav`` through the coder of ``kind``, decoded to ``out`` (a WAV file)."""
    tmp = out.with_suffix(".enc")
    if kind.startswith("mp3"):
        _run(["lame", "--quiet", "-b", kind[4:], str(wav), str(tmp)], timeout)
        _run(["lame", "--quiet", "--decode", str(tmp), str(out)], timeout)
    elif kind == "aac-128":
        tmp = tmp.with_suffix(".m4a")
        _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac",
              "-b:a", "128k", str(tmp)], timeout)  # fmt: skip
        _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(tmp), "-c:a", "pcm_f32le",
              str(out)], timeout)  # fmt: skip
    elif kind == "opus-32":
        _run(["opusenc", "--quiet", "--bitrate", "32", str(wav), str(tmp)], timeout)
        _run(["opusdec", "--quiet", "--float", "--rate", "48000", str(tmp), str(out)], timeout)
    elif kind == "vorbis-q0":
        _run(["oggenc", "--quiet", "-q", "0", "-o", str(tmp), str(wav)], timeout)
        _run(["oggdec", "--quiet", "-o", str(out), str(tmp)], timeout)
    else:
        low = out.with_suffix(".low.wav")
        _run(["sox", str(wav), "-e", "floating-point", str(low), "rate", "-v",
              str(RS_RATES[kind])], timeout)  # fmt: skip
        _run(["sox", str(low), "-e", "floating-point", str(out), "rate", "-v", str(sr)], timeout)
        low.unlink()
    tmp.unlink(missing_ok=True)
    return out


# ------------------------------------------------------------------------------------------
# Measures


def _spectrum_db(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Welch LTAS of ``x`` [C, T] in dB: (freqs, running median over 250 Hz, raw peak)."""
    nper = int(2 ** round(np.log2(4096 * sr / 44_100)))
    nper = min(nper, 2 ** int(np.log2(max(x.shape[-1], 256))))
    f, p = signal.welch(x, sr, window="hann", nperseg=nper, axis=-1)
    p = p.mean(axis=0)
    p[0] = 0.0
    db = 10 * np.log10(np.maximum(p, 1e-30))
    width = max(3, int(round(250.0 / f[1])) | 1)
    return f, ndimage.median_filter(db, size=width, mode="nearest"), float(db.max())


def _edge(f: np.ndarray, smooth_db: np.ndarray, peak_db: float, edge_db: float,
          kept: np.ndarray | None = None) -> float:  # fmt: skip
    """Highest frequency within ``edge_db`` of the peak and 6 dB above the noise floor (the
    5th percentile of the smoothed spectrum above 1 kHz), where ``kept``."""
    floor = np.percentile(smooth_db[f >= 1000.0], 5.0) if (f >= 1000.0).any() else -np.inf
    ok = (smooth_db >= peak_db - edge_db) & (smooth_db >= floor + FLOOR_MARGIN_DB)
    if kept is not None:
        ok &= kept
    hits = np.nonzero(ok)[0]
    return float(f[hits.max()]) if len(hits) else 0.0


def _load_detector(path: str | None) -> Callable[[np.ndarray, int], float]:
    if path is None:
        from audiosr.dsp.bandwidth import detect_cutoff_hz

        return detect_cutoff_hz
    spec = importlib.util.spec_from_file_location("baseline_bandwidth", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.detect_cutoff_hz


def _measure_file(args: tuple[str, str, Settings]) -> list[dict]:
    """All kinds of one source: true edge and detected cutoffs (current, baseline)."""
    package, path, st = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    current, baseline = _load_detector(None), _load_detector(st.baseline_path)
    key = hashlib.sha1(f"{path}:{st.seconds}:peak0.5".encode()).hexdigest()[:16]
    folder = st.cache / key
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "original.wav"
    if not src.exists():
        info = sf.info(path)
        n = int(min(info.frames, st.seconds * info.samplerate))
        start = (info.frames - n) // 2  # the middle of the file
        x, sr = sf.read(path, start=start, frames=n, dtype="float32", always_2d=True)
        x = x[:, :2]  # encoders take mono/stereo
        # Peak at -6 dBFS: coders and resamplers overshoot, and clipping their output would
        # add broadband distortion that no coder makes.
        x *= 0.5 / max(float(np.abs(x).max()), 1e-9)
        sf.write(str(folder / "tmp.wav"), x, sr, subtype="PCM_24")
        (folder / "tmp.wav").rename(src)
    x0, sr0 = sf.read(str(src), dtype="float64", always_2d=True)
    f0, orig_db, peak0 = _spectrum_db(x0.T, sr0)
    orig_edge = _edge(f0, orig_db, peak0, st.edge_db)
    rows = []
    for kind in KINDS:
        if kind in RS_RATES and RS_RATES[kind] >= sr0:
            continue
        try:
            if kind == "original":
                x, sr, truth = x0, sr0, orig_edge
            else:
                out = folder / f"{kind}.wav"
                if not out.exists():
                    _encode(kind, src, sr0, out, st.timeout_s)
                x, sr = sf.read(str(out), dtype="float64", always_2d=True)
                f, db, _ = _spectrum_db(x.T, sr)
                # The coded curve on the original's frequencies (opus decodes at 48 kHz).
                db_on_f0 = np.interp(f0, f, db, right=-300.0)
                kept = db_on_f0 >= orig_db - KEPT_DB
                truth = _edge(f0, np.minimum(orig_db, db_on_f0), peak0, st.edge_db, kept)
                truth = min(truth, orig_edge)  # coder noise fill is not the original's band
        except (subprocess.SubprocessError, OSError, sf.LibsndfileError, RuntimeError) as err:
            log.warning("%s %s: %s", path, kind, str(err).splitlines()[0][:120])
            continue
        t0 = time.perf_counter()
        got = float(current(x.T.astype(np.float32), sr))
        dt = time.perf_counter() - t0
        base = float(baseline(x.T.astype(np.float32), sr)) if st.baseline_path else float("nan")
        rows.append(dict(package=package, path=path, kind=kind, sr=sr, truth=truth,
                         orig_edge=orig_edge, got=got, base=base,
                         seconds=dt))  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------
# Report


def _margin(edge: float, args: argparse.Namespace) -> float:
    return max(args.margin_hz, args.margin_frac * edge)


def _table(rows: list[dict], col: str, args: argparse.Namespace) -> str:
    head = ("| kind | n | short | median / worst shortfall (kHz) | cliffs | miss "
            "| median overshoot (kHz) |\n|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for kind in (*KINDS, "all"):
        rs = [r for r in rows if r["kind"] == kind or kind == "all"]
        if not rs:
            continue
        short = [r["truth"] - r[col] for r in rs if r["truth"] - r[col] > _margin(r["truth"], args)]
        cliffs = [r for r in rs if r["kind"] != "original" and r["truth"] <= r["orig_edge"] - 1e3]
        over = [r[col] - r["truth"] for r in cliffs
                if r[col] - r["truth"] > _margin(r["truth"], args)]  # fmt: skip
        sh = f"{np.median(short) / 1e3:.2f} / {max(short) / 1e3:.2f}" if short else "-"
        ov = f"{np.median(over) / 1e3:.2f}" if over else "-"
        lines.append(f"| {kind} | {len(rs)} | {len(short)} ({100 * len(short) / len(rs):.0f} %) "
                     f"| {sh} | {len(cliffs)} | {len(over)} | {ov} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="*", help="folders or Debian package names")
    ap.add_argument("--heldout", action="store_true", help="measure the held-out packages")
    ap.add_argument("--deb-root", type=Path, default=None,
                    help="folder of unpacked packages (DEB_ROOT/PKG/usr/...)")
    ap.add_argument("--per-package", type=int, default=6, help="files per source (default 6)")
    ap.add_argument("--seconds", type=float, default=15.0, help="excerpt length per file")
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--edge-db", type=float, default=80.0)
    ap.add_argument("--margin-hz", type=float, default=500.0)
    ap.add_argument("--margin-frac", type=float, default=0.05)
    ap.add_argument("--baseline", default=None, help="git revision to compare with (e.g. main)")
    ap.add_argument("--cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "audiosr_bench_detector")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per encoder call")
    ap.add_argument("--list", action="store_true", help="print every measurement")
    args = ap.parse_args(argv)  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for tool in ("lame", "ffmpeg", "opusenc", "opusdec", "oggenc", "oggdec", "sox"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (apt-get install lame ffmpeg opus-tools "
                  "vorbis-tools sox)", file=sys.stderr)  # fmt: skip
            return 2
    sources = args.sources or list(HELDOUT_PACKAGES if args.heldout else DEV_PACKAGES)
    jobs = []
    for s in sources:
        files = (sorted(p for p in Path(s).rglob("*") if p.suffix.lower() in AUDIO_EXT)
                 if Path(s).is_dir() else _package_files(s, args.deb_root))  # fmt: skip
        for p in _pick(files, args.per_package, args.min_seconds):
            jobs.append((s, str(p), p))
    baseline_path = None
    if args.baseline:
        text = subprocess.run(["git", "-C", str(REPO), "show",
                               f"{args.baseline}:src/audiosr/dsp/bandwidth.py"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        baseline_path = str(args.cache / f"baseline_{args.baseline.replace('/', '_')}.py")
        args.cache.mkdir(parents=True, exist_ok=True)
        Path(baseline_path).write_text(text)
    st = Settings(args.cache, args.seconds, args.edge_db, baseline_path, args.timeout)
    t0 = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for rs in pool.map(_measure_file, [(s, p, st) for s, p, _ in jobs]):
            rows.extend(rs)
    n_src = len({r["path"] for r in rows})
    print(f"\n{n_src} source files from {len(sources)} sources, {len(rows)} inputs, "
          f"{time.perf_counter() - t0:.0f} s; margin max({args.margin_hz:.0f} Hz, "
          f"{100 * args.margin_frac:.0f} %); true edge: within {args.edge_db:.0f} dB of the peak")
    if args.list:
        for r in rows:
            print(f"{r['kind']:10s} {r['truth'] / 1e3:6.2f} {r['orig_edge'] / 1e3:6.2f} "
                  f"got {r['got'] / 1e3:6.2f} base {r['base'] / 1e3:6.2f}  {r['path']}")
    times = np.array([r["seconds"] for r in rows])
    print(f"detector time per input: median {1e3 * np.median(times):.0f} ms, "
          f"max {1e3 * times.max():.0f} ms")
    print("\nthis tree:\n" + _table(rows, "got", args))
    if args.baseline:
        print(f"\nbaseline ({args.baseline}):\n" + _table(rows, "base", args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
