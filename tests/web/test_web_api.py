"""The ``/upsample`` endpoint over real HTTP (gradio_client) against ``audiosr web``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from conftest import EXAMPLES, MAX_DURATION_S, MAX_UPLOAD_MB, band_limited


def check_output(result: tuple, src: Path) -> dict:
    """The 48 kHz WAV has the input's duration and channels; returns the details."""
    out_wav, download, input48, picture, info, details = result
    src_info = sf.info(str(src))
    out = sf.info(out_wav)
    assert out.samplerate == 48_000
    assert out.channels == src_info.channels
    assert out.frames == round(src_info.frames * 48_000 / src_info.samplerate)
    assert out.format == "WAV"
    assert Path(download).read_bytes() == Path(out_wav).read_bytes()
    ab = sf.info(input48)
    assert (ab.samplerate, ab.channels, ab.frames) == (48_000, out.channels, out.frames)
    assert Path(picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "audiosr --engine dsp" in info
    return details


def test_band_limited_file_comes_back_at_48k_with_its_duration_and_channels(client, tmp_path):
    src = band_limited(tmp_path / "stereo_16k.wav", 2.5, 16_000, 2, cutoff_hz=4000)
    result = client.predict(handle_file(str(src)), api_name="/upsample")
    details = check_output(result, src)
    # The detector found the 4 kHz band limit and the engine filled the band above it.
    assert 3500 < details["band_limit_hz"] < 4500
    assert details["passthrough"] is False
    assert details["engine"] == "dsp"
    assert details["command"] == "audiosr --engine dsp -i stereo_16k.wav -s output"
    y, sr = sf.read(result[0], always_2d=True)
    spectrum = np.abs(np.fft.rfft(y[:, 0])) ** 2
    freqs = np.fft.rfftfreq(y.shape[0], 1 / sr)
    low = spectrum[(freqs > 1000) & (freqs < 3000)].mean()
    high = spectrum[(freqs > 6000) & (freqs < 12000)].mean()
    assert high > 1e-4 * low  # the input has nothing there (8th-order low-pass at 4 kHz)
    # The A/B input is the input's level (loudness kept): least-squares gain ~ 1.
    assert details["ab_input_gain"] == pytest.approx(1.0, abs=0.02)


def test_options_reach_the_pipeline(client, tmp_path):
    src = band_limited(tmp_path / "mono.flac", 1.5, 22_050, 1, cutoff_hz=5000)
    result = client.predict(
        handle_file(str(src)),
        engine="sinc",
        band_limit="manual",
        cutoff_hz=6000,
        prefilter=False,
        keep_loudness=False,
        api_name="/upsample",
    )
    details = result[5]
    assert details["band_limit_hz"] == 6000
    assert details["band_limit_source"] == "manual"
    assert details["command"] == (
        "audiosr --engine sinc --cutoff 6000 --no_prefilter --normalize -i mono.flac -s output"
    )
    y, _ = sf.read(result[0])
    assert np.abs(y).max() == pytest.approx(0.5, abs=0.01)  # the original's output level


def test_corrupt_upload_gives_an_error_and_the_next_call_succeeds(client, tmp_path):
    good = EXAMPLES / "knock_bell_22k.ogg"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    with pytest.raises(AppError, match=r"cannot read corrupt\.wav"):
        client.predict(handle_file(str(corrupt)), api_name="/upsample")
    check_output(client.predict(handle_file(str(good)), api_name="/upsample"), good)


def test_three_calls_at_once_all_complete(client, tmp_path):
    srcs = [
        band_limited(tmp_path / f"clip{i}.wav", 1.0 + i, 8000 * (i + 1), 1 + i % 2, 3500)
        for i in range(3)
    ]
    jobs = [client.submit(handle_file(str(s)), api_name="/upsample") for s in srcs]
    for job, src in zip(jobs, srcs):
        check_output(job.result(timeout=300), src)


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_audio", r"cannot read notes\.wav: .*(not audio|corrupt|format)"),
        ("empty", r"cannot read empty\.wav: empty file \(0 bytes\)"),
        ("too_long", rf"long\.flac: 31\.0 s long; this server takes at most {MAX_DURATION_S:g} s"),
        ("nine_channels", r"cannot read nine\.wav: 9 channels; at most 8 are supported"),
        ("too_big", rf"at most {MAX_UPLOAD_MB:g} MB|exceeds the maximum file size"),
    ],
)
def test_bad_input_gets_one_line_and_the_server_keeps_serving(client, tmp_path, case, message):
    if case == "not_audio":
        src = tmp_path / "notes.wav"
        src.write_text("these are my notes, not audio\n" * 20)
    elif case == "empty":
        src = tmp_path / "empty.wav"
        src.write_bytes(b"")
    elif case == "too_long":
        src = tmp_path / "long.flac"
        sf.write(src, np.zeros(31 * 8000, np.float32), 8000)
    elif case == "nine_channels":
        src = tmp_path / "nine.wav"
        sf.write(src, np.zeros((800, 9), np.float32), 8000)
    else:
        src = tmp_path / "big.wav"
        n = int(MAX_UPLOAD_MB * 1e6 / 4) + 1000  # float32 mono: just over the limit, < 30 s
        rng = np.random.default_rng(1)
        sf.write(src, (0.1 * rng.standard_normal(n)).astype(np.float32), 48_000, "FLOAT")
    with pytest.raises(Exception, match=message) as caught:
        client.predict(handle_file(str(src)), api_name="/upsample")
    assert "Traceback" not in str(caught.value)
    if case != "too_big":  # that one is refused by gradio_client, before the upload
        assert "/tmp" not in str(caught.value) and "gradio" not in str(caught.value).lower()
    good = EXAMPLES / "speech_8k.flac"
    check_output(client.predict(handle_file(str(good)), api_name="/upsample"), good)


