"""Command line: ``audiosr -i FILE`` (drop-in for the original) plus ``audiosr convert``.

Every flag of the original keeps its name, short form, default and meaning. Errors print one
line and exit non-zero; ``--debug`` shows tracebacks. A batch goes on past a failed file and
reports it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol

from .errors import AudioSRError
from .eval import cli as eval_cli
from .presets import PRESET_NAMES  # one definition of each preset: audiosr/presets.py

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
BATCH_SIZE = 4  # --batch_size default
CHUNK_DURATION_S = 15.0  # --chunk_duration default (the original's)
OVERLAP_DURATION_S = 2.0  # --overlap_duration default (the original's)
ETA = 1.0  # --eta default (the original's DDIM eta)


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


class UsageError(AudioSRError):
    """A bad combination or value of arguments: reported like argparse's errors (exit 2)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: unwinds like Ctrl-C, so no temporary file is left."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors; the full usage is in ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: X)`` once: not for flags, unset (None) values, or help that says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == ""
            or default is argparse.SUPPRESS
            or action.option_strings == []
        ):
            return text
        return f"{text} (default: %(default)s)"


# One-line summaries for --help; a command missing here shows its description's first line.
_COMMAND_SUMMARIES = {
    "convert": "SRC DST: write the weights inference needs to a safetensors file",
    "eval": "REFS: score engines on degraded copies of full-band recordings",
    "web": "start the web page (upload, listen, compare, download)",
}


def _commands_epilog() -> str:
    """One line per sub-command."""
    lines = ["other commands (each has its own --help):"]
    for name, (make_parser, _run) in COMMANDS.items():
        summary = _COMMAND_SUMMARIES.get(name) or (make_parser().description or "").split(". ")[0]
        lines.append(f"  audiosr {name:<8} {summary}")
    return "\n".join(lines)


