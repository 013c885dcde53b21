"""``audiosr ... --ray [ADDRESS]``: the same batch, run by a pool of Ray actors.

The driver (the machine where the command runs) does what the local CLI does before and after
processing: it plans every output name, skips finished outputs and refuses outputs that would
overwrite an input. The file list (paths only) becomes a Ray Dataset; ``map_batches`` sends
batches of paths to a fixed pool of :class:`~audiosr.cluster.worker.FileWorker` actors, each
holding one engine; their result rows stream back, drive one progress bar, and end up in the
manifest (:mod:`audiosr.cluster.manifest`) and the same summary line as a local run.

Fault tolerance is Ray's: the actors are created with ``max_restarts=-1`` and
``max_task_retries=-1`` (restarted and their batch retried whenever the process dies), and
the run's journal (:mod:`audiosr.cluster.journal`) keeps a retry from writing a finished
output twice or looping on a file that kills its worker.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AudioSRError
from .journal import JOURNAL_DIR
from .manifest import MANIFEST_NAME, write_manifest
from .worker import COLUMNS, ENGINE_FAILED, FileWorker, WorkerSpec, pipeline_options

log = logging.getLogger("audiosr")

INSTALL_HINT = "--ray needs Ray Data: pip install 'audiosr-forge[ray]'"
# A local instance only moves paths and result rows through its object store.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
# Test hook: "FILE_NAME:MARKER" makes a worker SIGKILL itself once on FILE_NAME (see WorkerSpec).
CRASH_ENV = "AUDIOSR_RAY_TEST_CRASH"


@dataclass(frozen=True)
class Planned:
    """One input of the run and its output path."""

    index: int
    src: Path
    dst: Path


@dataclass(frozen=True)
class Pool:
    """The actor pool: how many actors and what each reserves."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: float


def check_args(args: argparse.Namespace) -> None:
    """Fail fast, before anything is created: Ray installed, pool sizes valid.

    Raises:
        UsageError: a pool size out of range (exit status 2).
        AudioSRError: Ray is not installed (the install line) or the preset needs another
            engine.
    """
    from ..cli import UsageError

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker:g}")
    if args.preset == "upstream" and args.engine != "audiosr":
        raise AudioSRError("--preset upstream needs --engine audiosr")
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise AudioSRError(INSTALL_HINT)


def plan(jobs: list, out_dir: Path, args: argparse.Namespace) -> tuple[list[Planned], list[dict]]:
    """Output names and the local CLI's rules: which inputs run, which are skipped or refused.

    Returns:
        The inputs to process, and one row per input (``None`` for those still to run).
    """
    from ..audio_io import remove_stale_temps
    from ..cli import _output_name

    inputs = {job.src.resolve() for job in jobs if job.src.exists()}
    claimed: dict[Path, Path] = {}
    todo: list[Planned] = []
    rows: list[dict[str, Any] | None] = []
    for index, job in enumerate(jobs):
        src = job.src
        dst = out_dir / job.subdir / _output_name(src, args.suffix)
        key = dst.resolve()
        row: dict[str, Any] | None = None
        if key in inputs:
            row = _row(
                src, dst, "failed", f"output {dst} would overwrite an input; change --suffix or -s"
            )
        elif key in claimed:
            why = f"output {dst} is also the output of {claimed[key]}; rename one of them"
            row = _row(src, dst, "failed", why)
        elif dst.exists() and not args.overwrite:
            claimed[key] = src
            remove_stale_temps(dst)  # an interrupted --overwrite run may have left one
            row = _row(src, dst, "skipped")
            log.info("%s exists: skipped (--overwrite to redo)", dst)
        else:
            claimed[key] = src
            todo.append(Planned(index, src, dst))
        if row is not None and row["status"] == "failed":
            log.error("%s: %s", src, row["error"])
        rows.append(row)
    return todo, rows


def _row(src: Path, dst: Path, status: str, error: str = "") -> dict[str, Any]:
    return {
        "input": str(src),
        "output": str(dst),
        "status": status,
        "band_limit_hz": None,
        "duration_s": None,
        "seconds": None,
        "error": error,
    }


