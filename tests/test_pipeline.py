"""The real-world pipeline: formats, rates, channels, lengths, seams, loudness, low band, memory.

Most tests use the engines that need no weights: ``SincEngine`` (identity: only the pipeline's
own machinery acts) and ``DSPEngine`` (deterministic band replication). The tests marked
``slow`` run the tiny golden diffusion checkpoint with one sampler step.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal
from torch import Tensor

from audiosr import audio_io, pipeline
from audiosr.api import Upsampler, make_engine
from audiosr.audio_io import resample, write_audio
from audiosr.config import SamplingOptions
from audiosr.engines.base import SincEngine
from audiosr.engines.dsp import DSPEngine
from audiosr.pipeline import (
    BLOCK,
    SAMPLE_RATE,
    PipelineOptions,
    analyse_file,
    output_length,
    process_stream,
    segment_plan,
    upsample,
    upsample_file,
)

SR = SAMPLE_RATE


def bandlimited_noise(
    frames: int, sr: int, cutoff_hz: float, channels: int = 1, seed: int = 0, rms: float = 0.1
) -> np.ndarray:
    """White noise with everything above ``cutoff_hz`` removed (FFT mask), ``[C, frames]``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, frames))
    spec = np.fft.rfft(x, axis=-1)
    spec[:, np.fft.rfftfreq(frames, 1 / sr) > cutoff_hz] = 0
    y = np.fft.irfft(spec, n=frames, axis=-1)
    y *= rms / max(float(np.sqrt(np.mean(y**2))), 1e-12)
    return y.astype(np.float32)


def low_band(x: np.ndarray, sr: int, below_hz: float, width_hz: float = 200.0) -> np.ndarray:
    """``x [..., T]`` low-passed at ``below_hz`` (FFT mask with a raised-cosine edge).

    The smooth edge keeps the filter's impulse response short (a few ms), so a difference
    at one place (e.g. the abrupt end of a file) does not ring over the whole signal.
    """
    spec = np.fft.rfft(x, axis=-1)
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / sr)
    pos = np.clip((freqs - (below_hz - width_hz)) / width_hz, 0.0, 1.0)
    return np.fft.irfft(spec * (0.5 + 0.5 * np.cos(np.pi * pos)), n=x.shape[-1], axis=-1)


def high_band(x: np.ndarray, sr: int, above_hz: float) -> np.ndarray:
    return x - low_band(x, sr, above_hz)


