"""Log-mel front end shared by the VAEs and the vocoder (spec §2.5-§2.6).

The filterbank is librosa's ``filters.mel`` with its defaults (Slaney mel scale, Slaney area
normalisation), re-derived here in fp64 torch with librosa's operation order so the fp32 result
matches ``librosa.filters.mel`` to the last bit or so; librosa itself is only used by the tests.

Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (ln(6.4)/27 per
mel). Each triangle i spans mel points i..i+2 and is scaled by 2 / (f[i+2] - f[i]) so every
filter has unit area in Hz.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MelConfig
from .stft import mel_stft_magnitude

log = logging.getLogger(__name__)

_F_SP = 200.0 / 3  # Hz per mel in the linear region
_MIN_LOG_HZ = 1000.0  # start of the logarithmic region
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # = 15 mels
_LOGSTEP = math.log(6.4) / 27.0  # ln(Hz ratio) per mel in the logarithmic region


def hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney mel of frequencies in Hz (fp64 in, fp64 out)."""
    mels = hz / _F_SP
    log_part = _MIN_LOG_MEL + torch.log(hz / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log_part, mels)


def mel_to_hz(mels: Tensor) -> Tensor:
    """Frequency in Hz of Slaney mels (fp64 in, fp64 out)."""
    hz = _F_SP * mels
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mels - _MIN_LOG_MEL))
    return torch.where(mels >= _MIN_LOG_MEL, log_part, hz)


def _linspace_numpy(start: float, stop: float, num: int) -> Tensor:
    """fp64 ``numpy.linspace`` (``arange * step + start``, last point set to ``stop``).

    ``torch.linspace`` fills from both ends and can differ in the last bit.
    """
    step = (stop - start) / (num - 1)
    out = torch.arange(num, dtype=torch.float64) * step + start
    out[-1] = stop
    return out


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """Slaney-scale, Slaney-normalised triangular mel filterbank (= ``librosa.filters.mel``).

    Args:
        sample_rate: sampling rate in Hz.
        n_fft: FFT size in samples.
        n_mels: number of mel bands.
        f_min: lowest band edge in Hz.
        f_max: highest band edge in Hz (<= sample_rate / 2).

    Returns:
        [n_mels, n_fft // 2 + 1] float32 weights.
    """
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    # FFT bin centres, as numpy.fft.rfftfreq(n_fft, d=1/sample_rate).
    bin_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (
        1.0 / (n_fft * (1.0 / sample_rate))
    )
    lo = float(hz_to_mel(torch.tensor(float(f_min), dtype=torch.float64)))
    hi = float(hz_to_mel(torch.tensor(float(f_max), dtype=torch.float64)))
    edges = mel_to_hz(_linspace_numpy(lo, hi, n_mels + 2))  # [n_mels + 2] Hz
    widths = torch.diff(edges)
    ramps = edges[:, None] - bin_hz[None, :]  # [n_mels + 2, bins]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    # librosa stores the triangles in an fp32 array, then scales that array in place by the
    # fp64 Slaney factor: two roundings, reproduced here.
    triangles = torch.clamp(torch.minimum(lower, upper), min=0.0).to(torch.float32)
    enorm = 2.0 / (edges[2:] - edges[:-2])
    return (triangles.to(torch.float64) * enorm[:, None]).to(torch.float32)


def fit_frames(spec: Tensor, target_frames: int) -> Tensor:
    """Upstream ``pad_spec``: fit the frame count, then drop an odd last bin (spec §2.6).

    Frames beyond ``target_frames`` are cut; missing frames are appended as zero rows (zeros,
    not log(1e-5), as in the original). If the bin count is odd its last column is dropped
    (the STFT's Nyquist bin: 1025 -> 1024). Without padding the result is a view, which keeps
    the memory layout (and so the reduction order) of the original.

    Args:
        spec: [B, F, K] time-major features.
        target_frames: T, frames to keep.

    Returns:
        [B, T, K - (K % 2)].
    """
    n = spec.shape[-2]
    if n < target_frames:
        spec = F.pad(spec, (0, 0, 0, target_frames - n))
    elif n > target_frames:
        spec = spec[..., :target_frames, :]
    if spec.shape[-1] % 2 != 0:
        spec = spec[..., :-1]
    return spec


class MelFrontEnd(nn.Module):
    """Waveform -> (natural-log mel, STFT magnitude), upstream ``mel_spectrogram_train``.

    Buffers (not saved in state dicts): ``mel_basis`` [n_mels, n_fft // 2 + 1] and the periodic
    Hann ``window`` [win_length], both fp32.
    """

    mel_basis: Tensor
    window: Tensor

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        basis = mel_filterbank(
            config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max
        )
        self.register_buffer("mel_basis", basis, persistent=False)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """Compute the log-mel and magnitude spectrograms.

        Args:
            wave: [B, L] waveform at ``config.sample_rate`` (fp32).

        Returns:
            ``(log_mel, magnitude)``: log_mel [B, F, n_mels] = ln(max(mel, log_floor)) and
            magnitude [B, F, n_fft // 2 + 1], both time-major views of frequency-major results
            (as in the original, which transposes before ``pad_spec``).
        """
        cfg = self.config
        magnitude = mel_stft_magnitude(wave, self.window, cfg.n_fft, cfg.hop_length)
        mel = torch.matmul(self.mel_basis, magnitude)  # [B, n_mels, F]
        log_mel = torch.log(torch.clamp(mel, min=cfg.log_floor))
        return log_mel.transpose(1, 2), magnitude.transpose(1, 2)
