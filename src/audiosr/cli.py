"""Command line: ``audiosr -i FILE`` (drop-in for the original) plus ``audiosr convert``.

Every flag of the original keeps its name, short form, default and meaning. Errors print one
line and exit non-zero; ``--debug`` shows tracebacks. A batch goes on past a failed file and
reports it at the end.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol

from .errors import AudioSRError
from .eval import cli as eval_cli

log = logging.getLogger("audiosr")

AUDIO_SUFFIXES = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".m4a",
    ".aac",
    ".aif",
    ".aiff",
    ".aifc",
    ".w64",
    ".caf",
}
SUBTYPES = {"float": "FLOAT", "pcm_16": "PCM_16", "pcm_24": "PCM_24"}

# Presets: what each changes (explicit flags still win).
PRESETS: dict[str, dict[str, object]] = {
    # The original's numbers: its front end, seeded filter family, peak-normalised output,
    # 16-bit WAV; DDIM eta 1 with CFG, fp32, reference attention.
    "upstream": {
        "ddim_steps": 50,
        "guidance_scale": 3.5,
        "sampler": "ddim",
        "precision": "fp32",
        "attention": "math",
    },
    # The improved pipeline with the original's sampler; fused attention (same numbers to
    # rounding, measured by benchmarks/bench_speed.py).
    "quality": {
        "ddim_steps": 50,
        "guidance_scale": 3.5,
        "sampler": "ddim",
        "precision": "fp32",
        "attention": "sdpa",
    },
    # 10 UniPC steps; bf16 where the device runs it natively (CUDA; CPUs with AVX512-BF16/AMX).
    "fast": {
        "ddim_steps": 10,
        "guidance_scale": 3.5,
        "sampler": "unipc",
        "precision": "auto",
        "attention": "sdpa",
    },
}


def configure_logging(quiet: bool = False, debug: bool = False) -> None:
    """Entry-point-only logging setup: messages to stderr, no tracebacks unless debugging."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s: %(message)s" if debug else "%(message)s")
    )
    root = logging.getLogger("audiosr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors; the full usage is in ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _upsample_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="audiosr",
        description="Super-resolve audio to 48 kHz with AudioSR. Other commands: "
        "'audiosr convert SRC DST' (weights to safetensors).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("paths", nargs="*", help="input files or folders (searched recursively)")
    p.add_argument(
        "-i",
        "--input_audio_file",
        action="append",
        default=None,
        help="input audio file (repeatable)",
    )
    p.add_argument("-il", "--input_file_list", default="", help="text file, one input per line")
    p.add_argument("-s", "--save_path", default="./output", help="output folder")
    p.add_argument(
        "--model_name",
        default="basic",
        choices=["basic", "speech"],
        help="official checkpoint (downloaded from Hugging Face on first use)",
    )
    p.add_argument("-d", "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--ddim_steps", type=int, default=None, help="sampler steps (50; preset)")
    p.add_argument(
        "-gs",
        "--guidance_scale",
        type=float,
        default=None,
        help="classifier-free guidance scale (3.5; preset)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed")
    p.add_argument("--suffix", default="_AudioSR_Processed_48K", help="output name suffix")
    p.add_argument(
        "--chunking",
        action="store_true",
        help="upstream preset: the original's chunked long-audio path",
    )
    p.add_argument("--chunk_duration", type=float, default=15, help="seconds (with --chunking)")
    p.add_argument("--overlap_duration", type=float, default=2, help="seconds (with --chunking)")
    p.add_argument("--checkpoint", default=None, help="local checkpoint (.bin/.pt/.safetensors)")
    p.add_argument("--config", default=None, help="model config in the original's YAML/JSON")
    p.add_argument(
        "--engine",
        default="audiosr",
        choices=["audiosr", "dsp", "sinc"],
        help="audiosr: diffusion model; dsp: no weights needed; sinc: resampling only",
    )
    p.add_argument(
        "--preset",
        default="quality",
        choices=sorted(PRESETS),
        help="upstream: the original's exact numbers and output format",
    )
    p.add_argument("--sampler", default=None, choices=["ddim", "dpmpp_2m", "unipc"])
    p.add_argument("--eta", type=float, default=1.0, help="DDIM stochasticity (0: deterministic)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16", "auto"])
    p.add_argument("--attention", default=None, choices=["math", "sdpa"], help="(preset)")
    p.add_argument(
        "--filter_family",
        default=None,
        choices=["butter", "cheby1", "ellip", "bessel"],
        help="low-pass family of the condition (default: drawn from the seed)",
    )
    p.add_argument(
        "--cutoff", type=float, default=None, help="input band limit in Hz (default: detected)"
    )
    p.add_argument(
        "--no_prefilter",
        action="store_true",
        help="do not low-pass the input at its cutoff before inference",
    )
    p.add_argument("--force", action="store_true", help="process full-band inputs too")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="peak-normalise the output like the original instead of keeping loudness",
    )
    p.add_argument("--batch_size", type=int, default=4, help="segments x channels per call")
    p.add_argument(
        "--subtype",
        default=None,
        choices=sorted(SUBTYPES),
        help="output sample format (pcm_24; pcm_16 for the upstream preset)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--timestamped",
        action="store_true",
        help="write into a DD_MM_YYYY_HH_MM_SS sub-folder like the original",
    )
    p.add_argument(
        "--plot",
        action="store_true",
        help="also save input/output spectrograms as <output stem>.png (needs matplotlib)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _convert_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="audiosr convert",
        description="Write the tensors inference needs to a safetensors file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("src", help="checkpoint path or model name (basic, speech)")
    p.add_argument("dst", help="output .safetensors path")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--config", default=None, help="model config in the original's YAML/JSON")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--debug", action="store_true")
    return p


@dataclass
class BatchSummary:
    """Outcome of one batch run; printed at the end."""

    processed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def report(self) -> str:
        lines = [
            f"done: {len(self.processed)} processed, {len(self.skipped)} skipped "
            f"(output exists; --overwrite to redo), {len(self.failed)} failed"
        ]
        lines += [f"  failed: {p}: {why}" for p, why in self.failed]
        return "\n".join(lines)


@dataclass(frozen=True)
class Job:
    """One input and where its output goes, relative to the output folder."""

    src: Path
    subdir: Path = Path()  # the file's folder relative to a folder given as input


def _is_below(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder.resolve())


def collect_inputs(args: argparse.Namespace, exclude: Path | None = None) -> list[Job]:
    """Inputs from -il, -i and positional paths, in that order.

    Folders (positional or in the list) are searched recursively for audio files; hidden
    files and anything below ``exclude`` (the output folder) are skipped, so a rerun never
    takes earlier outputs as inputs. A folder given with -i is an error of that input.
    """
    from .upstream import read_list

    items: list[str] = []
    if args.input_file_list:
        lst = Path(args.input_file_list)
        if not lst.is_file():
            raise AudioSRError(f"input list not found: {lst}")
        items += read_list(lst)
    items += list(args.input_audio_file or [])
    items += list(args.paths or [])
    if not items:
        raise AudioSRError("no input: give -i FILE, -il LIST, or files/folders as arguments")
    explicit = set(args.input_audio_file or [])
    jobs: list[Job] = []
    for item in items:
        path = Path(item).expanduser()
        if not path.is_dir() or item in explicit:
            jobs.append(Job(path))
            continue
        found = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in AUDIO_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and not _is_below(p, exclude)
        )
        if not found:
            log.warning("no audio files in folder %s", path)
        jobs += [Job(p, p.parent.relative_to(path)) for p in found]
    return jobs


