"""The command line on bad inputs, odd inputs and batches: one line per error, nothing lost.

Every case goes through ``audiosr.cli.main([...])``. Where no model is needed the ``sinc`` and
``dsp`` engines stand in; where the model matters the tiny golden checkpoint is used.
"""

from __future__ import annotations

import os
import pathlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiosr import audio_io
from audiosr.cli import _sampling_options, _upsample_parser, main
from audiosr.diffusion.schedule import ddim_timesteps

SUFFIX = "_AudioSR_Processed_48K"


def noise(channels: int, frames: int, sr: int, cutoff_hz: float = 3000.0, seed: int = 0):
    """Band-limited noise ``[frames, channels]`` (soundfile's layout), peak about 0.3."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal((frames, channels)), axis=0)
    spec[np.fft.rfftfreq(frames, 1 / sr) > cutoff_hz] = 0
    x = np.fft.irfft(spec, n=frames, axis=0)
    return (0.3 * x / max(np.abs(x).max(), 1e-9)).astype(np.float32)


def wav(path: Path, frames: int = 8000, sr: int = 16_000, channels: int = 1, **kw) -> Path:
    sf.write(str(path), noise(channels, frames, sr), sr, **kw)
    return path


def run(capsys, *argv: str) -> tuple[int, list[str]]:
    """``main(argv)`` -> (exit status, non-empty stderr lines)."""
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def assert_one_line_error(code: int, lines: list[str], *words: str, status: int = 1) -> None:
    assert code == status, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    for word in words:
        assert word.lower() in lines[0].lower(), lines


def out_name(src: Path) -> str:
    return f"{src.stem}{SUFFIX}.wav"


# --------------------------------------------------------------------------------------------
# Bad inputs: one line, status 1, nothing written, the input untouched


def _bad_input(tmp_path: Path, name: str) -> tuple[Path, str]:
    """name -> (a bad input, a word its error must contain)."""
    good = wav(tmp_path / "good_source.wav", frames=4000)
    data = good.read_bytes()
    if name == "missing":
        return tmp_path / "missing.wav", "no such file"
    if name == "directory":
        (tmp_path / "folder.wav").mkdir()
        return tmp_path / "folder.wav", "directory"
    if name == "empty":
        (tmp_path / "empty.wav").write_bytes(b"")
        return tmp_path / "empty.wav", "empty"
    if name == "truncated_wav":
        (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
        return tmp_path / "cut.wav", "truncated"
    if name == "corrupt_flac":
        sf.write(str(tmp_path / "full.flac"), noise(1, 20_000, 16_000), 16_000)
        flac = (tmp_path / "full.flac").read_bytes()
        (tmp_path / "cut.flac").write_bytes(flac[: len(flac) // 2])
        return tmp_path / "cut.flac", "corrupt"
    if name in ("text_wav", "text_mp3"):
        path = tmp_path / ("notes.wav" if name == "text_wav" else "notes.mp3")
        path.write_text("this is a text file, not audio\n" * 30)
        return path, "not audio"
    if name == "zero_length":
        sf.write(str(tmp_path / "zero.wav"), np.zeros((0, 1), np.float32), 16_000)
        return tmp_path / "zero.wav", "0 samples"
    if name == "nan":
        x = noise(2, 4000, 16_000)
        x[100, 0], x[200, 1] = np.nan, np.inf
        sf.write(str(tmp_path / "nan.wav"), x, 16_000, subtype="FLOAT")
        return tmp_path / "nan.wav", "NaN/Inf"
    if name == "nine_channels":
        return wav(tmp_path / "nine.wav", frames=1000, channels=9), "9 channels"
    raise KeyError(name)


BAD_INPUTS = [
    "missing",
    "directory",
    "empty",
    "truncated_wav",
    "corrupt_flac",
    "text_wav",
    "text_mp3",
    "zero_length",
    "nan",
    "nine_channels",
]


@pytest.mark.parametrize("name", BAD_INPUTS)
@pytest.mark.parametrize("engine", ["sinc", "dsp"])
def test_bad_input_one_line_error_and_nothing_lost(tmp_path, capsys, name, engine) -> None:
    src, word = _bad_input(tmp_path, name)
    before = src.read_bytes() if src.is_file() else None
    out = tmp_path / "out"
    code, lines = run(capsys, "-i", str(src), "-s", str(out), "--engine", engine, "-q")
    assert_one_line_error(code, lines, word, str(src))
    assert not out.exists() or os.listdir(out) == []  # no output, no temporary leftovers
    if before is not None:
        assert src.read_bytes() == before


def test_m4a_without_pyav_names_the_fix(tmp_path, capsys, monkeypatch) -> None:
    src = tmp_path / "song.m4a"
    src.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(audio_io, "_import_av", lambda: None)
    code, lines = run(capsys, "-i", str(src), "-s", str(tmp_path / "o"), "--engine", "sinc", "-q")
    assert_one_line_error(code, lines, "pip install av")


def test_tracebacks_only_with_debug(tmp_path, capsys, monkeypatch) -> None:
    """An unexpected error inside an engine: one line, unless --debug asks for the traceback."""
    import audiosr.api

    class Broken:
        name = "broken"

        def __call__(self, audio, cutoff_hz):
            raise RuntimeError("engine exploded\nsecond line of the message")

    monkeypatch.setattr(audiosr.api, "make_engine", lambda *a, **k: Broken())
    src = wav(tmp_path / "a.wav")
    argv = ["-i", str(src), "-s", str(tmp_path / "out"), "-q"]
    code, lines = run(capsys, *argv)
    assert_one_line_error(code, lines, "RuntimeError", "engine exploded", "--debug")
    code, lines = run(capsys, *argv, "--debug")
    assert code == 1 and any("Traceback" in line for line in lines)


# --------------------------------------------------------------------------------------------
# Odd but valid inputs: processed, same duration


@pytest.mark.parametrize(
    ("frames", "sr", "engine"),
    [
        (1, 48_000, "sinc"),
        (1, 16_000, "sinc"),
        (160, 16_000, "sinc"),  # 0.01 s
        (480, 48_000, "sinc"),
        (811, 48_000, "sinc"),
        (1, 16_000, "dsp"),
        (811, 48_000, "dsp"),
    ],
)
def test_very_short_inputs_run(tmp_path, capsys, frames, sr, engine) -> None:
    src = wav(tmp_path / "short.wav", frames=frames, sr=sr)
    code, lines = run(capsys, "-i", str(src), "-s", str(tmp_path), "--engine", engine, "-q")
    assert code == 0 and lines == []
    info = sf.info(str(tmp_path / out_name(src)))
    assert info.samplerate == 48_000 and info.frames == max(1, round(frames * 48_000 / sr))


def test_silence_gives_silence(tmp_path, capsys) -> None:
    src = tmp_path / "silent.wav"
    sf.write(str(src), np.zeros((24_000, 2), np.float32), 24_000)
    code, _ = run(capsys, "-i", str(src), "-s", str(tmp_path), "--engine", "dsp", "-q")
    y, sr = sf.read(str(tmp_path / out_name(src)))
    assert code == 0 and sr == 48_000 and y.shape == (48_000, 2) and not y.any()


def test_eight_channels_are_accepted(tmp_path, capsys) -> None:
    src = wav(tmp_path / "surround.wav", frames=4000, channels=8)
    code, _ = run(capsys, "-i", str(src), "-s", str(tmp_path), "--engine", "sinc", "-q")
    info = sf.info(str(tmp_path / out_name(src)))
    assert code == 0 and info.channels == 8 and info.frames == 12_000


# --------------------------------------------------------------------------------------------
# Output folder problems


def test_output_folder_that_cannot_be_created(tmp_path, capsys) -> None:
    src = wav(tmp_path / "a.wav")
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("a file where a folder should go")
    code, lines = run(capsys, "-i", str(src), "-s", str(blocker / "out"), "--engine", "sinc")
    assert_one_line_error(code, lines, "cannot create output folder")


def test_output_folder_that_is_not_writable(tmp_path, capsys, monkeypatch) -> None:
    """The permission check, driven by an injected EACCES (root ignores permission bits)."""
    src = wav(tmp_path / "a.wav")
    out = tmp_path / "locked"
    out.mkdir()
    real_write = pathlib.Path.write_bytes

    def write_bytes(self, data):
        if self.parent == out:
            raise PermissionError(13, "Permission denied")
        return real_write(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    code, lines = run(capsys, "-i", str(src), "-s", str(out), "--engine", "sinc")
    assert_one_line_error(code, lines, "not writable", "Permission denied")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_output_folder(tmp_path, capsys) -> None:
    src = wav(tmp_path / "a.wav")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        code, lines = run(capsys, "-i", str(src), "-s", str(out), "--engine", "sinc")
    finally:
        out.chmod(0o700)
    assert_one_line_error(code, lines, "not writable")


def test_output_folder_on_an_input_file(tmp_path, capsys) -> None:
    src = wav(tmp_path / "a.wav")
    before = src.read_bytes()
    code, lines = run(capsys, "-i", str(src), "-s", str(src), "--engine", "sinc")
    assert_one_line_error(code, lines, "is an input file")
    assert src.read_bytes() == before


def test_output_that_would_replace_its_input(tmp_path, capsys) -> None:
    src = wav(tmp_path / "a.wav")
    before = src.read_bytes()
    argv = ["-i", str(src), "-s", str(tmp_path), "--suffix", "", "--engine", "sinc", "-q"]
    code, lines = run(capsys, *argv)
    assert_one_line_error(code, lines, "would overwrite an input")
    assert src.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["a.wav"]


# --------------------------------------------------------------------------------------------
# Model and argument problems


def _model_args(golden) -> list[str]:
    return ["--config", str(golden.config_path), "-d", "cpu", "-gs", "1", "-q"]


@pytest.mark.parametrize("kind", ["missing", "truncated", "not_a_checkpoint", "directory"])
def test_bad_checkpoint(tmp_path, capsys, golden, kind) -> None:
    ckpt = tmp_path / "model.pt"
    if kind == "truncated":
        data = Path(golden.checkpoint_path).read_bytes()
        ckpt.write_bytes(data[: len(data) // 2])
    elif kind == "not_a_checkpoint":
        ckpt.write_text("definitely not a checkpoint\n" * 10)
    elif kind == "directory":
        ckpt.mkdir()
    src = wav(tmp_path / "a.wav")
    argv = ["-i", str(src), "-s", str(tmp_path / "out"), "--checkpoint", str(ckpt)]
    code, lines = run(capsys, *argv, *_model_args(golden))
    assert_one_line_error(code, lines, "checkpoint")
    assert not (tmp_path / "out" / out_name(src)).exists()


def test_unknown_model_name_is_a_usage_error(tmp_path, capsys) -> None:
    src = wav(tmp_path / "a.wav")
    code, lines = run(capsys, "-i", str(src), "--model_name", "large", "-s", str(tmp_path))
    assert_one_line_error(code, lines, "invalid choice", "'large'", status=2)


@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (["--ddim_steps", "0"], "--ddim_steps"),
        (["--ddim_steps", "-3"], "--ddim_steps"),
        (["--batch_size", "0"], "--batch_size"),
        (["--cutoff", "0"], "--cutoff"),
        (["--cutoff", "-50"], "--cutoff"),
        (["--cutoff", "30000"], "--cutoff"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_invalid_numbers_fail_before_anything_is_created(tmp_path, capsys, flags, word) -> None:
    """Usage errors: one line, exit status 2 (argparse's convention, as the README says)."""
    src = wav(tmp_path / "a.wav")
    out = tmp_path / "out"
    code, lines = run(capsys, "-i", str(src), "-s", str(out), "--engine", "sinc", *flags)
    assert_one_line_error(code, lines, word, status=2)
    assert not out.exists()


def test_non_integer_steps_is_a_usage_error(tmp_path, capsys) -> None:
    code, lines = run(capsys, "-i", "x.wav", "--ddim_steps", "2.5")
    assert_one_line_error(code, lines, "--ddim_steps", status=2)


def test_every_positive_step_count_is_accepted() -> None:
    """Counts the original crashes on (3, 9, 27, 101-111, 251-333, >= 501) included."""
    parser = _upsample_parser()
    for steps in range(1, 1001):
        options = _sampling_options(parser.parse_args(["--ddim_steps", str(steps)]))
        assert options.steps == steps
        table = ddim_timesteps(steps, 1000)
        assert (table.diff() > 0).all() and 0 <= int(table[0]) and int(table[-1]) <= 999


@pytest.mark.slow
def test_tiny_model_runs_a_crashing_step_count_on_811_samples(tmp_path, capsys, golden) -> None:
    """The model path on a sub-second input (the original crashes on 811 samples at 48 kHz)
    with 3 DDIM steps (the original raises IndexError for 3)."""
    src = wav(tmp_path / "short.wav", frames=811, sr=48_000, subtype="PCM_16")
    argv = ["-i", str(src), "-s", str(tmp_path), "--checkpoint", str(golden.checkpoint_path)]
    code, lines = run(capsys, *argv, *_model_args(golden), "--ddim_steps", "3", "--force")
    assert code == 0 and lines == []
    y, sr = sf.read(str(tmp_path / out_name(src)), dtype="float32")
    assert sr == 48_000 and y.shape == (811,) and np.isfinite(y).all() and np.abs(y).max() > 0


def test_forced_full_band_input_runs_the_model(tmp_path, capsys, golden) -> None:
    """--force on a full-band file: the band limit is Nyquist, which leaves the model no
    low-pass to simulate; the original's own detector steps in instead of a crash."""
    rng = np.random.default_rng(3)
    src = tmp_path / "white.wav"
    sf.write(str(src), (0.2 * rng.standard_normal(48_000)).astype(np.float32), 48_000)
    argv = ["-i", str(src), "-s", str(tmp_path), "--checkpoint", str(golden.checkpoint_path)]
    code, lines = run(capsys, *argv, *_model_args(golden), "--ddim_steps", "2", "--force")
    assert code == 0 and lines == []
    y, sr = sf.read(str(tmp_path / out_name(src)), dtype="float32")
    assert sr == 48_000 and y.shape == (48_000,) and np.isfinite(y).all()


# --------------------------------------------------------------------------------------------
# Batches


def test_one_failure_never_stops_the_batch(tmp_path, capsys) -> None:
    good1 = wav(tmp_path / "good1.wav")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    good2 = tmp_path / "good2.flac"
    sf.write(str(good2), noise(2, 8000, 16_000), 16_000)
    out = tmp_path / "out"
    argv = [str(good1), str(bad), str(good2), "-s", str(out), "--engine", "sinc", "-q"]
    code, lines = run(capsys, *argv)
    assert code == 1
    assert sorted(os.listdir(out)) == sorted([out_name(good1), out_name(good2)])
    assert not any("Traceback" in line for line in lines)
    assert lines[0].startswith(f"cannot read {bad}")  # the error, when it happens
    assert "2 processed, 0 skipped" in lines[1] and "1 failed" in lines[1]  # the summary
    assert str(bad) in lines[2]


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, capsys) -> None:
    src = wav(tmp_path / "a.wav")
    out = tmp_path / "out"
    argv = ["-i", str(src), "-s", str(out), "--engine", "sinc", "-q"]
    assert run(capsys, *argv)[0] == 0
    dst = out / out_name(src)
    dst.write_bytes(b"sentinel")  # a skipped output is not touched
    assert run(capsys, *argv)[0] == 0
    assert dst.read_bytes() == b"sentinel"
    assert run(capsys, *argv, "--overwrite")[0] == 0
    assert sf.info(str(dst)).samplerate == 48_000


