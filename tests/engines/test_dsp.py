"""DSP bandwidth extension: beats plain resampling, keeps the low band, deterministic, fast."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from audiosr.engines.base import Engine, SincEngine
from audiosr.engines.dsp import DSPConfig, DSPEngine
from audiosr.eval.degrade import Degradation, apply
from audiosr.eval.metrics import lsd, lsd_hf

log = logging.getLogger(__name__)

SR = 48_000
CUTOFFS = (4000.0, 8000.0, 12_000.0)


def _notes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Amplitude envelope of notes: 0.1-0.6 s long, fast attack, exponential decay, gaps."""
    env = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.1, 0.6) * SR)
        t = np.arange(min(length, n - pos)) / SR
        env[pos : pos + len(t)] = np.minimum(t / 0.01, 1.0) * np.exp(-t / rng.uniform(0.1, 0.5))
        pos += length + int(rng.uniform(0.0, 0.15) * SR)
    return env


def _tilted_noise(n: int, tilt_db_per_oct: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SR), 50.0)
    spec *= (freqs / 1000.0) ** (tilt_db_per_oct / (20 * math.log10(2)))
    return np.fft.irfft(spec, n=n)


def _harmonics(
    f0: np.ndarray, phase: np.ndarray, tilt_db_per_oct: float, rng: np.random.Generator
) -> np.ndarray:
    """All harmonics of ``f0`` [T] (Hz) below Nyquist, amplitude k^(tilt / 6.02 dB)."""
    x = np.zeros(len(phase))
    step = np.exp(1j * phase)
    partial = step.copy()  # exp(1j * k * phase), by recursion: far cheaper than sin per k
    for k in range(1, int(SR / 2 / f0.min())):
        amp = k ** (tilt_db_per_oct / (20 * math.log10(2)))
        x += (k * f0 < SR / 2 - 200) * amp * (partial * np.exp(2j * np.pi * rng.uniform())).imag
        partial *= step
    return x


def _harmonic_tones(seconds: float, tilt_db_per_oct: float, seed: int) -> torch.Tensor:
    """Notes of harmonic tones (random f0) with a spectral tilt, over tilted breath noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.choice([110.0, 196.0, 262.0, 330.0, 440.0], size=n // SR + 1)[(t // 1).astype(int)]
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.005 * np.sin(2 * np.pi * 5 * t))) / SR
    x = _harmonics(f0, phase, tilt_db_per_oct, rng)
    x = x * _notes(n, rng) + 0.03 * _tilted_noise(n, tilt_db_per_oct, rng)
    return torch.from_numpy(0.5 * x / np.abs(x).max()).float()


def _chirps(seconds: float, seed: int) -> torch.Tensor:
    """Harmonic glides (f0 sweeping 100-800 Hz up and down), -9 dB/octave, with noise bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 100.0 * 8 ** (0.5 - 0.5 * np.cos(2 * np.pi * t / 2.0))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = _harmonics(f0, phase, -9.0, rng)
    bursts = _tilted_noise(n, -4.0, rng) * _notes(n, rng) ** 4
    x = x / np.abs(x).max() + 0.5 * bursts / np.abs(bursts).max()
    return torch.from_numpy(0.5 * x / np.abs(x).max()).float()


def _test_signals() -> list[torch.Tensor]:
    return [
        _harmonic_tones(2.0, -6.0, seed=0),
        _harmonic_tones(2.0, -10.0, seed=1),
        _chirps(2.0, seed=2),
    ]


