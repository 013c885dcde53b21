"""Target length and input normalisation of the original front end (spec §2.2, §2.4).

The original pads every input to a whole number of 5.12 s blocks (512 mel frames at a 10 ms
hop, 245,760 samples at 48 kHz), removes the mean, scales the peak to 0.5 and zero-pads at the
end. Both steps are reproduced here, with one deliberate divergence in the length arithmetic:

The original computes ``pad_duration = duration + (5.12 - duration % 5.12)`` in fp64 and
truncates ``pad_duration * 100`` and ``pad_duration * 48000``. For 2705 input lengths between
811 and 53,758 samples at 48 kHz (e.g. 811, 1186, 1561) rounding makes pad_duration
5.1199999..., giving 511 frames / 245,759 samples, and the original then crashes in the UNet.
:func:`target_frames` counts whole blocks instead (with a tolerance far below one sample), so
those inputs get the normal 512 frames; every other input gets the original's values.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .cutoff import numpy_sum

log = logging.getLogger(__name__)

BLOCK_SECONDS = 5.12  # s; the unit of padding
BLOCK_FRAMES = 512  # mel frames per block (10 ms hop)
MIN_INPUT_SAMPLES = 101  # the original asserts more than 100 samples
_PEAK = 0.5  # peak level after normalisation
_PEAK_EPS = 1e-8  # added to the peak before dividing


def num_blocks(duration_s: float) -> int:
    """Number of 5.12 s blocks that hold ``duration_s`` seconds (at least 1).

    A relative tolerance of 1e-9 absorbs fp64 noise in durations that are whole multiples of
    5.12 s (one sample at 192 kHz is ~1e-6 of a block, far above it).
    """
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(
            f"duration must be a finite non-negative number of seconds, got {duration_s}"
        )
    return max(1, math.ceil(duration_s / BLOCK_SECONDS - 1e-9))


def pad_duration_s(duration_s: float) -> float:
    """Padded duration in seconds: whole 5.12 s blocks (the original's ``pad_duration``)."""
    return num_blocks(duration_s) * BLOCK_SECONDS


def target_frames(duration_s: float) -> int:
    """Mel frame count T of the padded input: 512 per 5.12 s block.

    The original truncates ``pad_duration * 100``; it gets 511 for some sub-1.12 s inputs
    (module docstring). This function returns the intended 512 * blocks for every input.

    Args:
        duration_s: input duration in seconds (samples / rate of the original file).

    Returns:
        T = 512 * blocks.
    """
    return num_blocks(duration_s) * BLOCK_FRAMES


def target_samples(duration_s: float, hop_length: int = 480) -> int:
    """Padded length in samples at 48 kHz: T * hop (245,760 per block).

    Args:
        duration_s: input duration in seconds.
        hop_length: mel hop in samples (480 at 48 kHz).

    Returns:
        L = target_frames(duration_s) * hop_length.
    """
    return target_frames(duration_s) * hop_length


def normalize_and_pad(wave: Tensor, target_length: int) -> Tensor:
    """Remove the mean, scale the peak to 0.5, zero-pad at the end (upstream ``read_wav_file``).

    fp32 throughout, in the original's NumPy 1.23 order: the mean is the fp32 NumPy sum (see
    :func:`~audiosr.dsp.cutoff.numpy_sum`) divided by the length in fp64 and rounded; the
    divisor ``max|w| + 1e-8`` is formed in fp64 and rounded to fp32.

    Args:
        wave: [B, L] waveform at 48 kHz; L > 100.
        target_length: padded length in samples, >= L.

    Returns:
        [B, target_length] float32; the signal starts at sample 0.

    Raises:
        ValueError: if L <= 100 (the original rejects such inputs with an assertion) or
            L > target_length.
    """
    if wave.dim() != 2:
        raise ValueError(f"expected a [B, L] waveform, got shape {tuple(wave.shape)}")
    length = wave.shape[-1]
    if length < MIN_INPUT_SAMPLES:
        raise ValueError(
            f"input has {length} samples at 48 kHz; at least {MIN_INPUT_SAMPLES} are needed"
        )
    if length > target_length:
        raise ValueError(f"input has {length} samples, more than the target {target_length}")
    x = wave.to(torch.float32)
    mean = (numpy_sum(x).to(torch.float64) / length).to(torch.float32)
    x = x - mean[:, None]
    peak = (x.abs().amax(dim=-1).to(torch.float64) + _PEAK_EPS).to(torch.float32)
    x = x / peak[:, None] * _PEAK
    return F.pad(x, (0, target_length - length))
