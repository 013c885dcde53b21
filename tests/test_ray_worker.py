"""The ``--ray`` worker's retry logic and the CLI's checks, without starting Ray."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosr.audio_io import temp_prefix
from audiosr.cli import _upsample_parser, main
from audiosr.cluster.journal import Journal
from audiosr.cluster.manifest import read_manifest, write_manifest
from audiosr.cluster.worker import FileWorker, WorkerSpec


def _clip(path: Path, sr: int = 16000, seconds: float = 1.0, freq: float = 440.0) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    noise = np.random.default_rng(int(freq)).standard_normal(t.size)  # fills the band up to sr/2
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * noise
    sf.write(str(path), x.astype(np.float32), sr)
    return path


def dead_pid() -> int:
    """The pid of a process that has exited (as a killed worker's has)."""
    code = "import os; print(os.getpid())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True).stdout)


def _worker(tmp_path: Path, journal: Path, max_tries: int = 3) -> FileWorker:
    args = _upsample_parser().parse_args(["--engine", "dsp", "-q", str(tmp_path)])
    spec = WorkerSpec(vars(args), "PCM_24", str(journal), max_tries=max_tries)
    return FileWorker(spec)


def _batch(jobs: list[tuple[int, Path, Path]]) -> dict[str, np.ndarray]:
    return {
        "index": np.array([j[0] for j in jobs]),
        "input": np.array([str(j[1]) for j in jobs], dtype=object),
        "output": np.array([str(j[2]) for j in jobs], dtype=object),
    }


def test_first_attempt_processes_batch_and_journals_it(tmp_path):
    journal = tmp_path / "journal"
    journal.mkdir()
    out = tmp_path / "out"
    jobs = [
        (i, _clip(tmp_path / f"c{i}.wav", freq=300 + 100 * i), out / f"c{i}.wav") for i in (4, 7)
    ]
    result = _worker(tmp_path, journal)(_batch(jobs))
    assert list(result["index"]) == [4, 7]
    assert list(result["status"]) == ["processed", "processed"]
    np.testing.assert_allclose(result["duration_s"], [1.0, 1.0])
    np.testing.assert_allclose(result["band_limit_hz"], [8000.0, 8000.0])
    log = Journal(journal)
    for index, _, dst in jobs:
        assert sf.info(str(dst)).samplerate == 48000
        assert log.tries(index) == 1
        assert log.done(index)["status"] == "processed"


def test_retry_keeps_finished_outputs_and_fails_a_file_that_kills_workers(tmp_path):
    """The batch of a restarted actor: journaled files are not rewritten, a file that took
    its worker down max_tries times is failed alone, the rest are processed one by one."""
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    log = Journal(journal_dir)
    out = tmp_path / "out"
    out.mkdir()
    src = [_clip(tmp_path / f"c{i}.wav", freq=300 + 100 * i) for i in range(3)]
    dst = [out / f"c{i}_out.wav" for i in range(3)]
    # File 0 finished before the crash: its output and journal record exist.
    _clip(dst[0], sr=48000)
    before = dst[0].stat()
    row = {"input": str(src[0]), "output": str(dst[0]), "status": "processed",
           "band_limit_hz": 8000.0, "duration_s": 1.0, "seconds": 0.5, "error": ""}  # fmt: skip
    log.record_done(0, row)
    # File 1 was being processed in each of the 3 attempts that ended with the worker dying.
    for _ in range(3):
        log.begin(1)
    # File 2 was waiting in the crashed batch; the killed attempt left a temporary file.
    log.begin(2)
    stale = out / f"{temp_prefix(dst[2])}{dead_pid()}.abcd1234.part"
    stale.write_bytes(b"half")

    result = _worker(tmp_path, journal_dir)(_batch([(i, src[i], dst[i]) for i in range(3)]))

    assert list(result["status"]) == ["processed", "failed", "processed"]
    after = dst[0].stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "died 3 times" in result["error"][1]
    assert not dst[1].exists()
    assert sf.info(str(dst[2])).frames == 48000
    assert not stale.exists()
    assert log.done(1)["status"] == "failed"


def test_journal_removal_outlasts_a_stopping_worker_still_writing(tmp_path, monkeypatch):
    """After Ctrl-C, an actor that is being stopped may still record a try while the driver
    deletes the journal: ``rmtree`` lists the folder, the actor adds a record, and the folder
    is left behind (seen in CI). The driver deletes until the folder is gone."""
    import shutil

    from audiosr.cluster import driver

    folder = tmp_path / ".audiosr-ray" / "run"
    folder.mkdir(parents=True)
    Journal(folder).begin(0)
    real_rmtree, calls = shutil.rmtree, []

    def racing_rmtree(path, ignore_errors=False):
        calls.append(path)
        real_rmtree(path, ignore_errors=ignore_errors)
        if len(calls) == 1:  # the actor's late record: what rmtree's race leaves
            Path(path).mkdir()
            Journal(path).begin(3)

    monkeypatch.setattr(driver.shutil, "rmtree", racing_rmtree)
    driver._remove_journal(folder)
    assert len(calls) == 2
    assert not (tmp_path / ".audiosr-ray").exists()


def test_manifest_round_trip_and_mode(tmp_path):
    rows = [{"input": "a.wav", "output": "o/a.wav", "status": "skipped", "band_limit_hz": None,
             "duration_s": None, "seconds": None, "error": ""}]  # fmt: skip
    path = write_manifest(tmp_path / "m.jsonl", rows)
    assert read_manifest(path) == rows
    assert path.stat().st_mode & 0o044  # readable by others like any output, not mkstemp's 0600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_ray_missing_gives_install_hint(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    clip = _clip(tmp_path / "x.wav")
    out = tmp_path / "out"
    assert main(["--engine", "dsp", "-i", str(clip), "-s", str(out), "--ray"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --ray needs Ray Data: pip install 'audiosr-forge[ray]'"]
    assert not out.exists()  # nothing created for a run that cannot start


@pytest.mark.parametrize(
    "flags, status, message",
    [
        (["--workers", "0"], 2, "--workers must be >= 1"),
        (["--gpus-per-worker", "-1"], 2, "--gpus-per-worker must be >= 0"),
        (["--preset", "upstream"], 1, "--preset upstream needs --engine audiosr"),
    ],
)
def test_bad_pool_flags_fail_in_one_line(tmp_path, capsys, flags, status, message):
    clip = _clip(tmp_path / "x.wav")
    argv = ["--engine", "dsp", "-i", str(clip), "-s", str(tmp_path / "o"), "--ray", *flags]
    assert main(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_pool_flags_need_ray(tmp_path, capsys):
    clip = _clip(tmp_path / "x.wav")
    assert (
        main(["--engine", "dsp", "-i", str(clip), "-s", str(tmp_path / "o"), "--workers", "2"]) == 2
    )
    assert "add --ray" in capsys.readouterr().err


def test_worker_without_engine_fails_every_file_with_the_reason(tmp_path):
    args = _upsample_parser().parse_args(["-q", "x.wav", "--checkpoint", str(tmp_path / "no.pt")])
    worker = FileWorker(WorkerSpec(vars(args), "PCM_24", str(tmp_path)))
    clip = _clip(tmp_path / "c.wav")
    result = worker(_batch([(0, clip, tmp_path / "o.wav")]))
    assert list(result["status"]) == ["failed"]
    assert result["error"][0] == (
        f"the worker could not load its engine: checkpoint file not found: {tmp_path / 'no.pt'}"
    )
    assert not (tmp_path / "o.wav").exists()


def test_upstream_preset_runs_the_local_clis_path(golden, tmp_path):
    """``--preset upstream`` on a worker: the original's path, the local CLI's bytes."""
    clip = _clip(tmp_path / "u.wav", sr=16000, seconds=1.3)
    flags = ["--preset", "upstream", "--ddim_steps", "2", "-d", "cpu", "-q"]
    flags += ["--checkpoint", str(golden.checkpoint_path), "--config", str(golden.config_path)]
    assert main([str(clip), "-s", str(tmp_path / "local"), *flags]) == 0
    args = _upsample_parser().parse_args([str(clip), *flags])
    (tmp_path / "j").mkdir()
    worker = FileWorker(WorkerSpec(vars(args), "PCM_16", str(tmp_path / "j")))
    out = tmp_path / "ray" / "u_AudioSR_Processed_48K.wav"
    result = worker(_batch([(0, clip, out)]))
    assert list(result["status"]) == ["processed"], result["error"]
    assert result["duration_s"][0] == pytest.approx(1.3)
    assert out.read_bytes() == (tmp_path / "local" / out.name).read_bytes()
