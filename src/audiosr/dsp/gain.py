"""Final gain of the original output (spec §9.5).

The original re-normalises its output to peak 0.5 and then removes the mean, in that order,
so the final peak is close to but not exactly 0.5 and the input loudness is not restored.
It runs in numpy (fp32); the mean uses NumPy 1.23's summation order (see
:func:`~audiosr.dsp.cutoff.numpy_sum`) and an fp32 division by the length.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from .cutoff import numpy_sum

log = logging.getLogger(__name__)

FINAL_PEAK = 0.5


def peak_normalize_final(wave: Tensor) -> Tensor:
    """``y = 0.5 * y / max|y|; y = y - mean(y)`` along the last dim, per item.

    An all-zero item (where the original would produce NaN from 0/0) is returned as zeros.

    Args:
        wave: [..., L] waveform (fp32).

    Returns:
        [..., L] float32.
    """
    y = wave.to(torch.float32)
    peak = y.abs().amax(dim=-1, keepdim=True)
    # Divide by 1 where the item is silent: 0 / 1 keeps the zeros and avoids NaN.
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    y = FINAL_PEAK * y / safe
    mean = numpy_sum(y) / y.shape[-1]  # fp32 division, as numpy does for an array of sums
    return y - mean[..., None]
