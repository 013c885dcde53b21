"""The drop-in API as other projects' test suites use it (issue 9 §5-§6).

The original's namespace against the golden data, the chunked path with no overlap, long
names, list files with a byte-order mark, M4A input, soundfile's [T, C] arrays, blocked
modules in ``sys.modules``, and checkpoint names in upper case.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

import audiosr
from audiosr import audio_io
from audiosr.cli import main
from audiosr.dsp.lowpass import draw_filter_family, simulate_lowpass
from audiosr.upstream import (
    LatentDiffusion,
    read_audio_upstream,
    read_list,
    save_wave,
    super_resolution,
    super_resolution_long_audio,
)

ORIGINAL_NAMES = (
    "build_model",
    "super_resolution",
    "super_resolution_long_audio",
    "save_wave",
    "read_list",
    "seed_everything",
    "get_time",
    "get_duration",
    "read_audio_file",
    "normalize_wav",
    "pad_wav",
    "wav_feature_extraction",
    "lowpass_filtering_prepare_inference",
    "make_batch_for_super_resolution",
)


@pytest.fixture(scope="module")
def tiny_model(golden, golden_config) -> LatentDiffusion:
    return audiosr.build_model(
        ckpt_path=str(golden.checkpoint_path), config=golden_config, device="cpu"
    )


def noise_file(path, seconds=1.0, sr=16_000, channels=1, **kw):
    n = int(seconds * sr)
    rng = np.random.default_rng(3)
    spec = np.fft.rfft(rng.standard_normal((n, channels)), axis=0)
    spec[np.fft.rfftfreq(n, 1 / sr) > 4000] = 0
    x = np.fft.irfft(spec, n=n, axis=0)
    sf.write(str(path), (0.3 * x / np.abs(x).max()).astype(np.float32), sr, **kw)
    return path


# --------------------------------------------------------------------------------------------
# The original's namespace


def test_every_original_name_imports_from_the_package() -> None:
    from audiosr import get_time, read_list, save_wave  # noqa: F401  (the original's own line)

    for name in ORIGINAL_NAMES:
        assert callable(getattr(audiosr, name)), name
        assert name in audiosr.__all__
    namespace: dict = {}
    exec("from audiosr import *", namespace)
    assert set(ORIGINAL_NAMES) <= set(namespace)
    with pytest.raises(AttributeError):
        audiosr.no_such_name  # noqa: B018


def test_importing_the_package_does_not_load_torch() -> None:
    code = "import sys, audiosr; assert 'torch' not in sys.modules; audiosr.get_time"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(audiosr.__file__)))
    import subprocess

    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_read_audio_file_matches_the_golden_front_end(golden) -> None:
    log_mel, stft, wave, duration, frames = audiosr.read_audio_file(golden.input_path)
    assert frames == golden.scalar("fe_target_frame")
    assert duration == pytest.approx(golden.scalar("fe_pad_duration"))  # the padded one
    assert isinstance(wave, np.ndarray) and wave.dtype == np.float32
    np.testing.assert_array_equal(wave, golden["fe_wave_norm_padded"].reshape(wave.shape))
    ref_mag = golden["fe_stft_mag"]
    assert stft.shape == ref_mag.shape
    np.testing.assert_allclose(stft.numpy(), ref_mag, rtol=0, atol=1e-6 * ref_mag.max())
    ref_mel = golden["fe_log_mel"]
    assert log_mel.shape == ref_mel.shape
    above_floor = ref_mel > -8  # ln(1e-5) = -11.5 is the clamp; FFT rounding shows there
    np.testing.assert_allclose(log_mel.numpy()[above_floor], ref_mel[above_floor], atol=1e-4)


def test_normalize_and_pad_wav_match_the_golden_front_end(golden) -> None:
    x = golden["fe_input_wave"]
    padded = audiosr.pad_wav(audiosr.normalize_wav(x), golden["fe_wave_norm_padded"].shape[-1])
    np.testing.assert_array_equal(padded, golden["fe_wave_norm_padded"])
    same = np.ones((1, 500), np.float32)
    assert audiosr.pad_wav(same, 500) is same  # already long enough: returned as is
    with pytest.raises(ValueError, match="too short"):
        audiosr.pad_wav(np.ones(100, np.float32), 1000)


def test_make_batch_after_seed_everything_gives_the_golden_condition(golden) -> None:
    meta = golden.meta["runA"]
    audiosr.seed_everything(int(meta["seed"]))
    assert os.environ["PYTHONHASHSEED"] == str(meta["seed"])
    batch, duration = audiosr.make_batch_for_super_resolution(golden.input_path)
    family = meta["filter_type"]
    assert family == draw_filter_family(int(meta["seed"]))
    np.testing.assert_array_equal(
        batch["waveform_lowpass"].numpy().reshape(-1), golden[f"lp_{family}_wave"].reshape(-1)
    )
    frames = golden.scalar("fe_target_frame")
    assert batch["waveform"].shape == (1, 1, frames * 480)
    assert batch["stft"].shape == (1, frames, 1024)
    assert batch["log_mel_spec"].shape == batch["lowpass_mel"].shape == (1, frames, 256)
    assert batch["sampling_rate"] == 48_000 and duration == pytest.approx(5.12)
    # A chunk given as samples (the chunked path's form): its own duration comes back.
    chunk = golden["fe_input_wave"][None, :96_000]
    batch, duration = audiosr.make_batch_for_super_resolution(None, waveform=chunk)
    assert duration == pytest.approx(2.0) and batch["waveform"].shape == (1, 1, 245_760)


def test_seed_everything_seeds_the_global_generators() -> None:
    audiosr.seed_everything(7)
    a = (np.random.rand(3), torch.rand(3), __import__("random").random())
    audiosr.seed_everything(7)
    b = (np.random.rand(3), torch.rand(3), __import__("random").random())
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1]) and a[2] == b[2]


def test_get_time_and_get_duration(golden, tmp_path) -> None:
    assert re.fullmatch(r"\d\d_\d\d_\d{4}_\d\d_\d\d_\d\d", audiosr.get_time())
    stamp = time.mktime(time.strptime(audiosr.get_time(), "%d_%m_%Y_%H_%M_%S"))
    assert abs(stamp - time.time()) < 5  # local time, to the second
    info = sf.info(str(golden.input_path))
    assert audiosr.get_duration(golden.input_path) == pytest.approx(info.frames / info.samplerate)
    flac = noise_file(tmp_path / "a.flac", seconds=1.5)
    assert audiosr.get_duration(flac) == pytest.approx(1.5)


# --------------------------------------------------------------------------------------------
# Lists, names


def test_read_list_strips_a_utf8_bom(tmp_path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes("\ufeffa.wav\r\n\r\n  b.wav \n".encode())
    assert read_list(listing) == ["a.wav", "b.wav"]


def test_input_list_with_bom_through_the_cli(tmp_path, capsys) -> None:
    src = noise_file(tmp_path / "a.wav")
    listing = tmp_path / "list.txt"
    listing.write_bytes(("\ufeff" + str(src) + "\n").encode())
    out = tmp_path / "out"
    assert main(["-il", str(listing), "-s", str(out), "--engine", "sinc", "-q"]) == 0
    assert (out / "a_AudioSR_Processed_48K.wav").is_file()


@pytest.mark.parametrize("chars", [82, 90])
def test_save_wave_long_names(tmp_path, chars) -> None:
    """82 CJK characters + ".wav" is 250 bytes (kept); 90 is 274 (shortened, hashed)."""
    src = noise_file(tmp_path / "in.wav", seconds=0.5)
    name = "声" * chars
    wave = np.zeros((1, 1, 48_000), np.float32)
    (path,) = save_wave(wave, src, tmp_path / "out", name=name, samplerate=48_000)
    assert path.is_file() and len(os.fsencode(path.name)) <= 255
    if chars == 82:
        assert path.name == name + ".wav"
    else:
        assert path.name == audio_io.fit_name(name + ".wav") and "~" in path.name
        other = save_wave(wave, src, tmp_path / "out", name="声" * 91, samplerate=48_000)[0]
        assert other.name != path.name  # different long names stay different
    assert sf.info(str(path)).frames == 24_000  # trimmed to the input's 0.5 s
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_fit_name_cuts_at_a_character_boundary() -> None:
    name = "é" * 200 + ".wav"  # 404 bytes
    short = audio_io.fit_name(name)
    assert len(os.fsencode(short)) <= 255 and short.endswith(".wav")
    short.encode("utf-8")  # valid text
    assert audio_io.fit_name("a.wav") == "a.wav"
    assert len(os.fsencode(audio_io.temp_prefix(short))) + 22 <= 255


# --------------------------------------------------------------------------------------------
# The chunked path


def test_long_audio_without_overlap(tiny_model, tmp_path) -> None:
    src = noise_file(tmp_path / "a.wav", seconds=1.5, sr=48_000)
    out = super_resolution_long_audio(
        tiny_model, src, seed=0, ddim_steps=1, chunk_duration_s=1.0, overlap_duration_s=0
    )
    assert out.shape == (1, 72_000)
    assert torch.isfinite(out).all() and out.abs().max() > 0
    # Both chunks are there at their own input peak (each chunk is rescaled to it).
    x, _ = sf.read(str(src), dtype="float32")
    for a, b in ((0, 48_000), (48_000, 72_000)):
        assert float(out[0, a:b].abs().max()) == pytest.approx(
            float(np.abs(x[a:b]).max()), rel=1e-3
        )


@pytest.mark.parametrize("overlap", [-1.0, float("nan")])
def test_long_audio_rejects_a_bad_overlap_before_reading(overlap) -> None:
    with pytest.raises(ValueError, match="overlap_duration_s"):
        super_resolution_long_audio(None, "no/such/file.wav", overlap_duration_s=overlap)


def test_cli_chunking_rejects_negative_overlap(tmp_path, capsys) -> None:
    src = noise_file(tmp_path / "a.wav")
    argv = [str(src), "--preset", "upstream", "--chunking", "--overlap_duration", "-1"]
    assert main([*argv, "-s", str(tmp_path / "out")]) == 2
    assert "--overlap_duration" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# M4A in the drop-in path


def _m4a(tmp_path, seconds=1.0, sr=44_100):
    av = pytest.importorskip("av")
    n = int(seconds * sr)
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sr)
        stream.layout = "mono"
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(x[None, start : start + 1024], "fltp", "mono")
            frame.rate = sr
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_drop_in_reads_m4a(tiny_model, tmp_path) -> None:
    m4a = _m4a(tmp_path)
    decoded, sr = audio_io.read_audio(m4a)
    wav = tmp_path / "same.wav"
    sf.write(str(wav), decoded.T, sr, subtype="FLOAT")
    a, dur_a = read_audio_upstream(m4a)
    b, dur_b = read_audio_upstream(wav)
    assert torch.equal(a, b) and dur_a == dur_b
    out = super_resolution(tiny_model, m4a, seed=0, ddim_steps=1)
    assert out.shape[:2] == (1, 1) and np.isfinite(out).all()


def test_upstream_preset_reads_m4a(golden, tmp_path, capsys) -> None:
    m4a = _m4a(tmp_path)
    out = tmp_path / "out"
    argv = [str(m4a), "-s", str(out), "--preset", "upstream", "--ddim_steps", "1", "-d", "cpu"]
    argv += ["--checkpoint", str(golden.checkpoint_path), "--config", str(golden.config_path)]
    code = main([*argv, "-q"])
    assert code == 0, capsys.readouterr().err
    info = sf.info(str(out / "tone_AudioSR_Processed_48K.wav"))
    assert info.samplerate == 48_000 and info.subtype == "PCM_16"
    # The input's duration as its container states it (the encoder pads the last frame).
    assert info.frames == round(audio_io.audio_info(m4a).duration_s * 48_000)
    assert abs(info.frames - 48_000) <= 2048


# --------------------------------------------------------------------------------------------
# The modern API with soundfile's layout


def test_up_accepts_soundfile_layout_and_says_which_layout_otherwise(tmp_path) -> None:
    up = audiosr.load(engine="sinc")
    src = noise_file(tmp_path / "s.wav", seconds=1.0, sr=16_000, channels=2)
    data, sr = sf.read(str(src), dtype="float32")  # [T, C]
    assert data.shape == (16_000, 2)
    y = up(data, sr)
    assert tuple(y.shape) == (2, 48_000)
    assert torch.equal(y, up(data.T, sr))
    assert tuple(up(data[:, 0], sr).shape) == (1, 48_000)
    with pytest.raises(ValueError, match=r"\[T, C\]"):
        up(np.zeros((20, 16_000), np.float32), sr)  # 20 channels either way: ambiguous


# --------------------------------------------------------------------------------------------
# Hosts that block modules, checkpoint names in upper case


@pytest.mark.parametrize("blocked", ["cupy", "jax", "sparse"])
def test_lowpass_condition_with_a_blocked_module(monkeypatch, blocked) -> None:
    rng = np.random.default_rng(0)
    wave = torch.from_numpy(rng.standard_normal((1, 48_000)).astype(np.float32))
    expected = simulate_lowpass(wave, 6000.0, "ellip")
    monkeypatch.setitem(sys.modules, blocked, None)
    got = simulate_lowpass(wave, 6000.0, "ellip")
    assert torch.equal(got, expected)
    assert sys.modules[blocked] is None  # the host's block is back in place


def test_cold_start_with_blocked_modules_in_a_fresh_interpreter() -> None:
    """scipy caches the array namespace after its first call, so an in-process test that ran
    resample_poly before the block proves nothing: a fresh interpreter blocks first."""
    code = (
        "import sys\n"
        "for name in ('cupy', 'jax'): sys.modules[name] = None\n"
        "import numpy as np, torch\n"
        "from audiosr.eval.degrade import Degradation, apply\n"
        "from audiosr.dsp.lowpass import simulate_lowpass\n"
        "x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 48000)))\n"
        "y, cut = apply(Degradation(kind='resample', rate=16000), x)\n"
        "z = simulate_lowpass(x.float(), 6000.0, 'ellip')\n"
        "assert sys.modules['cupy'] is None and sys.modules['jax'] is None\n"
        "print(cut, float(y.abs().sum()), float(z.abs().sum()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    cut, y_sum, z_sum = map(float, out.stdout.split())
    from audiosr.eval.degrade import Degradation, apply

    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 48000)))
    y, expected_cut = apply(Degradation(kind="resample", rate=16000), x)
    assert cut == expected_cut == 8000.0
    assert y_sum == pytest.approx(float(y.abs().sum()), rel=1e-12)
    assert z_sum == pytest.approx(float(simulate_lowpass(x.float(), 6000.0, "ellip").abs().sum()))


def test_upper_case_safetensors_and_convert_permissions(golden, golden_config, tmp_path) -> None:
    from audiosr.weights import _open_state_dict, load_model

    old = os.umask(0o002)
    try:
        dst = tmp_path / "TINY.SAFETENSORS"
        assert main(["convert", str(golden.checkpoint_path), str(dst), "--config",
                     str(golden.config_path), "-q"]) == 0  # fmt: skip
        assert dst.stat().st_mode & 0o777 == 0o664  # the umask's mode, not mkstemp's 0600
        assert [p.name for p in tmp_path.iterdir()] == ["TINY.SAFETENSORS"]
    finally:
        os.umask(old)
    view = _open_state_dict(dst)
    assert type(view).__name__ == "_SafetensorsView"
    a = load_model(golden_config, dst).state_dict()
    b = load_model(golden_config, golden.checkpoint_path).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_atomic_writer_new_files_follow_the_umask(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        path = audio_io.write_audio(tmp_path / "a.wav", np.zeros((1, 10)), 48_000)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