def run_on_ray(jobs: list, out_dir: Path, subtype: str, args: argparse.Namespace):
    """Process ``jobs`` on a Ray pool; write the manifest; return the CLI's ``BatchSummary``."""
    from ..cli import BatchSummary

    todo, rows = plan(jobs, out_dir, args)
    if todo:
        for planned, row in _process(todo, out_dir, subtype, args):
            rows[planned.index] = row
            _log_row(row)
    manifest = write_manifest(out_dir / MANIFEST_NAME, rows)
    log.info("manifest: %s", manifest)
    summary = BatchSummary()
    for row in rows:
        if row["status"] == "processed":
            summary.processed.append(Path(row["output"]))
        elif row["status"] == "skipped":
            summary.skipped.append(Path(row["input"]))
        else:
            summary.failed.append((Path(row["input"]), row["error"]))
    return summary


def _log_row(row: dict[str, Any]) -> None:
    if row["status"] == "processed":
        log.info("wrote %s", row["output"])
    else:
        error = row["error"]
        log.error("%s", error if row["input"] in error else f"{row['input']}: {error}")


def _process(todo: list[Planned], out_dir: Path, subtype: str, args: argparse.Namespace):
    """Yield ``(planned, result row)`` as the actors finish files."""
    import ray
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    journal = out_dir / JOURNAL_DIR / uuid.uuid4().hex
    journal.mkdir(parents=True)
    owns_ray = False
    try:
        owns_ray = _connect(args)
        pool = size_pool(args)
        spec = WorkerSpec(
            cli_args=_worker_args(args),
            subtype=subtype,
            journal=str(journal.absolute()),
            crash=_crash_hook(),
        )
        log.info(
            "ray: %d files on %d workers (%g GPU, %g CPU each)",
            len(todo),
            pool.workers,
            pool.gpus_per_worker,
            pool.cpus_per_worker,
        )
        by_index = {p.index: p for p in todo}
        start = time.perf_counter()
        bar = tqdm(total=len(todo), desc="files", unit="file", disable=args.quiet)
        with logging_redirect_tqdm(loggers=[log]), bar:
            try:
                for result in _dataset(todo, spec, pool, args).iter_rows():
                    planned = by_index[int(result["index"])]
                    row = {name: _plain(result[name]) for name in COLUMNS}
                    row["input"], row["output"] = str(planned.src), str(planned.dst)
                    if row["error"].startswith(ENGINE_FAILED):
                        raise AudioSRError(row["error"])  # no file can succeed: stop now
                    bar.update(1)
                    yield planned, row
            except ray.exceptions.RayError as exc:
                raise AudioSRError(f"the Ray run failed: {_root_reason(exc)}") from None
        elapsed = time.perf_counter() - start
        log.info("ray: %d files in %.1f s (%.2f files/s)", len(todo), elapsed, len(todo) / elapsed)
    except BaseException:
        interrupted = True
        raise
    else:
        interrupted = False
    finally:
        if owns_ray or interrupted:
            ray.shutdown()  # a driver that leaves ends its job: Ray stops the job's actors
        if interrupted:
            _sweep_temps(todo)
        _remove_journal(journal)


def _remove_journal(journal: Path, wait_s: float = 5.0) -> None:
    """Delete the run's journal folder, and its parent when no other run's journal is there.

    After an interrupt, a stopping actor may still add a record while the folder is being
    deleted (``rmtree`` then leaves it behind); records are never written into a folder that
    no longer exists, so deleting again until it is gone (at most ``wait_s``) settles it.
    """
    deadline = time.monotonic() + wait_s
    while True:
        shutil.rmtree(journal, ignore_errors=True)
        if not journal.exists() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    try:
        journal.parent.rmdir()
    except OSError:
        pass


