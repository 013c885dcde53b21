"""``audiosr eval REFERENCE_DIR --engines dsp,sinc --out DIR``: benchmark engines, write a report.

Registered in :mod:`audiosr.cli` as a sub-command; :func:`audiosr.cli.main` configures logging
and turns :class:`~audiosr.errors.AudioSRError` / ``ValueError`` into a one-line error and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..errors import AudioSRError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``audiosr eval``."""
    p = argparse.ArgumentParser(
        prog="audiosr eval",
        description="Degrade every reference recording in a folder (low-pass, resampling, "
        "codecs), super-resolve it with each engine at the known cutoff, and score it "
        "(LSD, LSD-HF/LF, gain-matched LSD, SI-SDR, real-time factor). Writes "
        "OUT/results.jsonl (resumable), OUT/results.md and spectrogram figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("reference_dir", help="folder of full-band reference recordings (recursive)")
    p.add_argument("--engines", default="dsp,sinc", help="comma-separated: audiosr, dsp, sinc")
    p.add_argument("--out", required=True, help="output folder (results are appended/resumed)")
    p.add_argument("--cutoffs", default="4000,8000,12000", help="low-pass/resample cutoffs, Hz")
    p.add_argument(
        "--degradations",
        default="lowpass,resample,mp3,opus,vorbis",
        help="comma-separated kinds: lowpass, resample, mp3, opus, vorbis",
    )
    p.add_argument("--seed", type=int, default=0, help="draws the low-pass families and orders")
    p.add_argument("--max-files", type=int, default=None, help="use only the first N files")
    p.add_argument(
        "--max-seconds", type=float, default=None, help="use only the first S seconds of a file"
    )
    p.add_argument("--no-plots", action="store_true", help="write no PNG figures")
    p.add_argument("--checkpoint", default=None, help="audiosr engine: local checkpoint")
    p.add_argument("--config", default=None, help="audiosr engine: model config (YAML/JSON)")
    p.add_argument(
        "--model_name", default="basic", choices=["basic", "speech"], help="audiosr engine"
    )
    p.add_argument("--ddim_steps", type=int, default=50, help="audiosr engine: sampler steps")
    p.add_argument("-d", "--device", default="auto", help="audiosr engine: auto, cpu, cuda, mps")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise AudioSRError(f"--{what} is empty")
    return items


def _cutoffs(text: str) -> list[float]:
    try:
        return [float(t) for t in _split(text, "cutoffs")]
    except ValueError:
        raise AudioSRError(
            f"--cutoffs must be numbers in Hz separated by commas, got {text!r}"
        ) from None


def _engine_kwargs(args: argparse.Namespace, engines: list[str]) -> dict[str, dict[str, Any]]:
    """make_engine keyword arguments: only the diffusion engine takes any."""
    if "audiosr" not in engines:
        return {}
    from ..config import SamplingOptions

    if args.ddim_steps < 1:
        raise AudioSRError(f"--ddim_steps must be a positive integer, got {args.ddim_steps}")
    return {
        "audiosr": {
            "model": args.checkpoint or args.model_name,
            "config": args.config,
            "device": args.device,
            "options": SamplingOptions(steps=args.ddim_steps),
        }
    }


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, then write the report; 0 on success."""
    from .benchmark import RESULTS_FILE, evaluate
    from .report import write_report

    engines = _split(args.engines, "engines")
    kinds = _split(args.degradations, "degradations")
    cutoffs = _cutoffs(args.cutoffs)
    try:
        evaluate(
            args.reference_dir,
            engines,
            args.out,
            degradations=kinds,
            cutoffs=cutoffs,
            seed=args.seed,
            engine_kwargs=_engine_kwargs(args, engines),
            max_files=args.max_files,
            max_seconds=args.max_seconds,
            plots=not args.no_plots,
        )
    except AudioSRError:
        # Unreadable references are reported after the others were scored: report those
        # first, then fail with the original one-line error.
        if (Path(args.out) / RESULTS_FILE).is_file():
            try:
                write_report(args.out, plots=not args.no_plots)
            except AudioSRError:
                pass
        raise
    write_report(args.out, plots=not args.no_plots)
    return 0
