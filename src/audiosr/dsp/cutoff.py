"""Cutoff detection heuristic of the original (spec §3), and NumPy-order fp32 reductions.

The heuristic: with per-bin energies ``e`` (summed over time) and ``C = cumsum(e)``, the cutoff
is the largest index k in [1, N-1] with ``C[k] < p * C[N-1]`` (p = 0.985), else 0. The original
uses it three times, and the precision details differ between uses:

| use | energy (summed over time) | running sum | threshold |
|---|---|---|---|
| conditioning cutoff (§4) | torch, \\|STFT\\| | torch: fp64 -> fp32 | fp32 |
| mel replacement (§9.2) | torch, exp(log-mel) | torch: fp64 -> fp32 | fp32 |
| post-processing (§9.4) | numpy, \\|librosa STFT\\| | numpy: fp32 | fp64 |

(torch's CPU ``cumsum`` accumulates fp32 in fp64; numpy promotes ``float32_scalar * 0.985``
to fp64.) An index can only change when the threshold lies within a rounding error of a
cumulative sum, but the golden data are reproduced exactly by following each use's precision.

The post-processing and the final normalisation of the original run in NumPy 1.23, whose fp32
sums are not torch's; :func:`numpy_sum` and :func:`sequential_sum` reproduce its order.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

CUTOFF_PERCENTILE = 0.985  # fraction of the total energy below the cutoff (all three uses)

_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE: leaves of the pairwise summation tree
_UNROLL = 8  # numpy sums leaves with 8 interleaved accumulators
NUMPY_BUFFER_SIZE = 8192  # numpy's default ufunc buffer: sums run pairwise per 8192 elements


# --- NumPy-order fp32 reductions --------------------------------------------------------------


def _pairwise_leaf_sums(x: Tensor, leaves: list[tuple[int, int]]) -> Tensor:
    """Sums of leaves (start, size <= 128) of the last dim, in numpy's unrolled order.

    numpy sums a leaf of size >= 8 with 8 accumulators r[j] (r[j] = a[j], then r[j] += a[i+j]
    for each full block of 8), combines ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) and then adds the
    n % 8 remaining values one by one; a leaf of size < 8 is summed left to right from 0. All
    leaves are evaluated together here: values outside a leaf's blocks are replaced by exact
    zeros, which leave fp32 sums unchanged, so one code path covers every size.
    """
    n = x.shape[-1]
    starts = torch.tensor([s for s, _ in leaves], device=x.device)
    sizes = torch.tensor([z for _, z in leaves], device=x.device)
    pos = torch.arange(_PAIRWISE_BLOCK, device=x.device)
    index = (starts[:, None] + pos).clamp(max=n - 1)  # [n_leaves, 128]
    values = x[..., index]  # [..., n_leaves, 128]
    full = sizes - sizes % _UNROLL  # elements summed by the 8 accumulators
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    blocks = torch.where(pos < full[:, None], values, zero)
    blocks = blocks.reshape(*values.shape[:-1], _PAIRWISE_BLOCK // _UNROLL, _UNROLL)
    r = blocks[..., 0, :]
    for b in range(1, _PAIRWISE_BLOCK // _UNROLL):
        r = r + blocks[..., b, :]
    res = ((r[..., 0] + r[..., 1]) + (r[..., 2] + r[..., 3])) + (
        (r[..., 4] + r[..., 5]) + (r[..., 6] + r[..., 7])
    )
    for t in range(_UNROLL - 1):
        at = (full + t).clamp(max=_PAIRWISE_BLOCK - 1)
        tail = values.gather(-1, at.expand(*values.shape[:-1])[..., None])[..., 0]
        res = res + torch.where(full + t < sizes, tail, zero)
    return res


def numpy_pairwise_sum(x: Tensor) -> Tensor:
    """numpy's pairwise summation of the whole last dim (``pairwise_sum`` in its C loops).

    A run of n > 128 values is split at n2 = n/2 rounded down to a multiple of 8 and the two
    halves' sums are added; runs of <= 128 values are leaves (see :func:`_pairwise_leaf_sums`).

    Args:
        x: [..., n] fp32 tensor, n >= 1.

    Returns:
        [...] sums in x's dtype.
    """
    leaves: list[tuple[int, int]] = []

    def plan(start: int, size: int) -> int | tuple:
        if size <= _PAIRWISE_BLOCK:
            leaves.append((start, size))
            return len(leaves) - 1
        half = size // 2
        half -= half % _UNROLL
        return (plan(start, half), plan(start + half, size - half))

    tree = plan(0, x.shape[-1])
    sums = _pairwise_leaf_sums(x, leaves)

    def evaluate(node: int | tuple) -> Tensor:
        if isinstance(node, int):
            return sums[..., node]
        return evaluate(node[0]) + evaluate(node[1])

    return evaluate(tree)


def numpy_sum(x: Tensor) -> Tensor:
    """``numpy.sum(x, axis=-1)`` of NumPy 1.23 for a C-contiguous fp32 array.

    NumPy's reduction iterator hands the inner loop at most 8192 elements (its buffer size) at
    a time; each such chunk is summed pairwise and the chunk sums are accumulated left to
    right in fp32. (NumPy 2.x sums the whole row pairwise, which differs in the last bits; the
    golden data were made with 1.23.)

    Args:
        x: [..., n] fp32 tensor (values along the last dim as contiguous numpy would see them).

    Returns:
        [...] sums in x's dtype.
    """
    n = x.shape[-1]
    n_full = n // NUMPY_BUFFER_SIZE
    chunk_sums: list[Tensor] = []
    if n_full:
        full = x[..., : n_full * NUMPY_BUFFER_SIZE].reshape(
            *x.shape[:-1], n_full, NUMPY_BUFFER_SIZE
        )
        per_chunk = numpy_pairwise_sum(full)  # [..., n_full]
        chunk_sums.extend(per_chunk.unbind(-1))
    if n % NUMPY_BUFFER_SIZE:
        chunk_sums.append(numpy_pairwise_sum(x[..., n_full * NUMPY_BUFFER_SIZE :]))
    total = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for s in chunk_sums:
        total = total + s
    return total


def sequential_sum(x: Tensor) -> Tensor:
    """Left-to-right sum over the last dim in x's precision (no pairwise tree).

    This is what numpy computes when the reduced axis is not the contiguous one, e.g.
    ``np.sum(S, axis=-1)`` of librosa's Fortran-ordered (bins, frames) STFT matrix: the inner
    loop runs over bins and the frames are added one after the other. Computed on the CPU in one
    vectorised call (numpy's ``add.accumulate`` is strictly sequential), not as one tiny device
    kernel per element.

    Args:
        x: [..., n] fp32 or fp64.

    Returns:
        [...] sums on x's device.
    """
    return sequential_cumsum(x)[..., -1]


def sequential_cumsum(x: Tensor) -> Tensor:
    """Running sum over the last dim accumulated in x's precision (``numpy.cumsum`` of fp32).

    torch's CPU cumsum accumulates fp32 in fp64, so numpy's own strictly sequential
    ``add.accumulate`` does it, on the CPU.

    Args:
        x: [..., n] fp32 or fp64.

    Returns:
        [..., n] running sums on x's device.
    """
    host = x.detach().to("cpu").numpy()
    out = np.add.accumulate(host, axis=-1, dtype=host.dtype)
    return torch.from_numpy(out).to(x.device)


# --- the heuristic ------------------------------------------------------------------------------


def locate_cutoff_bin(
    energy: Tensor,
    percentile: float = CUTOFF_PERCENTILE,
    threshold_dtype: torch.dtype = torch.float32,
    accumulation: Literal["torch", "numpy"] = "torch",
) -> Tensor:
    """Largest bin k in [1, N-1] whose cumulative energy is below ``percentile`` of the total.

    Args:
        energy: [N] or [B, N] non-negative per-bin energies (already summed over time), fp32.
        percentile: fraction p of the total energy (0.985 in every use of the original).
        threshold_dtype: precision of ``p * C[N-1]`` and of the comparison: fp32 for the two
            torch uses of the original, fp64 for its numpy use.
        accumulation: how the cumulative sum rounds: ``"torch"`` (torch's CPU cumsum: running
            sum in fp64, each output rounded to fp32) or ``"numpy"`` (running sum in fp32).

    Returns:
        int64 tensor of shape energy.shape[:-1] (0-dim for a single vector): the cutoff bin,
        0 when no bin qualifies (index 0 is never tested, as in the original's scan).
    """
    if energy.shape[-1] < 1:
        raise ValueError("energy must have at least one bin")
    if accumulation == "torch":
        csum = torch.cumsum(energy.to(torch.float64), dim=-1).to(energy.dtype)
    elif accumulation == "numpy":
        csum = sequential_cumsum(energy)
    else:
        raise ValueError(f"accumulation must be 'torch' or 'numpy', got {accumulation!r}")
    csum = csum.to(threshold_dtype)
    threshold = csum[..., -1:] * percentile
    below = csum < threshold
    below[..., 0] = False
    index = torch.arange(energy.shape[-1], device=energy.device)
    return torch.where(below, index, 0).amax(dim=-1)


def cutoff_hz_from_stft(
    stft_mag: Tensor, sample_rate: int = 48_000, percentile: float = CUTOFF_PERCENTILE
) -> tuple[Tensor, Tensor]:
    """Cutoff of the input band from its STFT magnitudes (conditioning use, spec §3-§4).

    The energy is summed over time on a time-major (bins contiguous) tensor: the original's
    magnitude has that memory layout, and torch's summation order (hence the last bits of the
    energies) depends on it. fp32 threshold and torch cumsum.

    Args:
        stft_mag: [..., T, K] magnitudes, K = n_fft / 2 bins (Nyquist dropped; 1024).
        sample_rate: sampling rate in Hz (the K bins span 0 .. sample_rate / 2).
        percentile: energy fraction p.

    Returns:
        ``(bin, hz)``: int64 and float64 tensors of shape [...]; hz = bin / K * sample_rate / 2
        computed in fp64 as the original does.
    """
    energy = stft_mag.contiguous().sum(dim=-2)  # [..., K]
    k = locate_cutoff_bin(energy, percentile, torch.float32, "torch")
    hz = (k.to(torch.float64) / stft_mag.shape[-1]) * (sample_rate / 2)
    return k, hz
