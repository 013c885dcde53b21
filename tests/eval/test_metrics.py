"""Metrics against hand-computed cases and an independent (librosa) implementation."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch

from audiosr.eval.metrics import lsd, lsd_gain_matched, lsd_hf, lsd_lf, si_sdr

SR = 48_000
BIN_HZ = SR / 2048


def _noise(n: int = SR, seed: int = 0, batch: int | None = None) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    shape = (n,) if batch is None else (batch, n)
    return torch.from_numpy(0.1 * rng.standard_normal(shape)).float()


def _scale_band(x: torch.Tensor, lo_hz: float, hi_hz: float, gain: float) -> torch.Tensor:
    """Multiply the whole-signal spectrum of ``x`` between lo_hz and hi_hz by ``gain``."""
    spec = torch.fft.rfft(x.double(), dim=-1)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    band = (freqs >= lo_hz) & (freqs < hi_hz)
    spec[..., band] *= gain
    return torch.fft.irfft(spec, n=x.shape[-1], dim=-1).float()


def _librosa_log_power(x: np.ndarray) -> np.ndarray:
    """Independent log-power spectrogram of the protocol: [frames, 1025]."""
    spec = librosa.stft(
        x.astype(np.float64),
        n_fft=2048,
        hop_length=512,
        window="hann",
        center=True,
        pad_mode="constant",
    )
    return np.log10(np.abs(spec.T) ** 2 + 1e-8)


def test_identical_signals_have_zero_lsd() -> None:
    x = _noise(batch=2)
    assert torch.equal(lsd(x, x), torch.zeros(2))


def test_gain_gives_twice_log10_of_gain() -> None:
    # log10(g^2 P) - log10(P) = 2 log10 g in every bin, so LSD = |2 log10 g| = |20 log10 g| / 10.
    x = _noise()
    for g in (2.0, 0.5, 10.0):
        expected = abs(2 * math.log10(g))
        assert float(lsd(g * x, x)) == pytest.approx(expected, abs=1e-4)
    assert lsd(2.0 * x, x).shape == ()


def test_lsd_matches_independent_librosa_computation() -> None:
    ref = _noise(seed=1)
    est = _scale_band(ref, 5000.0, 9000.0, 0.3) + 0.01 * _noise(seed=2)
    l_ref = _librosa_log_power(ref.numpy())
    l_est = _librosa_log_power(est.numpy())
    expected = np.mean(np.sqrt(np.mean((l_ref - l_est) ** 2, axis=1)))
    assert float(lsd(est, ref)) == pytest.approx(expected, rel=1e-4)


def test_attenuated_band_gives_closed_form_value() -> None:
    # A band of n bins attenuated by g: every frame has (2 log10 g)^2 in n of 1025 bins, so
    # LSD = |2 log10 g| * sqrt(n / 1025); only the few bins at the band edges deviate.
    ref = _noise()
    lo, hi, g = 6000.0, 12_000.0, 0.1
    est = _scale_band(ref, lo, hi, g)
    n_band = (hi - lo) / BIN_HZ
    expected = abs(2 * math.log10(g)) * math.sqrt(n_band / 1025)
    assert float(lsd(est, ref)) == pytest.approx(expected, rel=0.02)


def _multisine(present: np.ndarray, periods: int, seed: int = 0) -> torch.Tensor:
    """Sum of sinusoids at the STFT bin centres (k * 23.4375 Hz) where ``present`` [1025] is set.

    Phases are random but fixed per bin (same seed, same phases), and the signal repeats every
    2048 samples, so a periodic Hann frame spreads each sinusoid over its own bin and its two
    neighbours only: a band without sinusoids is exactly empty.
    """
    rng = np.random.default_rng(seed)
    spectrum = np.exp(2j * np.pi * rng.uniform(size=1025)) * present
    spectrum[[0, -1]] = 0.0
    period = np.fft.irfft(spectrum, n=2048)
    return torch.from_numpy(np.tile(10 * period, periods)).float()


def test_missing_band_costs_the_distance_to_the_floor() -> None:
    # Missing band: the estimate sits at the 1e-8 floor there, so each band bin costs
    # (log10(P_ref + 1e-8) - log10(1e-8))^2 and every other bin costs nothing. P_ref comes
    # from librosa; only the bins next to the band edges and the zero-padded edge frames differ.
    bins = np.arange(1025)
    band = (bins >= 341) & (bins <= 683)  # 8 kHz to 16 kHz
    ref = _multisine(np.ones(1025, dtype=bool), periods=200)
    est = _multisine(~band, periods=200)
    l_ref = _librosa_log_power(ref.numpy())
    l_est = np.where(band[None, :], -8.0, l_ref)
    expected = np.mean(np.sqrt(np.mean((l_ref - l_est) ** 2, axis=1)))
    assert float(lsd(est, ref)) == pytest.approx(expected, rel=0.01)
    assert expected > 3.0  # the case is far from trivial


def test_hf_and_lf_split_at_the_cutoff() -> None:
    ref = _noise(batch=2)
    cutoffs = torch.tensor([4000.0, 12_000.0])
    g = 0.01
    est = torch.stack([_scale_band(r, float(c), SR, g) for r, c in zip(ref, cutoffs)])
    hf = lsd_hf(est, ref, cutoffs)
    lf = lsd_lf(est, ref, cutoffs)
    assert hf.shape == lf.shape == (2,)
    # Above the cutoff every bin is off by |2 log10 g| = 4 (a few edge bins by less).
    assert torch.allclose(hf, torch.full((2,), 4.0), rtol=0.02)
    # Below the cutoff only the bins next to it see leakage through the window.
    assert float(lf.max()) < 0.1
    # A scalar cutoff applies to every item.
    assert torch.allclose(lsd_hf(est[:1], ref[:1], 4000.0), hf[:1])


def test_gain_matching_undoes_a_gain() -> None:
    ref = _noise()
    assert float(lsd_gain_matched(0.25 * ref, ref)) < 1e-4
    # With a missing high band the low 10 % of bins still fix the gain: same value as without
    # the gain error.
    degraded = _scale_band(ref, 8000.0, SR, 0.1)
    assert float(lsd_gain_matched(0.3 * degraded, ref)) == pytest.approx(
        float(lsd(degraded, ref)), rel=1e-3
    )
    assert float(lsd(0.3 * degraded, ref)) > float(lsd(degraded, ref)) + 0.5


def test_si_sdr_of_signal_plus_orthogonal_noise() -> None:
    x = _noise(seed=3).double()
    x = x - x.mean()
    n = _noise(seed=4).double()
    n = n - n.mean()
    n = n - (n @ x) / (x @ x) * x  # orthogonal to x, so the projection is exactly x
    for snr_db in (0.0, 10.0, 25.0):
        noise = n * math.sqrt(float(x @ x) / float(n @ n) / 10 ** (snr_db / 10))
        assert float(si_sdr((x + noise).float(), x.float())) == pytest.approx(snr_db, abs=1e-3)
        # Scale invariance: a gain on the estimate does not change the value.
        assert float(si_sdr((3 * (x + noise)).float(), x.float())) == pytest.approx(
            snr_db, abs=1e-3
        )
    assert float(si_sdr(x.float(), x.float())) > 60


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same shape"):
        lsd(_noise(1000), _noise(1001))
