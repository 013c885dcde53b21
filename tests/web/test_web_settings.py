"""The page's request handling without a server: checks, the command line, uploads."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiosr.errors import AudioSRError
from audiosr.web.app import find_examples
from audiosr.web.jobs import check_upload, describe_input
from audiosr.web.settings import (
    Request,
    WebOptions,
    command_line,
    parse_command,
    pipeline_options,
    sampling_options,
)
from conftest import EXAMPLES


def test_defaults_give_the_cli_defaults():
    web = WebOptions()
    args = command_line(Request(), web, "song.mp3")
    assert args == ["-i", "song.mp3", "-s", "output"]
    parsed = parse_command(args)
    cli_default = parse_command(["-i", "x.wav"])
    assert sampling_options(parsed) == sampling_options(cli_default)
    assert pipeline_options(parsed) == pipeline_options(cli_default)


def test_every_setting_reaches_the_options_through_the_command_line():
    web = WebOptions(device="cpu")
    request = Request(
        model="speech",
        preset="fast",
        steps=12,
        guidance=2.5,
        seed=9,
        band_limit="manual",
        cutoff_hz=7000,
        prefilter=False,
        keep_loudness=False,
    )
    args = command_line(request, web, "a b.wav")
    parsed = parse_command(args)
    options = sampling_options(parsed)
    assert (options.steps, options.guidance_scale, options.seed) == (12, 2.5, 9)
    assert options.sampler == "unipc"  # the fast preset
    assert parsed.model_name == "speech" and parsed.device == "cpu"
    pipe = pipeline_options(parsed)
    assert (pipe.cutoff_hz, pipe.prefilter, pipe.keep_loudness) == (7000, False, False)


def test_random_seed_is_drawn_once_and_fixed():
    drawn = Request(random_seed=True).with_seed()
    assert not drawn.random_seed and 0 <= drawn.seed < 2**31
    assert Request(seed=5).with_seed().seed == 5


@pytest.mark.parametrize(
    "request_, message",
    [
        (Request(engine="magic"), "unknown engine"),
        (Request(model="large"), "unknown model"),
        (Request(preset="upstream"), "unknown preset"),
        (Request(steps=-1), "steps must be"),
        (Request(seed=-3), "seed must be"),
        (Request(band_limit="manual"), "manual band limit must be"),
        (Request(band_limit="manual", cutoff_hz=500), "manual band limit must be"),
    ],
)
def test_bad_settings_are_one_line(request_, message):
    with pytest.raises(AudioSRError, match=message):
        request_.check(WebOptions())


def test_only_uploaded_files_are_read(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    outside = tmp_path / "secret.wav"
    sf.write(outside, np.zeros(800, np.float32), 8000)
    with pytest.raises(AudioSRError, match="secret.wav: not an uploaded file"):
        check_upload(outside, WebOptions(), uploads)
    link = uploads / "link.wav"  # a link out of the upload folder does not help
    link.symlink_to(outside)
    with pytest.raises(AudioSRError, match="not an uploaded file"):
        check_upload(link, WebOptions(), uploads)


def test_describe_shows_rate_channels_duration_and_band_limit(tmp_path):
    src = tmp_path / "x.flac"
    src.write_bytes((EXAMPLES / "speech_8k.flac").read_bytes())
    summary = describe_input(src, WebOptions(), tmp_path)
    text = summary.markdown()
    assert "**x.flac**: 8000 Hz, 1 channel, 9.78 s" in text
    assert 3000 < summary.band_limit_hz <= 4000


def test_examples_are_the_bundled_audio_files():
    names = [p.rsplit("/", 1)[-1] for p in find_examples(None)]
    assert names == ["knock_bell_22k.ogg", "piano_mp3_64k.mp3", "speech_8k.flac"]
