"""``torch.compile`` of the stage functions, built once and shape-stable.

Shapes change between calls: partial batches, clip groups, 5.12 vs 10.24 s segments, and the
UNet batch doubles with batched CFG. Compiled with static shapes, each new shape recompiles, and
past torch's recompile limit (8 per function) dynamo silently falls back to eager; with CUDA
graphs every new shape also records a new graph and memory pool. Two measures bound that:

* every function is compiled with ``dynamic=None`` (automatic dynamic shapes): the first call
  compiles for its exact shapes, the first shape change recompiles once with the changed
  dimensions symbolic, and later sizes reuse that code;
* the UNet's batch is padded to the next power of two (:func:`padded_batch`), so a run sees a
  handful of batch sizes at most, which also bounds the CUDA graphs recorded.

``tests/test_compile_cache.py`` counts compilations over a run with mixed shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def padded_batch(n: int) -> int:
    """The batch a compiled UNet call runs at for ``n`` rows: the next power of two."""
    return 1 << max(0, n - 1).bit_length()


def pad_rows(x: Tensor, rows: int) -> Tensor:
    """[B, ...] -> [rows, ...] with zero rows appended (rows >= B)."""
    if x.shape[0] == rows:
        return x
    pad = x.new_zeros((rows - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad])


class CompileCache:
    """Compiled stage functions, keyed by (stage, mode); a memo, not a setting.

    Args:
        backend: ``torch.compile`` backend ("inductor", or a callable, e.g. a counting stub
            in the tests).
    """

    def __init__(self, backend: str | Callable[..., Any] = "inductor") -> None:
        self.backend = backend
        self._functions: dict[tuple[str, str], Callable[..., Any]] = {}

    def get(self, stage: str, fn: Callable[..., Any], mode: str) -> Callable[..., Any]:
        """The compiled ``fn`` of ``stage`` for ``mode`` ("default" or "reduce-overhead")."""
        key = (stage, mode)
        if key not in self._functions:
            log.info("compiling the %s (mode=%s); its first call is slow", stage, mode)
            kwargs: dict[str, Any] = {"dynamic": None, "backend": self.backend}
            if self.backend == "inductor":
                kwargs["mode"] = mode
            self._functions[key] = torch.compile(fn, **kwargs)
        return self._functions[key]

    def keys(self) -> list[tuple[str, str]]:
        return sorted(self._functions)