def _upsample_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="audiosr",
        description="Super-resolve audio to 48 kHz with AudioSR (or a weight-free engine).\n"
        "Exit status: 0 done, 1 a file failed (the others are still processed), 2 usage error.",
        epilog=_commands_epilog(),
        formatter_class=_HelpFormatter,
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
    p.add_argument(
        "--ddim_steps",
        type=int,
        default=None,
        help="sampler steps (default: 50; 10 with --preset fast)",
    )
    p.add_argument(
        "-gs",
        "--guidance_scale",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: 3.5)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed")
    p.add_argument("--suffix", default="_AudioSR_Processed_48K", help="output name suffix")
    p.add_argument(
        "--chunking",
        action="store_true",
        help="with --preset upstream: the original's chunked long-audio path (the default "
        "path always processes any length in segments)",
    )
    p.add_argument(
        "--chunk_duration",
        type=float,
        default=None,
        help=f"seconds per chunk with --chunking (default: {CHUNK_DURATION_S:g})",
    )
    p.add_argument(
        "--overlap_duration",
        type=float,
        default=None,
        help=f"seconds of cross-fade with --chunking (default: {OVERLAP_DURATION_S:g})",
    )
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
        choices=sorted(PRESET_NAMES),
        help="upstream: the original's exact numbers and output format",
    )
    p.add_argument(
        "--sampler",
        default=None,
        choices=["ddim", "dpmpp_2m", "unipc"],
        help="diffusion sampler: ddim (the original's), dpmpp_2m (DPM-Solver++(2M)) or unipc; "
        "the last two need only 10-20 steps (default: from --preset)",
    )
    p.add_argument(
        "--eta",
        type=float,
        default=None,
        help="DDIM stochasticity, 0: deterministic (default: 1, the original's)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=["fp32", "bf16", "fp16", "auto"],
        help="number format of the model: fp32 (exact), bf16/fp16 (about 2x faster where the "
        "device runs them natively), auto: bf16 on CUDA and CPUs with native bf16, else fp32 "
        "(default: from --preset)",
    )
    p.add_argument(
        "--attention",
        default=None,
        choices=["math", "sdpa"],
        help="attention kernel: math (reference) or sdpa (fused, same numbers to rounding) "
        "(default: from --preset)",
    )
    p.add_argument(
        "--filter_family",
        default=None,
        choices=["butter", "cheby1", "ellip", "bessel"],
        help="low-pass family of the condition (default: drawn from the seed)",
    )
    p.add_argument(
        "--cutoff",
        type=float,
        default=None,
        help="input band limit in Hz, up to 24000; below 1000 counts as 1000; the band above it "
        "is replaced by the generated one (default: detected per channel, and whatever the "
        "input has above a detected limit is kept)",
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
    p.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help=f"segments x channels per model call (default: {BATCH_SIZE})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: OMP_NUM_THREADS if set, else 1 for the sinc and dsp "
        "engines and every usable CPU for the model; see README, Threads)",
    )
    p.add_argument(
        "--subtype",
        default=None,
        choices=sorted(SUBTYPES),
        help="output sample format (default: pcm_24; pcm_16 with --preset upstream)",
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
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="process on a Ray cluster: no ADDRESS starts one on this machine; 'auto' or "
        "HOST:PORT joins a running one (needs the [ray] extra)",
    )
    p.add_argument("--workers", type=int, default=None, help="--ray: actors (one per GPU)")
    p.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        help="--ray: GPUs each actor reserves, fractional allowed (1 when the cluster has GPUs)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _convert_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="audiosr convert",
        description="Write the tensors inference needs to a safetensors file.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("src", help="checkpoint path or model name (basic, speech)")
    p.add_argument("dst", help="output .safetensors path")
    p.add_argument(
        "--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="weight format"
    )
    p.add_argument("--config", default=None, help="model config in the original's YAML/JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
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
        # Most reasons already name the file ("cannot read X: ..."): say it once.
        lines += [
            f"  failed: {why}" if str(p) in why else f"  failed: {p}: {why}"
            for p, why in self.failed
        ]
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
            raise UsageError(f"input list not found: {lst}")
        items += read_list(lst)
    items += list(args.input_audio_file or [])
    items += list(args.paths or [])
    if not items:
        raise UsageError("no input: give -i FILE, -il LIST, or files/folders as arguments")
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
    from .devices import resolve_device
    from .presets import preset_options

    if args.ddim_steps is not None and args.ddim_steps < 1:
        raise UsageError(f"--ddim_steps must be a positive integer, got {args.ddim_steps}")
    return preset_options(
        args.preset,
        resolve_device(args.device),
        steps=args.ddim_steps,
        guidance_scale=args.guidance_scale,
        eta=args.eta if args.eta is not None else ETA,
        seed=int(args.seed),
        sampler=args.sampler,
        precision=args.precision,
        attention=args.attention,
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


def check_arguments(args: argparse.Namespace) -> None:
    """Reject impossible values before anything is read, created or loaded.

    Raises:
        UsageError: a value out of range (exit status 2, like argparse's own errors).
    """
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.cutoff is not None and not 0 < args.cutoff <= 24_000:
        raise UsageError(f"--cutoff must be in (0, 24000] Hz, got {args.cutoff:g}")
    for flag in ("chunk_duration", "overlap_duration"):
        value = getattr(args, flag)
        if value is not None and not value >= 0:
            raise UsageError(f"--{flag} must be >= 0 seconds, got {value:g}")
    chunk = args.chunk_duration if args.chunk_duration is not None else CHUNK_DURATION_S
    overlap = args.overlap_duration if args.overlap_duration is not None else OVERLAP_DURATION_S
    if args.chunking and chunk <= overlap:
        raise UsageError(
            f"--chunk_duration ({chunk:g} s) must be longer than --overlap_duration ({overlap:g} s)"
        )
    if args.input_file_list and not Path(args.input_file_list).expanduser().is_file():
        raise UsageError(f"input list not found: {args.input_file_list}")
    if not (args.input_file_list or args.input_audio_file or args.paths):
        raise UsageError("no input: give -i FILE, -il LIST, or files/folders as arguments")


# Flags only one of the two paths reads: (flag, attribute), given when not None/False.
_UPSTREAM_ONLY = (
    ("--chunking", "chunking"),
    ("--chunk_duration", "chunk_duration"),
    ("--overlap_duration", "overlap_duration"),
)
_MODERN_ONLY = (
    ("--cutoff", "cutoff"),
    ("--no_prefilter", "no_prefilter"),
    ("--force", "force"),
    ("--normalize", "normalize"),
    ("--batch_size", "batch_size"),
    ("--sampler", "sampler"),
    ("--eta", "eta"),
    ("--precision", "precision"),
    ("--attention", "attention"),
    ("--filter_family", "filter_family"),
)


def warn_ignored_flags(args: argparse.Namespace) -> list[str]:
    """One warning line naming the given flags that the chosen path does not read.

    Returns:
        The ignored flags (empty when none).
    """
    upstream = args.preset == "upstream"
    table = _MODERN_ONLY if upstream else _UPSTREAM_ONLY
    given = [flag for flag, attr in table if getattr(args, attr) not in (None, False)]
    if given:
        if upstream:
            why = "the original's path (--preset upstream) has no such options"
        else:
            why = (
                "they belong to the original's chunked path (--preset upstream --chunking); "
                "this path always processes any length in 10.24 s segments"
            )
        log.warning("ignored: %s (%s)", ", ".join(given), why)
    return given


def run_upsample(args: argparse.Namespace) -> int:
    """The main job: every input -> ``<save_path>/<stem><suffix>.wav`` at 48 kHz.

    Inputs found in a folder keep their sub-folder below the output folder. Returns 1 when
    any input failed (the others are still processed), else 0.
    """
    # Arguments first: nothing is created or loaded for a run that cannot start.
    check_arguments(args)
    warn_ignored_flags(args)
    options = _sampling_options(args)
    upstream = args.preset == "upstream"
    subtype = SUBTYPES[args.subtype] if args.subtype else ("PCM_16" if upstream else "PCM_24")
    if args.ray is not None:
        from .cluster import check_args

        check_args(args)
    elif args.workers is not None or args.gpus_per_worker is not None:
        raise UsageError("--workers and --gpus-per-worker size a --ray run: add --ray")
    jobs = collect_inputs(args, exclude=Path(args.save_path).expanduser())
    missing = [job.src for job in jobs if not job.src.exists()]
    if len(missing) == len(jobs):  # nothing to do: do not create the output folder
        for src in missing:
            log.error("cannot read %s: no such file", src)
        if len(jobs) > 1:
            log.warning("done: 0 processed, 0 skipped, %d failed", len(jobs))
        return 1
    out_dir = _output_dir(args, jobs)
    if args.plot:
        from .eval.plots import new_figure

        new_figure()  # fail now, with the install hint, rather than after every file
    if args.ray is not None:  # the same files, processed by a Ray actor pool
        from .cluster import run_on_ray

        summary = run_on_ray(jobs, out_dir, subtype, args)
        if len(jobs) > 1:
            (log.warning if summary.failed else log.info)("%s", summary.report())
        return 1 if summary.failed else 0
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


def _output_name(src: Path, suffix: str) -> str:
    """``<stem><suffix>.wav``, shortened with a hash when over 255 bytes (see ``fit_name``)."""
    from .audio_io import fit_name

    name = f"{src.stem}{suffix}.wav"
    fitted = fit_name(name)
    if fitted != name:
        log.warning("%s: output name too long for the file system; writing %s", src, fitted)
    return fitted


def _run_batch(
    jobs: list[Job],
    out_dir: Path,
    runner: Runner,
    subtype: str,
    args: argparse.Namespace,
) -> BatchSummary:
    """Every job in order; a failure is logged and recorded, and the batch goes on."""
    from tqdm.auto import tqdm

    from .audio_io import remove_stale_temps

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
        dst = out_dir / job.subdir / _output_name(src, args.suffix)
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
            remove_stale_temps(dst)  # an interrupted --overwrite run may have left one
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
    bar = _RunBar(not args.quiet, engine.sampler_steps if diffusion else 1)
    bars.append(bar)
    pipeline = PipelineOptions(
        cutoff_hz=args.cutoff,
        prefilter=not args.no_prefilter,
        force=args.force,
        keep_loudness=not args.normalize,
        batch_size=args.batch_size if args.batch_size is not None else BATCH_SIZE,
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
                chunk_duration_s=(
                    args.chunk_duration if args.chunk_duration is not None else CHUNK_DURATION_S
                ),
                overlap_duration_s=(
                    args.overlap_duration
                    if args.overlap_duration is not None
                    else OVERLAP_DURATION_S
                ),
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


def _web_parser() -> argparse.ArgumentParser:
    from .web import cli as web_cli

    return web_cli.build_parser(_Parser, _HelpFormatter)


def run_web(args: argparse.Namespace) -> int:
    from .web import cli as web_cli

    return web_cli.run(args)


COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[..., int]]] = {
    "convert": (_convert_parser, run_convert),
    "eval": (eval_cli.build_parser, eval_cli.run),
    "web": (_web_parser, run_web),
}


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP unwind like Ctrl-C (SIGINT).

    The :class:`Interrupted` exception they raise runs every ``finally`` and ``__exit__`` on
    the way out, so the temporary file of an output being written is deleted and no output
    is left half-written. A repeated signal during that clean-up is ignored. The previous
    handlers are restored on exit. Outside the main thread signals cannot be handled, and
    the block changes nothing.
    """
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        for sig in wanted:  # one clean unwind: later signals wait for it
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def cpu_threads(args: argparse.Namespace) -> Iterator[None]:
    """Use ``--threads`` (or :func:`~audiosr.threads.default_threads`) CPU threads inside.

    The count torch had before is restored on exit (``main`` may be called from Python).
    """
    from .threads import default_threads, prepare_runtime, set_threads

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    if threads is None:
        threads = default_threads(getattr(args, "engine", "audiosr"))
    prepare_runtime(threads)  # before torch loads: passive waiting, thread variables
    previous = set_threads(threads)
    try:
        yield
    finally:
        set_threads(previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status.

    0: done; 1: an input or the run failed; 2: usage error (bad flags or values, no input,
    a missing input list); 128 + N: stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        prog = f"audiosr {argv[0]}"
        make_parser, run = COMMANDS[argv.pop(0)]
    else:
        prog = "audiosr"
        make_parser, run = _upsample_parser, run_upsample
    try:
        args = make_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    configure_logging(quiet=args.quiet, debug=args.debug)
    try:
        with signals_as_interrupts(), cpu_threads(args):
            return run(args)
    except UsageError as exc:
        sys.stderr.write(f"{prog}: error: {exc} (see {prog} --help)\n")
        return 2
    except (AudioSRError, ValueError, FileNotFoundError) as exc:
        if args.debug:
            log.exception("error")
        log.error("error: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        log.error("interrupted (%s)", signal.Signals(signum).name)
        return 128 + int(signum)
    except Exception as exc:
        if args.debug:
            raise
        log.error(
            "internal error: %s: %s (rerun with --debug for details)",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return 1