def _output_dir(args: argparse.Namespace, jobs: Iterable[Job]) -> Path:
    """The output folder (created, checked writable); a sub-folder with ``--timestamped``."""
    save = Path(args.save_path).expanduser()
    if save.exists() and not save.is_dir():
        inputs = {job.src.resolve() for job in jobs if job.src.exists()}
        kind = "an input file" if save.resolve() in inputs else "a file"
        raise AudioSRError(f"output folder {save} is {kind}, not a folder; give a folder to -s")
    if args.timestamped:
        save = save / datetime.datetime.now().strftime("%d_%m_%Y_%H_%M_%S")
    try:
        save.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioSRError(f"cannot create output folder {save}: {exc.strerror or exc}") from None
    probe = save / ".audiosr-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise AudioSRError(f"output folder {save} is not writable: {exc.strerror or exc}") from None
    return save


def _sampling_options(args: argparse.Namespace):
    from .config import SamplingOptions

    preset = PRESETS[args.preset]
    steps = args.ddim_steps if args.ddim_steps is not None else preset["ddim_steps"]
    if steps < 1:
        raise AudioSRError(f"--ddim_steps must be a positive integer, got {steps}")
    precision = args.precision or preset["precision"]
    if precision == "auto":
        import torch

        from .devices import resolve_device

        dev = resolve_device(args.device)
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            precision = "bf16" if dev.type == "cpu" and native else "fp32"
    return SamplingOptions(
        steps=int(steps),
        guidance_scale=float(
            args.guidance_scale if args.guidance_scale is not None else preset["guidance_scale"]
        ),
        eta=float(args.eta),
        seed=int(args.seed),
        sampler=args.sampler or preset["sampler"],
        precision=precision,
        attention=args.attention or preset["attention"],
        filter_family=args.filter_family,
    )