def test_inputs_from_every_source_and_folders_recursively(tmp_path, capsys) -> None:
    lib = tmp_path / "lib"
    (lib / "album" / "disc2").mkdir(parents=True)
    a = wav(lib / "a.wav")
    b = wav(lib / "album" / "b.wav")
    c = wav(lib / "album" / "disc2" / "c.wav")
    (lib / "album" / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (lib / "album" / "._b.wav").write_bytes(b"macOS metadata, not audio")
    d, e, f = (wav(tmp_path / f"{n}.wav") for n in "def")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{d}\n\n{e}\n")
    out = lib / "upsampled"  # inside an input folder: never taken as input
    argv = ["-il", str(listing), "-i", str(f), str(lib), "-s", str(out), "--engine", "sinc"]
    code, lines = run(capsys, *argv, "-q")
    assert code == 0 and lines == []
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    expected = [out_name(x) for x in (a, d, e, f)]
    expected += [f"album/{out_name(b)}", f"album/disc2/{out_name(c)}"]
    assert written == sorted(expected)
    code, lines = run(capsys, *argv)  # a rerun skips everything and processes no output
    assert code == 0 and "0 processed, 6 skipped" in lines[-1]


def test_outputs_with_the_same_name_do_not_collide(tmp_path, capsys) -> None:
    wav(tmp_path / "x.wav")
    sf.write(str(tmp_path / "x.flac"), noise(1, 8000, 16_000), 16_000)
    argv = [str(tmp_path / "x.flac"), str(tmp_path / "x.wav"), "-s", str(tmp_path / "out")]
    code, lines = run(capsys, *argv, "--engine", "sinc", "-q")
    assert code == 1 and "also the output of" in lines[0]
    assert os.listdir(tmp_path / "out") == ["x" + SUFFIX + ".wav"]


@pytest.mark.parametrize(
    ("flag", "subtype"),
    [(None, "PCM_24"), ("float", "FLOAT"), ("pcm_16", "PCM_16"), ("pcm_24", "PCM_24")],
)
def test_output_is_48k_wav_same_duration_chosen_subtype(tmp_path, capsys, flag, subtype) -> None:
    src = tmp_path / "in.ogg"
    sf.write(str(src), noise(2, 22_050, 22_050), 22_050, format="OGG", subtype="VORBIS")
    argv = ["-i", str(src), "-s", str(tmp_path), "--engine", "sinc", "-q"]
    code, _ = run(capsys, *argv, *(["--subtype", flag] if flag else []))
    info = sf.info(str(tmp_path / out_name(src)))
    frames_in = sf.info(str(src)).frames
    assert code == 0 and (info.samplerate, info.channels, info.subtype) == (48_000, 2, subtype)
    assert info.frames == round(frames_in * 48_000 / 22_050)


def test_quiet_and_progress(tmp_path, capsys) -> None:
    srcs = [wav(tmp_path / f"{n}.wav") for n in "ab"]
    base = [*map(str, srcs), "-s", str(tmp_path / "out"), "--engine", "sinc"]
    code, lines = run(capsys, *base, "-q")
    assert code == 0 and lines == []
    code, lines = run(capsys, *base, "--overwrite")
    text = "\n".join(lines)
    # The files bar and the run's bar over rows x steps.
    assert code == 0 and "files" in text and "generating" in text and "step" in text
    assert "wrote" in text and "2 processed" in text


def test_failure_mid_file_leaves_no_partial_output(tmp_path, capsys, monkeypatch) -> None:
    """The engine fails on the second segment: the first was already streamed out, yet
    neither the output nor a temporary file remains, and the next file is still done."""
    import audiosr.api

    class FailsOnSecondCall:
        name = "flaky"

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, audio, cutoff_hz):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("out of memory")
            return audio.clone()

    monkeypatch.setattr(audiosr.api, "make_engine", lambda *a, **k: FailsOnSecondCall())
    long = wav(tmp_path / "long.wav", frames=16_000 * 25)  # three 10.24 s segments
    short = wav(tmp_path / "short.wav")
    out = tmp_path / "out"
    argv = [str(long), str(short), "-s", str(out), "--batch_size", "1", "-q"]
    code, lines = run(capsys, *argv)
    assert code == 1 and "out of memory" in lines[0]
    assert os.listdir(out) == [out_name(short)]


