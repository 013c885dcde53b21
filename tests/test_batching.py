"""Cross-file batching: short files share engine calls and come out as if processed alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from torch import Tensor

from audiosr import cli
from audiosr.api import make_engine
from audiosr.audio_io import write_audio
from audiosr.batching import FileBatcher
from audiosr.config import SamplingOptions
from audiosr.engines.dsp import DSPEngine
from audiosr.errors import AudioSRError
from audiosr.pipeline import SAMPLE_RATE, PipelineOptions, UpsampleReport, upsample_file


def noise(seconds: float, sr: int, channels: int, cutoff_hz: float, seed: int) -> np.ndarray:
    """Band-limited noise ``[C, n]`` (FFT brick-wall at ``cutoff_hz``), peak 0.3."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=-1)
    spec[:, np.fft.rfftfreq(n, 1 / sr) > cutoff_hz] = 0
    x = np.fft.irfft(spec, n=n, axis=-1)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


class CountingEngine:
    """Wraps an engine; records the rows of every call."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.calls: list[int] = []

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        self.calls.append(audio.shape[0])
        return self.engine(audio, cutoff_hz)


class Results:
    """An ``on_done`` collecting reports and errors per input."""

    def __init__(self) -> None:
        self.reports: dict[Path, UpsampleReport | None] = {}
        self.errors: dict[Path, Exception] = {}

    def __call__(self, src: Path, dst: Path, report, exc) -> None:
        assert src not in self.reports and src not in self.errors, "reported twice"
        if exc is None:
            self.reports[src] = report
        else:
            self.errors[src] = exc


def make_inputs(folder: Path) -> list[Path]:
    """Short clips of several rates, channel counts, lengths and band limits, plus one long
    file, one full-band file and one silent file."""
    folder.mkdir()
    specs = [  # name, seconds, rate, channels, cutoff
        ("a", 1.3, 16_000, 1, 4000),
        ("b", 4.9, 22_050, 2, 7000),
        ("c", 0.4, 8_000, 1, 3000),
        ("d", 7.7, 44_100, 2, 11_000),  # two 5.12 s blocks: the 10.24 s group
        ("e", 2.0, 48_000, 1, 6000),
        ("f", 3.1, 32_000, 3, 9000),
    ]
    paths = []
    for i, (name, seconds, sr, ch, cut) in enumerate(specs):
        paths.append(write_audio(folder / f"{name}.wav", noise(seconds, sr, ch, cut, i), sr))
    long = noise(12.5, 16_000, 1, 5000, 10)  # longer than one segment: streamed
    paths.append(write_audio(folder / "long.wav", long, 16_000))
    full = noise(1.0, SAMPLE_RATE, 1, 23_500, 11)  # full band: passed through
    paths.append(write_audio(folder / "full.wav", full, SAMPLE_RATE))
    paths.append(write_audio(folder / "silent.wav", np.zeros((1, 8000), np.float32), 16_000))
    return paths


def read(path: Path) -> np.ndarray:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE
    return data.T


@pytest.mark.parametrize("keep_loudness", [True, False])
def test_batched_files_equal_files_processed_alone(tmp_path: Path, keep_loudness: bool) -> None:
    srcs = make_inputs(tmp_path / "in")
    options = PipelineOptions(batch_size=6, keep_loudness=keep_loudness)
    engine = CountingEngine(DSPEngine())
    batcher = FileBatcher(engine, options)
    results = Results()
    for src in srcs:
        batcher.submit(src, tmp_path / "batched" / src.name, results)
    batcher.finish()
    assert not results.errors
    assert set(results.reports) == set(srcs)

    # Short files shared calls: 6 short clips (10 rows) in fewer calls than files, none
    # above the budget unless one file alone exceeds it.
    assert batcher.engine_calls < 6
    assert max(engine.calls) <= options.batch_size

    for src in srcs:
        alone = tmp_path / "alone" / src.name
        report = upsample_file(DSPEngine(), src, alone, options)
        batched = results.reports[src]
        assert (batched.passthrough, batched.samples) == (report.passthrough, report.samples)
        assert batched.cutoff_hz == pytest.approx(report.cutoff_hz)
        np.testing.assert_array_equal(read(tmp_path / "batched" / src.name), read(alone))


def test_groups_by_segment_length_and_respects_the_row_budget(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    srcs = [
        write_audio(folder / f"{i}.wav", noise(sec, 16_000, 2, 5000, i), 16_000)
        for i, sec in enumerate([1.0, 2.0, 6.0, 3.0, 7.0, 4.0])
    ]
    engine = CountingEngine(DSPEngine())
    batcher = FileBatcher(engine, PipelineOptions(batch_size=4))
    results = Results()
    for src in srcs:
        batcher.submit(src, tmp_path / "out" / src.name, results)
    batcher.finish()
    assert set(results.reports) == set(srcs) and not results.errors
    # Four 5.12 s clips of 2 channels: two calls of 4 rows; two 10.24 s clips: one call.
    assert sorted(engine.calls) == [4, 4, 4]


def test_a_bad_file_fails_alone_and_an_engine_failure_fails_its_call(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = [
        write_audio(folder / f"{i}.wav", noise(1.0, 16_000, 1, 4000, i), 16_000) for i in range(3)
    ]
    bad = folder / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    results = Results()
    batcher = FileBatcher(DSPEngine(), PipelineOptions(batch_size=8))
    for src in [good[0], bad, *good[1:]]:
        batcher.submit(src, tmp_path / "out" / src.name, results)
    batcher.finish()
    assert set(results.errors) == {bad} and isinstance(results.errors[bad], AudioSRError)
    assert set(results.reports) == set(good)

    def broken(audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        raise RuntimeError("out of memory")

    results = Results()
    batcher = FileBatcher(broken, PipelineOptions(batch_size=8))
    for src in good:
        batcher.submit(src, tmp_path / "out2" / src.name, results)
    batcher.finish()
    assert set(results.errors) == set(good) and not results.reports
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


@pytest.mark.slow
def test_diffusion_engine_output_does_not_depend_on_the_batch(golden, tmp_path: Path) -> None:
    """The tiny golden model: a clip batched with others equals the clip alone (rounding)."""
    engine = make_engine(
        "audiosr",
        model=golden.checkpoint_path,
        config=golden.config_path,
        device="cpu",
        options=SamplingOptions(steps=2, guidance_scale=2.0),
    )
    folder = tmp_path / "in"
    folder.mkdir()
    srcs = [
        write_audio(folder / f"{i}.wav", noise(sec, 16_000, ch, 4000, i), 16_000)
        for i, (sec, ch) in enumerate([(1.0, 1), (2.5, 2), (4.0, 1)])
    ]
    counting = CountingEngine(engine)
    batcher = FileBatcher(counting, PipelineOptions(batch_size=8))
    results = Results()
    for src in srcs:
        batcher.submit(src, tmp_path / "batched" / src.name, results, subtype="FLOAT")
    batcher.finish()
    assert counting.calls == [4] and not results.errors
    for src in srcs:
        alone = tmp_path / "alone" / src.name
        upsample_file(engine, src, alone, PipelineOptions(batch_size=8), subtype="FLOAT")
        np.testing.assert_allclose(
            read(tmp_path / "batched" / src.name), read(alone), atol=2e-5, rtol=0
        )


def test_cli_batches_short_files_and_writes_what_one_by_one_writes(
    tmp_path: Path, monkeypatch
) -> None:
    srcs = make_inputs(tmp_path / "in")
    calls: list[int] = []
    original = DSPEngine.__call__

    def counted(self, audio, cutoff_hz):
        calls.append(audio.shape[0])
        return original(self, audio, cutoff_hz)

    monkeypatch.setattr(DSPEngine, "__call__", counted)
    base = ["--engine", "dsp", "-q", str(tmp_path / "in")]
    assert cli.main([*base, "-s", str(tmp_path / "b8"), "--batch_size", "8"]) == 0
    batched_calls = len(calls)
    calls.clear()
    assert cli.main([*base, "-s", str(tmp_path / "b1"), "--batch_size", "1"]) == 0
    assert batched_calls < len(calls)
    for src in srcs:
        name = f"{src.stem}_AudioSR_Processed_48K.wav"
        np.testing.assert_array_equal(read(tmp_path / "b8" / name), read(tmp_path / "b1" / name))


def test_upsampler_upsample_files_reports_each_input(tmp_path: Path) -> None:
    from audiosr.api import Upsampler

    folder = tmp_path / "in"
    folder.mkdir()
    good = write_audio(folder / "good.wav", noise(1.0, 16_000, 2, 4000, 0), 16_000)
    missing = folder / "missing.wav"
    up = Upsampler(DSPEngine(), PipelineOptions(batch_size=4))
    out = up.upsample_files(
        [(good, tmp_path / "o" / "good.wav"), (missing, tmp_path / "o" / "m.wav")]
    )
    assert isinstance(out[good], UpsampleReport) and not out[good].passthrough
    assert isinstance(out[missing], AudioSRError)
    assert read(tmp_path / "o" / "good.wav").shape == (2, SAMPLE_RATE)
