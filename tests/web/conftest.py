"""Fixtures of the web page tests: the real server (``audiosr web``) on a free port.

The session server is the console command itself, started as a subprocess with the dsp
engine, no official weights reachable (``HF_HUB_OFFLINE=1`` and an empty Hugging Face home),
its own Gradio cache folder and small limits, so the limit messages can be tested with small
files. Tests that need stand-in engines (queue, cancel, model sharing) start the page
in-process with :func:`audiosr.web.build_app` on another free port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

# CI sets AUDIOSR_WEB_TESTS_REQUIRED=1 (in .ci/run): there a missing package or browser is a
# failure. Elsewhere the web tests skip with the install command when the extras are missing.
REQUIRED = os.environ.get("AUDIOSR_WEB_TESTS_REQUIRED", "") == "1"
CHROMIUM = Path(os.environ.get("AUDIOSR_CHROMIUM", "/usr/bin/chromium"))


def require(module: str) -> None:
    hint = "pip install -e '.[web,web-test]'"
    try:
        __import__(module)
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip(f"{module} is not installed ({hint})", allow_module_level=True)


require("gradio")
require("gradio_client")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MAX_DURATION_S = 30.0
MAX_UPLOAD_MB = 3.0
SERVER_START_TIMEOUT_S = 180.0


def golden_dir() -> Path:
    env = os.environ.get("AUDIOSR_GOLDEN_DIR")
    return (Path(env) if env else REPO.parent / "shared" / "golden").resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not come up in {SERVER_START_TIMEOUT_S:.0f} s")


def band_limited(
    path: Path, seconds: float, rate: int, channels: int, cutoff_hz: float, seed: int = 0
) -> Path:
    """Noise with a 1/f-ish tilt, low-passed at ``cutoff_hz`` (8th-order Butterworth), PCM_16."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    x = rng.standard_normal((n, channels))
    x = signal.lfilter([1.0], [1.0, -0.9], x, axis=0)  # more low than high, like real audio
    sos = signal.butter(8, cutoff_hz, fs=rate, output="sos")
    x = signal.sosfiltfilt(sos, x, axis=0)
    x *= 0.5 / np.abs(x).max()
    sf.write(path, x.astype(np.float32), rate, subtype="PCM_16")
    return path


def server_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", ""),
            "GRADIO_TEMP_DIR": str(tmp / "gradio"),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp / "hf"),
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2"),
        }
    )
    env.pop("AUDIOSR_CHECKPOINT_BASIC", None)
    env.pop("AUDIOSR_CHECKPOINT_SPEECH", None)
    return env


def start_server(tmp: Path, *flags: str) -> tuple[str, subprocess.Popen]:
    """``audiosr web FLAGS`` on a free port (output in ``tmp/server.log``); returns its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "audiosr", "web", "--port", str(port), *flags]
    with open(tmp / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, env=server_env(tmp), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(url, proc)
    except BaseException:
        stop_server(proc)
        raise
    return url, proc


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """``audiosr web --engine dsp`` on a free port; yields its URL and folders."""
    tmp = tmp_path_factory.mktemp("web_server")
    url, proc = start_server(
        tmp, "--engine", "dsp", "--max_duration", str(MAX_DURATION_S),
        "--max_upload_mb", str(MAX_UPLOAD_MB), "--examples", str(EXAMPLES),
    )  # fmt: skip
    try:
        yield {"url": url, "tmp": tmp, "log": tmp / "server.log", "proc": proc}
    finally:
        stop_server(proc)


@pytest.fixture
def client(server: dict[str, object]):
    from gradio_client import Client

    return Client(str(server["url"]), verbose=False, analytics_enabled=False,
                  download_files=str(Path(str(server["tmp"])) / "downloads"))  # fmt: skip


@pytest.fixture
def inprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Start ``build_app(options, loader=...)`` in this process: ``start(...) -> (url, app)``.

    Every app started is closed at the end of the test.
    """
    from audiosr.web import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    apps = []

    def start(options, loader=None):
        app = build_app(options, loader=loader)
        port = free_port()
        app.queue()
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                   quiet=True, max_file_size=options.max_upload_bytes)  # fmt: skip
        apps.append(app)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        return url, app

    yield start
    for app in apps:
        app.close()