def read(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.T, sr


class Recorder:
    """Wraps an engine and records every call: the batch it saw and the cutoffs."""

    def __init__(self, engine=None) -> None:
        self.engine = engine or SincEngine()
        self.name = "recorder"
        self.calls: list[tuple[Tensor, Tensor]] = []

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        self.calls.append((audio.clone(), cutoff_hz.clone()))
        return self.engine(audio, cutoff_hz)


def joins_of(n: int, options: PipelineOptions) -> list[slice]:
    """The cross-fade regions of an ``n``-sample signal (one slice per join)."""
    segment, overlap = segment_plan(n, options)
    hop = segment - overlap
    count = pipeline.count_segments(n, options)
    return [slice(k * hop, k * hop + overlap) for k in range(1, count)]


def hf_level_jumps_db(y: np.ndarray, above_hz: float, frame: int = 480) -> np.ndarray:
    """Change in level (dB) of the band above ``above_hz`` between consecutive 10 ms frames."""
    hf = high_band(y, SR, above_hz)
    n = hf.shape[-1] // frame
    rms = np.sqrt(np.mean(hf[..., : n * frame].reshape(*hf.shape[:-1], n, frame) ** 2, -1))
    level = 20 * np.log10(rms + 1e-9)
    return np.abs(np.diff(level, axis=-1))


def assert_no_seam(
    y: np.ndarray, x48: np.ndarray, cutoff_hz: float, joins: list[slice], crossover_hz=500.0
) -> None:
    """Around every join: the low band is the input's, and the high band has no level step.

    A seam shows up as a jump of the generated band's level between two 10 ms frames at a
    join that is larger than any jump elsewhere (where it fluctuates like any content).
    """
    assert joins, "the signal must be long enough to have joins"
    below = cutoff_hz - crossover_hz - 100
    err = low_band(y - x48, SR, below)
    ref = np.sqrt(np.mean(low_band(x48, SR, below) ** 2))
    jumps = hf_level_jumps_db(y, cutoff_hz + 500)
    near = np.zeros(jumps.shape[-1], bool)
    for join in joins:
        # Low band: the input's through the whole cross-fade (and 0.1 s on either side).
        around = slice(max(0, join.start - 4800), join.stop + 4800)
        assert np.abs(err[..., around]).max() < 1e-3 * ref, "low band changed at a join"
        near[max(0, join.start // 480 - 2) : join.stop // 480 + 2] = True
    worst_near, worst_far = jumps[..., near].max(), jumps[..., ~near].max()
    assert worst_near <= worst_far + 1.0, f"level step at a join: {worst_near:.1f} dB"


# --------------------------------------------------------------------------------------------
# Formats, rates, channels, lengths


def _write_format(tmp_path: Path, kind: str, x: np.ndarray, sr: int) -> Path:
    if kind == "m4a":
        av = pytest.importorskip("av")
        path = tmp_path / "in.m4a"
        layout = "stereo" if x.shape[0] == 2 else "mono"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=sr, layout=layout)
            step = stream.codec_context.frame_size or 1024
            for i in range(0, x.shape[1], step):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(x[:, i : i + step]), format="fltp", layout=layout
                )
                frame.sample_rate, frame.pts = sr, i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        return path
    suffix, subtype = kind.split(":")
    return write_audio(tmp_path / f"in.{suffix}", x, sr, subtype=subtype or None)


@pytest.mark.parametrize(
    "kind",
    [
        "wav:PCM_U8",
        "wav:PCM_16",
        "wav:PCM_24",
        "wav:PCM_32",
        "wav:FLOAT",
        "flac:PCM_16",
        "ogg:VORBIS",
        "opus:OPUS",
        "mp3:MPEG_LAYER_III",
        "m4a",
    ],
)
def test_every_format_gives_48k_wav_of_the_same_duration(tmp_path: Path, kind: str) -> None:
    sr = 48_000 if kind.startswith("opus") else 22_050
    x = bandlimited_noise(int(0.7 * sr), sr, 5000, channels=2)
    src = _write_format(tmp_path, kind, x, sr)
    info = audio_io.audio_info(src)
    dst = tmp_path / "out.wav"
    report = upsample_file(SincEngine(), src, dst)
    out = sf.info(str(dst))
    assert (out.samplerate, out.channels, out.subtype) == (48_000, 2, "PCM_24")
    assert out.frames == report.samples == output_length(info.frames, info.sample_rate)
    y, _ = read(dst)
    assert np.isfinite(y).all() and 0.05 < float(np.sqrt(np.mean(y**2))) < 0.2


@pytest.mark.parametrize("sr", [8_000, 11_025, 16_000, 22_050, 44_100, 96_000, 192_000])
def test_any_rate_to_48k_and_no_aliasing_from_high_rates(tmp_path: Path, sr: int) -> None:
    frames = int(0.5 * sr) + 7  # not a whole number of output samples
    x = bandlimited_noise(frames, sr, min(0.3 * sr, 6000), rms=0.05)
    if sr > SR:
        # A tone above 24 kHz must be removed by the downsampling, not folded to 48k - f.
        t = np.arange(frames) / sr
        x = x + 0.3 * np.sin(2 * np.pi * 30_000 * t).astype(np.float32)
    src = write_audio(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    dst = tmp_path / "out.wav"
    # No pre-filter: with the identity engine the output is then the resampled input itself.
    options = PipelineOptions(force=True, prefilter=False)
    upsample_file(SincEngine(), src, dst, options, subtype="FLOAT")
    y, out_sr = read(dst)
    assert out_sr == SR and y.shape == (1, round(frames * SR / sr))
    if sr > SR:
        spec = np.abs(np.fft.rfft(y[0] * np.hanning(y.shape[1])))
        freqs = np.fft.rfftfreq(y.shape[1], 1 / SR)
        alias = spec[np.abs(freqs - (SR - 30_000)) < 50].max()
        assert alias < 1e-4 * spec.max()


@pytest.mark.parametrize(("channels", "kept"), [(1, True), (2, False), (6, True), (8, False)])
def test_every_channel_is_kept_batched_and_the_file_read_once_or_twice(
    tmp_path: Path, monkeypatch, channels: int, kept: bool
) -> None:
    """A file that fits the analysis budget is read once and kept; a longer one twice."""
    sr, frames = 16_000, 11 * 16_000  # two 10.24 s segments per channel
    if not kept:
        monkeypatch.setattr(pipeline, "ANALYSIS_BUDGET", frames * channels - 1)
    x = np.stack([bandlimited_noise(frames, sr, 4000, seed=c)[0] for c in range(channels)])
    src = write_audio(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    reads: list[int] = []
    real_stream = audio_io.stream_audio

    def counting_stream(path, block_frames, **kw):
        reads.append(block_frames)
        return real_stream(path, block_frames, **kw)

    monkeypatch.setattr(audio_io, "stream_audio", counting_stream)
    engine = Recorder()
    upsample_file(engine, src, tmp_path / "out.wav", PipelineOptions(batch_size=4))
    # Kept: one read. Too long to keep: pass 1 (level, band limits) and pass 2.
    assert len(reads) == (1 if kept else 2)
    # Each call holds whole segments: all channels of one segment, in channel order.
    assert [c[0].shape[0] % channels for c in engine.calls] == [0] * len(engine.calls)
    assert sum(c[0].shape[0] for c in engine.calls) == 2 * channels
    y, _ = read(tmp_path / "out.wav")
    x48 = resample(x, sr, SR)
    assert y.shape == x48.shape
    for c in range(channels):  # channel c of the output is channel c of the input
        corr = np.corrcoef(y[c], x48)[0, 1:]
        assert corr.argmax() == c and corr[c] > 0.99


@pytest.mark.parametrize(
    ("frames", "sr", "engine_name"),
    [
        (1, 48_000, "sinc"),
        (1, 8_000, "sinc"),
        (160, 16_000, "sinc"),
        (480, 48_000, "sinc"),
        (811, 48_000, "sinc"),
        (4_410, 44_100, "sinc"),
        (1, 8_000, "dsp"),
        (811, 48_000, "dsp"),
    ],
)
def test_very_short_inputs_keep_their_length(
    tmp_path: Path, frames: int, sr: int, engine_name: str
) -> None:
    x = bandlimited_noise(frames, sr, min(3000, sr / 2 - 1))
    src = write_audio(tmp_path / "in.wav", x, sr)
    dst = tmp_path / "out.wav"
    engine = make_engine(engine_name)
    upsample_file(engine, src, dst)
    y, out_sr = read(dst)
    assert out_sr == SR and y.shape == (1, max(1, round(frames * SR / sr)))
    assert np.isfinite(y).all()


@pytest.mark.parametrize("seconds", [BLOCK / SR, 2 * BLOCK / SR, 2 * BLOCK / SR + 1 / SR, 21.0])
def test_lengths_around_segment_boundaries(tmp_path: Path, seconds: float) -> None:
    frames = int(round(seconds * SR))
    x = bandlimited_noise(frames, SR, 6000)
    src = write_audio(tmp_path / "in.wav", x, SR, subtype="FLOAT")
    upsample_file(SincEngine(), src, tmp_path / "out.wav", subtype="FLOAT")
    y, _ = read(tmp_path / "out.wav")
    assert y.shape == x.shape
    inner = slice(4800, -4800)  # a file's abrupt start and end are broadband themselves
    np.testing.assert_allclose(
        low_band(y, SR, 5000)[:, inner], low_band(x, SR, 5000)[:, inner], atol=1e-5
    )


# --------------------------------------------------------------------------------------------
# Seams


def test_segmented_equals_whole_around_every_join() -> None:
    """Identity engine: 10.24 s segments vs one segment holding the whole signal.

    Only the pipeline acts here (pre-filter, crossover, cross-fade), so any seam it made
    would show as a difference at the joins.
    """
    n = int(25.0 * SR)
    x = torch.from_numpy(bandlimited_noise(n, SR, 6000, rms=0.2))
    seg = PipelineOptions(cutoff_hz=6000)
    whole = PipelineOptions(cutoff_hz=6000, segment_s=30.72)
    y_seg, report = upsample(SincEngine(), x, seg)
    y_whole, _ = upsample(SincEngine(), x, whole)
    assert report.segments == 3
    joins = joins_of(n, seg)
    assert len(joins) == 2
    for join in joins:
        around = slice(join.start - 4800, join.stop + 4800)
        diff = (y_seg - y_whole)[..., around].abs().max()
        assert diff < 1e-4 * x.abs().max()
    # ... and both are the input below the crossover.
    inner = slice(4800, -4800)  # a signal's abrupt start and end are broadband themselves
    np.testing.assert_allclose(
        low_band(y_seg.numpy(), SR, 5400)[:, inner],
        low_band(x.numpy(), SR, 5400)[:, inner],
        atol=2e-5,
    )


class _SeamMaker:
    """Adds high-band noise whose level changes from call to call by 12 dB."""

    name = "seam"

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        self.n += 1
        gen = torch.Generator().manual_seed(self.n)
        noise = high_band(torch.randn(audio.shape, generator=gen).numpy(), SR, 8000)
        return audio + torch.from_numpy(noise).float() * (0.02 if self.n % 2 else 0.08)


def test_seam_check_flags_a_hard_join_and_the_cross_fade_removes_it() -> None:
    """The seam check can fail: segments of different level joined without a fade fail it."""
    n = int(12.0 * SR)
    x = torch.from_numpy(bandlimited_noise(n, SR, 6000))
    hard = PipelineOptions(cutoff_hz=6000, overlap_s=0.0, batch_size=1)
    y, _ = upsample(_SeamMaker(), x, hard)
    segment, _ = segment_plan(n, hard)
    with pytest.raises(AssertionError, match="at a join"):
        assert_no_seam(y.numpy(), x.numpy(), 6000, [slice(segment, segment + 1)])
    faded = PipelineOptions(cutoff_hz=6000, batch_size=1)
    y, _ = upsample(_SeamMaker(), x, faded)
    assert_no_seam(y.numpy(), x.numpy(), 6000, joins_of(n, faded))


def test_dsp_engine_join_is_seamless_and_keeps_the_low_band() -> None:
    n = int(12.0 * SR)
    x = torch.from_numpy(bandlimited_noise(n, SR, 6000))
    options = PipelineOptions(cutoff_hz=6000)
    y, _ = upsample(DSPEngine(), x, options)
    assert_no_seam(y.numpy(), x.numpy(), 6000, joins_of(n, options))
    # A real new band was made (the check above is not vacuous).
    assert np.sqrt(np.mean(high_band(y.numpy(), SR, 7000) ** 2)) > 1e-3


# --------------------------------------------------------------------------------------------
# Level, low band, pre-filter, cutoff, pass-through


def test_loudness_kept_low_band_equal_and_normalize_gives_original_level(tmp_path: Path) -> None:
    sr = 16_000
    x = bandlimited_noise(3 * sr, sr, 5000, channels=2, rms=0.03)
    x[1] *= 0.5  # unequal channels: one gain for the file keeps their balance
    x += 0.01  # a DC offset, which the original's output removes
    src = write_audio(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    kept, norm = tmp_path / "kept.wav", tmp_path / "norm.wav"
    report = upsample_file(DSPEngine(), src, kept, subtype="FLOAT")
    upsample_file(DSPEngine(), src, norm, PipelineOptions(keep_loudness=False), subtype="FLOAT")
    assert not report.passthrough and 4500 < report.cutoff_hz <= 5500
    y, _ = read(kept)
    x48 = resample(x, sr, SR)
    # Below the cutoff (minus the crossover) the output is the resampled input.
    below = report.cutoff_hz - 500 - 100
    err = low_band(y - x48, SR, below)[:, 4800:-4800]  # away from the file's abrupt ends
    assert np.abs(err).max() < 1e-3 * np.abs(x48).max()
    # The input's band keeps its level (per channel), and a new band is there.
    rms_in, rms_out = (np.sqrt(np.mean(low_band(z, SR, below) ** 2, -1)) for z in (x48, y))
    np.testing.assert_allclose(20 * np.log10(rms_out / rms_in), 0.0, atol=0.01)
    assert np.sqrt(np.mean(high_band(y, SR, report.cutoff_hz + 200) ** 2)) > 1e-4
    # --normalize: the original's level: peak 0.5, each channel's mean removed.
    z, _ = read(norm)
    mean = z.mean(axis=-1)
    np.testing.assert_allclose(mean, 0.0, atol=1e-6)
    scale = 0.5 / np.abs(y).max()  # one gain, the same for both channels
    np.testing.assert_allclose(z, (y - y.mean(-1, keepdims=True)) * scale, atol=1e-5)


def test_gain_is_decided_once_per_file(tmp_path: Path) -> None:
    sr = 24_000
    loud = bandlimited_noise(8 * sr, sr, 5000, rms=0.2)
    quiet = bandlimited_noise(16 * sr, sr, 5000, rms=0.002, seed=1)
    x = np.concatenate([loud, quiet], axis=1)
    src = write_audio(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    engine = Recorder()
    options = PipelineOptions(cutoff_hz=6000)  # the pre-filter then passes all content
    report = upsample_file(engine, src, tmp_path / "out.wav", options, subtype="FLOAT")
    assert sum(batch.shape[0] for batch, _ in engine.calls) == 3  # three 10.24 s segments
    gain = 0.5 / np.abs(x).max()
    assert report.gain == pytest.approx(gain, rel=1e-6)
    x48 = torch.from_numpy(resample(x, sr, SR))
    segment, overlap = segment_plan(x48.shape[-1], options)
    k = 0
    for batch, _ in engine.calls:
        for seg in batch:  # every segment scaled by the same file gain (not re-peaked)
            start = k * (segment - overlap)
            ref = x48[0, start : start + segment]
            got = seg[: ref.shape[-1]]
            core = slice(5000, ref.shape[-1] - 5000)  # away from the pre-filter's edges
            ratio = (got[core] @ ref[core]) / (ref[core] @ ref[core])
            assert float(ratio) == pytest.approx(gain, rel=1e-3)
            k += 1
    y, _ = read(tmp_path / "out.wav")  # and the quiet part keeps its level
    tail = slice(12 * SR, 23 * SR)
    assert np.sqrt(np.mean(y[0, tail] ** 2)) == pytest.approx(0.002, rel=0.05)


def test_prefilter_removes_residue_above_the_cutoff_and_can_be_disabled() -> None:
    n = SR * 2
    x = bandlimited_noise(n, SR, 6000, rms=0.1)[0]
    t = np.arange(n) / SR
    x = x + 0.003 * np.sin(2 * np.pi * 12_000 * t)  # codec residue: a tone above the band
    audio = torch.from_numpy(x[None].astype(np.float32))
    for prefilter, expect_residue in ((True, False), (False, True)):
        engine = Recorder()
        upsample(engine, audio, PipelineOptions(cutoff_hz=6000, prefilter=prefilter))
        ((seen, cut),) = engine.calls
        assert cut.tolist() == [6000.0]
        spec = np.abs(np.fft.rfft(seen[0, :n].numpy()))
        freqs = np.fft.rfftfreq(n, 1 / SR)
        residue = spec[np.abs(freqs - 12_000) < 5].max() / spec[freqs < 5000].max()
        assert (residue > 1e-2) == expect_residue, residue


def _band_db(x: np.ndarray, lo: float, hi: float) -> float:
    """Mean power (dB) of ``x [T]`` at 48 kHz between ``lo`` and ``hi`` Hz (Blackman-Harris
    window: leakage from the band below stays > 90 dB down)."""
    w = signal.get_window("blackmanharris", len(x))
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * w)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float(10 * np.log10(spec[(freqs >= lo) & (freqs < hi)].mean()))


def test_a_detected_band_limit_deletes_nothing_a_given_one_replaces() -> None:
    """Issue 9: content above a detected band limit (a roll-off read as a limit, residue) is
    kept in the output: the engine sees the pre-filtered rows, and what the pre-filter took
    away is added back. With the identity engine the output is then the input itself."""
    n = 3 * SR
    band = bandlimited_noise(n, SR, 8000, rms=0.1, seed=1)[0]
    spec = np.fft.rfft(bandlimited_noise(n, SR, 16_000, rms=1.0, seed=2)[0])
    spec[np.fft.rfftfreq(n, 1 / SR) < 9000] = 0
    shelf = np.fft.irfft(spec, n=n)
    shelf *= 10 ** (-45 / 20) * 0.1 / np.sqrt(np.mean(shelf**2))  # 45 dB under the band
    x = (band + shelf).astype(np.float32)
    audio = torch.from_numpy(x[None])
    engine = Recorder()
    y, report = upsample(engine, audio)
    assert 7600 < report.cutoff_hz < 8400, report  # the cliff is found ...
    ((seen, _),) = engine.calls
    assert _band_db(seen[0, :n].numpy(), 9500, 15500) < _band_db(x, 9500, 15500) - 60
    # ... the engine sees a clean band limit, and the output keeps the shelf: it is the input.
    np.testing.assert_allclose(y[0].numpy(), x, atol=2e-4)
    assert abs(_band_db(y[0].numpy(), 9500, 15500) - _band_db(x, 9500, 15500)) < 0.1
    # A band limit given by the caller replaces the band above it (the identity engine adds
    # nothing there).
    y, _ = upsample(Recorder(), audio, PipelineOptions(cutoff_hz=8000))
    assert _band_db(y[0].numpy(), 9500, 15500) < _band_db(x, 9500, 15500) - 60
    y, _ = upsample(Recorder(), audio, PipelineOptions(cutoff_hz=8000, keep_above_cutoff=True))
    np.testing.assert_allclose(y[0].numpy(), x, atol=2e-4)
    y, _ = upsample(Recorder(), audio, PipelineOptions(keep_above_cutoff=False))  # as before
    assert _band_db(y[0].numpy(), 9500, 15500) < _band_db(x, 9500, 15500) - 60
    # Without the pre-filter there is nothing to add back: the engine sees the shelf itself.
    engine = Recorder()
    y, report = upsample(engine, audio, PipelineOptions(prefilter=False))
    seen = engine.calls[0][0][0, :n].numpy() / report.gain  # the engine works at peak 0.5
    np.testing.assert_allclose(seen, x, atol=1e-6)
    np.testing.assert_allclose(y[0].numpy(), x, atol=2e-4)


def test_cutoff_is_detected_or_overridden_and_floored() -> None:
    x = torch.from_numpy(bandlimited_noise(SR, SR, 4000))
    engine = Recorder()
    _, report = upsample(engine, x)
    assert 3700 < report.cutoff_hz < 4300
    assert float(engine.calls[-1][1][0]) == report.cutoff_hz
    _, report = upsample(engine, x, PipelineOptions(cutoff_hz=7000))
    assert report.cutoff_hz == 7000 and float(engine.calls[-1][1][0]) == 7000
    bass = torch.from_numpy(bandlimited_noise(SR, SR, 300))
    _, report = upsample(engine, bass)  # no usable band below 1 kHz: work from 1 kHz
    assert report.cutoff_hz == pipeline.MIN_CUTOFF_HZ and not report.passthrough


@pytest.mark.parametrize("sr", [48_000, 44_100])
def test_full_band_input_is_passed_through_unless_forced(tmp_path: Path, sr: int) -> None:
    x = 0.1 * np.random.default_rng(0).standard_normal((2, sr)).astype(np.float32)
    src = write_audio(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    engine = Recorder()
    report = upsample_file(engine, src, tmp_path / "out.wav", subtype="FLOAT")
    assert report.passthrough and "full band" in report.reason and not engine.calls
    y, _ = read(tmp_path / "out.wav")
    np.testing.assert_allclose(y, resample(x, sr, SR), atol=1e-6)
    report = upsample_file(
        engine, src, tmp_path / "forced.wav", PipelineOptions(force=True), subtype="FLOAT"
    )
    assert not report.passthrough and engine.calls


def test_silence_gives_silence_without_calling_the_engine(tmp_path: Path) -> None:
    src = write_audio(tmp_path / "in.wav", np.zeros((2, 20_000), np.float32), 16_000)
    engine = Recorder()
    report = upsample_file(engine, src, tmp_path / "out.wav")
    y, _ = read(tmp_path / "out.wav")
    assert report.passthrough and report.reason == "silent" and not engine.calls
    assert y.shape == (2, 60_000) and not y.any()


# --------------------------------------------------------------------------------------------
# Memory: streaming in, streaming out


def test_stream_is_consumed_lazily() -> None:
    """Output comes out while the input is still being read: memory does not grow with length."""
    block, total = SR, 60 * SR  # one minute in 1 s blocks
    consumed = 0

    def source():
        nonlocal consumed
        rng = np.random.default_rng(0)
        for _ in range(total // block):
            consumed += 1
            yield torch.from_numpy(0.1 * rng.standard_normal((2, block)).astype(np.float32))

    options = PipelineOptions(batch_size=4)  # 2 channels: two segments per engine call
    segment, _ = segment_plan(total, options)
    out = process_stream(SincEngine(), source(), total, 2, 6000.0, 1.0, options)
    emitted = 0
    for piece in out:
        assert piece.shape[0] == 2
        emitted += piece.shape[-1]
        # Read but not yet written: at most one engine call's segments plus one block.
        assert consumed * block - emitted <= 2 * segment + block
    assert consumed == total // block and emitted >= total


def test_long_file_band_limit_from_tapered_excerpts(tmp_path: Path, monkeypatch) -> None:
    """Files longer than the analysis budget: excerpts spread over the file, joined smoothly.

    Strong low-frequency content makes every join between distant excerpts a step; untapered,
    their broadband splatter reads as content up to Nyquist.
    """
    sr = 16_000
    monkeypatch.setattr(pipeline, "READ_BLOCK", 4096)
    monkeypatch.setattr(pipeline, "ANALYSIS_BUDGET", 4096 * 8)  # 8 of 59 blocks
    n = 15 * sr
    t = np.arange(n) / sr
    x = bandlimited_noise(n, sr, 3000, rms=0.01)[0] + 0.5 * np.sin(2 * np.pi * 3.1 * t)
    src = write_audio(tmp_path / "in.wav", x.astype(np.float32), sr, subtype="FLOAT")
    peak, (cutoff,) = analyse_file(src)  # one band limit per channel
    assert peak == pytest.approx(np.abs(x).max(), rel=1e-6)
    assert 2700 < cutoff < 3300
    monkeypatch.setattr(pipeline, "_analysis_excerpt", lambda b: b)  # the step joins
    assert analyse_file(src)[1][0] > 4000


def test_outputs_beyond_the_wav_size_limit_become_rf64(tmp_path: Path, monkeypatch) -> None:
    """A WAV holds 4 GiB of samples (about 3.9 h of 48 kHz stereo PCM_24); longer outputs
    are written as RF64. The limit is lowered here so a short file crosses it."""
    x = bandlimited_noise(16_000, 16_000, 4000, channels=2)
    src = write_audio(tmp_path / "in.wav", x, 16_000, subtype="FLOAT")
    monkeypatch.setattr(audio_io, "_WAV_MAX_DATA_BYTES", 48_000 * 2 * 3 - 1)
    upsample_file(SincEngine(), src, tmp_path / "big.wav")  # 1 s: one byte over the limit
    info = sf.info(str(tmp_path / "big.wav"))
    assert (info.format, info.subtype, info.frames, info.channels) == ("RF64", "PCM_24", SR, 2)
    monkeypatch.setattr(audio_io, "_WAV_MAX_DATA_BYTES", 48_000 * 2 * 3)
    upsample_file(SincEngine(), src, tmp_path / "fits.wav")
    assert sf.info(str(tmp_path / "fits.wav")).format == "WAV"
    a, b = read(tmp_path / "big.wav")[0], read(tmp_path / "fits.wav")[0]
    np.testing.assert_array_equal(a, b)


def test_in_memory_api_any_rate_and_bad_samples() -> None:
    up = Upsampler(SincEngine())
    x = bandlimited_noise(16_000, 16_000, 4000, channels=2)
    y = up(x, 16_000)
    assert isinstance(y, Tensor) and y.shape == (2, 48_000) and y.dtype == torch.float32
    assert up(x[0], 16_000).shape == (1, 48_000)
    x[1, 5] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        up(x, 16_000)


# --------------------------------------------------------------------------------------------
# The diffusion engine (tiny golden checkpoint)


@pytest.mark.slow
def test_diffusion_identical_channels_stay_identical_across_a_seamless_join(
    tmp_path: Path, golden
) -> None:
    """Stereo with L == R through the diffusion model, two segments batched together.

    Same seed for every channel: a centred source stays centred. Also: the join between the
    two segments is seamless, the low band is the input's, and the loudness is kept.
    """
    engine = make_engine(
        "audiosr",
        model=golden.checkpoint_path,
        config=golden.config_path,
        device="cpu",
        options=SamplingOptions(steps=1, guidance_scale=1.0),
    )
    sr = 16_000
    mono = bandlimited_noise(int(7.0 * sr), sr, 4000, rms=0.05)
    src = write_audio(tmp_path / "in.wav", np.concatenate([mono, mono]), sr, subtype="FLOAT")
    options = PipelineOptions(segment_s=5.12, overlap_s=1.28, batch_size=4)
    dst = tmp_path / "out.wav"
    report = upsample_file(engine, src, dst, options, subtype="FLOAT")
    assert report.segments == 2 and not report.passthrough
    y, out_sr = read(dst)
    assert out_sr == SR and y.shape == (2, 7 * SR) and np.isfinite(y).all()
    np.testing.assert_allclose(y[0], y[1], atol=1e-6 * np.abs(y).max())
    x48 = resample(mono, sr, SR)
    assert_no_seam(y[:1], x48, report.cutoff_hz, joins_of(y.shape[-1], options))
    assert np.sqrt(np.mean(high_band(y, SR, report.cutoff_hz + 200) ** 2)) > 1e-5
    # Loudness kept: the input's band at the input's level.
    below = report.cutoff_hz - 600
    rms_in, rms_out = (np.sqrt(np.mean(low_band(z, SR, below) ** 2)) for z in (x48, y))
    assert abs(20 * np.log10(rms_out / rms_in)) < 0.01
