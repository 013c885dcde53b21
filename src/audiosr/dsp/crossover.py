"""Keep the band the input already has: a zero-phase crossover between input and output.

Below ``cutoff - crossover`` the result is the input exactly (to float precision); above the
cutoff it is the engine's output; in between a raised-cosine ramp hands over, with complementary
weights so a signal present in both passes at unit gain. Each row (channel) can have its own
cutoff: a channel never loses content below its own band edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def crossover_weights(n_fft: int, sample_rate: int, cutoff_hz: float, width_hz: float) -> Tensor:
    """Weight of the INPUT per rfft bin: 1 below ``cutoff-width``, 0 above ``cutoff``.

    Returns:
        [n_fft // 2 + 1] float64.
    """
    freqs = torch.fft.rfftfreq(n_fft, d=1.0 / sample_rate, dtype=torch.float64)
    width = max(float(width_hz), 1e-9)
    lo = max(float(cutoff_hz) - width, 0.0)
    pos = ((freqs - lo) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * pos))


def merge_low_band(
    generated: Tensor,
    reference: Tensor,
    cutoff_hz: float | Sequence[float] | Tensor,
    width_hz: float = 500.0,
    sample_rate: int = 48_000,
) -> Tensor:
    """Replace the band below ``cutoff_hz`` of ``generated`` with ``reference``'s.

    Args:
        generated: [..., T] engine output.
        reference: [..., T] band-limited input, same shape.
        cutoff_hz: input band limit in Hz: one for all rows, or one per row of a [R, T] input.
        width_hz: crossover width in Hz, ending at the cutoff.

    Returns:
        [..., T] float32.
    """
    if generated.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(generated.shape)} vs {tuple(reference.shape)}")
    n = generated.shape[-1]
    if isinstance(cutoff_hz, (int, float)):
        w = crossover_weights(n, sample_rate, cutoff_hz, width_hz)
    else:
        cuts = [float(c) for c in cutoff_hz]
        if generated.dim() != 2 or len(cuts) != generated.shape[0]:
            raise ValueError(
                f"{len(cuts)} cutoffs for rows of shape {tuple(generated.shape)}: give one "
                "cutoff, or one per row of a [R, T] input"
            )
        table = {c: crossover_weights(n, sample_rate, c, width_hz) for c in set(cuts)}
        w = torch.stack([table[c] for c in cuts])  # [R, F]
    w = w.to(generated.device)
    g = torch.fft.rfft(generated.double(), dim=-1)
    r = torch.fft.rfft(reference.double(), dim=-1)
    return torch.fft.irfft(r * w + g * (1.0 - w), n=n, dim=-1).to(torch.float32)