def test_engines_follow_the_protocol() -> None:
    assert isinstance(DSPEngine(), Engine) and DSPEngine.name == "dsp"
    assert isinstance(SincEngine(), Engine) and SincEngine.name == "sinc"
    x = torch.randn(2, 4800)
    out = SincEngine()(x, torch.tensor([4000.0, 8000.0]))
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("envelope", ["learned", "tilt"])
def test_dsp_beats_plain_resampling(envelope: str) -> None:
    """Mean LSD over signals x cutoffs at least 30 % below the unprocessed input's.

    On these synthetic signals, full band up to 24 kHz, the learned envelope reaches about
    35 % lower and the tilt extrapolation about 41 % lower: both expect little above 20 kHz,
    as in real recordings (where the learned one is the better: tools/dsp_prior/README.md).
    """
    engine, sinc = DSPEngine(DSPConfig(envelope=envelope)), SincEngine()
    rows = []
    for i, ref in enumerate(_test_signals()):
        for cutoff in CUTOFFS:
            family = ("butter", "cheby1", "ellip")[i % 3]
            degraded, _ = apply(Degradation("lowpass", cutoff, family, 8), ref)
            cut = torch.tensor([cutoff])
            base = float(lsd(sinc(degraded[None], cut)[0], ref))
            ours = float(lsd(engine(degraded[None], cut)[0], ref))
            rows.append((base, ours))
            log.info("signal %d, %5.0f Hz: sinc %.3f, dsp %.3f", i, cutoff, base, ours)
    base, ours = np.mean(rows, axis=0)
    log.info("mean LSD: sinc %.3f, dsp %.3f (ratio %.2f)", base, ours, ours / base)
    assert ours <= 0.7 * base
    # and never worse on any single case
    assert all(o < b for b, o in rows)


@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_low_band_is_unchanged(cutoff: float) -> None:
    ref = _harmonic_tones(2.0, -6.0, seed=3)
    degraded, _ = apply(Degradation("lowpass", cutoff, "butter", 8), ref)
    out = DSPEngine()(degraded[None], torch.tensor([cutoff]))[0]
    assert out.shape == degraded.shape and out.dtype == torch.float32
    diff = torch.fft.rfft((out - degraded).double())
    freqs = torch.fft.rfftfreq(out.shape[-1], 1 / SR)
    # Below the cutoff only float32 rounding of the sum remains: the low-passed difference is
    # at the level of one float32 ulp of the signal.
    low_passed = torch.fft.irfft(diff * (freqs < cutoff), n=out.shape[-1])
    assert float(low_passed.abs().max()) < 1e-6
    # Above it the engine did add a band, and it brought the high band closer to the truth
    # (by 0.9 to 2 LSD units here, i.e. 9 to 20 dB of log-spectral error).
    assert float(lsd_hf(out, ref, cutoff)) < float(lsd_hf(degraded, ref, cutoff)) - 0.5


def test_deterministic_and_independent_of_batching() -> None:
    a = _chirps(1.5, seed=4)
    b = _harmonic_tones(1.5, -8.0, seed=5)
    a_lp, _ = apply(Degradation("lowpass", 6000.0, "ellip", 8), a)
    b_lp, _ = apply(Degradation("lowpass", 10_000.0, "butter", 6), b)
    engine = DSPEngine()
    batch = engine(torch.stack([a_lp, b_lp]), torch.tensor([6000.0, 10_000.0]))
    again = DSPEngine()(torch.stack([a_lp, b_lp]), torch.tensor([6000.0, 10_000.0]))
    alone = engine(b_lp[None], torch.tensor([10_000.0]))
    assert torch.equal(batch, again)
    assert torch.equal(batch[1], alone[0])


def test_passes_through_what_it_cannot_extend() -> None:
    x = torch.randn(3, 1000) * 0.1  # shorter than one STFT frame
    assert torch.equal(DSPEngine()(x, torch.full((3,), 4000.0)), x)
    y = torch.randn(1, SR) * 0.1
    assert torch.equal(DSPEngine()(y, torch.tensor([24_000.0])), y)  # already full band
    silent = torch.zeros(1, SR)
    assert torch.equal(DSPEngine()(silent, torch.tensor([4000.0])), silent)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="multiple"):
        DSPConfig(n_fft=2048, hop_length=500)
    with pytest.raises(ValueError, match="fine_structure"):
        DSPConfig(fine_structure=1.5)
    with pytest.raises(ValueError, match="envelope"):
        DSPConfig(envelope="guess")
    with pytest.raises(ValueError, match="learned envelope needs"):
        DSPConfig(n_fft=1024, hop_length=256)
    DSPConfig(envelope="tilt", n_fft=1024, hop_length=256)  # the tilt works at any size


