"""The command line, end to end, on the tiny golden checkpoint."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiosr.cli import main


def _tiny_args(golden) -> list[str]:
    return ["--checkpoint", str(golden.checkpoint_path), "--config", str(golden.config_path)]


def test_upstream_preset_reproduces_original_file(golden, tmp_path):
    """`audiosr -i FILE --preset upstream` writes the original's output, trimmed, 16-bit."""
    run = golden.runs()[0]
    meta = golden.meta[run]
    argv = [
        "-i",
        str(golden.input_path),
        "-s",
        str(tmp_path),
        "--preset",
        "upstream",
        "--ddim_steps",
        str(meta["ddim_steps"]),
        "-gs",
        str(meta["guidance"]),
        "--seed",
        str(meta["seed"]),
        "-d",
        "cpu",
        "-q",
        *_tiny_args(golden),
    ]
    assert main(argv) == 0
    out = tmp_path / f"{golden.input_path.stem}_AudioSR_Processed_48K.wav"
    info = sf.info(str(out))
    assert info.samplerate == 48000 and info.subtype == "PCM_16" and info.channels == 1
    n_in = sf.info(str(golden.input_path)).frames
    assert info.frames == n_in
    data, _ = sf.read(str(out), dtype="float32")
    ref = golden[f"{run}_output"][0, 0, :n_in]
    np.testing.assert_allclose(data, ref, atol=1e-4 + 1 / 32768, rtol=0)
    # A second run skips the existing output; --overwrite redoes it.
    assert main(argv) == 0
    assert main([*argv, "--overwrite"]) == 0


def test_modern_default_keeps_length_and_low_band(golden, tmp_path):
    argv = [
        "-i",
        str(golden.input_path),
        "-s",
        str(tmp_path),
        "--ddim_steps",
        "2",
        "-d",
        "cpu",
        "-q",
        *_tiny_args(golden),
        "--subtype",
        "float",
    ]
    assert main(argv) == 0
    out = tmp_path / f"{golden.input_path.stem}_AudioSR_Processed_48K.wav"
    data, sr = sf.read(str(out), dtype="float32")
    x, _ = sf.read(str(golden.input_path), dtype="float32")
    assert sr == 48000 and data.shape == x.shape and np.isfinite(data).all()
    # Loudness kept: the output's level is the input's, not the original's peak 0.5.
    spec_in = np.abs(np.fft.rfft(x))
    spec_out = np.abs(np.fft.rfft(data))
    freqs = np.fft.rfftfreq(len(x), 1 / 48000)
    low = freqs < 3000
    np.testing.assert_allclose(spec_out[low], spec_in[low], rtol=1e-3, atol=1e-3 * spec_in.max())


def test_console_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "audiosr", "--help"], capture_output=True, text=True, check=True
    )
    for flag in (
        "--input_audio_file",
        "--input_file_list",
        "--save_path",
        "--model_name",
        "--device",
        "--ddim_steps",
        "--guidance_scale",
        "--seed",
        "--suffix",
        "--chunking",
        "--chunk_duration",
        "--overlap_duration",
        "--checkpoint",
        "--config",
        "-il",
        "-gs",
    ):
        assert flag in out.stdout, flag


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--ddim_steps", "0"], "ddim_steps"),
        (["--ddim_steps", "-3"], "ddim_steps"),
        (["--model_name", "large"], "invalid choice"),
    ],
)
def test_bad_arguments_give_one_line(golden, tmp_path, capsys, extra, needle):
    argv = ["-i", str(golden.input_path), "-s", str(tmp_path), *_tiny_args(golden), *extra]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors exit 2
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0
    assert needle in err
    assert "Traceback" not in err


def test_convert_command(golden, tmp_path):
    dst = tmp_path / "tiny.safetensors"
    assert (
        main(
            [
                "convert",
                str(golden.checkpoint_path),
                str(dst),
                "--config",
                str(golden.config_path),
                "--dtype",
                "fp16",
                "-q",
            ]
        )
        == 0
    )
    assert dst.is_file() and dst.stat().st_size > 0


def test_dsp_engine_with_plot_needs_no_weights(tmp_path):
    """The README's first command: the offline engine plus the spectrogram picture."""
    import numpy as np

    t = np.arange(16000 * 2) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    src = tmp_path / "tone16k.wav"
    sf.write(str(src), x.astype(np.float32), 16000)
    out = tmp_path / "out"
    assert main(["-i", str(src), "-s", str(out), "--engine", "dsp", "--plot", "-q"]) == 0
    wav = out / "tone16k_AudioSR_Processed_48K.wav"
    png = out / "tone16k_AudioSR_Processed_48K.png"
    assert sf.info(str(wav)).samplerate == 48000
    assert sf.info(str(wav)).frames == 48000 * 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_subcommand_is_registered(capsys):
    assert main(["eval", "--help"]) == 0
    assert "--engines" in capsys.readouterr().out
