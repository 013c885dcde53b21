"""Quality metrics for 48 kHz audio super-resolution.

Every function is pure: it takes ``[B, T]`` (or ``[T]``) float tensors at 48 kHz and returns one
value per item, ``[B]`` (a 0-dim tensor for ``[T]`` input). Nothing is cached between calls.

Log-spectral distance (LSD), as computed by NVSR (Liu et al., 2022) and AudioSR (Liu et al.,
ICASSP 2024) and used by most bandwidth-extension papers since:

* STFT: ``n_fft = 2048`` samples, hop ``512`` samples, periodic Hann window of 2048 samples,
  ``center=True`` with zero padding (librosa >= 0.10 defaults), all 1025 bins from DC to
  Nyquist (23.4375 Hz per bin at 48 kHz).
* Power spectrogram ``P = |STFT|^2``, log ``L = log10(P + 1e-8)``.
* Per frame: ``sqrt(mean over bins of (L_ref - L_est)^2)``; then the mean over frames.

In these units a pure gain ``g`` on the estimate gives ``LSD = |2 log10 g| = |20 log10 g| / 10``
(the epsilon aside), so 1.0 LSD is a 10 dB spectral error.

The ``ssr_eval`` package behind the NVSR tables writes the same quantity on magnitudes as
``log10(|ref|^2 / (|est| + 1e-8)^2 + 1e-8)``; the two agree wherever the power is well above
1e-8 and differ only in how digital silence is floored.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000  # Hz
N_FFT = 2048  # samples
HOP_LENGTH = 512  # samples
EPS = 1e-8  # added to the power before log10
LOW_BAND_FRACTION = 0.1  # share of the lowest bins used by lsd_gain_matched


def _as_batch(x: Tensor) -> tuple[Tensor, bool]:
    """Return ``x`` as ``[B, T]`` float32 and whether it was ``[T]``."""
    if x.dim() == 1:
        return x[None].float(), True
    if x.dim() != 2:
        raise ValueError(f"expected audio of shape [B, T] or [T], got {tuple(x.shape)}")
    return x.float(), False


def _check_pair(est: Tensor, ref: Tensor) -> tuple[Tensor, Tensor, bool]:
    est_b, squeeze = _as_batch(est)
    ref_b, _ = _as_batch(ref)
    if est_b.shape != ref_b.shape:
        raise ValueError(
            f"estimate and reference must have the same shape, got {tuple(est.shape)} "
            f"and {tuple(ref.shape)}; trim or pad the estimate to the reference length first"
        )
    return est_b, ref_b, squeeze


def _out(value: Tensor, squeeze: bool) -> Tensor:
    return value[0] if squeeze else value


def power_spectrogram(x: Tensor) -> Tensor:
    """Power spectrogram of the LSD protocol.

    Args:
        x: audio ``[B, T]`` at 48 kHz.

    Returns:
        ``|STFT|^2`` as ``[B, frames, 1025]`` (float32; the STFT runs in float64 so that
        quiet bins keep their precision next to the 1e-8 floor).
    """
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64, device=x.device)
    spec = torch.stft(
        x.double(),
        N_FFT,
        hop_length=HOP_LENGTH,
        win_length=N_FFT,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return spec.abs().square().transpose(1, 2)


def _log_power(x: Tensor) -> Tensor:
    return torch.log10(power_spectrogram(x) + EPS)


def _lsd_masked(est: Tensor, ref: Tensor, mask: Tensor | None) -> Tensor:
    """LSD over the bins where ``mask`` ([B, F] bool) is true; all bins when None."""
    sq = (_log_power(ref) - _log_power(est)).square()  # [B, frames, F]
    if mask is None:
        per_frame = sq.mean(dim=-1)
    else:
        weight = mask.to(sq.dtype)[:, None, :]
        count = weight.sum(dim=-1).clamp_min(1.0)
        per_frame = (sq * weight).sum(dim=-1) / count
    return per_frame.sqrt().mean(dim=-1).float()


def lsd(est: Tensor, ref: Tensor) -> Tensor:
    """Log-spectral distance over all bins (the protocol in the module docstring).

    Args:
        est: estimate ``[B, T]`` or ``[T]`` at 48 kHz.
        ref: reference, same shape.

    Returns:
        LSD per item ``[B]`` (0-dim for ``[T]`` input), in units of log10 power (1.0 = 10 dB).
    """
    est_b, ref_b, squeeze = _check_pair(est, ref)
    return _out(_lsd_masked(est_b, ref_b, None), squeeze)


def cutoff_bin(cutoff_hz: Tensor | float, batch: int, device: torch.device) -> Tensor:
    """First STFT bin at or above ``cutoff_hz`` (``round(cutoff * n_fft / sr)``), ``[B]`` long."""
    cutoff = torch.as_tensor(cutoff_hz, dtype=torch.float64, device=device)
    cutoff = cutoff.expand(batch) if cutoff.dim() == 0 else cutoff
    if cutoff.shape != (batch,):
        raise ValueError(f"cutoff_hz must be a float or a [B={batch}] tensor, got {cutoff.shape}")
    return torch.round(cutoff * N_FFT / SAMPLE_RATE).long().clamp(0, N_FFT // 2 + 1)


def _band_mask(cutoff_hz: Tensor | float, est: Tensor, high: bool) -> Tensor:
    k = cutoff_bin(cutoff_hz, est.shape[0], est.device)
    bins = torch.arange(N_FFT // 2 + 1, device=est.device)
    return bins[None, :] >= k[:, None] if high else bins[None, :] < k[:, None]


def lsd_hf(est: Tensor, ref: Tensor, cutoff_hz: Tensor | float) -> Tensor:
    """LSD over the bins at and above the input cutoff (NU-Wave 2's LSD-HF).

    Args:
        est: estimate ``[B, T]`` or ``[T]`` at 48 kHz.
        ref: reference, same shape.
        cutoff_hz: input cutoff in Hz, a float or ``[B]``; the split bin is
            ``round(cutoff_hz * 2048 / 48000)``.

    Returns:
        LSD per item ``[B]`` over bins ``k >= split`` (0 where no bin is left).
    """
    est_b, ref_b, squeeze = _check_pair(est, ref)
    return _out(_lsd_masked(est_b, ref_b, _band_mask(cutoff_hz, est_b, high=True)), squeeze)


def lsd_lf(est: Tensor, ref: Tensor, cutoff_hz: Tensor | float) -> Tensor:
    """LSD over the bins below the input cutoff (NU-Wave 2's LSD-LF); see :func:`lsd_hf`."""
    est_b, ref_b, squeeze = _check_pair(est, ref)
    return _out(_lsd_masked(est_b, ref_b, _band_mask(cutoff_hz, est_b, high=False)), squeeze)


def lsd_gain_matched(est: Tensor, ref: Tensor) -> Tensor:
    """LSD after scaling the estimate so its lowest 10 % of bins carry the reference energy.

    The upstream AudioSR README warns that its output is re-normalised to a fixed peak, so a
    plain LSD mixes a loudness offset into the spectral error ("LSD pitfall"). Here the gain
    ``g = sqrt(E_ref / E_est)`` is measured on the power summed over all frames and the lowest
    ``ceil(0.1 * 1025)`` bins (0 to about 2.4 kHz), where any super-resolution system keeps the
    input, and the estimate is multiplied by ``g`` before :func:`lsd`.

    Args:
        est: estimate ``[B, T]`` or ``[T]`` at 48 kHz.
        ref: reference, same shape.

    Returns:
        LSD per item ``[B]`` of ``g * est`` against ``ref``.
    """
    est_b, ref_b, squeeze = _check_pair(est, ref)
    n_low = math.ceil(LOW_BAND_FRACTION * (N_FFT // 2 + 1))  # 103 bins
    e_est = power_spectrogram(est_b)[..., :n_low].sum(dim=(1, 2))
    e_ref = power_spectrogram(ref_b)[..., :n_low].sum(dim=(1, 2))
    # A silent estimate cannot be matched: leave it unscaled rather than divide by zero.
    gain = torch.where(e_est > 0, (e_ref / e_est.clamp_min(1e-30)).sqrt(), torch.ones_like(e_est))
    return _out(_lsd_masked(est_b * gain[:, None].to(est_b.dtype), ref_b, None), squeeze)


def si_sdr(est: Tensor, ref: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale-invariant signal-to-distortion ratio (Le Roux et al., ICASSP 2019), in dB.

    Both signals are made zero-mean; the target is the projection ``a * ref`` of the estimate
    on the reference, with ``a = <est, ref> / <ref, ref>``, and the result is
    ``10 log10(|a ref|^2 / |est - a ref|^2)``.

    Args:
        est: estimate ``[B, T]`` or ``[T]``.
        ref: reference, same shape.
        eps: added to both energies so silent inputs give a finite value.

    Returns:
        SI-SDR per item ``[B]`` in dB (0-dim for ``[T]`` input).
    """
    est_b, ref_b, squeeze = _check_pair(est, ref)
    est_b = est_b.double() - est_b.double().mean(dim=-1, keepdim=True)
    ref_b = ref_b.double() - ref_b.double().mean(dim=-1, keepdim=True)
    scale = (est_b * ref_b).sum(-1, keepdim=True) / (ref_b.square().sum(-1, keepdim=True) + eps)
    target = scale * ref_b
    noise = est_b - target
    ratio = (target.square().sum(-1) + eps) / (noise.square().sum(-1) + eps)
    return _out((10 * torch.log10(ratio)).float(), squeeze)
