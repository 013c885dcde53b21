"""Put the known low band back into the generated signal (spec §9.2 and §9.4).

The original does this twice, and both are reproduced here:

1. Mel domain, before the vocoder (``mel_replace_ops``): the decoded log-mel's lowest k_mel
   bins are replaced by the conditioning log-mel's, k_mel from the cutoff heuristic on
   exp(log-mel).
2. Waveform domain, after the vocoder (``postprocessing``, numpy + librosa 0.9.2): with the
   librosa STFT (n_fft 2048, hop 512), the rows below the cutoff bin k of the vocoder output
   are replaced by the low-passed input's rows divided by the energy ratio r of row k
   (clamped to [0.8, 1.2]), then the inverse STFT gives the output.

Step 2 follows numpy's fp32 arithmetic: frame sums accumulate left to right (librosa's matrix
is Fortran-ordered), row sums are pairwise, the threshold is fp64, and ``X / r`` is numpy's
complex division by a real, i.e. a multiplication by the fp32 reciprocal of r.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from .cutoff import CUTOFF_PERCENTILE, locate_cutoff_bin, numpy_pairwise_sum, sequential_sum
from .stft import librosa_hann_window, librosa_istft, librosa_stft

log = logging.getLogger(__name__)

POST_N_FFT = 2048  # librosa.stft defaults used by the original's post-processing
POST_HOP = 512
RATIO_MIN = 0.8  # clamp of the energy ratio
RATIO_MAX = 1.2


def mel_cutoff_bins(lowpass_mel: Tensor, percentile: float = CUTOFF_PERCENTILE) -> Tensor:
    """Number of low mel bins to take from the conditioning log-mel, per item (spec §9.2).

    Energy = sum over time of exp(log-mel), summed along the contiguous time axis of a
    mel-major tensor as in the original (its log-mel is a transposed view), fp32 threshold.

    Args:
        lowpass_mel: [B, T, M] natural-log mel of the low-passed input.
        percentile: energy fraction p.

    Returns:
        [B] int64 bin counts k_mel.
    """
    energy = torch.exp(lowpass_mel.transpose(-1, -2).contiguous()).sum(dim=-1)  # [B, M]
    return locate_cutoff_bin(energy, percentile, torch.float32, "torch")


def replace_low_mel_bins(
    mel_hat: Tensor, lowpass_mel: Tensor, bins: Tensor | None = None
) -> Tensor:
    """Replace the lowest k_mel bins of the decoded mel by the conditioning mel's (spec §9.2).

    Args:
        mel_hat: [B, 1, T, M] decoded log-mel (upstream layout).
        lowpass_mel: [B, T, M] log-mel of the low-passed input.
        bins: [B] k_mel already computed by :func:`mel_cutoff_bins` (an fp64 cumulative sum:
            the diffusion engine takes it on the host, so a device without fp64 only does
            this fp32 selection); None computes it here.

    Returns:
        [B, 1, T, M] new tensor; ``mel_hat`` is not modified.
    """
    k = mel_cutoff_bins(lowpass_mel) if bins is None else bins  # [B]
    bins = torch.arange(mel_hat.shape[-1], device=mel_hat.device)
    low = (bins < k.to(mel_hat.device)[:, None])[:, None, None, :]  # [B, 1, 1, M]
    return torch.where(low, lowpass_mel[:, None].to(mel_hat.device, mel_hat.dtype), mel_hat)


@dataclass(frozen=True)
class LowBandInfo:
    """Per-item quantities of the waveform-domain merge.

    Attributes:
        cutoff_index: [B] int64 STFT bin k; rows 0..k-1 were replaced.
        ratio_raw: [B] fp32 sum|X[k]| / sum|Y[k]| before clamping.
        ratio: [B] fp32 ratio actually used (clamped to [0.8, 1.2]).
    """

    cutoff_index: Tensor
    ratio_raw: Tensor
    ratio: Tensor


def post_cutoff_index(mag: Tensor, percentile: float = CUTOFF_PERCENTILE) -> Tensor:
    """Cutoff bin of the original's ``_get_cutoff_index_np`` from |librosa STFT| magnitudes.

    Args:
        mag: [B, K, F] fp32 magnitudes.
        percentile: energy fraction p.

    Returns:
        [B] int64 bins.
    """
    energy = sequential_sum(mag)  # numpy: frames added one by one (Fortran-ordered matrix)
    return locate_cutoff_bin(energy, percentile, torch.float64, "numpy")


def replace_low_band(
    wave: Tensor, wave_lowpass: Tensor, *, return_info: bool = False
) -> Tensor | tuple[Tensor, LowBandInfo]:
    """STFT-domain replacement of the low band by the low-passed input (spec §9.4).

    Args:
        wave: [B, L'] vocoder output (fp32), L' = L + 16 for the original's lengths; the two
            STFTs must have the same frame count (1 + L' // 512 == 1 + L // 512).
        wave_lowpass: [B, L] low-passed, normalised input (fp32).
        return_info: also return the cutoff bins and energy ratios.

    Returns:
        [B, L'] float32 merged waveform, and a :class:`LowBandInfo` if ``return_info``.
    """
    if wave.shape[0] != wave_lowpass.shape[0]:
        raise ValueError(f"batch sizes differ: {wave.shape[0]} vs {wave_lowpass.shape[0]}")
    window = librosa_hann_window(POST_N_FFT, device=wave.device)
    x_spec = librosa_stft(wave_lowpass.to(wave.device, torch.float32), window, POST_HOP)
    y_spec = librosa_stft(wave.to(torch.float32), window, POST_HOP)
    if x_spec.shape != y_spec.shape:
        raise ValueError(
            f"STFT frame counts differ ({x_spec.shape[-1]} vs {y_spec.shape[-1]}): lengths "
            f"{wave_lowpass.shape[-1]} and {wave.shape[-1]} must give the same 1 + L // {POST_HOP}"
        )
    x_mag = x_spec.abs()
    k = post_cutoff_index(x_mag)  # [B]

    # Energy ratio of row k: pairwise fp32 sums (numpy sums each contiguous row copy).
    rows = k[:, None, None].expand(-1, 1, x_mag.shape[-1])
    x_row = x_mag.gather(1, rows)[:, 0]
    y_row = y_spec.abs().gather(1, rows)[:, 0]
    ratio_raw = numpy_pairwise_sum(x_row) / numpy_pairwise_sum(y_row)
    ratio = ratio_raw.clamp(RATIO_MIN, RATIO_MAX)

    # numpy divides complex64 by a real r as (re, im) * float32(1 / r).
    inv = torch.reciprocal(ratio)
    x_scaled = torch.view_as_complex(torch.view_as_real(x_spec) * inv[:, None, None, None])
    low = torch.arange(x_spec.shape[1], device=wave.device)[None, :, None] < k[:, None, None]
    merged = torch.where(low, x_scaled, y_spec)
    out = librosa_istft(merged, window, POST_HOP, length=wave.shape[-1])
    if return_info:
        return out, LowBandInfo(cutoff_index=k, ratio_raw=ratio_raw, ratio=ratio)
    return out
