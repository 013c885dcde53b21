"""Mel filterbank and log-mel front end (spec §2.5-§2.6) against the golden data and librosa."""

from __future__ import annotations

import pytest
import torch

from audiosr.config import MelConfig
from audiosr.dsp.mel import MelFrontEnd, fit_frames, mel_filterbank

FRONT_END_ATOL = 1e-6


def _mel_config(golden, golden_config) -> MelConfig:
    cfg = golden_config.mel
    assert golden["fe_mel_basis"].shape == (cfg.n_mels, cfg.n_fft // 2 + 1)
    return cfg


def test_golden_mel_basis(golden, golden_config):
    cfg = _mel_config(golden, golden_config)
    basis = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
    assert basis.dtype == torch.float32
    torch.testing.assert_close(basis, golden.t("fe_mel_basis"), atol=1e-7, rtol=0)


@pytest.mark.parametrize(
    "sr, n_fft, n_mels, f_min, f_max",
    [
        (16_000, 512, 64, 0.0, 8_000.0),
        (22_050, 1024, 80, 30.0, 11_025.0),
        (44_100, 2048, 128, 50.0, 16_000.0),
    ],
)
def test_mel_basis_matches_librosa(sr, n_fft, n_mels, f_min, f_max):
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
    basis = mel_filterbank(sr, n_fft, n_mels, f_min, f_max)
    assert basis.shape == ref.shape
    torch.testing.assert_close(basis, torch.from_numpy(ref), atol=1e-7, rtol=0)


def test_golden_log_mel_and_magnitude(golden, golden_config):
    cfg = _mel_config(golden, golden_config)
    front_end = MelFrontEnd(cfg)
    assert not dict(front_end.state_dict())  # buffers are not persistent
    frames = golden.scalar("fe_target_frame")
    log_mel, magnitude = front_end(golden.t("fe_wave_norm_padded"))
    log_mel = fit_frames(log_mel, frames)[0]
    magnitude = fit_frames(magnitude, frames)[0]
    torch.testing.assert_close(log_mel, golden.t("fe_log_mel"), atol=FRONT_END_ATOL, rtol=0)
    torch.testing.assert_close(magnitude, golden.t("fe_stft_mag"), atol=FRONT_END_ATOL, rtol=0)


def test_front_end_frame_count_and_batch():
    cfg = MelConfig()
    front_end = MelFrontEnd(cfg)
    wave = torch.randn(2, 48_000) * 0.1
    log_mel, magnitude = front_end(wave)
    assert log_mel.shape == (2, 100, cfg.n_mels)
    assert magnitude.shape == (2, 100, cfg.n_fft // 2 + 1)
    single, _ = front_end(wave[1:])
    torch.testing.assert_close(log_mel[1:], single, atol=1e-5, rtol=0)
    assert log_mel.min() >= torch.log(torch.tensor(cfg.log_floor))


def test_fit_frames_pads_crops_and_trims_odd_bins():
    spec = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5) + 1
    padded = fit_frames(spec, 5)
    assert padded.shape == (2, 5, 4)
    assert torch.equal(padded[:, :3], spec[..., :4])
    assert torch.count_nonzero(padded[:, 3:]) == 0  # zero rows, not log(1e-5)
    cropped = fit_frames(spec, 2)
    assert torch.equal(cropped, spec[:, :2, :4])
    even = torch.ones(1, 3, 4)
    assert fit_frames(even, 3).shape == (1, 3, 4)
