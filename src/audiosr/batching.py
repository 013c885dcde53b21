"""Engine calls, grouped: segment rows of one or many files share calls up to the row budget.

Batching is not a second pipeline: :mod:`audiosr.pipeline` runs every step of every file, and
hands its pre-filtered segment rows to a :class:`Scheduler` instead of calling the engine
itself. The scheduler only decides which rows go into which engine call:

* rows of equal length wait together (a 5.12 s clip and a 10.24 s segment cannot be stacked);
* an item (all active channels of one segment of one file) is never split across calls, so
  the channels of a segment always share one call and one seed;
* a call holds at most ``max_rows`` rows (the memory budget); an item larger than that goes
  alone;
* items are delivered back in the order they were added, so each file receives its segments
  in order and can overlap-add and write them as they come.

A long file's segments fill calls by themselves (a call is dispatched as soon as it is
full, so memory stays at one call); what is left of its last call waits for the rows of the
next files, as short files' rows do. The engines treat rows independently and the diffusion
engine gives every row the same noise, so a file's output does not depend on which files it
was batched with (offline engines: bit for bit; the diffusion model: up to float rounding of
batched kernels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .engines.base import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Item:
    """Rows waiting for their engine call and where their output goes."""

    rows: Tensor  # [R, T] engine input: pre-filtered, at the file's gain, float32
    cutoff_hz: Tensor  # [R] float64, each row's band limit (Hz)
    deliver: Callable[[Tensor], None]  # receives the engine output [R, T]
    fail: Callable[[Exception], None]  # receives the engine's exception instead


class Scheduler:
    """Collect rows from any number of files and call the engine with up to ``max_rows`` rows.

    Args:
        engine: band-limited ``[B, T]`` + cutoffs ``[B]`` -> full band ``[B, T]``.
        max_rows: the row budget of one call (``PipelineOptions.batch_size``).
        on_call: called after every engine call with its number of rows (for progress).
    """

    def __init__(
        self, engine: Engine, max_rows: int, on_call: Callable[[int], None] | None = None
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.engine = engine
        self.max_rows = max_rows
        self.on_call = on_call
        self.engine_calls = 0  # calls made so far (for logs and tests)
        self._waiting: dict[int, list[_Item]] = {}  # row length -> items, in arrival order

    def add(
        self,
        rows: Tensor,
        cutoff_hz: Tensor,
        deliver: Callable[[Tensor], None],
        fail: Callable[[Exception], None],
    ) -> None:
        """Queue ``rows [R, T]``; calls the engine whenever rows of length T fill the budget.

        ``deliver`` (or ``fail``) is called exactly once, during this call or a later
        :meth:`add` / :meth:`flush`.
        """
        item = _Item(rows, cutoff_hz, deliver, fail)
        length = rows.shape[-1]
        group = self._waiting.setdefault(length, [])
        if group and _rows(group) + rows.shape[0] > self.max_rows:
            self._dispatch(length)  # the item does not fit: run the waiting ones first
            group = self._waiting.setdefault(length, [])
        group.append(item)
        if _rows(group) >= self.max_rows:
            self._dispatch(length)

    def flush(self) -> None:
        """Call the engine for every row still waiting."""
        for length in list(self._waiting):
            self._dispatch(length)

    def _dispatch(self, length: int) -> None:
        items = self._waiting.pop(length, [])
        if not items:
            return
        x = torch.cat([item.rows for item in items]).float()
        cuts = torch.cat([item.cutoff_hz for item in items]).to(torch.float64)
        try:
            y = self.engine(x, cuts).float().cpu()
        except Exception as exc:  # the engine failed: every item of the call failed
            for item in items:
                item.fail(exc)
            return
        self.engine_calls += 1
        log.debug("engine call %d: %d rows of %d samples", self.engine_calls, x.shape[0], length)
        if self.on_call is not None:
            self.on_call(x.shape[0])
        start = 0
        for item in items:
            n = item.rows.shape[0]
            part = y[start : start + n]
            start += n
            try:
                item.deliver(part)
            except Exception as exc:  # e.g. the output of that file cannot be written
                item.fail(exc)


def _rows(items: list[_Item]) -> int:
    return sum(item.rows.shape[0] for item in items)


def __getattr__(name: str) -> object:
    # The many-files driver is part of the one pipeline (`audiosr.pipeline.FileBatcher`); it
    # stays importable from here for existing callers. Imported lazily: pipeline imports us.
    if name == "FileBatcher":
        from .pipeline import FileBatcher

        return FileBatcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
