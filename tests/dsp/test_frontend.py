"""Target length and normalisation (spec §2.2, §2.4), and NumPy 1.23 summation order."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from audiosr.dsp.cutoff import (
    NUMPY_BUFFER_SIZE,
    numpy_pairwise_sum,
    numpy_sum,
    sequential_cumsum,
    sequential_sum,
)
from audiosr.dsp.frontend import (
    normalize_and_pad,
    pad_duration_s,
    target_frames,
    target_samples,
)
from audiosr.dsp.resample import resample_sinc


def _reference_pairwise(a: np.ndarray) -> np.float32:
    """numpy's C pairwise_sum, written out with fp32 scalars (slow, for tests)."""
    f = np.float32
    n = len(a)
    if n < 8:
        res = f(0)
        for v in a:
            res = f(res + v)
        return res
    if n <= 128:
        r = [f(v) for v in a[:8]]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] = f(r[j] + a[i + j])
            i += 8
        res = f(f(f(r[0] + r[1]) + f(r[2] + r[3])) + f(f(r[4] + r[5]) + f(r[6] + r[7])))
        for v in a[i:]:
            res = f(res + v)
        return res
    half = n // 2
    half -= half % 8
    return f(_reference_pairwise(a[:half]) + _reference_pairwise(a[half:]))


def _reference_numpy123_sum(a: np.ndarray) -> np.float32:
    total = np.float32(0)
    for start in range(0, len(a), NUMPY_BUFFER_SIZE):
        total = np.float32(total + _reference_pairwise(a[start : start + NUMPY_BUFFER_SIZE]))
    return total


def golden_rate(golden) -> int:
    """Sampling rate of the golden input file (the original's duration uses the file's rate)."""
    return int(soundfile.info(str(golden.input_path)).samplerate)


def test_golden_normalisation(golden):
    rate = golden_rate(golden)
    x = golden.t("fe_input_wave")
    duration = x.shape[-1] / rate
    wave = resample_sinc(x[None], rate, 48_000)  # a no-op for a 48 kHz input
    ref = golden.t("fe_wave_norm_padded")
    out = normalize_and_pad(wave, target_samples(duration))
    assert out.shape == ref.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_golden_target_frames_and_duration(golden):
    duration = golden["fe_input_wave"].shape[-1] / golden_rate(golden)
    assert target_frames(duration) == golden.scalar("fe_target_frame")
    assert pad_duration_s(duration) == pytest.approx(golden.scalar("fe_pad_duration"), abs=1e-12)
    assert target_samples(duration) == golden["fe_wave_norm_padded"].shape[-1]


@pytest.mark.parametrize("n_samples", [811, 1186, 1561, 53_758])
def test_lengths_that_give_511_frames_upstream_get_512(n_samples):
    duration = n_samples / 48_000
    # The original's arithmetic, to show these are the buggy lengths.
    pad = duration + (5.12 - duration % 5.12)
    assert int(pad * 100) == 511
    assert target_frames(duration) == 512
    assert target_samples(duration) == 245_760


def test_block_boundaries():
    assert target_frames(5.12) == 512
    assert target_frames(5.12 + 1 / 48_000) == 1024
    assert target_frames(10.24) == 1024
    assert target_frames(3 * 5.12) == 1536
    assert target_frames(1 / 48_000) == 512
    assert pad_duration_s(7.0) == pytest.approx(10.24)


def test_normalize_and_pad_rejects_short_and_long_inputs():
    with pytest.raises(ValueError, match="at least"):
        normalize_and_pad(torch.randn(1, 100), 245_760)
    normalize_and_pad(torch.randn(1, 101), 245_760)
    with pytest.raises(ValueError, match="more than"):
        normalize_and_pad(torch.randn(1, 1000), 999)


def test_normalize_and_pad_levels():
    x = torch.randn(3, 5000) * torch.tensor([[0.1], [1.0], [3.0]]) + 0.2
    out = normalize_and_pad(x, 6000)
    assert out.shape == (3, 6000)
    assert torch.count_nonzero(out[:, 5000:]) == 0
    torch.testing.assert_close(
        out[:, :5000].abs().amax(-1), torch.full((3,), 0.5), atol=1e-6, rtol=0
    )
    assert out[:, :5000].mean(-1).abs().max() < 1e-6


@pytest.mark.parametrize("n", [1, 7, 8, 9, 100, 128, 129, 481, 1000, 8191, 8192, 8193, 20_000])
def test_numpy_sum_order(n):
    rng = np.random.default_rng(n)
    a = (rng.standard_normal((2, n)) * 10.0 ** rng.integers(-3, 3, (2, n))).astype(np.float32)
    got = numpy_sum(torch.from_numpy(a)).numpy()
    ref = np.array([_reference_numpy123_sum(row) for row in a])
    np.testing.assert_array_equal(got, ref)
    if n <= NUMPY_BUFFER_SIZE:
        pw = numpy_pairwise_sum(torch.from_numpy(a)).numpy()
        np.testing.assert_array_equal(pw, ref)
        np.testing.assert_array_equal(pw, np.sum(a, axis=-1))  # same in NumPy 1.x and 2.x


def test_sequential_reductions_match_numpy():
    rng = np.random.default_rng(0)
    mag = np.asfortranarray(np.abs(rng.standard_normal((257, 300))).astype(np.float32))
    got = sequential_sum(torch.from_numpy(np.ascontiguousarray(mag))).numpy()
    np.testing.assert_array_equal(got, np.sum(mag, axis=-1))  # Fortran order: frame by frame
    e = np.abs(rng.standard_normal(1025)).astype(np.float32)
    np.testing.assert_array_equal(sequential_cumsum(torch.from_numpy(e)).numpy(), np.cumsum(e))