class _RunBar:
    """One tqdm bar for the whole run, over rows (segments x channels) x sampler steps.

    Files add their rows when they are planned; the diffusion engine advances it after every
    sampler step (so it moves inside a segment), other engines after every call.
    """

    def __init__(self, enabled: bool, steps: int) -> None:
        from tqdm.auto import tqdm

        self.steps = steps
        self.bar = tqdm(total=0, desc="generating", unit="step", leave=False, disable=not enabled)

    def planned(self, rows: int) -> None:
        self.bar.total += rows * self.steps
        self.bar.refresh()

    def advance(self, rows: int) -> None:
        self.bar.update(rows)

    def close(self) -> None:
        self.bar.close()


def run_upsample(args: argparse.Namespace) -> int:
    """The main job: every input -> ``<save_path>/<stem><suffix>.wav`` at 48 kHz.

    Inputs found in a folder keep their sub-folder below the output folder. Returns 1 when
    any input failed (the others are still processed), else 0.
    """
    from .pipeline import MIN_CUTOFF_HZ, SAMPLE_RATE

    # Arguments first: nothing is created or loaded for a run that cannot start.
    options = _sampling_options(args)
    upstream = args.preset == "upstream"
    subtype = SUBTYPES[args.subtype] if args.subtype else ("PCM_16" if upstream else "PCM_24")
    if args.batch_size < 1:
        raise AudioSRError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.cutoff is not None and not MIN_CUTOFF_HZ <= args.cutoff <= SAMPLE_RATE / 2:
        raise AudioSRError(
            f"--cutoff must be in [{MIN_CUTOFF_HZ:.0f}, {SAMPLE_RATE // 2}] Hz, got {args.cutoff:g}"
        )
    jobs = collect_inputs(args, exclude=Path(args.save_path).expanduser())
    out_dir = _output_dir(args, jobs)
    if args.plot:
        from .eval.plots import new_figure

        new_figure()  # fail now, with the install hint, rather than after every file
    runner = _upstream_processor(args, options) if upstream else _modern_processor(args, options)

    from tqdm.contrib.logging import logging_redirect_tqdm

    # Log lines go through tqdm.write, so they do not break the progress bars.
    with logging_redirect_tqdm(loggers=[log]):
        summary = _run_batch(jobs, out_dir, runner, subtype, args)
    if len(jobs) > 1:  # a single input has said everything in its own line
        (log.warning if summary.failed else log.info)("%s", summary.report())
    return 1 if summary.failed else 0


class Runner(Protocol):
    """Processes submitted files; reports each one through ``done`` (maybe after ``finish``)."""

    def submit(self, src: Path, dst: Path, subtype: str, done: Done) -> None: ...

    def finish(self) -> None: ...


# (input, output, report or None, error or None), once per submitted file.
Done = Callable[[Path, Path, object, "Exception | None"], None]


@dataclass
class _OneByOne:
    """A :class:`Runner` that processes each file as it is submitted."""

    process: Callable[[Path, Path, str], None]

    def submit(self, src: Path, dst: Path, subtype: str, done: Done) -> None:
        try:
            self.process(src, dst, subtype)
        except Exception as exc:
            done(src, dst, None, exc)
            return
        done(src, dst, None, None)

    def finish(self) -> None:
        pass


def _run_batch(
    jobs: list[Job],
    out_dir: Path,
    runner: Runner,
    subtype: str,
    args: argparse.Namespace,
) -> BatchSummary:
    """Every job in order; a failure is logged and recorded, and the batch goes on."""
    from tqdm.auto import tqdm

    summary = BatchSummary()
    inputs = {job.src.resolve() for job in jobs if job.src.exists()}
    claimed: dict[Path, Path] = {}  # output -> the input that writes it in this run

    def done(src: Path, dst: Path, report: object, exc: Exception | None) -> None:
        if exc is None and args.plot:
            try:
                from .eval.plots import save_file_comparison

                log.info("wrote %s", save_file_comparison(src, dst, cutoff_hz=args.cutoff))
            except Exception as plot_exc:
                exc = plot_exc
        if exc is None:
            summary.processed.append(dst)
            log.debug("%s: %s", src, report)
            # One line per file: where it went, and the band limit used or why it was kept.
            describe = getattr(report, "describe", None)
            log.info("wrote %s (%s)", dst, describe()) if describe else log.info("wrote %s", dst)
        elif isinstance(exc, AudioSRError):  # one bad file never stops the batch
            summary.failed.append((src, str(exc)))
            log.error("%s", exc)
        else:
            if args.debug:
                log.error("failed on %s", src, exc_info=exc)
            first = str(exc).splitlines()[0] if str(exc) else ""
            reason = f"{type(exc).__name__}: {first}"
            summary.failed.append((src, reason))
            log.error("%s: %s (rerun with --debug for details)", src, reason)

    for job in tqdm(jobs, desc="files", unit="file", disable=args.quiet or len(jobs) < 2):
        src = job.src
        dst = out_dir / job.subdir / f"{src.stem}{args.suffix}.wav"
        key = dst.resolve()
        if key in inputs:
            why = f"output {dst} would overwrite an input; change --suffix or -s"
        elif key in claimed:
            why = f"output {dst} is also the output of {claimed[key]}; rename one of them"
        else:
            why = ""
        if why:
            summary.failed.append((src, why))
            log.error("%s: %s", src, why)
            continue
        claimed[key] = src
        if dst.exists() and not args.overwrite:
            summary.skipped.append(src)
            log.info("%s exists: skipped (--overwrite to redo)", dst)
            continue
        runner.submit(src, dst, subtype, done)
    runner.finish()
    return summary


