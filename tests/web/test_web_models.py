"""Queue, cancel, shared models, the diffusion path and clean-up, on an in-process server.

The page runs in this process (``build_app`` + ``launch`` on a free port) so the tests can
give it stand-in engines that record how they are called; requests still go over HTTP.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from gradio_client import Client, handle_file

from audiosr.web import WebOptions
from audiosr.web.models import ModelKey, load_engine
from conftest import band_limited, golden_dir, start_server, stop_server


class SlowEngine:
    """Returns its input after ``delay`` seconds; records calls and the most at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def __call__(self, audio: torch.Tensor, cutoff_hz: torch.Tensor) -> torch.Tensor:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            time.sleep(self.delay)
            return audio.clone()
        finally:
            with self._lock:
                self.active -= 1


def connect(url: str, tmp_path: Path) -> Client:
    return Client(url, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path / "downloads"))  # fmt: skip


def test_one_job_per_model_at_a_time_and_the_model_is_loaded_once(inprocess, tmp_path):
    engine = SlowEngine(delay=0.4)
    loads: list[ModelKey] = []

    def loader(key: ModelKey):
        loads.append(key)
        return engine

    url, app = inprocess(WebOptions(engine="dsp"), loader=loader)
    client = connect(url, tmp_path)
    srcs = [band_limited(tmp_path / f"c{i}.wav", 1.0, 16_000, 1, 4000, seed=i) for i in range(3)]
    jobs = [client.submit(handle_file(str(s)), api_name="/upsample") for s in srcs]
    for job in jobs:
        assert sf.info(job.result(timeout=120)[0]).samplerate == 48_000
    assert engine.calls == 3
    assert engine.most_active == 1  # the three requests queued on the one model
    assert loads == [ModelKey("dsp")]  # loaded once, shared by all requests


def test_two_jobs_per_model_when_configured(inprocess, tmp_path):
    engine = SlowEngine(delay=1.5)
    url, app = inprocess(WebOptions(engine="dsp", jobs_per_model=2), loader=lambda key: engine)
    client = connect(url, tmp_path)
    srcs = [band_limited(tmp_path / f"c{i}.wav", 1.0, 16_000, 1, 4000, seed=i) for i in range(2)]
    jobs = [client.submit(handle_file(str(s)), api_name="/upsample") for s in srcs]
    for job in jobs:
        job.result(timeout=120)
    assert engine.most_active == 2


def test_cancel_stops_the_job_and_frees_the_model(inprocess, tmp_path):
    engine = SlowEngine(delay=1.0)
    options = WebOptions(engine="dsp", max_duration_s=200)
    url, app = inprocess(options, loader=lambda key: engine)
    client = connect(url, tmp_path)
    # 100 s of mono: 10 segments, 3 engine calls of up to 4 segments, each taking 1 s.
    long = band_limited(tmp_path / "long.wav", 100.0, 8000, 1, 3000)
    job = client.submit(handle_file(str(long)), api_name="/upsample")
    deadline = time.monotonic() + 120
    while engine.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.calls == 1
    assert job.cancel()
    time.sleep(2.5)  # the worker notices at its next progress point (after this call)
    calls_after_cancel = engine.calls
    assert calls_after_cancel <= 2  # without the cancel, 3 calls
    short = band_limited(tmp_path / "short.wav", 1.0, 16_000, 1, 4000)
    result = client.predict(handle_file(str(short)), api_name="/upsample")
    assert sf.info(result[0]).samplerate == 48_000
    assert engine.calls == calls_after_cancel + 1
    work = tmp_path / "gradio" / "audiosr-web"
    names = [p.name for p in work.rglob("*.wav")]
    assert not any(name.startswith("long") for name in names)  # the cancelled job's folder went


@pytest.fixture
def tiny() -> WebOptions:
    golden = golden_dir()
    return WebOptions(
        engine="audiosr",
        checkpoint=str(golden / "tiny_checkpoint.pt"),
        config=str(golden / "tiny_config.json"),
        device="cpu",
    )


def test_diffusion_engine_seed_steps_and_the_command_line_reproduce_the_result(
    inprocess, tmp_path, tiny
):
    loads: list[ModelKey] = []

    def loader(key: ModelKey):
        loads.append(key)
        return load_engine(tiny, key)

    url, app = inprocess(tiny, loader=loader)
    client = connect(url, tmp_path)
    src = band_limited(tmp_path / "clip.wav", 1.0, 16_000, 1, 4000)
    a = client.predict(handle_file(str(src)), steps=2, seed=7, api_name="/upsample")
    b = client.predict(handle_file(str(src)), steps=2, random_seed=True, api_name="/upsample")
    assert loads == [ModelKey("audiosr", "tiny_checkpoint.pt")]  # shared by both calls
    da, db = a[5], b[5]
    assert da["seed"] == 7 and "--seed 7" in da["command"]
    assert isinstance(db["seed"], int) and f"--seed {db['seed']}" in db["command"]
    assert f"seed {db['seed']}" in b[4]  # the info panel reports the drawn seed
    assert "--ddim_steps 2" in da["command"] and "--checkpoint" in da["command"]
    ya, _ = sf.read(a[0])
    yb, _ = sf.read(b[0])
    if db["seed"] != 7:
        assert not np.array_equal(ya, yb)

    # The command line on the page, run by the CLI, gives the same file.
    import shlex

    from audiosr import cli

    args = shlex.split(da["command"])[1:]
    args[args.index("-i") + 1] = str(src)
    args[args.index("-s") + 1] = str(tmp_path / "cli_out")
    assert cli.main([*args, "-q"]) == 0
    (cli_wav,) = (tmp_path / "cli_out").glob("*.wav")
    y_cli, _ = sf.read(cli_wav)
    np.testing.assert_array_equal(y_cli, ya)


def test_results_uploads_and_failed_jobs_leave_no_files(inprocess, tmp_path):
    url, app = inprocess(WebOptions(engine="dsp"))
    client = connect(url, tmp_path)
    src = band_limited(tmp_path / "clip.wav", 1.0, 16_000, 2, 4000)
    client.predict(handle_file(str(src)), api_name="/upsample")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + bytes(200))
    with pytest.raises(Exception, match="cannot read bad.wav"):
        client.predict(handle_file(str(bad)), api_name="/upsample")
    cache = tmp_path / "gradio"
    jobs = list((cache / "audiosr-web").iterdir())
    assert len(jobs) == 1  # the failed job removed its folder at once
    assert {p.suffix for p in jobs[0].iterdir()} == {".wav", ".png"}
    # Stopping the server deletes every upload and result it made.
    app.close()
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_stopping_audiosr_web_removes_its_files(tmp_path):
    """SIGTERM (a service manager's stop) shuts the server down cleanly: no file is left."""
    url, proc = start_server(tmp_path, "--engine", "sinc", "--no_preload")
    try:
        client = connect(url, tmp_path)
        src = band_limited(tmp_path / "clip.wav", 1.0, 16_000, 1, 4000)
        client.predict(handle_file(str(src)), api_name="/upsample")
        cache = tmp_path / "gradio"
        assert len([p for p in cache.rglob("*") if p.is_file()]) >= 4  # upload, 2 WAVs, PNG
    finally:
        stop_server(proc)
    assert proc.returncode == 0
    assert [p for p in cache.rglob("*") if p.is_file()] == []
