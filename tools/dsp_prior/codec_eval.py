"""LSD-HF of the dsp engine vs plain resampling (sinc) on real codec and resampled inputs.

Every reference (``*.wav`` under the given folders; at most two channels, resampled to 48 kHz,
cut to ``--max-seconds``) goes through each kind of ``realcodecs.py`` (real lame, ffmpeg AAC,
oggenc, opusenc at 44.1 kHz stereo; resampling through 32 / 22.05 kHz). The engine gets the
degradation's cutoff (the measured codec low-pass, ``audiosr eval``'s ``measure_cutoff_hz``;
half the rate for resampling), so the figures do not depend on the pipeline's detector.
A reference whose own band (same measurement) ends less than ``--margin-hz`` above a kind's
cutoff has nothing to recover there and is skipped for that kind.

Prints, per kind: files scored, median cutoff, mean LSD-HF of sinc and of dsp with each table,
the ratio dsp / sinc, and the mean level (dB, LSD protocol's power) above the cutoff of the
reference, the input and the dsp output. ``--tables`` compares envelope tables (e.g. the
previous one vs the bundled one). ``--fit-corpus CORPUS CACHE --folds K`` instead scores
corpus clips package-out: the packages are split into K folds (sorted, round-robin) and each
fold is scored with a table fitted by ``train.py`` without it (and with the ``--tables``).
``--min-edge-hz`` skips references that end below it (no codec would cut them).

``--protocol pipeline`` runs each engine as ``audiosr upsample`` does instead
(:func:`audiosr.pipeline.upsample`: each channel's band limit from the detector, the input
low-passed there before the engine and put back below it; a channel read as full band is
passed through); LSD-HF is still taken above the degradation's own cutoff, as for sinc, and
the cutoff column gives the median of the detected ones. ``--oracle`` adds a bound: the
engine given each reference's own long-term envelope above the cutoff (mean level of every
1/6-octave band, following the input's frame-to-frame level; always given the degradation's
cutoff), a bound in practice for any prediction from the known band (not a strict one).

usage: python tools/dsp_prior/codec_eval.py REFS... [--kinds lame128,...] [--tables a.npz,b.npz]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import realcodecs
import soundfile as sf
import soxr
import torch

from audiosr.engines.dsp import DSPConfig, DSPEngine
from audiosr.engines.dsp_prior import FILL_MIN, describe, hf_bands
from audiosr.eval.degrade import measure_cutoff_hz
from audiosr.eval.metrics import lsd_hf, power_spectrogram
from audiosr.pipeline import upsample

log = logging.getLogger("codec_eval")
DEFAULT_KINDS = "lame128,lame192,aac128,vorbis-q3,opus96,resample32k,resample22k"


def load_reference(path: Path, max_seconds: float) -> np.ndarray:
    """``[C, T]`` float64 at 48 kHz (C <= 2: more channels are mixed to mono)."""
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    if x.shape[1] > 2:
        x = x.mean(axis=1, keepdims=True)
    if sr != 48_000:
        x = soxr.resample(x, sr, 48_000, quality="VHQ")
    return np.ascontiguousarray(x[: int(max_seconds * 48_000)].T)


def level_db(x: torch.Tensor, k: int) -> float:
    """Mean power (dB, LSD protocol STFT) of the bins from ``k`` up."""
    return float(10 * torch.log10(power_spectrogram(x)[..., k:].mean() + 1e-20))


class OracleEnvelope(DSPEngine):
    """The dsp engine with the reference's own long-term envelope above the cutoff (a bound).

    ``reference`` ``[B, T]`` must be set before each call; the envelope of every 1/6-octave
    band is the reference's mean log10 power over the input's active frames, moved frame by
    frame with the input's anchor level (the prior's description).
    """

    reference: torch.Tensor | None = None

    def __call__(self, audio: torch.Tensor, cutoff_hz: torch.Tensor) -> torch.Tensor:
        assert self.reference is not None and self.reference.shape == audio.shape
        out = []
        for x, ref, c in zip(audio, self.reference, torch.as_tensor(cutoff_hz).reshape(-1)):
            self._ref_log = torch.log10(power_spectrogram(ref[None])[0] + 1e-8).double().numpy()
            out.append(super().__call__(x[None], c.reshape(1)))
        return torch.cat(out)

    def _learned_target(self, power: torch.Tensor, cutoff_hz: float, floor: float):
        frames = power.T.double().numpy()
        anchor, active, _, _ = describe(frames, cutoff_hz)
        k_cut = int(np.ceil(cutoff_hz * 2048 / 48_000))
        log_target = np.zeros((frames.shape[0], frames.shape[1] - k_cut))
        for lo, hi in hf_bands(cutoff_hz):
            band = self._ref_log[:, lo:hi].mean(axis=1)  # [N]
            level = band[active].mean() + anchor - anchor[active].mean()
            log_target[:, lo - k_cut : hi - k_cut] = level[:, None]
        target = np.maximum(10.0**log_target - floor, 0.0)
        target[anchor <= FILL_MIN] = 0.0
        return torch.from_numpy(target.T).float()


def run_engine(engine: DSPEngine, inp: torch.Tensor, cutoff: float, protocol: str):
    """``(output [C, T], cutoff the engine used)`` under ``protocol`` (nominal | pipeline)."""
    if protocol == "pipeline":
        out, report = upsample(engine, inp)
        return out, report.cutoff_hz
    return engine(inp, torch.full((inp.shape[0],), cutoff)), cutoff


def score(
    refs: list[Path], kinds: list[str], tables: dict[str, str | None], args: argparse.Namespace
) -> list[dict[str, object]]:
    """One row per (reference, kind) with LSD-HF and levels for sinc and every table."""
    engines = {name: DSPEngine(DSPConfig(table_path=t)) for name, t in tables.items()}
    if args.oracle:
        engines["oracle"] = OracleEnvelope()
    rows = []
    for path in refs:
        x = load_reference(path, args.max_seconds)
        edge = measure_cutoff_hz(x)
        if edge < args.min_edge_hz:
            log.info("%s: skipped (reference band %.0f Hz)", path.name, edge)
            continue
        ref = torch.from_numpy(x).float()
        for kind in kinds:
            y, cutoff = realcodecs.degrade_real(x, kind)
            if cutoff > edge - args.margin_hz:
                log.info("%s %s: skipped (cutoff %.0f, reference band %.0f Hz)",
                         path.name, kind, cutoff, edge)
                continue
            inp = torch.from_numpy(y).float()
            k = int(round(cutoff * 2048 / 48_000))
            row: dict[str, object] = {
                "file": path.name, "kind": kind, "cutoff": cutoff,
                "sinc": float(lsd_hf(inp, ref, cutoff).mean()),
                "level_ref": level_db(ref, k), "level_in": level_db(inp, k),
            }
            for name, engine in engines.items():
                oracle = isinstance(engine, OracleEnvelope)  # always given the cutoff
                if oracle:
                    engine.reference = ref
                out, used = run_engine(engine, inp, cutoff, "nominal" if oracle else args.protocol)
                row.setdefault("used", used)
                row[name] = float(lsd_hf(out, ref, cutoff).mean())
                row[f"level_{name}"] = level_db(out, k)
            rows.append(row)
            log.info("%s", row)
    return rows


def report(rows: list[dict[str, object]], kinds: list[str], names: list[str]) -> None:
    head = " | ".join(f"dsp[{n}] | ratio" for n in names)
    print(f"| kind | files | cutoff Hz | sinc LSD-HF | {head} | level ref / in / "
          + " / ".join(names) + " dB |")
    print("|---" * (4 + 2 * len(names) + 1) + "|")
    for kind in [*kinds, "all"]:
        sel = [r for r in rows if kind in ("all", r["kind"])]
        if not sel:
            continue
        sinc = np.mean([r["sinc"] for r in sel])
        cells = " | ".join(
            f"{np.mean([r[n] for r in sel]):.3f} | {np.mean([r[n] for r in sel]) / sinc:.2f}"
            for n in names
        )
        levels = [np.mean([r[k] for r in sel]) for k in ("level_ref", "level_in")]
        levels += [np.mean([r[f"level_{n}"] for r in sel]) for n in names]
        cut = "-" if kind == "all" else f"{np.median([r['used'] for r in sel]):.0f}"
        print(f"| {kind} | {len(sel)} | {cut} | {sinc:.3f} | {cells} | "
              + " / ".join(f"{v:.1f}" for v in levels) + " |")


def _train_module():
    path = Path(__file__).with_name("train.py")
    spec = importlib.util.spec_from_file_location("dsp_prior_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("refs", type=Path, nargs="*", help="folders (or files) of references")
    ap.add_argument("--kinds", default=DEFAULT_KINDS)
    ap.add_argument("--tables", default="", help="name=path.npz,...; default: the bundled one")
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--margin-hz", type=float, default=1000.0)
    ap.add_argument("--min-edge-hz", type=float, default=0.0,
                    help="skip references whose own band ends below this")
    ap.add_argument("--fit-corpus", type=Path, nargs=2, metavar=("CORPUS", "CACHE"))
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--protocol", default="nominal", choices=["nominal", "pipeline"],
                    help="nominal: the engine gets the degradation's cutoff; pipeline: "
                    "audiosr.pipeline.upsample (detected band limits, pre-filter, merge)")
    ap.add_argument("--oracle", action="store_true",
                    help="add the bound: the reference's own envelope (see the docstring)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(1)
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in realcodecs.KINDS:
            raise SystemExit(f"unknown kind {k!r}; choose from {', '.join(realcodecs.KINDS)}")
    tables: dict[str, str | None] = {}
    if args.tables:
        tables = dict(item.split("=", 1) for item in args.tables.split(","))
    if args.fit_corpus is None:
        tables = tables or {"bundled": None}
        refs = sorted(p for r in args.refs for p in ([r] if r.is_file() else r.rglob("*.wav")))
        rows = score(refs, kinds, tables, args)
        report(rows, kinds, [*tables, *(["oracle"] if args.oracle else [])])
        return 0
    corpus, cache = args.fit_corpus
    with open(corpus / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    packages = sorted({r["package"] for r in manifest})
    train, rows = _train_module(), []
    with tempfile.TemporaryDirectory() as tmp:
        for fold in range(args.folds):
            out = packages[fold :: args.folds]
            table = Path(tmp) / f"fold{fold}.npz"
            train.main([str(corpus), str(cache), str(table), "--exclude", ",".join(out)])
            refs = sorted(corpus / r["kind"] / f"{r['clip']}.wav" for r in manifest
                          if r["package"] in out)
            rows += score(refs, kinds, {**tables, "package-out": str(table)}, args)
    report(rows, kinds, [*tables, "package-out", *(["oracle"] if args.oracle else [])])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
