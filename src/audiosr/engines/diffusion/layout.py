"""Memory layout of the 2-D networks: NCHW (PyTorch's default) or NHWC ("channels last").

NHWC is what the fast convolution kernels of oneDNN (CPU) and cuDNN (tensor cores) want. Only
strides change, never values. The layout is a property of the weights themselves: it is read
from them, and they are converted only when a call asks for the other layout (a run that keeps
one layout converts once). The vocoder is 1-D and keeps its layout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def has_memory_format(module: nn.Module, fmt: torch.memory_format) -> bool:
    """True when every 4-D parameter of ``module`` is laid out in ``fmt``."""
    return all(p.is_contiguous(memory_format=fmt) for p in module.parameters() if p.dim() == 4)


def ensure_memory_format(modules: Iterable[nn.Module], channels_last: bool) -> None:
    """Put the 4-D weights of ``modules`` in the requested layout, if they are not already."""
    fmt = memory_format(channels_last)
    for module in modules:
        if not has_memory_format(module, fmt):
            log.debug("converting %s weights to %s", type(module).__name__, fmt)
            with torch.inference_mode(False), torch.no_grad():
                module.to(memory_format=fmt)
