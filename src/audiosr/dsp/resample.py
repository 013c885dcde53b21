"""Band-limited resampling to 48 kHz: torchaudio's windowed-sinc algorithm (spec §2.3).

The original reads a file and calls ``torchaudio.functional.resample(wave, sr, 48000)`` with
its defaults (``sinc_interp_hann``, ``lowpass_filter_width=6``, ``rolloff=0.99``). This module
re-implements that algorithm in plain torch so torchaudio is not a dependency:

* both rates are divided by their gcd, giving ``orig`` input and ``new`` output samples per
  period;
* one kernel per output phase ``j`` is a Hann-windowed sinc evaluated at
  ``t = (m / orig - j / new) * base`` with ``base = 0.99 * min(orig, new)``, clamped to the
  ±6 zero crossings of the window;
* the signal is zero-padded, correlated with all phase kernels at stride ``orig`` (one
  ``conv1d``), and the phases are interleaved.

The kernel is computed in the waveform's dtype (fp32 for audio), in the same operation order as
torchaudio, so fp32 results match it bit for bit on the same device.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

LOWPASS_FILTER_WIDTH = 6  # zero crossings of the sinc on each side
ROLLOFF = 0.99  # anti-aliasing cutoff as a fraction of the lower Nyquist frequency


def sinc_resample_kernel(
    orig_sr: int,
    new_sr: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
    rolloff: float = ROLLOFF,
) -> tuple[Tensor, int]:
    """Polyphase Hann-windowed sinc kernels of torchaudio's ``sinc_interp_hann`` method.

    Args:
        orig_sr: input rate in Hz.
        new_sr: output rate in Hz.
        dtype: dtype of the kernel (torchaudio uses the waveform's dtype).
        device: device of the kernel.
        lowpass_filter_width: zero crossings of the sinc on each side.
        rolloff: cutoff as a fraction of the lower of the two Nyquist frequencies.

    Returns:
        ``(kernel, width)``: kernel [new, 1, 2 * width + orig] (one row per output phase,
        ``new``/``orig`` = the rates divided by their gcd) and the zero padding ``width`` in
        input samples.
    """
    gcd = math.gcd(int(orig_sr), int(new_sr))
    orig = int(orig_sr) // gcd
    new = int(new_sr) // gcd
    base = min(orig, new) * rolloff  # Python float, as in torchaudio
    width = math.ceil(lowpass_filter_width * orig / base)
    # Time of tap m for phase j, in units of the (rolled-off) base period. The operation order
    # (divide, add, scale) is torchaudio's; it decides the last bit of the fp32 kernel.
    idx = torch.arange(-width, width + orig, dtype=dtype, device=device)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype, device=device)[:, None, None] / new + idx
    t = t * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    scale = base / orig
    kernel = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernel = kernel * (window * scale)
    return kernel, width


def resample_sinc(wave: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Resample ``wave`` from ``orig_sr`` to ``new_sr`` (torchaudio ``resample`` defaults).

    Args:
        wave: [..., L] waveform; any leading shape, floating dtype.
        orig_sr: input rate in Hz (positive integer).
        new_sr: output rate in Hz (positive integer).

    Returns:
        [..., ceil(new_sr * L / orig_sr)] waveform in the input's dtype. When the rates are
        equal the input tensor itself is returned (an exact no-op, as in torchaudio).
    """
    if int(orig_sr) <= 0 or int(new_sr) <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_sr} -> {new_sr}")
    if not wave.is_floating_point():
        raise ValueError(f"resample_sinc needs a floating-point waveform, got {wave.dtype}")
    if int(orig_sr) == int(new_sr):
        return wave
    gcd = math.gcd(int(orig_sr), int(new_sr))
    orig = int(orig_sr) // gcd
    new = int(new_sr) // gcd
    kernel, width = sinc_resample_kernel(orig_sr, new_sr, dtype=wave.dtype, device=wave.device)

    shape = wave.shape
    length = shape[-1]
    flat = wave.reshape(-1, length)
    padded = F.pad(flat, (width, width + orig))
    # [N, new, frames]: phase j of output frame f is out[f * new + j].
    phases = F.conv1d(padded[:, None], kernel, stride=orig)
    out = phases.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * length / orig)
    return out[..., :target].reshape(*shape[:-1], -1)
