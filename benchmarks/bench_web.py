"""Web page timing and memory: click-to-result in a real browser, API round trips, server RSS.

Starts ``audiosr web --engine dsp`` (a subprocess, its own Gradio cache) on a free port, then:

1. drives Debian's Chromium with Playwright: upload a 10 s file, press the button, wait until
   the output player, the spectrogram picture and the download link are shown (``--clicks``
   times; the first includes the engine's first use);
2. calls ``/upsample`` with gradio_client (upload, process, download) ``--requests`` times and
   reads the server's resident memory (VmRSS of the process) every 5 requests.

The 10 s input is the bundled piano example (44.1 kHz stereo MP3, 64 kbit/s) cut to 10.00 s.

    python benchmarks/bench_web.py                       # needs the web and web-test extras
    python benchmarks/bench_web.py --screenshot docs/web.png   # also save the README picture
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ten_second_input(folder: Path) -> Path:
    from audiosr.audio_io import read_audio

    x, sr = read_audio(REPO / "examples" / "piano_mp3_64k.mp3")
    path = folder / "piano_10s.flac"
    sf.write(path, x[:, : 10 * sr].T, sr, subtype="PCM_16")
    return path


def start_server(tmp: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["GRADIO_TEMP_DIR"] = str(tmp / "gradio")
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    cmd = [sys.executable, "-m", "audiosr", "web", "--engine", "dsp", "--port", str(port),
           "--examples", str(REPO / "examples")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("the server did not start in 180 s")


def browser_clicks(url: str, src: Path, clicks: int, chromium: str, screenshot: Path | None):
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 860},
        )  # fmt: skip
        page = context.new_page()
        page.set_default_timeout(120_000)
        for i in range(clicks):
            page.goto(url)
            page.wait_for_selector("#audiosr-run")
            page.set_input_files("#audiosr-input input[type=file]", str(src))
            page.wait_for_selector("#audiosr-input-info :text('detected band limit')")
            start = time.perf_counter()
            page.click("#audiosr-run")
            page.wait_for_selector("#audiosr-download a")
            page.wait_for_function(
                "() => { const i = document.querySelector('#audiosr-spectrogram img');"
                " return i && i.complete && i.naturalWidth > 0; }"
            )
            # The waveform player decodes the file into an <audio> in a shadow root, which
            # locators (unlike querySelector) reach: wait until it knows the duration.
            output_audio = page.locator("#audiosr-output audio")
            while not output_audio.evaluate_all("as => as.some(a => a.duration > 0)"):
                time.sleep(0.02)
            times.append(time.perf_counter() - start)
            print(f"  click {i + 1}: {times[-1]:.2f} s", flush=True)
        if screenshot is not None:
            save_small_png(page.screenshot(full_page=True), screenshot)
        context.close()
    return times


def save_small_png(png: bytes, path: Path) -> None:
    """A 256-colour PNG (the page is flat colours: small and still sharp)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    print(f"  screenshot: {path} ({path.stat().st_size / 1000:.0f} kB)")


def api_requests(url: str, src: Path, n: int, pid: int, folder: Path):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, analytics_enabled=False,
                    download_files=str(folder / "downloads"))  # fmt: skip
    times, rss = [], [(0, rss_mb(pid))]
    for i in range(1, n + 1):
        start = time.perf_counter()
        out = client.predict(handle_file(str(src)), api_name="/upsample")
        times.append(time.perf_counter() - start)
        info = sf.info(out[0])
        assert info.samplerate == 48_000 and info.frames == 480_000, info
        if i % 5 == 0:
            rss.append((i, rss_mb(pid)))
            print(f"  after {i:2d} requests: RSS {rss[-1][1]:.0f} MB", flush=True)
    return times, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshot", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = ten_second_input(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(tmp, port)
        try:
            print(f"server pid {proc.pid}, RSS at start {rss_mb(proc.pid):.0f} MB")
            print(f"browser: upload {src.name} (10.00 s, 44.1 kHz stereo), click, wait for result")
            clicks = browser_clicks(url, src, args.clicks, args.chromium, args.screenshot)
            print(f"API: {args.requests} x /upsample (upload + dsp + download of the WAV)")
            times, rss = api_requests(url, src, args.requests, proc.pid, tmp)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print()
    print(f"cpu cores: {os.cpu_count()}, engine dsp, input 10.00 s 44.1 kHz stereo")
    print(f"click to result (browser): first {clicks[0]:.2f} s, median of the rest "
          f"{statistics.median(clicks[1:] or clicks):.2f} s")  # fmt: skip
    print(f"API round trip: median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s")  # fmt: skip
    print("server RSS (MB) after n API requests (0: after the browser runs): "
          + ", ".join(f"{i}: {m:.0f}" for i, m in rss))  # fmt: skip
    if len(rss) < 2:  # fewer than 5 requests: no growth to report
        return
    growth = np.diff([m for _, m in rss[1:]])
    print(f"RSS change from request 5 to {rss[-1][0]}: {rss[-1][1] - rss[1][1]:+.0f} MB "
          f"(steps {', '.join(f'{g:+.0f}' for g in growth)})")  # fmt: skip


if __name__ == "__main__":
    main()
