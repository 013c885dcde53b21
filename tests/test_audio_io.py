"""Reading, resampling and atomic writing of audio files, and one-line errors for bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosr import audio_io
from audiosr.audio_io import (
    AtomicWriter,
    audio_info,
    read_audio,
    resample,
    resample_stream,
    stream_audio,
    write_audio,
)
from audiosr.errors import AudioReadError, AudioWriteError


def _noise(channels: int, frames: int, seed: int = 0, scale: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-scale, scale, (channels, frames))).astype(np.float32)


def _quantise(x: np.ndarray, bits: int) -> np.ndarray:
    """Values exactly representable in a `bits`-bit PCM file (libsndfile scales by 2^(bits-1))."""
    q = float(2 ** (bits - 1))
    return (np.round(x * q) / q).astype(np.float32)


def _sine(freq: float, sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return np.tile(0.5 * np.sin(2 * np.pi * freq * t), (channels, 1)).astype(np.float32)


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def _assert_one_line(err: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert str(path) in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), msg


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize(
    ("suffix", "subtype", "bits"),
    [
        (".wav", "PCM_16", 16),
        (".wav", "PCM_24", 24),
        (".wav", "PCM_32", 24),  # float32 holds 24 bits: values on a 24-bit grid survive
        (".wav", "FLOAT", None),
        (".wav", "DOUBLE", None),
        (".flac", "PCM_16", 16),
        (".flac", "PCM_24", 24),
        (".aiff", "PCM_24", 24),
    ],
)
def test_lossless_round_trip_is_exact(tmp_path: Path, suffix: str, subtype: str, bits) -> None:
    x = _noise(2, 4000)
    if bits is not None:
        x = _quantise(x, bits)
    path = write_audio(tmp_path / f"a{suffix}", x, 44_100, subtype)
    y, sr = read_audio(path)
    assert sr == 44_100 and y.dtype == np.float32 and y.shape == (2, 4000)
    assert y.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(y, x)
    info = audio_info(path)
    assert (info.frames, info.sample_rate, info.channels) == (4000, 44_100, 2)
    assert info.subtype == subtype
    assert info.duration_s == pytest.approx(4000 / 44_100)


def test_8bit_wav_round_trip(tmp_path: Path) -> None:
    x = _noise(1, 1000)
    sf.write(tmp_path / "u8.wav", x.T, 8000, subtype="PCM_U8")
    y, sr = read_audio(tmp_path / "u8.wav")
    assert sr == 8000 and y.shape == (1, 1000)
    np.testing.assert_allclose(y, x, atol=1 / 128)


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype", "sr"),
    [
        (".mp3", "MP3", "MPEG_LAYER_III", 44_100),
        (".ogg", "OGG", "VORBIS", 44_100),
        (".opus", "OGG", "OPUS", 48_000),
    ],
)
def test_lossy_round_trip(tmp_path: Path, suffix: str, fmt: str, subtype: str, sr: int) -> None:
    x = _sine(1000.0, sr, 1.0, channels=2)
    path = write_audio(tmp_path / f"a{suffix}", x, sr, subtype=None)
    info = audio_info(path)
    assert (info.format, info.subtype, info.channels, info.sample_rate) == (fmt, subtype, 2, sr)
    y, got_sr = read_audio(path)
    assert got_sr == sr and y.shape[0] == 2 and y.dtype == np.float32
    # Codecs add priming/padding samples; the content must be the same 1 kHz tone.
    assert abs(y.shape[1] - x.shape[1]) < 0.1 * sr
    assert _dominant_hz(y[0], sr) == pytest.approx(1000.0, abs=2.0)
    rms_db = 20 * np.log10(np.sqrt(np.mean(y[:, sr // 4 : -sr // 4] ** 2)) / np.sqrt(0.125))
    assert abs(rms_db) < 1.0


def test_m4a_through_pyav(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    sr, x = 44_100, _sine(440.0, 44_100, 1.0, channels=2)
    path = tmp_path / "a.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sr, layout="stereo")
        n = stream.codec_context.frame_size or 1024
        for i in range(0, x.shape[1], n):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, i : i + n]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = sr, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    y, got_sr = read_audio(path)
    assert got_sr == sr and y.shape[0] == 2 and y.dtype == np.float32
    assert abs(y.shape[1] - x.shape[1]) <= 3 * 1024  # AAC priming and padding
    assert _dominant_hz(y[0], sr) == pytest.approx(440.0, abs=2.0)
    info = audio_info(path)
    assert info.channels == 2 and info.sample_rate == sr and info.subtype == "aac"
    blocks = list(stream_audio(path, 1000))
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), y)
    assert all(b.shape[1] == 1000 for b in blocks[:-1])


def test_m4a_without_pyav_names_the_fix(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(audio_io, "_import_av", lambda: None)
    for call in (read_audio, audio_info, lambda p: list(stream_audio(p, 100))):
        with pytest.raises(AudioReadError) as err:
            call(path)
        _assert_one_line(err, path, "pip install av")


def test_mono_1d_write_and_eight_channels(tmp_path: Path) -> None:
    x = _quantise(_noise(1, 500)[0], 24)
    y, _ = read_audio(write_audio(tmp_path / "mono.wav", x, 16_000))
    assert y.shape == (1, 500)
    np.testing.assert_array_equal(y[0], x)
    x8 = _quantise(_noise(8, 300), 16)  # 7.1 surround is the widest layout accepted
    y8, _ = read_audio(write_audio(tmp_path / "eight.wav", x8, 48_000, "PCM_16"))
    np.testing.assert_array_equal(y8, x8)


def test_integer_output_clips_and_logs(tmp_path: Path, caplog) -> None:
    x = np.array([[0.5, 1.5, -2.0, -0.25]], dtype=np.float32)
    with caplog.at_level("WARNING", logger="audiosr.audio_io"):
        y, _ = read_audio(write_audio(tmp_path / "c.wav", x, 8000, "PCM_16"))
    np.testing.assert_allclose(y[0], [0.5, 32767 / 32768, -1.0, -0.25])
    assert "clipped 2 samples" in caplog.text


# --------------------------------------------------------------------------------------------
# Streaming


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
@pytest.mark.parametrize("block", [1, 999, 1000, 4096])
def test_stream_reassembles_file_exactly(tmp_path: Path, suffix: str, block: int) -> None:
    x = _quantise(_noise(3, 3000, seed=4), 24)
    path = write_audio(tmp_path / f"s{suffix}", x, 32_000)
    blocks = list(stream_audio(path, block))
    assert all(b.shape == (3, block) for b in blocks[:-1])
    assert all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), x)


def test_stream_reports_nan_in_a_later_block(tmp_path: Path) -> None:
    x = _noise(1, 1000)
    x[0, 700] = np.nan
    path = tmp_path / "late_nan.wav"
    sf.write(path, x.T, 8000, subtype="FLOAT")
    gen = stream_audio(path, 256)
    assert next(gen).shape == (1, 256)  # the first blocks are fine
    with pytest.raises(AudioReadError) as err:
        list(gen)
    _assert_one_line(err, path, "1 NaN/Inf sample", "512")


def test_atomic_writer_streams_blocks(tmp_path: Path) -> None:
    x = _quantise(_noise(2, 5000), 24)
    out = tmp_path / "long.flac"
    with AtomicWriter(out, 48_000, channels=2, subtype="PCM_24") as w:
        for i in range(0, 5000, 1234):
            w.write(x[:, i : i + 1234])
            assert not out.exists()  # nothing visible before the end
    assert w.frames_written == 5000
    np.testing.assert_array_equal(read_audio(out)[0], x)
    assert sorted(os.listdir(tmp_path)) == ["long.flac"]
    assert (out.stat().st_mode & 0o777) == 0o644


# --------------------------------------------------------------------------------------------
# Resampling


def test_resample_keeps_in_band_tone_and_removes_out_of_band() -> None:
    x = _sine(1000.0, 16_000, 1.0, channels=2)
    y = resample(x, 16_000, 48_000)
    assert y.shape == (2, 48_000) and y.dtype == np.float32
    ref = _sine(1000.0, 48_000, 1.0)[0]
    np.testing.assert_allclose(y[1, 1000:-1000], ref[1000:-1000], atol=1e-4)
    # 48 kHz -> 16 kHz must remove a 10 kHz tone (above the new Nyquist) instead of folding it
    # to 6 kHz: a proper anti-alias filter, unlike decimation.
    hi = _sine(10_000.0, 48_000, 1.0)[0]
    down = resample(hi, 48_000, 16_000)
    assert down.shape == (16_000,)
    assert np.sqrt(np.mean(down[500:-500] ** 2)) < 1e-4
    same = resample(x, 16_000, 16_000)
    np.testing.assert_array_equal(same, x)
    assert same is not x


@pytest.mark.parametrize(("orig", "new"), [(44_100, 48_000), (48_000, 22_050), (8000, 48_000)])
def test_resample_stream_equals_batch(orig: int, new: int) -> None:
    x = _noise(2, orig, seed=9)
    batch = resample(x, orig, new)
    assert abs(batch.shape[1] - new) <= 1
    blocks = (x[:, i : i + 3000] for i in range(0, x.shape[1], 3000))
    streamed = np.concatenate(list(resample_stream(blocks, orig, new)), axis=1)
    assert streamed.shape == batch.shape
    np.testing.assert_allclose(streamed, batch, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Bad input: one AudioReadError with a one-line message naming the file


def _wav_bytes(tmp_path: Path, frames: int = 1000, channels: int = 1) -> bytes:
    path = tmp_path / "src.wav"
    sf.write(path, np.zeros((frames, channels), np.float32), 16_000, subtype="PCM_16")
    return path.read_bytes()


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a word the message must contain)."""
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes | None, word: str, suffix: str = ".wav") -> None:
        path = tmp_path / f"{name}{suffix}"
        if data is not None:
            path.write_bytes(data)
        cases[name] = (path, word)

    add("missing", None, "no such file")
    (tmp_path / "folder.wav").mkdir()
    cases["directory"] = (tmp_path / "folder.wav", "directory")
    add("empty", b"", "empty file (0 bytes)")
    wav = _wav_bytes(tmp_path)
    add("truncated_data", wav[: len(wav) // 2], "truncated")
    add("truncated_header", wav[:30], "corrupt")
    add("text", b"this is a text file, not a wave\n" * 20, "corrupt")
    add("text_mp3", b"this is a text file, not an mp3\n" * 20, "corrupt", ".mp3")
    add("random", np.random.default_rng(0).bytes(5000), "corrupt", ".flac")
    flac = tmp_path / "full.flac"
    sf.write(flac, _noise(1, 20_000).T, 16_000)
    add("truncated_flac", flac.read_bytes()[: flac.stat().st_size // 2], "corrupt", ".flac")
    add("zero_length", _wav_bytes(tmp_path, frames=0), "0 samples")
    nan = _noise(2, 100)
    nan[0, 3] = nan[1, 50] = np.nan
    nan[1, 7] = np.inf
    sf.write(tmp_path / "nan.wav", nan.T, 16_000, subtype="FLOAT")
    cases["nan"] = (tmp_path / "nan.wav", "3 NaN/Inf samples")
    add("nine_channels", _wav_bytes(tmp_path, frames=10, channels=9), "9 channels")
    return cases


BAD = [
    "missing",
    "directory",
    "empty",
    "truncated_data",
    "truncated_header",
    "text",
    "text_mp3",
    "random",
    "truncated_flac",
    "zero_length",
    "nan",
    "nine_channels",
]


@pytest.mark.parametrize("name", BAD)
def test_bad_input_gives_one_line_read_error(tmp_path: Path, name: str) -> None:
    path, word = _bad_inputs(tmp_path)[name]
    with pytest.raises(AudioReadError) as err:
        read_audio(path)
    _assert_one_line(err, path, word)
    with pytest.raises(AudioReadError) as err:
        list(stream_audio(path, 4096))
    _assert_one_line(err, path)


@pytest.mark.parametrize("name", ["missing", "directory", "empty", "text", "random"])
def test_audio_info_rejects_bad_input(tmp_path: Path, name: str) -> None:
    path, word = _bad_inputs(tmp_path)[name]
    with pytest.raises(AudioReadError) as err:
        audio_info(path)
    _assert_one_line(err, path, word)


def test_channel_limit_is_a_parameter(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "three.wav", _noise(3, 10), 8000)
    with pytest.raises(AudioReadError, match="3 channels; at most 2"):
        read_audio(path, max_channels=2)
    assert read_audio(path)[0].shape == (3, 10)


def test_unfinalised_streaming_wav_header_is_accepted(tmp_path: Path) -> None:
    # Writers that cannot seek (pipes) leave 0xFFFFFFFF as the data size: not truncation.
    data = bytearray(_wav_bytes(tmp_path, frames=100))
    i = data.index(b"data")
    data[i + 4 : i + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "piped.wav").write_bytes(bytes(data))
    assert read_audio(tmp_path / "piped.wav")[0].shape == (1, 100)


# --------------------------------------------------------------------------------------------
# Atomic writes


def test_failure_inside_writer_leaves_target_and_folder_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    write_audio(out, _quantise(_noise(1, 100), 24), 8000)
    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="engine crashed"):
        with AtomicWriter(out, 8000, channels=1) as w:
            w.write(_noise(1, 50, seed=1))
            raise RuntimeError("engine crashed")
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.wav"]


def test_nan_output_is_refused_without_leftovers(tmp_path: Path) -> None:
    x = _noise(1, 100)
    x[0, 10] = np.nan
    out = tmp_path / "nan_out.wav"
    with pytest.raises(AudioWriteError) as err:
        write_audio(out, x, 8000)
    _assert_one_line(err, out, "1 NaN/Inf")
    assert os.listdir(tmp_path) == []


def test_protected_input_is_never_overwritten(tmp_path: Path) -> None:
    src = write_audio(tmp_path / "input.wav", _quantise(_noise(1, 100), 24), 8000)
    before = src.read_bytes()
    (tmp_path / "sub").mkdir()
    # The same file under other spellings: relative "..", and a symbolic link.
    link = tmp_path / "link.wav"
    link.symlink_to(src)
    for target in (src, tmp_path / "sub" / ".." / "input.wav", link):
        with pytest.raises(AudioWriteError) as err:
            write_audio(target, _noise(1, 10), 8000, protect=[src])
        _assert_one_line(err, target, "input")
    assert src.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["input.wav", "link.wav", "sub"]


def test_parent_that_is_a_file_gives_write_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    out = blocker / "out.wav"
    with pytest.raises(AudioWriteError) as err:
        write_audio(out, _noise(1, 10), 8000)
    _assert_one_line(err, out, "is a file")


def test_a_folder_refusing_files_gives_write_error(tmp_path: Path, monkeypatch) -> None:
    """What a read-only folder does to an unprivileged user, also when the tests run as root
    (which ignores permissions): creating the temporary file fails with EACCES."""
    import tempfile

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "ro" / "out.wav"
    with pytest.raises(AudioWriteError) as err:
        write_audio(out, _noise(1, 10), 8000)
    _assert_one_line(err, out, "not writable")
    assert "Permission denied" in str(err.value)
    assert not out.exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_gives_write_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(AudioWriteError) as err:
            write_audio(folder / "out.wav", _noise(1, 10), 8000)
        _assert_one_line(err, folder / "out.wav", "not writable")
    finally:
        folder.chmod(0o700)


def test_missing_folders_are_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out.flac"
    write_audio(out, _quantise(_noise(1, 10), 24), 8000)
    assert read_audio(out)[0].shape == (1, 10)


def test_target_directory_unknown_suffix_and_bad_subtype(tmp_path: Path) -> None:
    with pytest.raises(AudioWriteError, match="directory"):
        write_audio(tmp_path, _noise(1, 10), 8000)
    with pytest.raises(AudioWriteError, match="unknown output type '.xyz'"):
        write_audio(tmp_path / "a.xyz", _noise(1, 10), 8000)
    with pytest.raises(AudioWriteError, match="FLAC files cannot hold subtype FLOAT"):
        write_audio(tmp_path / "a.flac", _noise(1, 10), 8000, "FLOAT")
    with pytest.raises(ValueError, match="looks like"):
        write_audio(tmp_path / "a.wav", _noise(2, 1000).T, 8000)
    assert os.listdir(tmp_path) == []
