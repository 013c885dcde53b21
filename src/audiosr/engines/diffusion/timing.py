"""Seconds per stage of one :func:`~audiosr.engines.diffusion.generate` call."""

from __future__ import annotations

from collections.abc import Callable

import torch


class StageClock:
    """Accumulates time per stage; synchronises CUDA at stage boundaries so times are real.

    One instance per call (the timings belong to that call's result).

    Args:
        device: the compute device (CUDA is synchronised before each reading).
        clock: seconds counter, e.g. ``time.perf_counter`` or ``time.process_time`` (CPU time,
            robust to other jobs on shared cores).
    """

    def __init__(self, device: torch.device, clock: Callable[[], float]) -> None:
        self.device = device
        self.clock = clock
        self.timings: dict[str, float] = {}
        self._start = clock()

    def lap(self, name: str) -> None:
        """Charge the time since the last lap to ``name``."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = self.clock()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._start
        self._start = now
