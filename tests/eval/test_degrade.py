"""Degradations: requested cutoffs are where asked, codecs band-limit and stay aligned."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.signal as ss
import torch

from audiosr.eval.degrade import (
    FAMILIES,
    Degradation,
    apply,
    default_degradations,
    design_lowpass,
    measure_cutoff_hz,
)

SR = 48_000


def _pink(seconds: float = 3.0, seed: int = 0, channels: int = 1) -> torch.Tensor:
    """Noise with a -3 dB/octave tilt, [C, T] float32: more like real audio than white noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=-1)
    spec /= np.sqrt(np.maximum(np.arange(spec.shape[-1]), 20.0))
    x = np.fft.irfft(spec, n=n, axis=-1)
    return torch.from_numpy(0.3 * x / np.abs(x).max()).float()


def _minus_6db_point(d: Degradation) -> float:
    """Frequency where the zero-phase filter's gain falls to -6 dB (from the design)."""
    assert d.cutoff_hz is not None
    sos = design_lowpass(d.family, d.order, d.cutoff_hz, SR)
    freqs, h = ss.sosfreqz(sos, worN=np.linspace(0, SR / 2, 48_001), fs=SR)
    gain_db = 20 * np.log10(np.abs(h) ** 2 + 1e-30)  # applied forward and backward
    return float(freqs[np.nonzero(gain_db > -6)[0][-1]])


@pytest.mark.parametrize("cutoff_hz", [2000.0, 4000.0, 8000.0, 12_000.0, 16_000.0])
def test_butterworth_cutoff_is_measured_where_asked(cutoff_hz: float) -> None:
    x = _pink()
    y, reported = apply(Degradation("lowpass", cutoff_hz, "butter", 8), x)
    assert reported == cutoff_hz
    assert measure_cutoff_hz(y) == pytest.approx(cutoff_hz, rel=0.015)


@pytest.mark.parametrize("family", ["cheby1", "ellip"])
@pytest.mark.parametrize("order", [6, 10])
def test_other_families_measure_at_their_minus_6db_point(family: str, order: int) -> None:
    # Chebyshev and elliptic designs put Wn at the pass-band edge, so their -6 dB point
    # (what the measurement reports) lies a little above the nominal cutoff.
    d = Degradation("lowpass", 6000.0, family, order)
    y, _ = apply(d, _pink(seed=1))
    assert measure_cutoff_hz(y) == pytest.approx(_minus_6db_point(d), rel=0.015)


def test_full_band_audio_measures_nyquist() -> None:
    assert measure_cutoff_hz(_pink()) == SR / 2


@pytest.mark.parametrize("rate", [8000, 16_000, 32_000])
def test_resampling_limits_the_band_at_half_the_rate(rate: int) -> None:
    y, reported = apply(Degradation("resample", rate=rate), _pink())
    assert reported == rate / 2
    assert measure_cutoff_hz(y) == pytest.approx(rate / 2, rel=0.05)


def test_low_bitrate_mp3_has_a_low_codec_cutoff() -> None:
    x = _pink(seconds=2.0)
    y32, cut32 = apply(Degradation("mp3", bitrate_kbps=32), x)
    _, cut128 = apply(Degradation("mp3", bitrate_kbps=128), x)
    assert y32.shape == x.shape and y32.dtype == x.dtype
    assert cut32 < 12_000  # LAME low-passes 32 kbps at 48 kHz near 8 kHz
    assert cut128 > cut32 + 4000
    # The reported cutoff is the measurement of the returned signal.
    assert cut32 == measure_cutoff_hz(y32)


def test_opus_bandwidth_follows_its_bitrate() -> None:
    x = _pink(seconds=2.0)
    _, narrow = apply(Degradation("opus", bitrate_kbps=8), x)
    _, wide = apply(Degradation("opus", bitrate_kbps=24), x)
    assert narrow < 6000
    assert wide > 16_000


def _click_train(channels: int = 2) -> torch.Tensor:
    x = torch.zeros(channels, 2 * SR)
    x[:, 1000::4801] = 0.5
    x[1:, 3000::9001] = -0.4  # a different pattern on the second channel
    return x


