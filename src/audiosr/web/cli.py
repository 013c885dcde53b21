"""``audiosr web``: serve the page (options: where to listen, engine defaults, limits)."""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger(__name__)


def build_parser(
    parser_class: type[argparse.ArgumentParser],
    formatter_class: type[argparse.HelpFormatter] = argparse.ArgumentDefaultsHelpFormatter,
) -> argparse.ArgumentParser:
    """The ``audiosr web`` argument parser (the CLI's one-line-error parser and help format)."""
    p = parser_class(
        prog="audiosr web",
        description="Serve the AudioSR web page: upload or record, listen before/after, see\n"
        "the spectrograms, download the 48 kHz WAV. Needs: pip install 'audiosr-forge[web]'.",
        formatter_class=formatter_class,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=7860, help="TCP port")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument(
        "--engine",
        default="audiosr",
        choices=["audiosr", "dsp", "sinc"],
        help="engine selected when the page opens",
    )
    p.add_argument(
        "--model_name", default="basic", choices=["basic", "speech"], help="official weights"
    )
    p.add_argument("--checkpoint", default=None, help="local checkpoint instead of the official")
    p.add_argument("--config", default=None, help="model config in the original's YAML/JSON")
    p.add_argument("-d", "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--jobs_per_model", type=int, default=1, help="jobs run at once on one loaded model"
    )
    p.add_argument("--max_duration", type=float, default=600.0, help="longest input (seconds)")
    p.add_argument("--max_upload_mb", type=float, default=200.0, help="largest upload (MB)")
    p.add_argument(
        "--keep_results", type=int, default=3600, help="seconds results and uploads are kept"
    )
    p.add_argument("--examples", default=None, help="folder of example inputs to show")
    p.add_argument("--no_preload", action="store_true", help="load the model on first use")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads, as for audiosr (default: OMP_NUM_THREADS if set, else 1 for the "
        "dsp and sinc engines, the idle CPUs for the model)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit status."""
    from .settings import WebOptions

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ..cli import UsageError

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    try:
        options = WebOptions(
            engine=args.engine,
            model_name=args.model_name,
            checkpoint=args.checkpoint,
            config=args.config,
            device=args.device,
            jobs_per_model=args.jobs_per_model,
            max_duration_s=args.max_duration,
            max_upload_mb=args.max_upload_mb,
            keep_results_s=args.keep_results,
            examples_dir=args.examples,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from .app import launch

    log.info("serving the AudioSR page on http://%s:%d", args.host, args.port)
    launch(options, host=args.host, port=args.port, share=args.share,
           preload=not args.no_preload)  # fmt: skip
    return 0