def test_missing_weights_name_how_to_get_them_and_the_page_keeps_working(client):
    src = EXAMPLES / "knock_bell_22k.ogg"
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(src)), engine="audiosr", api_name="/upsample")
    message = str(caught.value)
    assert "\n" not in message.strip()
    assert "hf download haoheliu/audiosr_basic" in message
    assert "--engine dsp" in message
    check_output(client.predict(handle_file(str(src)), api_name="/upsample"), src)


def test_server_paths_from_the_client_are_refused(server, client):
    """A request naming a file on the server (not an upload) is refused, over raw HTTP."""
    import httpx

    url = f"{server['url']}/gradio_api/call/upsample"
    payload = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}
    defaults = ["dsp", "basic", "quality", 0, 3.5, 42, False, "auto", None, True, True]
    event = httpx.post(url, json={"data": [payload, *defaults]}).json()["event_id"]
    with httpx.stream("GET", f"{url}/{event}", timeout=60) as stream:
        lines = list(stream.iter_lines())
    assert "event: error" in lines
    assert "not uploaded" in " ".join(lines)
    good = EXAMPLES / "knock_bell_22k.ogg"
    check_output(client.predict(handle_file(str(good)), api_name="/upsample"), good)


def test_the_server_refuses_an_upload_over_the_limit(server, client):
    """Without the client's own check: the server answers 413 and keeps serving."""
    import httpx

    body = b"\0" * int(MAX_UPLOAD_MB * 1e6 + 10_000)
    r = httpx.post(f"{server['url']}/gradio_api/upload", files={"files": ("big.wav", body)})
    assert r.status_code == 413
    good = EXAMPLES / "knock_bell_22k.ogg"
    check_output(client.predict(handle_file(str(good)), api_name="/upsample"), good)


def test_full_band_input_is_passed_through_with_its_reason(client, tmp_path):
    src = tmp_path / "fullband.wav"
    rng = np.random.default_rng(3)
    sf.write(src, (0.2 * rng.standard_normal(48_000)).astype(np.float32), 48_000)
    result = client.predict(handle_file(str(src)), api_name="/upsample")
    details = check_output(result, src)
    assert details["passthrough"] is True
    assert "full band" in details["passthrough_reason"]
    assert "passed through unchanged" in result[4]


def test_unknown_settings_are_refused_in_one_line(client):
    src = EXAMPLES / "knock_bell_22k.ogg"
    with pytest.raises(AppError, match="unknown engine 'magic'|magic.* not in the list"):
        client.predict(handle_file(str(src)), engine="magic", api_name="/upsample")
