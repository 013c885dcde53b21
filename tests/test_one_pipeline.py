"""One pipeline: each step once, band limits per channel, what the CLI prints, step progress.

The steps the original does inside its model (low-pass simulation, per-row peak, low mel-bin
and STFT low-band replacement) are counted with spies around the functions that do them, on
the engine ``make_engine`` builds for the pipeline; the golden tests keep the original's
path (where each still runs once) numerically unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import Tensor

from audiosr import cli
from audiosr.api import make_engine
from audiosr.audio_io import write_audio
from audiosr.config import PIPELINE_STEPS, SamplingOptions
from audiosr.engines.base import SincEngine
from audiosr.engines.dsp import DSPEngine
from audiosr.pipeline import SAMPLE_RATE, PipelineOptions, upsample, upsample_file

SR = SAMPLE_RATE


def band_noise(n: int, sr: int, cutoffs_hz: list[float], seed: int = 0) -> np.ndarray:
    """``[C, n]`` white noise, channel c brick-walled at ``cutoffs_hz[c]``, rms 0.05."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal((len(cutoffs_hz), n)), axis=-1)
    freqs = np.fft.rfftfreq(n, 1 / sr)
    for c, cut in enumerate(cutoffs_hz):
        spec[c, freqs > cut] = 0
    x = np.fft.irfft(spec, n=n, axis=-1)
    return (0.05 * x / x.std(axis=-1, keepdims=True)).astype(np.float32)


