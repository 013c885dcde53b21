"""``audiosr ... --ray`` end to end on a small local Ray instance (2 CPUs, 200 MB store).

Each run is compared with the local CLI on the same files: the outputs must be the same
bytes. One Ray instance serves the module (starting Ray takes seconds); every ``--ray`` run
starts its own actor pool in it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosr.audio_io import temp_prefix
from audiosr.cli import main
from audiosr.cluster import MANIFEST_NAME, read_manifest
from audiosr.cluster.journal import JOURNAL_DIR

if os.environ.get("AUDIOSR_RAY_TESTS_REQUIRED"):  # CI: a missing Ray fails, never skips
    import ray
else:
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
SUFFIX = "_AudioSR_Processed_48K"


@pytest.fixture(scope="module")
def ray_instance():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 1024**2,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def _write(path: Path, sr: int, seconds: float, channels: int = 1, seed: int = 0) -> None:
    """A tone plus noise filling the band up to ``sr / 2`` (a band-limited input)."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * (220 + 110 * seed) * t)[:, None] + 0.05 * rng.standard_normal(
        (n, channels)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), sr)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Short mono/stereo clips at three rates, one in a sub-folder, one longer than a
    segment (streamed), and a corrupt file."""
    root = tmp_path_factory.mktemp("corpus")
    _write(root / "a.wav", 8000, 1.5, seed=1)
    _write(root / "b.flac", 16000, 2.0, channels=2, seed=2)
    _write(root / "c.wav", 22050, 1.0, seed=3)
    _write(root / "sub" / "d.wav", 16000, 2.5, seed=4)
    _write(root / "long.wav", 16000, 12.0, seed=5)
    (root / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    return root


def dead_pid() -> int:
    """The pid of a process that has exited."""
    code = "import os; print(os.getpid())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True).stdout)


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.wav"))}


def _summary(err: str) -> list[str]:
    """The summary block a batch ends with: the ``done:`` line and its ``failed:`` lines."""
    lines = err.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("done:"))
    return [lines[start]] + [ln for ln in lines[start + 1 :] if ln.startswith("  failed:")]


def test_ray_matches_local_cli_reports_bad_file_and_resumes(ray_instance, corpus, tmp_path, capsys):
    common = [str(corpus), "--engine", "dsp"]
    assert main([*common, "-s", str(tmp_path / "local")]) == 1
    local_summary = _summary(capsys.readouterr().err)

    out = tmp_path / "ray"
    assert main([*common, "-s", str(out), "--ray", "--workers", "2", "--batch_size", "2"]) == 1
    err = capsys.readouterr().err
    assert _summary(err) == local_summary  # the same summary, word for word
    assert local_summary[0] == (
        "done: 5 processed, 0 skipped (output exists; --overwrite to redo), 1 failed"
    )
    assert len(local_summary) == 2 and "bad.wav" in local_summary[1]

    expected = _outputs(tmp_path / "local")
    assert set(expected) == {f"{n}{SUFFIX}.wav" for n in "abc"} | {
        f"sub/d{SUFFIX}.wav",
        f"long{SUFFIX}.wav",
    }
    assert _outputs(out) == expected  # same names, same bytes

    rows = read_manifest(out / MANIFEST_NAME)
    assert [Path(r["input"]).name for r in rows] == [
        "a.wav",
        "b.flac",
        "bad.wav",
        "c.wav",
        "long.wav",
        "d.wav",
    ]
    by_name = {Path(r["input"]).name: r for r in rows}
    bad = by_name.pop("bad.wav")
    assert bad["status"] == "failed" and "cannot read" in bad["error"] and "bad.wav" in bad["error"]
    assert bad["error"] in local_summary[1]
    for name, row in by_name.items():
        assert row["status"] == "processed" and row["error"] == "", name
        assert row["seconds"] > 0
        info = sf.info(row["output"])
        assert row["duration_s"] == pytest.approx(info.frames / 48000)
    assert by_name["a.wav"]["band_limit_hz"] == pytest.approx(4000, rel=0.05)
    assert by_name["c.wav"]["band_limit_hz"] == pytest.approx(11025, rel=0.05)
    assert not (out / JOURNAL_DIR).exists()
    assert not [p for p in out.rglob(".*")]

    # A rerun skips every finished output (they stay untouched); the bad file fails again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    # What a killed --overwrite run leaves: the hidden temporary file of an output it was
    # writing, named with the pid of the process that died.
    done = out / "sub" / f"d{SUFFIX}.wav"
    stale = done.parent / f"{temp_prefix(done)}{dead_pid()}.k3x_9q1z.part"
    stale.write_bytes(b"half a file")
    assert main([*common, "-s", str(out), "--ray", "-q"]) == 1
    assert not stale.exists()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamps
    rows = read_manifest(out / MANIFEST_NAME)
    assert sorted(r["status"] for r in rows) == ["failed"] + ["skipped"] * 5


def test_ray_tiny_model_matches_local_cli(ray_instance, golden, tmp_path):
    """The diffusion engine (tiny golden checkpoint): byte-identical outputs.

    ``--batch_size 1`` gives every file its own engine call in both runs and ``--threads 1``
    the same CPU threads: files batched with different neighbours, or computed with another
    thread count, agree only to float rounding (see audiosr.batching).
    """
    folder = tmp_path / "in"
    _write(folder / "y.wav", 8000, 0.8, channels=2, seed=7)
    common = [
        str(folder),
        "--checkpoint",
        str(golden.checkpoint_path),
        "--config",
        str(golden.config_path),
        "--ddim_steps",
        "2",
        "-d",
        "cpu",
        "--batch_size",
        "1",
        "--threads",
        "1",
        "-q",
    ]
    assert main([*common, "-s", str(tmp_path / "local")]) == 0
    assert main([*common, "-s", str(tmp_path / "ray"), "--ray"]) == 0
    expected = _outputs(tmp_path / "local")
    assert len(expected) == 1
    assert _outputs(tmp_path / "ray") == expected


def test_worker_killed_mid_run_retries_its_files(ray_instance, corpus, tmp_path, monkeypatch):
    """The actor SIGKILLs itself on c.wav once: Ray restarts it and retries the batch; every
    output is written, complete and the same as a local run's; no temporary file is left."""
    marker = tmp_path / "killed"
    monkeypatch.setenv("AUDIOSR_RAY_TEST_CRASH", f"c.wav:{marker}")
    out = tmp_path / "ray"
    files = [str(corpus / n) for n in ("a.wav", "b.flac", "c.wav", "sub/d.wav", "long.wav")]
    argv = [*files, "--engine", "dsp", "-q", "--batch_size", "3"]
    assert main([*argv, "-s", str(out), "--ray", "--workers", "2"]) == 0
    assert marker.exists()  # the worker did die
    monkeypatch.delenv("AUDIOSR_RAY_TEST_CRASH")
    assert main([*argv, "-s", str(tmp_path / "local")]) == 0
    expected = _outputs(tmp_path / "local")
    assert len(expected) == 5
    assert _outputs(out) == expected
    rows = read_manifest(out / MANIFEST_NAME)
    assert [r["status"] for r in rows] == ["processed"] * 5
    assert not [p for p in out.rglob(".*")]