def test_help_exits_zero(capsys) -> None:
    assert main(["--help"]) == 0
    assert "--subtype" in capsys.readouterr().out


def test_dsp_and_sinc_keep_the_input_band(tmp_path, capsys) -> None:
    """End to end through the CLI: the low band of the written file is the input's."""
    sr = 16_000
    x = noise(1, 2 * sr, sr, cutoff_hz=4000)[:, 0]
    src = tmp_path / "in.wav"
    sf.write(str(src), x, sr, subtype="FLOAT")
    for engine in ("sinc", "dsp"):
        out = tmp_path / engine
        argv = ["-i", str(src), "-s", str(out), "--engine", engine, "--subtype", "float", "-q"]
        assert run(capsys, *argv)[0] == 0
        y, _ = sf.read(str(out / out_name(src)), dtype="float32")
        x48 = audio_io.resample(x, sr, 48_000)
        spec = lambda z: torch.fft.rfft(torch.from_numpy(z[4800:-4800]).double())  # noqa: E731
        freqs = torch.fft.rfftfreq(y.shape[0] - 9600, 1 / 48_000)
        low = freqs < 3000
        err = (spec(y) - spec(x48))[low].abs().max() / spec(x48)[low].abs().max()
        assert err < 1e-2, (engine, float(err))


