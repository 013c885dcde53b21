"""Windowed-sinc resampling (spec §2.3): golden cases and accuracy on sines."""

from __future__ import annotations

import math
import re

import pytest
import torch

from audiosr.dsp.resample import resample_sinc, sinc_resample_kernel


def _rate(token: str) -> int:
    """'16k' -> 16000, '44k' -> 44100 (the CD rate), '48k' -> 48000, '22k' -> 22050."""
    khz = int(token[:-1])
    return {44: 44_100, 22: 22_050, 11: 11_025}.get(khz, khz * 1000)


def test_golden_resampling(golden):
    cases = [k for k in golden.keys() if re.fullmatch(r"rs_out_\d+k_to_\d+k", k)]
    assert cases, "no rs_out_* cases in the golden set"
    for key in cases:
        src, dst = re.fullmatch(r"rs_out_(\d+k)_to_(\d+k)", key).groups()
        x = golden.t(f"rs_in_{src}")
        y = resample_sinc(x, _rate(src), _rate(dst))
        ref = golden.t(key)
        assert y.shape == ref.shape, key
        torch.testing.assert_close(y, ref, atol=1e-6, rtol=0, msg=key)


def test_equal_rates_is_identity():
    x = torch.randn(2, 1000)
    assert resample_sinc(x, 48_000, 48_000) is x


def test_kernel_follows_waveform_dtype():
    k32, width = sinc_resample_kernel(16_000, 48_000, dtype=torch.float32)
    k64, _ = sinc_resample_kernel(16_000, 48_000, dtype=torch.float64)
    assert k32.dtype == torch.float32 and k64.dtype == torch.float64
    assert k32.shape == (3, 1, 2 * width + 1)
    torch.testing.assert_close(k32.double(), k64, atol=1e-6, rtol=0)
    y = resample_sinc(torch.randn(3, 2, 500, dtype=torch.float64), 16_000, 48_000)
    assert y.dtype == torch.float64 and y.shape == (3, 2, 1500)


@pytest.mark.parametrize("orig_sr", [8_000, 22_050, 44_100, 96_000])
def test_sine_is_resampled_accurately(orig_sr):
    new_sr = 48_000
    freq = min(1_000.0, orig_sr / 8)  # well inside both pass bands
    n = orig_sr // 2
    t = torch.arange(n, dtype=torch.float64) / orig_sr
    x = torch.sin(2 * math.pi * freq * t).float()
    y = resample_sinc(x, orig_sr, new_sr)
    assert y.shape[-1] == math.ceil(new_sr * n / orig_sr)
    ref = torch.sin(2 * math.pi * freq * torch.arange(y.shape[-1], dtype=torch.float64) / new_sr)
    # Away from the zero-padded edges the Hann-windowed sinc (6 zero crossings) is accurate to
    # about 1e-3; a one-sample misalignment would give ~0.1.
    err = (y.double() - ref)[500:-500].abs().max().item()
    assert err < 2e-3


def test_downsampling_removes_content_above_new_nyquist():
    sr = 96_000
    t = torch.arange(sr // 2, dtype=torch.float64) / sr
    x = torch.sin(2 * math.pi * 30_000.0 * t).float()  # above 24 kHz: must be filtered out
    y = resample_sinc(x, sr, 48_000)
    assert y[500:-500].abs().max().item() < 1e-2