def test_file_that_always_kills_its_worker_fails_alone(ray_instance, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOSR_RAY_TEST_CRASH", "c.wav")  # no marker: every attempt dies
    out = tmp_path / "ray"
    files = [str(corpus / n) for n in ("a.wav", "c.wav", "sub/d.wav")]
    argv = [*files, "--engine", "dsp", "-q", "-s", str(out), "--ray", "--batch_size", "2"]
    assert main(argv) == 1
    rows = {Path(r["input"]).name: r for r in read_manifest(out / MANIFEST_NAME)}
    assert rows["c.wav"]["status"] == "failed"
    assert "died 3 times" in rows["c.wav"]["error"]
    assert rows["a.wav"]["status"] == rows["d.wav"]["status"] == "processed"
    assert sorted(p.name for p in out.rglob("*.wav")) == [f"a{SUFFIX}.wav", f"d{SUFFIX}.wav"]


def test_interrupted_run_leaves_no_partial_output_and_resumes(ray_instance, corpus, tmp_path):
    """A second driver process joins the running cluster by address (as on a multi-node
    cluster; Ray's token authentication stays on) and gets Ctrl-C mid-run: exit status 130,
    only complete outputs, no journal or temporary file. The rerun processes the rest and
    skips what was finished."""
    out = tmp_path / "ray"
    files = [str(corpus / n) for n in ("c.wav", "a.wav", "sub/d.wav", "b.flac")]
    argv = [*files, "--engine", "dsp", "-q", "-s", str(out), "--batch_size", "1"]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    address = ray_instance.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, "-m", "audiosr", *argv, "--ray", address, "--workers", "1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("*.wav")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    finished = sorted(out.rglob("*.wav"))
    assert 1 <= len(finished) < 4
    for path in finished:
        assert sf.info(str(path)).frames > 0  # complete files only
    assert not [p for p in out.rglob(".*")]  # no journal, no temporary file

    stamps = {p: p.stat().st_mtime_ns for p in finished}
    assert main([*argv, "--ray"]) == 0
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps
    rows = read_manifest(out / MANIFEST_NAME)
    assert sum(r["status"] == "skipped" for r in rows) == len(finished)
    assert sum(r["status"] == "processed" for r in rows) == 4 - len(finished)


def test_pool_size_defaults_and_checks(ray_instance):
    from audiosr.cli import _upsample_parser
    from audiosr.cluster.driver import Pool, size_pool
    from audiosr.errors import AudioSRError

    def pool(*flags: str) -> Pool:
        return size_pool(_upsample_parser().parse_args(["x.wav", "--ray", *flags]))

    assert pool() == Pool(workers=1, gpus_per_worker=0.0, cpus_per_worker=2.0)
    assert pool("--engine", "dsp") == Pool(2, 0.0, 1.0)  # one single-threaded worker per CPU
    assert pool("--workers", "2") == Pool(2, 0.0, 1.0)
    assert pool("--workers", "4") == Pool(4, 0.0, 0.5)
    with pytest.raises(AudioSRError, match="need 1 GPUs; the cluster has 0"):
        pool("--gpus-per-worker", "1")
