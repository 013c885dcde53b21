"""Signal-processing bandwidth extension: spectral band replication without weights.

The method follows spectral band replication (SBR) as used by HE-AAC (Dietz et al., AES 2002;
ISO/IEC 14496-3): the missing band is filled with copies of the top of the known band and
shaped by a spectral envelope. Without a transmitted envelope the envelope is extrapolated
from the known band, frame by frame:

1. STFT of the band-limited input (Hann window).
2. Envelope: the level of each frame in the half-octave just below the cutoff (avoiding the
   low-pass transition), smoothed over a few frames, continued upward with the file's own
   spectral tilt (a line in dB against log-frequency fitted to the octave below the cutoff,
   clamped to a plausible range) and a gentle extra roll-off towards Nyquist.
3. Fine structure and phase: the top of the known band is transposed upward in patches whose
   shift is a multiple of ``n_fft / hop_length`` bins, which keeps the phase advance between
   frames exactly right for the new frequency; its magnitude is whitened and only a fraction
   of its fine structure is kept (``fine_structure``), plus a low noise floor.
4. Energy complement: the new band only adds what the input lacks, ``max(E - |X|^2, 0)``, so
   content the input still has above the cutoff (gentle filters, under-estimated cutoffs) is
   not doubled.
5. Inverse STFT, then an exact brick-wall on the added signal (FFT of the whole segment,
   raised-cosine ramp over ``crossfade_hz`` above the cutoff): the output equals the input
   below the cutoff up to float rounding, so the low band can never get worse.

The log-spectral distance rewards a smooth envelope at the right level much more than copied
harmonics at the wrong frequencies, which is why ``fine_structure`` is below 1.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000  # Hz


@dataclass(frozen=True)
class DSPConfig:
    """Knobs of :class:`DSPEngine` (defaults tuned for LSD on speech, music and other sounds)."""

    n_fft: int = 2048  # samples
    hop_length: int = 512  # samples; n_fft must be a multiple of it (phase-coherent patches)
    guard: float = 0.92  # top of the analysis band, as a fraction of the cutoff
    fit_octaves: float = 1.0  # width of the band used to fit the tilt, in octaves
    anchor_octaves: float = 0.5  # width of the band that sets each frame's level, in octaves
    slope_min_db_per_oct: float = -24.0  # clamp of the fitted tilt
    slope_max_db_per_oct: float = -3.0
    rolloff_start_hz: float = 16_000.0  # extra roll-off towards Nyquist starts here
    rolloff_db_per_oct: float = 12.0
    level_offset_db: float = -2.5  # log-mean (what LSD compares) lies below the power mean
    smooth_frames: int = 3  # moving average of each frame's level, in frames (odd)
    fine_structure: float = 0.5  # exponent on the whitened patch magnitude (0 smooth, 1 copy)
    whiten_bins: int = 9  # width of the frequency smoothing that whitens the patch, in bins
    noise_db: float = -15.0  # noise floor relative to the envelope, in dB
    crossfade_hz: float = 200.0  # raised-cosine ramp of the new band above the cutoff, in Hz
    min_cutoff_hz: float = 500.0  # below this there is too little band to extrapolate from
    seed: int = 0  # noise floor seed (the same for every item: output does not depend on B)

    def __post_init__(self) -> None:
        if self.n_fft % self.hop_length:
            raise ValueError(
                f"n_fft ({self.n_fft}) must be a multiple of hop_length ({self.hop_length})"
            )
        if self.smooth_frames < 1 or self.smooth_frames % 2 == 0:
            raise ValueError(f"smooth_frames must be odd and >= 1, got {self.smooth_frames}")
        if not 0.0 <= self.fine_structure <= 1.0:
            raise ValueError(f"fine_structure must be in [0, 1], got {self.fine_structure}")


class DSPEngine:
    """Deterministic SBR-style bandwidth extension (see the module docstring).

    Args:
        config: the knobs; defaults when None.
    """

    name = "dsp"

    def __init__(self, config: DSPConfig | None = None) -> None:
        self.config = config or DSPConfig()

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        """Fill the band from each item's cutoff up to 24 kHz.

        Args:
            audio: band-limited segments ``[B, T]`` float32 at 48 kHz.
            cutoff_hz: ``[B]`` input cutoffs in Hz.

        Returns:
            ``[B, T]`` float32: the input plus a new band above its cutoff.
        """
        if audio.dim() != 2:
            raise ValueError(f"expected audio of shape [B, T], got {tuple(audio.shape)}")
        cut = torch.as_tensor(cutoff_hz, dtype=torch.float64).reshape(-1).cpu()
        if cut.numel() == 1 and audio.shape[0] > 1:
            cut = cut.expand(audio.shape[0])
        if cut.shape[0] != audio.shape[0]:
            raise ValueError(f"need one cutoff per item: {cut.shape[0]} for {audio.shape[0]}")
        out = torch.stack([self._extend(x, float(c)) for x, c in zip(audio, cut)])
        return out.to(device=audio.device, dtype=torch.float32)

    def _extend(self, x: Tensor, cutoff_hz: float) -> Tensor:
        """One item: ``x`` ``[T]`` plus the synthesised band above ``cutoff_hz``."""
        cfg = self.config
        x = x.detach().float().cpu()
        n = x.shape[-1]
        if n < cfg.n_fft or cutoff_hz < cfg.min_cutoff_hz or cutoff_hz >= SAMPLE_RATE / 2 - 100:
            return x.clone()
        high = self._high_band(x, cutoff_hz)
        return x + _brickwall_highpass(high, cutoff_hz, cfg.crossfade_hz).to(x.dtype)

    def _high_band(self, x: Tensor, cutoff_hz: float) -> Tensor:
        """The new band above ``cutoff_hz`` as a waveform ``[T]`` (float64)."""
        cfg = self.config
        window = torch.hann_window(cfg.n_fft, dtype=torch.float64)
        spec = torch.stft(
            x.double(),
            cfg.n_fft,
            hop_length=cfg.hop_length,
            window=window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # [F, N]
        power = spec.abs().square()
        n_bins = power.shape[0]
        bin_hz = SAMPLE_RATE / cfg.n_fft
        freqs = torch.arange(n_bins, dtype=torch.float64) * bin_hz
        k_cut = min(int(math.ceil(cutoff_hz / bin_hz)), n_bins - 1)
        k_top = max(int(cfg.guard * cutoff_hz / bin_hz), 8)
        k_fit = max(int(k_top / 2**cfg.fit_octaves), 1)
        k_anchor = max(int(k_top / 2**cfg.anchor_octaves), 1)
        tiny = 1e-20

        # Tilt of the known band: a line in dB against log2(f) through its long-term spectrum.
        long_term = 10 * torch.log10(power[k_fit:k_top].mean(dim=1) + tiny)
        octave = torch.log2(freqs[k_fit:k_top])
        slope = _line_slope(octave, long_term)
        slope = min(max(slope, cfg.slope_min_db_per_oct), cfg.slope_max_db_per_oct)

        # Level of each frame in the half-octave below the guard, smoothed over frames.
        level = power[k_anchor:k_top].mean(dim=0)  # [N], power
        level = _moving_average(level, cfg.smooth_frames)
        f_anchor = math.sqrt(freqs[k_anchor].item() * freqs[k_top - 1].item())

        # Target envelope above the cutoff, in dB, [F_high, N].
        f_high = freqs[k_cut:]
        tilt = slope * torch.log2(f_high / f_anchor)
        rolloff = cfg.rolloff_db_per_oct * torch.log2(
            (f_high / cfg.rolloff_start_hz).clamp_min(1.0)
        )
        env_db = (
            10 * torch.log10(level + tiny)[None, :] + (tilt - rolloff + cfg.level_offset_db)[:, None]
        )
        target = 10 ** (env_db / 10)

        # Patches: bins k >= k_cut copy bin src(k), shifted by a multiple of n_fft / hop.
        step = cfg.n_fft // cfg.hop_length
        width = max(step, ((k_top - k_anchor) // step) * step)
        k_high = torch.arange(k_cut, n_bins)
        src = k_top - width + torch.remainder(k_high - k_top, width)
        patch = spec[src]  # [F_high, N]
        smooth = _moving_average(power.T, cfg.whiten_bins).T  # smoothed across frequency
        white = (power[src] / (smooth[src] + tiny)).clamp_min(1e-6)
        fine = white ** cfg.fine_structure
        fine = fine / torch.exp(torch.log(fine).mean(dim=0, keepdim=True))
        phase = patch / (patch.abs() + tiny)

        gen = torch.Generator().manual_seed(cfg.seed)
        noise = torch.randn(patch.shape, generator=gen, dtype=torch.float64) + 1j * torch.randn(
            patch.shape, generator=gen, dtype=torch.float64
        )
        noise = noise / math.sqrt(2)

        # Energy complement: add only what the input lacks at each bin.
        missing = (target - power[k_cut:]).clamp_min(0.0)
        share = fine / (fine + 10 ** (cfg.noise_db / 10))
        new = torch.sqrt(missing * share) * phase + torch.sqrt(missing * (1 - share)) * noise
        high = torch.zeros_like(spec)
        high[k_cut:] = new
        return torch.istft(
            high,
            cfg.n_fft,
            hop_length=cfg.hop_length,
            window=window,
            center=True,
            length=x.shape[-1],
        )


def _line_slope(x: Tensor, y: Tensor) -> float:
    """Least-squares slope of ``y`` against ``x`` (both ``[K]``); 0 for fewer than 2 points."""
    if x.numel() < 2:
        return 0.0
    xc = x - x.mean()
    denom = float(xc.square().sum())
    return float((xc * (y - y.mean())).sum()) / denom if denom > 0 else 0.0


def _moving_average(x: Tensor, width: int) -> Tensor:
    """Centred moving average over the last axis, edges averaged over the samples present."""
    if width <= 1:
        return x
    kernel = torch.ones(1, 1, width, dtype=x.dtype)
    flat = x.reshape(-1, 1, x.shape[-1])
    total = torch.nn.functional.conv1d(flat, kernel, padding=width // 2)
    count = torch.nn.functional.conv1d(torch.ones_like(flat), kernel, padding=width // 2)
    return (total / count).reshape(x.shape)


def _brickwall_highpass(x: Tensor, cutoff_hz: float, ramp_hz: float) -> Tensor:
    """Remove everything below ``cutoff_hz`` from ``x`` ``[T]`` exactly (FFT of the segment).

    The gain rises from 0 at the cutoff to 1 at ``cutoff_hz + ramp_hz`` as a raised cosine.
    """
    n = x.shape[-1]
    spec = torch.fft.rfft(x.double())
    freqs = torch.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE, dtype=torch.float64)
    pos = ((freqs - cutoff_hz) / max(ramp_hz, 1e-9)).clamp(0.0, 1.0)
    gain = 0.5 - 0.5 * torch.cos(math.pi * pos)
    gain[freqs <= cutoff_hz] = 0.0
    return torch.fft.irfft(spec * gain, n=n)