def band_level_db(x: np.ndarray, sr: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Per-channel power (dB) of ``x [C, n]`` between ``lo_hz`` and ``hi_hz``."""
    spec = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / sr)
    sel = (freqs >= lo_hz) & (freqs < hi_hz)
    return 10 * np.log10(spec[:, sel].sum(axis=-1) + 1e-30)


# Channels 2-3 (1-based) have content to 15.5 kHz, the others stop at 11.4 kHz (issue 9).
FIVE = [11_400.0, 15_500.0, 15_500.0, 11_400.0, 11_400.0]


@pytest.mark.parametrize("engine", [SincEngine(), DSPEngine()], ids=["sinc", "dsp"])
def test_each_channel_keeps_its_own_band(tmp_path: Path, engine) -> None:
    """No channel loses content below its own band edge to another channel's cutoff."""
    x = band_noise(4 * SR, SR, FIVE)
    src = write_audio(tmp_path / "five.wav", x, SR, subtype="FLOAT")
    report = upsample_file(engine, src, tmp_path / "out.wav", subtype="FLOAT")
    assert not report.passthrough
    for cut, used in zip(FIVE, report.cutoffs_hz, strict=True):
        assert abs(used - cut) < 400, report.cutoffs_hz
    assert report.cutoff_hz == min(report.cutoffs_hz)
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    inner = slice(4800, -4800)  # away from the file's abrupt ends
    x_in, y_out = x[:, inner], y.T[:, inner]
    # The band between the two edges, where one file-wide cutoff (11.4 kHz) would have
    # replaced channels 2-3's real content: kept within 0.1 dB.
    kept = band_level_db(y_out, SR, 11_600, 14_800) - band_level_db(x_in, SR, 11_600, 14_800)
    np.testing.assert_allclose(kept[[1, 2]], 0.0, atol=0.1)
    # ... and the low band of every channel too.
    low = band_level_db(y_out, SR, 100, 10_500) - band_level_db(x_in, SR, 100, 10_500)
    np.testing.assert_allclose(low, 0.0, atol=0.01)


def test_one_file_wide_cutoff_would_have_removed_it(tmp_path: Path) -> None:
    """The check above can fail: a single cutoff at the lowest edge loses channels 2-3's band."""
    x = band_noise(4 * SR, SR, FIVE)
    y, report = upsample(SincEngine(), torch.from_numpy(x), PipelineOptions(cutoff_hz=11_400))
    assert set(report.cutoffs_hz) == {11_400.0}
    inner = slice(4800, -4800)
    lost = band_level_db(y.numpy()[:, inner], SR, 11_600, 14_800)
    lost -= band_level_db(x[:, inner], SR, 11_600, 14_800)
    assert (lost[[1, 2]] < -40).all()


def test_full_band_channel_of_a_processed_file_is_kept_as_it_is() -> None:
    x = band_noise(2 * SR, SR, [6000.0, 24_000.0])
    engine_rows: list[int] = []

    def engine(audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        engine_rows.append(audio.shape[0])
        return audio + 0.01  # anything: the full-band channel must not go through it

    y, report = upsample(engine, torch.from_numpy(x))
    assert report.kept_channels == (1,) and engine_rows == [1]
    np.testing.assert_array_equal(y[1].numpy(), x[1])
    assert "kept (full band) (ch 2)" in report.describe()


def _spy(monkeypatch, name: str, counts: dict[str, int], wrap=None) -> None:
    """Count calls of the function ``name`` in every ``audiosr`` module that imported it."""
    import sys

    holders = [
        m
        for mod_name, m in list(sys.modules.items())
        if mod_name.startswith("audiosr") and m is not None and callable(m.__dict__.get(name))
    ]
    assert holders, name
    for module in holders:
        real = module.__dict__[name]

        def counted(*args, _real=real, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            if wrap is not None:
                wrap(*args, **kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


@pytest.mark.slow
def test_each_step_runs_once_and_the_engine_sees_the_file_gain(golden, monkeypatch) -> None:
    """The pipeline's diffusion engine: pre-filter and crossover once per segment, none of
    the original's copies (low-pass simulation, mel-bin and STFT low-band replacement), and
    rows at the file's gain (no per-row peak), with a progress call per sampler step."""
    steps: list[int] = []
    engine = make_engine(
        "audiosr",
        model=golden.checkpoint_path,
        config=golden.config_path,
        device="cpu",
        options=SamplingOptions(steps=2, guidance_scale=1.0),
        on_step=steps.append,
    )
    assert engine.steps == PIPELINE_STEPS  # none of the original's copies of pipeline steps
    import audiosr.engines.diffusion.runtime  # noqa: F401  (the modules the spies look in)

    counts: dict[str, int] = {}
    for name in ("simulate_lowpass", "replace_low_mel_bins", "replace_low_band"):
        _spy(monkeypatch, name, counts)
    for name in ("prefilter_lowpass", "merge_low_band"):
        _spy(monkeypatch, name, counts)
    seen: list[float] = []
    _spy(
        monkeypatch,
        "generate",
        {},
        wrap=lambda runtime, wave, *a, **kw: seen.append(float(wave.abs().max())),
    )
    # Two 5.12 s segments (7 s), the second one quiet: one gain for the file.
    x = band_noise(7 * SR, SR, [6000.0])
    x[:, int(3.5 * SR) :] *= 0.05  # the second segment starts at 3.84 s
    options = PipelineOptions(segment_s=5.12, overlap_s=1.28, batch_size=1)  # two calls
    with torch.inference_mode():
        y, report = upsample(engine, torch.from_numpy(x), options)
    assert report.segments == 2 and y.shape == x.shape
    assert counts == {"prefilter_lowpass": 2, "merge_low_band": 2}
    # The quiet second segment reaches the model at the file's gain, not re-peaked to 0.5.
    gain = 0.5 / np.abs(x).max()
    assert seen[0] == pytest.approx(0.5, rel=0.05)
    assert seen[1] < 0.1 and seen[1] == pytest.approx(gain * np.abs(x[:, 5 * SR :]).max(), rel=0.3)
    # One progress call per sampler step of each call, with the rows it advanced.
    assert steps == [1] * (2 * engine.sampler_steps) and engine.sampler_steps == 2


def test_cli_prints_the_band_limit_of_each_file(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    low, high = band_noise(2 * SR, SR, [11_400.0, 15_500.0])
    five = np.stack([low, high, high, low, low])  # equal channels: equal detections
    write_audio(folder / "five.wav", five, SR, subtype="FLOAT")
    write_audio(folder / "mono.wav", band_noise(16_000, 16_000, [4000.0]), 16_000)
    write_audio(folder / "full.wav", band_noise(SR, SR, [24_000.0]), SR)
    args = ["--engine", "sinc", str(folder), "-s", str(tmp_path / "out")]
    assert cli.main(args) == 0
    lines = capsys.readouterr().err.splitlines()
    by_file = {name: [ln for ln in lines if f"{name}_AudioSR" in ln] for name in FILES}
    assert all(len(found) == 1 for found in by_file.values()), lines
    five_line = re.search(
        r"band limits (\S+) kHz \(ch 1, 4, 5\); (\S+) kHz \(ch 2, 3\)", by_file["five"][0]
    )
    assert five_line, by_file["five"]
    assert abs(float(five_line[1]) - 11.4) < 0.4 and abs(float(five_line[2]) - 15.5) < 0.4
    mono_line = re.search(r"band limit (\S+) kHz\)", by_file["mono"][0])
    assert mono_line and abs(float(mono_line[1]) - 4.0) < 0.3, by_file["mono"]
    assert "passed through unchanged: already full band" in by_file["full"][0]
    # -q: errors only.
    assert cli.main([*args, "-q", "--overwrite"]) == 0
    assert "band limit" not in capsys.readouterr().err


FILES = ("five", "mono", "full")


@pytest.mark.slow
def test_cli_progress_bar_moves_once_per_sampler_step(tmp_path: Path, golden, monkeypatch) -> None:
    """The run's bar counts rows x sampler steps, advanced inside each engine call."""
    advanced: list[int] = []
    totals: list[int] = []
    real_advance, real_planned = cli._RunBar.advance, cli._RunBar.planned

    def advance(self, rows: int) -> None:
        advanced.append(rows)
        real_advance(self, rows)

    def planned(self, rows: int) -> None:
        real_planned(self, rows)
        totals.append(self.bar.total)

    monkeypatch.setattr(cli._RunBar, "advance", advance)
    monkeypatch.setattr(cli._RunBar, "planned", planned)
    src = write_audio(tmp_path / "st.wav", band_noise(16_000, 16_000, [4000.0, 4000.0]), 16_000)
    base = ["--engine", "audiosr", "--checkpoint", str(golden.checkpoint_path)]
    base += ["--config", str(golden.config_path), "-d", "cpu", "--ddim_steps", "3", "-gs", "1"]
    assert cli.main([*base, str(src), "-s", str(tmp_path / "out")]) == 0
    # DDIM 3 requested visits ceil(1000 / 333) = 4 steps; one segment of 2 channels.
    assert advanced == [2] * 4 and totals == [2 * 4]


@pytest.mark.parametrize("keep", [4_000, 20_001, 40_000])
def test_vocoding_a_prefix_gives_the_whole_mels_samples(keep: int) -> None:
    """``HiFiGAN.context_frames`` covers the receptive field: the vocoder run on the frames a
    prefix needs gives that prefix as the whole mel does; with fewer frames it does not."""
    from audiosr.config import VocoderConfig
    from audiosr.models.hifigan import HiFiGAN

    torch.manual_seed(0)
    # The official kernels, dilations and rates (the receptive field), fewer channels.
    vocoder = HiFiGAN(VocoderConfig(upsample_initial_channel=32)).eval()
    mel = torch.randn(1, 256, 120)
    with torch.inference_mode():
        whole = vocoder(mel)
        need = -(-keep // 480) + vocoder.context_frames
        prefix = vocoder(mel[..., :need])
        short = vocoder(mel[..., : need - vocoder.context_frames + 2])  # 2 frames of context
    scale = whole.abs().max()
    assert (prefix[..., :keep] - whole[..., :keep]).abs().max() < 1e-5 * scale
    assert (short[..., :keep] - whole[..., :keep]).abs().max() > 1e-4 * scale