@dataclass
class _Batched:
    """A :class:`Runner` over :class:`~audiosr.pipeline.FileBatcher`: rows of several files
    share engine calls; one progress bar for the run."""

    batcher: object  # FileBatcher (imported lazily: it pulls in torch)
    bar: _RunBar

    def submit(self, src: Path, dst: Path, subtype: str, done: Done) -> None:
        self.batcher.submit(src, dst, done, subtype=subtype)

    def finish(self) -> None:
        try:
            self.batcher.finish()
        finally:
            self.bar.close()


def _modern_processor(args: argparse.Namespace, options) -> Runner:
    from .api import make_engine
    from .pipeline import FileBatcher, PipelineOptions

    model = args.checkpoint or args.model_name
    bars: list[_RunBar] = []  # the bar needs the engine's step count; the engine needs the bar
    engine = make_engine(
        args.engine,
        model=model,
        config=args.config,
        device=args.device,
        options=options,
        progress=False,
        on_step=lambda rows: bars[0].advance(rows),
    )
    from .engines.diffusion import AudioSREngine

    diffusion = isinstance(engine, AudioSREngine)  # advances the bar per sampler step
    bar = _RunBar(not args.quiet, engine.steps if diffusion else 1)
    bars.append(bar)
    pipeline = PipelineOptions(
        cutoff_hz=args.cutoff,
        prefilter=not args.no_prefilter,
        force=args.force,
        keep_loudness=not args.normalize,
        batch_size=args.batch_size,
    )
    batcher = FileBatcher(
        engine, pipeline, on_planned=bar.planned, on_call=None if diffusion else bar.advance
    )
    return _Batched(batcher, bar)


def _upstream_processor(args: argparse.Namespace, options) -> Runner:
    """The original's path: one model, files in order, reseeded per file, trimmed output."""
    import numpy as np

    from . import upstream
    from .audio_io import audio_info, write_audio

    if args.engine != "audiosr":
        raise AudioSRError("--preset upstream needs --engine audiosr")
    model = upstream.build_model(
        ckpt_path=args.checkpoint,
        config=args.config,
        device=args.device,
        model_name=args.model_name,
    )

    def process(src: Path, dst: Path, subtype: str) -> None:
        if args.chunking:
            out = upstream.super_resolution_long_audio(
                model,
                src,
                seed=args.seed,
                ddim_steps=options.steps,
                guidance_scale=options.guidance_scale,
                chunk_duration_s=args.chunk_duration,
                overlap_duration_s=args.overlap_duration,
            ).numpy()
        else:
            out = upstream.super_resolution(
                model,
                src,
                seed=args.seed,
                ddim_steps=options.steps,
                guidance_scale=options.guidance_scale,
            )[0]
        keep = int(round(audio_info(src).duration_s * upstream.SAMPLE_RATE))
        write_audio(
            dst, np.asarray(out[:, :keep]), upstream.SAMPLE_RATE, subtype=subtype, protect=[src]
        )

    return _OneByOne(process)


def run_convert(args: argparse.Namespace) -> int:
    from .config import AudioSRConfig
    from .weights import convert_checkpoint

    cfg = AudioSRConfig.from_file(args.config) if args.config else AudioSRConfig()
    dst = convert_checkpoint(args.src, args.dst, config=cfg, dtype=args.dtype)
    log.info("wrote %s", dst)
    return 0


COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[..., int]]] = {
    "convert": (_convert_parser, run_convert),
    "eval": (eval_cli.build_parser, eval_cli.run),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        make_parser, run = COMMANDS[argv.pop(0)]
    else:
        make_parser, run = _upsample_parser, run_upsample
    try:
        args = make_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    configure_logging(quiet=args.quiet, debug=args.debug)
    try:
        return run(args)
    except (AudioSRError, ValueError, FileNotFoundError) as exc:
        if args.debug:
            log.exception("error")
        log.error("error: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        log.error(
            "internal error: %s: %s (rerun with --debug for details)",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return 1
