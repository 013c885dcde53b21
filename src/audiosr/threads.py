"""CPU threads: how many, and how idle threads wait.

Measured with ``benchmarks/bench_threads.py`` (README, "Threads"): with torch's default of one
intra-op thread per core, a run slows down 2-7x as soon as other work shares the CPU. Two
causes add up:

* torch's OpenMP runtime (libgomp) makes threads that finish their part of an operation
  spin at the barrier for a while before sleeping. On a busy CPU the spinning threads take
  the cores from the thread that still has work, and from the other programs.
* Every operation is split evenly over the threads; when one thread is descheduled (its core
  runs something else), the whole operation waits for it. The resampling/filter/FFT work of
  the ``sinc`` and ``dsp`` engines is many medium-size operations, which suffer most.

So the command line (1) makes waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``, set before
torch is loaded, unless the user set it), which removes the slowdown, and (2) picks the
thread count: one for the ``sinc`` and ``dsp`` engines (never slower than one thread, by
definition; more threads gained little there), every usable CPU for the diffusion model (its
large convolutions and matrix products gain from each thread, also on a busy machine once
waits are passive). ``--threads N`` (or ``OMP_NUM_THREADS``) overrides the count; in Python,
:func:`set_threads` does the same for the calling process.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# Thread-count variables of the runtimes torch, numpy and scipy load (OpenMP, MKL, OpenBLAS).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Engines whose work is many medium-size FFT / filter operations: one thread is best.
SINGLE_THREAD_ENGINES = frozenset({"sinc", "dsp"})


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit readable: the affinity mask is the answer
    return max(1, count)


def env_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a positive int, or None when unset or not a number."""
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def default_threads(engine: str) -> int:
    """The thread count the command line uses when ``--threads`` is not given.

    ``OMP_NUM_THREADS`` when set; else 1 for the ``sinc`` and ``dsp`` engines; else every
    usable CPU (:func:`usable_cpus`): with passive waits, more threads than idle cores cost
    the model nothing on a busy machine (``benchmarks/bench_threads.py --engines unet``).
    """
    from_env = env_threads()
    if from_env is not None:
        return from_env
    if engine in SINGLE_THREAD_ENGINES:
        return 1
    return usable_cpus()


def prepare_runtime(threads: int) -> None:
    """Entry-point setup before torch is imported: thread counts and passive waiting.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` and the thread-count variables unless the user set them.
    They only take effect when the runtimes have not been loaded yet (the console script);
    :func:`set_threads` covers an already loaded torch.
    """
    if "torch" in sys.modules:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for name in THREAD_ENV_VARS:
        os.environ.setdefault(name, str(threads))


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op CPU threads in torch (process-wide); returns the previous count.

    Raises:
        ValueError: ``threads`` < 1.
    """
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    log.debug("using %d CPU thread(s)", threads)
    return previous