class _Recorder:
    """Identity engine that records the cutoffs and batches it is given."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, audio, cutoff_hz):
        self.calls.append((audio.clone(), cutoff_hz.clone()))
        return audio.clone()


def test_cutoff_prefilter_force_and_normalize_flags(tmp_path, capsys, monkeypatch) -> None:
    import audiosr.api

    engine = _Recorder()
    monkeypatch.setattr(audiosr.api, "make_engine", lambda *a, **k: engine)
    src = tmp_path / "full.wav"  # full band: white noise at 48 kHz
    x = 0.1 * np.random.default_rng(0).standard_normal(48_000).astype(np.float32)
    sf.write(str(src), x, 48_000, subtype="FLOAT")
    base = ["-i", str(src), "--subtype", "float", "--overwrite"]

    # Default: passed through with a notice, engine not called, samples unchanged.
    code, lines = run(capsys, *base, "-s", str(tmp_path / "a"))
    y, _ = sf.read(str(tmp_path / "a" / out_name(src)), dtype="float32")
    assert code == 0 and not engine.calls and any("full band" in line for line in lines)
    np.testing.assert_array_equal(y, x)

    # --force --cutoff: the engine sees the given cutoff and the pre-filtered input;
    # --no_prefilter: the band above the cutoff reaches the engine.
    def high_band_peak(seen: torch.Tensor) -> float:
        spec = np.abs(np.fft.rfft(seen[0].numpy()))
        return float(spec[np.fft.rfftfreq(seen.shape[-1], 1 / 48_000) > 6000].max())

    forced = [*base, "--force", "--cutoff", "5000", "-q"]
    assert run(capsys, *forced, "-s", str(tmp_path / "b"))[0] == 0
    assert run(capsys, *forced, "-s", str(tmp_path / "c"), "--no_prefilter")[0] == 0
    (filtered, cut), (unfiltered, _) = engine.calls
    assert cut.tolist() == [5000.0]
    assert high_band_peak(filtered) < 1e-2 * high_band_peak(unfiltered)

    # --normalize: the original's output level (peak 0.5, mean removed).
    argv = [*base, "-s", str(tmp_path / "d"), "--force", "--cutoff", "5000", "--normalize"]
    assert run(capsys, *argv, "-q")[0] == 0
    z, _ = sf.read(str(tmp_path / "d" / out_name(src)), dtype="float32")
    assert abs(float(z.mean())) < 1e-6 and abs(np.abs(z).max() - 0.5) < 0.01
