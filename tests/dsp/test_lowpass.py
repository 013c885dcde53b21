"""Low-pass simulation (spec §4) for every filter family in the golden set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiosr.dsp.lowpass import (
    FILTER_FAMILIES,
    design_lowpass,
    draw_filter_family,
    lowpass_stages,
    resample_down_rate,
    simulate_lowpass,
)
from audiosr.dsp.mel import MelFrontEnd, fit_frames

WAVE_ATOL = 1e-4
STAGE_ATOL = 1e-9  # fp64 intermediates; scipy versions differ by ~1e-15


def _families(golden) -> list[str]:
    fams = sorted(
        k[len("lp_") : -len("_wave")]
        for k in golden.keys()
        if k.startswith("lp_") and k.endswith("_wave")
    )
    assert fams, "no lp_<family>_wave keys in the golden set"
    return fams


def test_golden_filters_every_family(golden, golden_config):
    wave = golden["fe_wave_norm_padded"][0]
    cutoff_hz = golden.scalar("fe_cutoff_hz")
    start = golden.scalar("lp_segment_start")
    frames = golden.scalar("fe_target_frame")
    front_end = MelFrontEnd(golden_config.mel)
    assert resample_down_rate(cutoff_hz) == golden.scalar("lp_fs_down")
    for family in _families(golden):
        assert family in FILTER_FAMILIES
        stages = lowpass_stages(wave, cutoff_hz, family)
        np.testing.assert_allclose(stages.sos, golden[f"lp_{family}_sos"], atol=1e-12, rtol=0)
        for n in (1, 2):
            seg = golden[f"lp_{family}_stage{n}_seg"]
            got = getattr(stages, f"stage{n}")[start : start + len(seg)]
            np.testing.assert_allclose(got, seg, atol=STAGE_ATOL, rtol=0, err_msg=family)

        low = simulate_lowpass(torch.from_numpy(wave)[None], cutoff_hz, family)
        assert low.dtype == torch.float32
        ref = golden.t(f"lp_{family}_wave")
        torch.testing.assert_close(low, ref, atol=WAVE_ATOL, rtol=0, msg=family)

        log_mel, _ = front_end(low)
        log_mel = fit_frames(log_mel, frames)[0]
        torch.testing.assert_close(log_mel, golden.t(f"lp_{family}_mel"), atol=1e-4, rtol=0)


def test_golden_filter_family_draws(golden):
    runs = golden.runs()
    assert runs
    for run in runs:
        meta = golden.meta[run]
        assert draw_filter_family(meta["seed"]) == meta["filter_type"], run
        if f"{run}_filter_type" in golden:
            assert draw_filter_family(meta["seed"]) == str(golden[f"{run}_filter_type"])


def test_filter_family_draw_matches_numpy_global_rng():
    for seed in (0, 1, 2, 3, 42, 1234):
        np.random.seed(seed)
        expected = str(np.random.choice(list(FILTER_FAMILIES)))
        assert draw_filter_family(seed) == expected
    state = np.random.get_state()[1].copy()
    draw_filter_family(7)
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG untouched


def test_near_silent_input_is_returned_unfiltered(caplog):
    wave = torch.randn(2, 4800) * 1e-4
    out = simulate_lowpass(wave, 500.0, "ellip")
    assert torch.equal(out, wave)
    assert "skipped" in caplog.text


def test_lowpass_attenuates_above_cutoff():
    sr = 48_000
    t = torch.arange(sr, dtype=torch.float64) / sr
    # 500 Hz is in every family's pass band at a 4 kHz cutoff (the phase-normalised Bessel
    # filter, applied four times, already loses ~25% at 1 kHz).
    low, high = torch.sin(2 * np.pi * 500 * t), torch.sin(2 * np.pi * 12_000 * t)
    for family in FILTER_FAMILIES:
        out = simulate_lowpass((0.4 * (low + high)).float()[None], 4_000.0, family)[0].double()
        mid = slice(4_800, -4_800)
        # Project on the two tones: the 500 Hz one passes, the 12 kHz one is removed.
        gain_low = 2 * (out[mid] * low[mid]).mean() / 0.4
        gain_high = 2 * (out[mid] * high[mid]).mean().abs() / 0.4
        assert abs(gain_low - 1) < 0.1, family
        assert gain_high < 1e-3, family


def test_design_rejects_bad_arguments():
    with pytest.raises(ValueError, match="family"):
        design_lowpass("chebyshev", 8, 4000.0)
    with pytest.raises(ValueError, match="Nyquist"):
        design_lowpass("butter", 8, 24_000.0)
    assert design_lowpass("bessel", 8, 4000.0).shape == (4, 6)
