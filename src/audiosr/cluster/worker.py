"""The Ray actor: loads its engine once, then runs batches of files through the local path.

Each batch is a table of file paths (never audio). The actor processes them exactly as
``audiosr`` does on one machine: the engine from :func:`audiosr.api.make_engine` with the
CLI's sampling options, and :class:`audiosr.batching.FileBatcher` (short files share engine
calls; long files stream through :func:`audiosr.pipeline.upsample_file`, so they are never
whole in memory). Outputs are written by the actor, atomically, into the output folder; the
batch returns one result row per file.

A retried batch (the actor died and Ray restarted it) consults the run's
:class:`~audiosr.cluster.journal.Journal`: finished files are not redone, and the rest go one
file at a time so that a file that kills its worker is counted, and failed, on its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .journal import Journal

log = logging.getLogger(__name__)

# Result columns, in manifest order (the batch also carries "index").
COLUMNS = ("input", "output", "status", "band_limit_hz", "duration_s", "seconds", "error")
# Start of the error of every file of an actor whose engine could not be built (the driver
# stops the run on it: no file can succeed).
ENGINE_FAILED = "the worker could not load its engine: "


@dataclass(frozen=True)
class WorkerSpec:
    """What every actor needs, sent once when the actor starts (small and picklable).

    Attributes:
        cli_args: the parsed command line (``vars(args)``): engine, model, preset, sampling
            and pipeline options, exactly as the local CLI reads them.
        subtype: output sample format ("PCM_24", "PCM_16", "FLOAT").
        journal: the run's journal folder (on the shared file system).
        max_tries: starts of work on one file that may end with the worker dying before the
            file is failed without another try.
        crash: test hook ``(file name, marker path)``: the actor kills its own process with
            SIGKILL when it is about to process that file and the marker does not exist (it
            creates the marker first, so the retry goes through); an empty marker path kills
            it every time. None in normal use.
    """

    cli_args: dict[str, Any]
    subtype: str
    journal: str
    max_tries: int = 3
    crash: tuple[str, str] | None = None


def pipeline_options(args: argparse.Namespace):
    """The :class:`~audiosr.pipeline.PipelineOptions` the local CLI builds from ``args``."""
    from ..cli import BATCH_SIZE
    from ..pipeline import PipelineOptions

    return PipelineOptions(
        cutoff_hz=args.cutoff,
        prefilter=not args.no_prefilter,
        force=args.force,
        keep_loudness=not args.normalize,
        batch_size=args.batch_size if args.batch_size is not None else BATCH_SIZE,
    )


def failure_reason(exc: BaseException) -> str:
    """One line, as the local CLI prints it: the message of our own errors, else type: line."""
    from ..errors import AudioSRError

    if isinstance(exc, AudioSRError):
        return str(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


class FileWorker:
    """Callable class for ``Dataset.map_batches``: one engine per actor, many batches.

    Args:
        spec: see :class:`WorkerSpec`.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        from ..api import make_engine
        from ..cli import _sampling_options, _upstream_processor, configure_logging
        from ..threads import (
            SINGLE_THREAD_ENGINES,
            default_threads,
            env_threads,
            prepare_runtime,
            set_threads,
        )

        args = argparse.Namespace(**spec.cli_args)
        configure_logging(quiet=True, debug=args.debug)  # warnings reach the driver's log
        # The CLI's thread policy: --threads; else one for the dsp and sinc engines; else the
        # CPUs Ray reserved for this actor (it sets OMP_NUM_THREADS to them).
        threads = args.threads or (
            1
            if args.engine in SINGLE_THREAD_ENGINES
            else env_threads() or default_threads(args.engine)
        )
        prepare_runtime(threads)
        set_threads(threads)
        self.spec = spec
        self.args = args
        self.journal = Journal(spec.journal)
        self.pipeline = pipeline_options(args)
        self.broken = ""  # why the engine could not be built ("" when it was)
        self.engine = self.upstream = None
        try:
            # Options are resolved here, on the worker's own device ("auto" precision too).
            options = _sampling_options(args)
            if args.preset == "upstream":  # the original's path, as the local CLI runs it
                self.upstream = _upstream_processor(args, options)
            else:
                self.engine = make_engine(
                    args.engine,
                    model=args.checkpoint or args.model_name,
                    config=args.config,
                    device=args.device,
                    options=options,
                    progress=False,
                )
        except Exception as exc:  # reported with every file, as one line, by the driver
            self.broken = ENGINE_FAILED + failure_reason(exc)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch``: columns index, input, output -> the same rows with their results."""
        jobs = [
            (int(i), str(s), str(d))
            for i, s, d in zip(batch["index"], batch["input"], batch["output"])
        ]
        rows: dict[int, dict[str, Any]] = {}
        if self.broken:
            rows = {i: _row(Path(s), Path(d), 0.0, error=self.broken) for i, s, d in jobs}
            return _columns([rows[i] for i, _, _ in jobs], [i for i, _, _ in jobs])
        todo = []
        for job in jobs:
            earlier = self.journal.done(job[0])
            if earlier is not None:
                rows[job[0]] = earlier
            else:
                todo.append(job)
        if any(self.journal.tries(index) for index, _, _ in todo):
            for job in todo:  # a retry after a crash: one file at a time, each counted
                self._run([job], rows, counted=False)
        elif todo:
            self._run(todo, rows, counted=True)
        return _columns([rows[index] for index, _, _ in jobs], [index for index, _, _ in jobs])

    def _run(self, jobs: list[tuple[int, str, str]], rows: dict[int, dict], counted: bool) -> None:
        """Process ``jobs`` through one :class:`FileBatcher` (or, with ``--preset upstream``,
        the CLI's one-by-one runner of the original's path), recording each result."""
        from ..batching import FileBatcher

        by_output: dict[Path, tuple[int, float]] = {}

        def done(src: Path, dst: Path, report, exc: Exception | None) -> None:
            index, start = by_output[Path(dst)]
            if exc is None and self.args.plot:
                try:
                    from ..eval.plots import save_file_comparison

                    save_file_comparison(src, dst, cutoff_hz=self.args.cutoff)
                except Exception as plot_exc:
                    exc = plot_exc
            row = _row(src, dst, time.perf_counter() - start, report=report, exc=exc)
            if exc is not None and self.args.debug:
                log.error("failed on %s", src, exc_info=exc)
            self.journal.record_done(index, row)
            rows[index] = row

        if counted:
            for index, _, _ in jobs:
                self.journal.begin(index)
        subtype = self.spec.subtype
        if self.upstream is not None:
            runner = self.upstream

            def submit(src: str, dst: str) -> None:
                runner.submit(Path(src), Path(dst), subtype, done)

            finish = runner.finish
        else:
            batcher = FileBatcher(self.engine, self.pipeline)

            def submit(src: str, dst: str) -> None:
                batcher.submit(src, dst, done, subtype=subtype)

            finish = batcher.finish
        for index, src, dst in jobs:
            if not counted:
                tries = self.journal.begin(index)
                if tries > self.spec.max_tries:
                    reason = (
                        f"the worker process died {tries - 1} times while processing this "
                        "file (out of memory?); not tried again"
                    )
                    row = _row(Path(src), Path(dst), 0.0, error=reason)
                    self.journal.record_done(index, row)
                    rows[index] = row
                    continue
            self._maybe_crash(src)
            by_output[Path(dst)] = (index, time.perf_counter())
            submit(src, dst)
        finish()

    def _maybe_crash(self, src: str) -> None:
        """The test hook of :class:`WorkerSpec` (``crash``)."""
        if self.spec.crash is None or Path(src).name != self.spec.crash[0]:
            return
        marker = self.spec.crash[1]
        if marker:
            if os.path.exists(marker):
                return
            Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def _row(
    src: Path,
    dst: Path,
    seconds: float,
    *,
    report=None,
    exc: BaseException | None = None,
    error: str = "",
) -> dict[str, Any]:
    """One result row (JSON-ready: None where a value is unknown)."""
    from ..audio_io import audio_info
    from ..pipeline import SAMPLE_RATE

    if exc is not None:
        error = failure_reason(exc)
    ok = not error
    duration = None
    if ok:  # the upstream path reports nothing: the written file tells its length
        duration = (
            report.samples / SAMPLE_RATE if report is not None else audio_info(dst).duration_s
        )
    return {
        "input": str(src),
        "output": str(dst),
        "status": "processed" if ok else "failed",
        "band_limit_hz": float(report.cutoff_hz) if ok and report is not None else None,
        "duration_s": duration,
        "seconds": round(float(seconds), 4),
        "error": error,
    }


def _columns(rows: list[dict[str, Any]], indices: list[int]) -> dict[str, np.ndarray]:
    """Rows -> the column batch Ray Data expects (None floats become NaN)."""
    out: dict[str, np.ndarray] = {"index": np.asarray(indices, dtype=np.int64)}
    for name in COLUMNS:
        values = [row[name] for row in rows]
        if name in ("band_limit_hz", "duration_s", "seconds"):
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            out[name] = np.array(values, dtype=object)
    return out
