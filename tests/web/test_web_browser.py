"""The page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

No browser is downloaded: Playwright drives the system's ``/usr/bin/chromium``
(``AUDIOSR_CHROMIUM`` overrides the path). ``.ci/run`` installs it with apt-get.
Set ``AUDIOSR_WEB_SCREENSHOT=path.png`` to keep the screenshot of the finished page.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from conftest import CHROMIUM, EXAMPLES, REQUIRED, require

require("playwright")
if not CHROMIUM.exists():
    if REQUIRED:
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 120_000


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A fresh browser profile and page; every request the page makes is recorded."""
    yield from browser_page(tmp_path, CHROMIUM_FLAGS)


@pytest.fixture
def mic_page(tmp_path: Path) -> Iterator[Page]:
    """As ``page``, with Chromium's fake microphone (a beep every second) allowed."""
    fake_mic = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    yield from browser_page(tmp_path, [*CHROMIUM_FLAGS, *fake_mic])


def browser_page(tmp_path: Path, flags: list[str]) -> Iterator[Page]:
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=flags,
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
        )
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.requested = []  # type: ignore[attr-defined]
            page.on("request", lambda r: page.requested.append(r.url))  # type: ignore
            yield page
        finally:
            context.close()


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#audiosr-run")


def test_upload_run_listen_look_and_download(server, page, tmp_path):
    url = str(server["url"])
    open_page(page, url)
    src = EXAMPLES / "speech_8k.flac"
    page.set_input_files("#audiosr-input input[type=file]", str(src))
    # The input's facts and detected band limit show as soon as it is loaded.
    page.wait_for_selector("#audiosr-input-info :text('detected band limit')")
    assert "8000 Hz, 1 channel" in page.inner_text("#audiosr-input-info")

    start = time.monotonic()
    page.click("#audiosr-run")
    page.wait_for_selector("#audiosr-download a")
    page.wait_for_function(
        "() => { const i = document.querySelector('#audiosr-spectrogram img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    seconds = time.monotonic() - start
    print(f"click to result: {seconds:.2f} s")

    # Both players and the picture are shown.
    # Both players are shown, with their audio fetched and decoded (the waveform player
    # plays a blob of the file): the output's length is the input's.
    for player in ("#audiosr-output", "#audiosr-input48"):
        assert page.is_visible(f"{player} button[aria-label='Play']")
        audio = page.locator(f"{player} audio")  # locators reach into the shadow root
        deadline = time.monotonic() + 60
        while not audio.evaluate_all("as => as.some(a => a.duration > 0)"):
            assert time.monotonic() < deadline, f"{player} did not load its audio"
            time.sleep(0.05)
        durations = audio.evaluate_all("as => as.map(a => a.duration).filter(d => d > 0)")
        assert durations == [pytest.approx(sf.info(str(src)).duration, abs=0.01)]
    img = page.locator("#audiosr-spectrogram img")
    assert img.is_visible()
    width = img.evaluate("i => i.naturalWidth")
    assert width >= 500
    info = page.inner_text("#audiosr-info")
    assert "band limit" in info and "RTF" in info
    assert "audiosr --engine dsp -i speech_8k.flac -s output" in info

    with page.expect_download() as download:
        page.click("#audiosr-download a")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "speech_8k_AudioSR_Processed_48K.wav"
    out = sf.info(str(saved))
    src_info = sf.info(str(src))
    assert out.samplerate == 48_000 and out.channels == 1
    assert out.frames == round(src_info.frames * 48_000 / src_info.samplerate)

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("AUDIOSR_WEB_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["AUDIOSR_WEB_SCREENSHOT"])
    # Works offline: the page asked nothing of any other host.
    hosts = {u.split("/")[2] for u in page.requested if u.startswith("http")}  # type: ignore
    assert hosts == {url.split("/")[2]}


def test_clicking_a_bundled_example_runs(server, page):
    open_page(page, str(server["url"]))
    page.click("button:has-text('knock_bell_22k.ogg')")
    page.wait_for_selector("#audiosr-input-info :text('22050 Hz')")
    page.click("#audiosr-run")
    page.wait_for_selector("#audiosr-download a")
    assert "knock_bell_22k_AudioSR_Processed_48K" in page.inner_text("#audiosr-download")


def test_an_invalid_upload_shows_the_error_on_the_page(server, page, tmp_path):
    open_page(page, str(server["url"]))
    bad = tmp_path / "notes.wav"
    bad.write_text("these are my notes, not audio\n" * 20)
    page.set_input_files("#audiosr-input input[type=file]", str(bad))
    # Shown when loaded (the info line under the input) ...
    page.wait_for_selector("#audiosr-input-info :text('cannot read notes.wav')")
    # ... and when the button is pressed anyway (an error notice, no traceback).
    page.click("#audiosr-run")
    notice = page.locator(".toast-body:has-text('cannot read notes.wav')")
    notice.first.wait_for()
    assert "Traceback" not in page.inner_text("body")
    # The page keeps working: a good file right after.
    page.click("#audiosr-input button[aria-label=Clear]")
    page.set_input_files("#audiosr-input input[type=file]", str(EXAMPLES / "knock_bell_22k.ogg"))
    page.wait_for_selector("#audiosr-input-info :text('22050 Hz')")
    page.click("#audiosr-run")
    page.wait_for_selector("#audiosr-download a")


def test_record_from_the_microphone_and_run(server, mic_page):
    page = mic_page
    page.context.grant_permissions(["microphone"])
    open_page(page, str(server["url"]))
    page.click("#audiosr-input button[aria-label='Record audio']")
    page.locator("#audiosr-input button:has-text('Record')").first.click()
    time.sleep(2.5)
    page.locator("#audiosr-input button:has-text('Stop')").first.click()
    # The recording is uploaded like a file: its facts show, and it runs.
    page.wait_for_selector("#audiosr-input-info :text('detected band limit')")
    assert "1 channel" in page.inner_text("#audiosr-input-info")
    page.click("#audiosr-run")
    page.wait_for_selector("#audiosr-download a")
    assert "audiosr --engine dsp -i audio.wav" in page.inner_text("#audiosr-info")


def test_missing_weights_are_named_on_the_page_and_dsp_still_runs(server, page):
    open_page(page, str(server["url"]))
    page.click("button:has-text('knock_bell_22k.ogg')")
    page.wait_for_selector("#audiosr-input-info :text('22050 Hz')")
    page.click("#audiosr-engine label:has-text('audiosr')")
    page.wait_for_selector("#audiosr-model", state="visible")
    page.click("#audiosr-run")
    hint = "hf download haoheliu/audiosr_basic"
    page.locator(f".toast-body:has-text('{hint}')").first.wait_for()
    # The line under the engine choice says it too, until the weights can be found.
    page.wait_for_selector(f"#audiosr-engine-status :text('{hint}')")
    page.click("#audiosr-engine label:has-text('dsp')")
    page.wait_for_selector("#audiosr-model", state="hidden")
    page.click("#audiosr-run")
    page.wait_for_selector("#audiosr-download a")
