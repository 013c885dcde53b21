"""Final normalisation (spec §9.5)."""

from __future__ import annotations

import torch

from audiosr.dsp.gain import peak_normalize_final

WAVE_ATOL = 1e-4


def test_golden_final_output(golden):
    runs = [r for r in golden.runs() if f"{r}_post_wave" in golden and f"{r}_output" in golden]
    assert runs
    for run in runs:
        out = peak_normalize_final(golden.t(f"{run}_post_wave"))
        ref = golden.t(f"{run}_output")
        assert out.shape == ref.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, ref, atol=WAVE_ATOL, rtol=0, msg=run)


def test_peak_then_mean_per_item():
    x = torch.randn(3, 1, 5000) * torch.tensor([0.01, 1.0, 7.0])[:, None, None] + 0.3
    y = peak_normalize_final(x)
    assert y.shape == x.shape
    assert y.mean(-1).abs().max() < 1e-6
    # The mean is removed after peak normalisation, so the peak is near, not at, 0.5.
    scaled = 0.5 * x / x.abs().amax(-1, keepdim=True)
    torch.testing.assert_close(y, scaled - scaled.mean(-1, keepdim=True), atol=1e-6, rtol=0)
    torch.testing.assert_close(peak_normalize_final(x[1:2]), y[1:2], atol=0, rtol=0)


def test_silent_item_gives_zeros_not_nan():
    x = torch.zeros(2, 1000)
    x[1] = torch.linspace(-1, 1, 1000)
    y = peak_normalize_final(x)
    assert torch.isfinite(y).all()
    assert torch.count_nonzero(y[0]) == 0
    assert y[1].abs().max() > 0.49