def _lag_of_best_match(y: np.ndarray, x: np.ndarray, max_lag: int = 300) -> int:
    """Direct (non-FFT) cross-correlation peak over +-max_lag samples."""
    n = x.shape[1]
    scores = []
    for k in range(-max_lag, max_lag + 1):
        # sum_t y[t + k] x[t] over the overlap
        y_part = y[:, max(0, k) : n + min(0, k)]
        x_part = x[:, max(0, -k) : n - max(0, k)]
        scores.append(float(np.sum(y_part * x_part)))
    return int(np.argmax(scores)) - max_lag


@pytest.mark.parametrize(
    "d",
    [
        Degradation("mp3", bitrate_kbps=32),  # this one's decoder output is delayed by ~1100
        Degradation("mp3", bitrate_kbps=128),
        Degradation("opus", bitrate_kbps=24),
        Degradation("vorbis", quality=0.3),
    ],
    ids=lambda d: d.name,
)
def test_codec_round_trip_is_sample_aligned(d: Degradation) -> None:
    x = _click_train()
    y, _ = apply(d, x)
    assert y.shape == x.shape
    assert _lag_of_best_match(y.numpy(), x.numpy()) == 0
    # The clicks themselves survive at their positions.
    ref_clicks = np.nonzero(x[0].numpy())[0]
    found = [int(np.argmax(np.abs(y[0, c - 200 : c + 200].numpy()))) + c - 200 for c in ref_clicks]
    assert np.median(np.abs(np.array(found) - ref_clicks)) == 0  # Opus jitters by +-1 per click


def test_outputs_are_deterministic() -> None:
    x = _pink(seconds=1.0, channels=2)
    for d in default_degradations(seed=3):
        y1, c1 = apply(d, x)
        y2, c2 = apply(d, x)
        assert torch.equal(y1, y2) and c1 == c2, d.name
        assert y1.shape == x.shape


def test_default_degradations_are_drawn_from_the_seed() -> None:
    a = default_degradations(seed=7)
    assert a == default_degradations(seed=7)
    draws = {tuple((d.family, d.order) for d in default_degradations(seed=s)[:3]) for s in range(8)}
    assert len(draws) > 1  # the seed changes the families/orders
    lowpasses = [d for d in a if d.kind == "lowpass"]
    assert [d.cutoff_hz for d in lowpasses] == [4000.0, 8000.0, 12_000.0]
    assert all(d.family in FAMILIES and 2 <= d.order <= 10 for d in lowpasses)
    assert {d.kind for d in a} == {"lowpass", "resample", "mp3", "opus", "vorbis"}
    assert len({d.name for d in a}) == len(a)  # names are unique table keys
    assert not any(d.kind != "lowpass" for d in default_degradations(seed=7, codecs=False)[:3])


def test_names_and_validation() -> None:
    assert Degradation("lowpass", 4000.0, "cheby1", 8).name == "lowpass-cheby1-o8-4000"
    assert Degradation("resample", rate=16_000).name == "resample-16000"
    assert Degradation("mp3", bitrate_kbps=64).name == "mp3-64k"
    assert Degradation("vorbis", quality=0.3).name == "vorbis-q0.3"
    with pytest.raises(ValueError, match="family"):
        Degradation("lowpass", 4000.0, "gauss", 8)
    with pytest.raises(ValueError, match="order"):
        Degradation("lowpass", 4000.0, "butter", 12)
    with pytest.raises(ValueError, match="kind"):
        Degradation("aac")
    with pytest.raises(ValueError, match="bitrate"):
        Degradation("mp3")
    with pytest.raises(dataclasses.FrozenInstanceError):
        Degradation("resample", rate=8000).rate = 16_000  # type: ignore[misc]


def test_one_dimensional_input_keeps_its_shape() -> None:
    x = _pink()[0]
    y, _ = apply(Degradation("lowpass", 4000.0, "ellip", 8), x)
    assert y.shape == x.shape and y.dtype == x.dtype
