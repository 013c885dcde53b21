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
from audiosr.eval.degrade import measure_cutoff_hz
from audiosr.eval.metrics import lsd_hf, power_spectrogram

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


def score(
    refs: list[Path], kinds: list[str], tables: dict[str, str | None], args: argparse.Namespace
) -> list[dict[str, object]]:
    """One row per (reference, kind) with LSD-HF and levels for sinc and every table."""
    engines = {name: DSPEngine(DSPConfig(table_path=t)) for name, t in tables.items()}
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
                out = engine(inp, torch.full((inp.shape[0],), cutoff))
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
        cut = "-" if kind == "all" else f"{np.median([r['cutoff'] for r in sel]):.0f}"
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
        report(rows, kinds, list(tables))
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
    report(rows, kinds, [*tables, "package-out"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