def _sweep_temps(todo: list[Planned], wait_s: float = 10.0) -> None:
    """After an interrupted run: remove the temporary files the stopped actors left.

    An actor stopped while it wrote keeps its ``.part`` file; :func:`remove_stale_temps`
    removes one only once its process has ended, so wait (at most ``wait_s``) for that.
    """
    from ..audio_io import remove_stale_temps, temp_prefix

    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for planned in todo:
            remove_stale_temps(planned.dst)
            prefix = temp_prefix(planned.dst)
            if planned.dst.parent.is_dir():
                left += [p for p in planned.dst.parent.iterdir() if p.name.startswith(prefix)]
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _dataset(todo: list[Planned], spec: WorkerSpec, pool: Pool, args: argparse.Namespace):
    """The pipeline: paths -> ``map_batches`` over the actor pool -> result rows."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.INFO if args.debug else logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # one tqdm bar over files instead
    # Absolute paths: every node sees the shared file system at the same mount point.
    items = [
        {"index": p.index, "input": str(p.src.absolute()), "output": str(p.dst.absolute())}
        for p in todo
    ]
    return ray.data.from_items(items).map_batches(
        FileWorker,
        fn_constructor_kwargs={"spec": spec},
        batch_size=pipeline_options(args).batch_size,  # files per task: fills an engine call
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool.workers),
        num_cpus=pool.cpus_per_worker,
        num_gpus=pool.gpus_per_worker or None,
    )


def _connect(args: argparse.Namespace) -> bool:
    """Join the cluster at ``args.ray`` or start a local instance; True when we started it."""
    import ray

    if ray.is_initialized():  # e.g. a notebook or a test that already called ray.init
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    common = {
        "include_dashboard": False,
        "logging_level": logging.DEBUG if args.debug else logging.ERROR,
        "log_to_driver": not args.quiet,
    }
    try:
        if args.ray == "local":
            ray.init(object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
        else:
            ray.init(address=args.ray, **common)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = "a local Ray instance" if args.ray == "local" else f"the Ray cluster at {args.ray}"
        raise AudioSRError(f"cannot start or reach {where}: {_root_reason(exc)}") from None
    return True


def size_pool(args: argparse.Namespace) -> Pool:
    """Actors and their reservations from ``--workers``/``--gpus-per-worker`` and the cluster.

    Defaults: with GPUs (and a device other than cpu), one GPU per worker and one worker per
    GPU; without, for the diffusion model one worker per node holding the node's CPUs (torch
    uses them all), for the single-threaded dsp and sinc engines one worker per CPU.
    """
    import ray

    from ..threads import SINGLE_THREAD_ENGINES

    total = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    gpus = float(total.get("GPU", 0.0))
    gpw = args.gpus_per_worker
    if gpw is None:
        gpw = 1.0 if gpus >= 1 and args.device != "cpu" else 0.0
    if gpw > 0:
        fit = int(gpus / gpw + 1e-9)
        workers = args.workers or fit
        if workers < 1 or workers > fit:
            raise AudioSRError(
                f"{max(workers, 1)} workers x {gpw:g} GPU need {max(workers, 1) * gpw:g} GPUs; "
                f"the cluster has {gpus:g} (use --workers or --gpus-per-worker)"
            )
        return Pool(workers, float(gpw), 1.0)
    if args.engine in SINGLE_THREAD_ENGINES and not args.threads:
        per_cpu = int(sum(float(n["Resources"].get("CPU", 0.0)) for n in nodes))
        workers = args.workers or max(1, per_cpu)
    else:
        workers = args.workers or max(1, len(nodes))
    per_node = math.ceil(workers / max(1, len(nodes)))
    least = min((float(n["Resources"].get("CPU", 0.0)) for n in nodes), default=1.0) or 1.0
    cpus = least / per_node
    return Pool(workers, 0.0, float(math.floor(cpus)) if cpus >= 1 else cpus)


def _worker_args(args: argparse.Namespace) -> dict[str, Any]:
    """The command line for the workers, with local files as absolute paths."""
    values = dict(vars(args))
    for name in ("checkpoint", "config"):
        if values.get(name) and Path(values[name]).expanduser().exists():
            values[name] = str(Path(values[name]).expanduser().absolute())
    return values


def _crash_hook() -> tuple[str, str] | None:
    value = os.environ.get(CRASH_ENV, "")
    if not value:
        return None
    name, _, marker = value.partition(":")
    return name, marker


def _plain(value: Any) -> Any:
    """A result cell as a JSON value (numpy scalars unwrapped, NaN -> None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _root_reason(exc: BaseException) -> str:
    """The innermost cause of a (Ray-wrapped) exception, as one line.

    Ray wraps a worker's exception (``RayTaskError.cause``); an actor that died carries the
    remote traceback only as text, whose last line names the original error.
    """
    from .worker import failure_reason

    seen = exc
    for _ in range(10):
        inner = getattr(seen, "cause", None) or seen.__cause__
        if not isinstance(inner, BaseException) or inner is seen:
            break
        seen = inner
    if isinstance(seen, AudioSRError) or not str(seen).strip():
        return failure_reason(seen)
    return str(seen).strip().splitlines()[-1].strip()