# Long-term third-octave levels (dB re the 1 kHz band) of a real full-band recording: the
# music track Intro2.ogg of the Debian package colobot-common-sounds (development corpus of the
# envelope prior, own band limit 21.2 kHz), measured with Welch (4096-point Hann) on 6 s.
_MEASURED_HZ = 1000.0 * 2 ** (np.arange(14) / 3)  # 1 to 20.2 kHz
_MEASURED_DB = (0.0, -1.4, -1.9, 3.2, -13.8, -18.7, -22.5, -24.4, -27.0, -30.4, -33.0,
                -33.8, -32.2, -37.1)


def _measured_music(seconds: float, seed: int) -> torch.Tensor:
    """``[1, T]`` noise with the measured long-term spectrum and music-like level changes."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    gain_db = np.interp(np.log2(freqs), np.log2(_MEASURED_HZ), _MEASURED_DB)
    x = np.fft.irfft(spec * 10 ** (gain_db / 20), n=n)
    steps = np.repeat(10 ** (rng.uniform(-12.0, 0.0, n // 9600 + 1) / 20), 9600)[:n]
    x *= np.convolve(steps, np.ones(960) / 960, "same")  # 0.2 s steps of up to 12 dB
    return torch.from_numpy(0.7 * x / np.abs(x).max()).float()[None]


def _band_db(x: torch.Tensor, lo_hz: float, hi_hz: float) -> float:
    """Mean over frames and bins in [lo_hz, hi_hz) of 10 log10(P + 1e-8), P the LSD protocol's
    STFT power: the level the log-spectral distance compares (dB)."""
    from audiosr.eval.metrics import power_spectrogram

    power = power_spectrogram(x)[0]
    freqs = torch.arange(power.shape[1]) * SR / 2048
    return float(10 * torch.log10(power[:, (freqs >= lo_hz) & (freqs < hi_hz)] + 1e-8).mean())


@pytest.mark.parametrize(
    ("kind", "cutoff", "tolerance_db"),
    [("cliff", 16_700.0, 10.0), ("cliff", 17_200.0, 10.0), ("cliff", 19_000.0, 10.0),
     ("resample", 16_000.0, 18.0)],
)
def test_codec_cut_gets_a_band_near_the_real_level(
    kind: str, cutoff: float, tolerance_db: float
) -> None:
    """Issue 9: above an MP3 (16.7 kHz), AAC (17.2 kHz), lame 192 kbps (19 kHz) cliff or
    32 kHz resampling (16 kHz) the new band must lie near the real recording's level, not
    ~45 dB below it. The previous table (fitted up to 16 kHz on mostly band-limited sources)
    put it 33, 35, 41 and 28 dB low here (this one: 8, 5, 5 and 16 dB); the prior cannot know
    one file's exact level (its band means miss by ~12 dB RMS on packages held out), hence
    the tolerances."""
    ref = _measured_music(4.0, seed=7)
    if kind == "resample":
        cut, _ = apply(Degradation("resample", rate=int(2 * cutoff)), ref[0])
        cut = cut[None]
    else:
        spec = torch.fft.rfft(ref.double())
        spec[..., torch.fft.rfftfreq(ref.shape[-1], 1 / SR) > cutoff] = 0  # the codec's cliff
        cut = torch.fft.irfft(spec, n=ref.shape[-1]).float()
    out = DSPEngine()(cut, torch.tensor([cutoff]))
    real, ours = _band_db(ref, cutoff + 300, 20_000), _band_db(out, cutoff + 300, 20_000)
    log.info("%s %.0f Hz: real %.1f dB, generated %.1f dB", kind, cutoff, real, ours)
    assert abs(ours - real) < tolerance_db
    # and the known band is untouched
    low = torch.fft.rfft((out - cut).double())
    low[..., torch.fft.rfftfreq(out.shape[-1], 1 / SR) >= cutoff] = 0
    assert float(torch.fft.irfft(low, n=out.shape[-1]).abs().max()) < 1e-6
