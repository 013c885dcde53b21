"""Low-band replacement in the mel (spec §9.2) and waveform (spec §9.4) domains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiosr.dsp.merge import mel_cutoff_bins, replace_low_band, replace_low_mel_bins
from audiosr.dsp.stft import librosa_hann_window, librosa_istft, librosa_stft

WAVE_ATOL = 1e-4


def _family(golden, run: str) -> str:
    return golden.meta[run]["filter_type"]


def test_golden_mel_replacement_every_run(golden):
    runs = [r for r in golden.runs() if f"{r}_mel_replaced" in golden]
    assert runs
    for run in runs:
        decoded = golden.t(f"{run}_mel_decoded")
        before = decoded.clone()
        lowpass_mel = golden.t(f"lp_{_family(golden, run)}_mel")[None]
        k = mel_cutoff_bins(lowpass_mel)
        assert k.tolist() == [golden.scalar(f"{run}_mel_cutoff_bin")], run
        replaced = replace_low_mel_bins(decoded, lowpass_mel)
        torch.testing.assert_close(replaced, golden.t(f"{run}_mel_replaced"), atol=1e-6, rtol=0)
        assert torch.equal(decoded, before)  # a new tensor, input untouched


def test_golden_post_processing(golden):
    runs = [r for r in golden.runs() if f"{r}_post_wave" in golden]
    assert runs
    for run in runs:
        vocoded = golden.t(f"{run}_vocoder_wave")[:, 0]
        lowpass = golden.t(f"lp_{_family(golden, run)}_wave")
        out, info = replace_low_band(vocoded, lowpass, return_info=True)
        assert info.cutoff_index.tolist() == [golden.scalar(f"{run}_post_cutoff_index")]
        raw = np.float32(golden.scalar(f"{run}_post_energy_ratio_raw"))
        assert info.ratio_raw.item() == pytest.approx(raw, rel=1e-6)
        used = np.float32(golden.scalar(f"{run}_post_energy_ratio_clamped"))
        assert info.ratio.item() == pytest.approx(used, rel=1e-6)
        ref = golden.t(f"{run}_post_wave")[:, 0]
        assert out.shape == ref.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, ref, atol=WAVE_ATOL, rtol=0, msg=run)


def test_golden_post_processing_scaled_case(golden):
    # README: post2_* is the post-processing of float32(runA_vocoder_wave * post2_scale) with
    # runA's low-passed input; it exercises the other branch of the 0.8..1.2 clamp.
    run = "runA"
    scale = torch.tensor(golden.scalar("post2_scale"), dtype=torch.float32)
    vocoded = golden.t(f"{run}_vocoder_wave")[:, 0] * scale
    lowpass = golden.t(f"lp_{_family(golden, run)}_wave")
    out, info = replace_low_band(vocoded, lowpass, return_info=True)
    raw = np.float32(golden.scalar("post2_energy_ratio_raw"))
    assert info.ratio_raw.item() == pytest.approx(raw, rel=1e-6)
    expected_used = min(max(float(raw), 0.8), 1.2)
    assert info.ratio.item() == pytest.approx(expected_used, rel=1e-6)
    torch.testing.assert_close(out, golden.t("post2_wave")[:, 0], atol=WAVE_ATOL, rtol=0)


def test_librosa_compatible_stft_pair():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(20_000)).astype(np.float32)
    window = librosa_hann_window(2048)
    spec = librosa_stft(torch.from_numpy(x)[None], window, 512)[0]
    ref = librosa.stft(x, n_fft=2048, hop_length=512, center=True, pad_mode="constant")
    assert spec.dtype == torch.complex64 and spec.shape == ref.shape
    torch.testing.assert_close(spec, torch.from_numpy(ref), atol=1e-5, rtol=0)
    for length in (20_000, 19_990, 20_500):
        y = librosa_istft(spec[None], window, 512, length)[0]
        y_ref = librosa.istft(ref, hop_length=512, length=length)
        assert y.shape == (length,)
        torch.testing.assert_close(y, torch.from_numpy(y_ref), atol=1e-6, rtol=0)
    torch.testing.assert_close(y[:20_000], torch.from_numpy(x), atol=1e-5, rtol=0)


def test_replace_low_band_keeps_the_input_band():
    torch.manual_seed(0)
    n = 48_000
    t = torch.arange(n + 16, dtype=torch.float64) / 48_000
    low_tone = 0.3 * torch.sin(2 * np.pi * 700 * t)
    generated = (0.5 * low_tone + 0.2 * torch.sin(2 * np.pi * 15_000 * t)).float()[None]
    reference = low_tone[:n].float()[None]
    out, info = replace_low_band(generated, reference, return_info=True)
    k = int(info.cutoff_index)
    assert 0 < k < 1025
    # Below the cutoff the output is the reference scaled by 1/ratio; the 15 kHz tone stays.
    window = librosa_hann_window(2048)
    spec = librosa_stft(out, window, 512)
    ref_spec = librosa_stft(reference, window, 512)
    mid = slice(4, -4)
    torch.testing.assert_close(
        spec[0, :k, mid], ref_spec[0, :k, mid] / info.ratio.item(), atol=1e-2, rtol=5e-3
    )
    bin_15k = round(15_000 / 48_000 * 2048)
    assert spec[0, bin_15k, mid].abs().mean() > 50


def test_post_processing_is_per_item_in_a_batch(golden):
    run = "runA"
    vocoded = golden.t(f"{run}_vocoder_wave")[:, 0]
    lowpass = golden.t(f"lp_{_family(golden, run)}_wave")
    scale = torch.tensor(golden.scalar("post2_scale"), dtype=torch.float32)
    batch_out, info = replace_low_band(
        torch.cat([vocoded, vocoded * scale]), torch.cat([lowpass, lowpass]), return_info=True
    )
    for i, v in enumerate((vocoded, vocoded * scale)):
        single, single_info = replace_low_band(v, lowpass, return_info=True)
        assert torch.equal(batch_out[i : i + 1], single)
        assert torch.equal(info.ratio_raw[i : i + 1], single_info.ratio_raw)
