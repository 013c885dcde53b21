"""The two short-time Fourier transforms of the original, with explicit windows and padding.

1. The mel front end's STFT (spec §2.5, upstream ``mel_spectrogram_train``): reflect padding of
   ``(n_fft - hop) / 2`` samples, ``torch.stft(center=False)`` with a periodic Hann window,
   plain complex modulus. Frame ``f`` is centred on sample ``f * hop + hop / 2``.
2. The post-processing STFT pair (spec §9.4): ``librosa.stft`` / ``librosa.istft`` of librosa
   0.9.2 with their defaults (n_fft 2048, hop 512, periodic Hann from scipy, ``center=True``
   with ZERO padding, window-square normalised overlap-add). librosa computes the windowed
   frames and FFTs in fp64 and stores complex64; the inverse overlap-adds fp64 frames into an
   fp32 buffer, rounding after every frame. Both are reproduced here in torch, in that order,
   so the results agree with librosa to the last bit or nearly so.

``torch.istft`` does not fit (2): it normalises in the working precision and pads/crops
differently, and librosa's result depends on the fp32 rounding after each frame's addition.

Windows are arguments (callers keep them as buffers); nothing is cached at module level.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)


# --- (1) mel front end ---------------------------------------------------------------------


def mel_stft_magnitude(wave: Tensor, window: Tensor, n_fft: int, hop_length: int) -> Tensor:
    """|STFT| of the mel front end (upstream ``mel_spectrogram_train``, spec §2.5).

    Args:
        wave: [B, L] waveform (fp32), L > (n_fft - hop_length) / 2.
        window: [win_length] analysis window (``torch.hann_window(win_length)``, periodic).
        n_fft: FFT size in samples.
        hop_length: hop in samples.

    Returns:
        [B, n_fft // 2 + 1, F] magnitudes, F = (L + 2 * pad - n_fft) // hop_length + 1 with
        pad = (n_fft - hop_length) // 2 (F = L / hop for L a multiple of the hop).
    """
    pad = int((n_fft - hop_length) / 2)
    # Reflect padding needs a channel axis in torch.
    padded = F.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(
        padded,
        n_fft,
        hop_length=hop_length,
        win_length=window.shape[-1],
        window=window,
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    return spec.abs()


# --- (2) librosa 0.9.2 STFT / ISTFT -----------------------------------------------------------


def librosa_hann_window(n_fft: int, device: torch.device | str | None = None) -> Tensor:
    """The fp64 periodic Hann window of ``scipy.signal.get_window("hann", n_fft)``.

    librosa builds its window with scipy; using scipy here keeps the fp64 values identical.

    Returns:
        [n_fft] float64.
    """
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)
    return torch.from_numpy(np.asarray(window, dtype=np.float64)).to(device)


def librosa_stft(wave: Tensor, window: Tensor, hop_length: int = 512) -> Tensor:
    """``librosa.stft(wave)`` of librosa 0.9.2 (center=True, zero padding).

    The frames are windowed and transformed in fp64 (as numpy does for an fp32 signal times an
    fp64 window) and the result is stored as complex64, like librosa's output array.

    Args:
        wave: [B, L] waveform (fp32), L >= 1.
        window: [n_fft] fp64 window (:func:`librosa_hann_window`).
        hop_length: hop in samples.

    Returns:
        [B, n_fft // 2 + 1, 1 + L // hop_length] complex64.
    """
    n_fft = window.shape[-1]
    padded = F.pad(wave.to(torch.float64), (n_fft // 2, n_fft // 2))  # zeros (librosa 0.9.2)
    frames = padded.unfold(-1, n_fft, hop_length)  # [B, F, n_fft]
    spec = torch.fft.rfft(frames * window.to(torch.float64), dim=-1)
    return spec.to(torch.complex64).transpose(-1, -2)


def _overlap_add_fp32(frames: Tensor, hop_length: int) -> Tensor:
    """Overlap-add fp64 frames into an fp32 buffer, rounding after each frame, in frame order.

    This is librosa's ``__overlap_add`` / ``__window_ss_fill`` on an fp32 output: for every
    frame in turn, ``y[seg] = float32(float64(y[seg]) + frame)``. Output block q (hop samples)
    receives, in frame order, chunk R-1 of frame q-R+1, ..., chunk 0 of frame q, where
    R = n_fft / hop; the R steps below add those chunks for all blocks at once (absent frames
    contribute exact zeros, which leave an fp32 value unchanged).

    Args:
        frames: [..., n_frames, n_fft] fp64 (or broadcastable leading shape).
        hop_length: hop in samples; must divide n_fft.

    Returns:
        [..., n_fft + hop_length * (n_frames - 1)] float32.
    """
    n_frames, n_fft = frames.shape[-2], frames.shape[-1]
    if n_fft % hop_length != 0:
        raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop_length ({hop_length})")
    r = n_fft // hop_length
    chunks = frames.reshape(*frames.shape[:-1], r, hop_length)  # [..., n_frames, R, hop]
    # Pad R-1 empty frames on both sides: padded frame index p holds frame p-(R-1).
    chunks = F.pad(chunks, (0, 0, 0, 0, r - 1, r - 1))
    n_blocks = n_frames + r - 1
    out = torch.zeros(
        (*frames.shape[:-2], n_blocks, hop_length), dtype=torch.float32, device=frames.device
    )
    for j in range(r):
        contrib = chunks[..., j : j + n_blocks, r - 1 - j, :]
        out = (out.to(torch.float64) + contrib).to(torch.float32)
    return out.reshape(*out.shape[:-2], n_blocks * hop_length)


def librosa_istft(spec: Tensor, window: Tensor, hop_length: int, length: int) -> Tensor:
    """``librosa.istft(spec, length=length)`` of librosa 0.9.2 (center=True).

    Inverse real FFT of each frame in fp64, fp64 windowing, fp32 overlap-add, division by the
    fp32 sum of squared windows where it exceeds fp32's smallest normal number, removal of the
    n_fft/2 centre padding, then crop or zero-pad at the end to ``length``.

    Args:
        spec: [B, n_fft // 2 + 1, F] complex STFT (complex64).
        window: [n_fft] fp64 window (:func:`librosa_hann_window`).
        hop_length: hop in samples (must divide n_fft).
        length: output length in samples.

    Returns:
        [B, length] float32.
    """
    n_fft = window.shape[-1]
    if spec.shape[-2] != n_fft // 2 + 1:
        raise ValueError(f"spec has {spec.shape[-2]} bins, expected {n_fft // 2 + 1}")
    # librosa only inverts the frames needed for `length` (centre padding included).
    n_frames = min(spec.shape[-1], math.ceil((length + n_fft) / hop_length))
    spec = spec[..., :n_frames].to(torch.complex128)
    frames = torch.fft.irfft(spec.transpose(-1, -2), n=n_fft, dim=-1)  # [B, F, n_fft] fp64
    win = window.to(torch.float64)
    y = _overlap_add_fp32(frames * win, hop_length)
    win_sq = (win**2).expand(n_frames, n_fft)
    win_sum = _overlap_add_fp32(win_sq, hop_length)
    tiny = torch.finfo(torch.float32).tiny
    y = torch.where(win_sum > tiny, y / torch.where(win_sum > tiny, win_sum, 1.0), y)
    y = y[..., n_fft // 2 :]
    if y.shape[-1] >= length:
        return y[..., :length]
    return F.pad(y, (0, length - y.shape[-1]))
