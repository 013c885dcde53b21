"""What a new user meets on the command line (issue 9 §3-§6): exit codes, help, threads,
signals, temporary files, long names, the offline hint and flags a path does not read.

Every case goes through ``audiosr.cli.main`` (or the console entry in a subprocess where a
signal or a fresh process is the point), with the ``sinc`` engine standing in for the model.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiosr import audio_io, threads
from audiosr.cli import main

SUFFIX = "_AudioSR_Processed_48K"
REPO = Path(__file__).resolve().parents[1]


def tone_noise(path: Path, seconds: float = 1.0, sr: int = 16_000, channels: int = 1) -> Path:
    """A band-limited (3 kHz) noise file: the engines have a band to fill."""
    n = int(seconds * sr)
    rng = np.random.default_rng(1)
    spec = np.fft.rfft(rng.standard_normal((n, channels)), axis=0)
    spec[np.fft.rfftfreq(n, 1 / sr) > 3000] = 0
    x = np.fft.irfft(spec, n=n, axis=0)
    sf.write(str(path), (0.3 * x / np.abs(x).max()).astype(np.float32), sr)
    return path


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------------------------
# Usage errors exit 2, nothing is created


@pytest.mark.parametrize(
    "argv",
    [
        [],  # no input at all
        ["-il", "no_such_list.txt"],
        ["--batch_size", "0", "x.wav"],
        ["--cutoff", "0", "x.wav"],
        ["--threads", "-1", "x.wav"],
        ["--preset", "upstream", "--chunking", "--chunk_duration", "2", "x.wav"],
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, *argv, "-s", str(tmp_path / "out"), "--engine", "sinc")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("audiosr: error:"), lines
    assert "--help" in lines[0]
    assert not (tmp_path / "out").exists()


def test_cutoff_below_1khz_counts_as_1khz(tmp_path, capsys) -> None:
    """The README's rule: a cutoff below 1 kHz is accepted and used as 1 kHz."""
    src = tone_noise(tmp_path / "a.wav")
    out = tmp_path / "out"
    code, err = run(capsys, str(src), "-s", str(out), "--engine", "sinc", "--cutoff", "10")
    assert code == 0, err
    assert "using the latter" in err  # the pipeline's notice: 10 Hz -> 1000 Hz
    assert (out / f"a{SUFFIX}.wav").is_file()


def test_misspelled_input_creates_no_output_folder(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, err = run(capsys, str(tmp_path / "speach.wav"), "-s", str(out), "--engine", "sinc")
    assert code == 1
    assert "speach.wav" in err and "no such file" in err
    assert not out.exists()


def test_batch_summary_names_each_failed_file_once(tmp_path, capsys) -> None:
    good = tone_noise(tmp_path / "good.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 10)
    code, err = run(capsys, str(good), str(bad), "-s", str(tmp_path / "out"), "--engine", "sinc")
    assert code == 1
    failed = [line for line in err.splitlines() if line.strip().startswith("failed:")]
    assert len(failed) == 1, err
    assert failed[0].count(str(bad)) == 1, failed[0]


# --------------------------------------------------------------------------------------------
# --help


def test_help_lists_defaults_once_and_describes_every_option(capsys) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    assert "(default: detected) (default" not in text
    assert text.count("(default:") >= 10
    flat = " ".join(text.split())
    for flag, words in {
        "--sampler": ("ddim", "unipc", "dpmpp_2m"),
        "--precision": ("fp32", "bf16"),
        "--threads": ("CPU threads",),
    }.items():
        start = flat.index(f"{flag} ", flat.index("options:"))
        for word in words:
            assert word in flat[start : start + 400], (flag, word)
    for command in ("audiosr convert", "audiosr eval"):
        assert command in text
    assert "2 usage error" in flat


# --------------------------------------------------------------------------------------------
# Threads


def test_threads_flag_sets_torch_threads_and_restores_them(tmp_path, capsys, monkeypatch) -> None:
    import audiosr.cli as cli

    src = tone_noise(tmp_path / "a.wav")
    seen: list[int] = []
    real = cli._run_batch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "_run_batch", spy)
    before = torch.get_num_threads()
    target = 3 if before != 3 else 2
    argv = [str(src), "-s", str(tmp_path / "o"), "--engine", "sinc", "--threads", str(target)]
    assert run(capsys, *argv)[0] == 0
    assert seen == [target]
    assert torch.get_num_threads() == before
    # Without the flag the sinc engine runs on one thread (OMP_NUM_THREADS unset).
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert run(capsys, str(src), "-s", str(tmp_path / "p"), "--engine", "sinc")[0] == 0
    assert seen == [target, 1]


def test_default_threads(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    assert threads.default_threads("sinc") == 1
    assert threads.default_threads("dsp") == 1
    assert threads.default_threads("audiosr") == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.default_threads("audiosr") == 2
    assert threads.default_threads("sinc") == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "many")  # not a number: ignored
    assert threads.default_threads("audiosr") == 8


def test_usable_cpus_follows_the_affinity_mask_and_the_cgroup_quota(monkeypatch, tmp_path) -> None:
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "Path", lambda _path: cpu_max)  # no cgroup file: mask only
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 2, 5}, raising=False)
    assert threads.usable_cpus() == 3
    cpu_max.write_text("max 100000\n")  # no quota
    assert threads.usable_cpus() == 3
    cpu_max.write_text("250000 100000\n")  # 2.5 CPUs of time: 2 threads
    assert threads.usable_cpus() == 2
    cpu_max.write_text("50000 100000\n")  # half a CPU: still one thread
    assert threads.usable_cpus() == 1

    def no_affinity(_pid):
        raise AttributeError("sched_getaffinity")  # not Linux

    monkeypatch.setattr(os, "sched_getaffinity", no_affinity, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    cpu_max.unlink()
    assert threads.usable_cpus() == 6


def test_console_script_sets_passive_waits_before_torch_loads(tmp_path) -> None:
    """A fresh process: OMP_WAIT_POLICY and the thread count are set before torch is loaded."""
    src = tone_noise(tmp_path / "a.wav")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        "import audiosr.cli as cli\n"
        "assert 'torch' not in sys.modules\n"
        "real = cli.run_upsample\n"
        "def spy(args):\n"
        "    import os, torch\n"
        "    print('POLICY', os.environ.get('OMP_WAIT_POLICY'), 'THREADS', "
        "torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'))\n"
        "    return real(args)\n"
        "cli.run_upsample = spy\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_"))}
    env["PYTHONPATH"] = str(REPO / "src")
    out = subprocess.run(
        [sys.executable, str(probe), str(src), "-s", str(tmp_path / "o"), "--engine", "dsp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "POLICY PASSIVE THREADS 1 1" in out.stdout, out.stdout


# --------------------------------------------------------------------------------------------
# Signals and temporary files


def long_input(tmp_path: Path) -> Path:
    return tone_noise(tmp_path / "long.wav", seconds=240, sr=16_000, channels=2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_leave_no_temporary_files(tmp_path, sig) -> None:
    src = long_input(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    argv = [sys.executable, "-m", "audiosr", str(src), "-s", str(out), "--engine", "sinc", "-q"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob(".*.part")):  # wait until the output is being written
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + int(sig), err
    assert signal.Signals(sig).name in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # no .part, no half-written output


def test_rerun_removes_only_our_stale_temporary_files(tmp_path, capsys) -> None:
    src = tone_noise(tmp_path / "a.wav")
    out = tmp_path / "out"
    out.mkdir()
    name = f"a{SUFFIX}.wav"
    pid = dead_pid()
    stale = [out / f".{name}.{pid}.abcd_123.part", out / f".{name}.{pid}.zzzzzzzz.spool"]
    stale[0].write_bytes(b"x")
    stale[1].mkdir()
    (stale[1] / "spool.w64").write_bytes(b"x")
    kept = [
        out / f".{name}.{os.getpid()}.abcdefgh.part",  # a live process: still being written
        out / f".{name}.{pid}.abc.part",  # not our random part
        out / f".other.wav.{pid}.abcdefgh.part",  # another output's
        out / f"{name}.part",  # a user's file
        out / f".{name}.notes",
    ]
    for path in kept:
        path.write_bytes(b"keep")
    code, err = run(capsys, str(src), "-s", str(out), "--engine", "sinc")
    assert code == 0, err
    assert (out / name).is_file()
    assert not any(p.exists() for p in stale)
    assert all(p.read_bytes() == b"keep" for p in kept)


def test_skipped_output_still_has_its_stale_temp_removed(tmp_path, capsys) -> None:
    src = tone_noise(tmp_path / "a.wav")
    out = tmp_path / "out"
    assert run(capsys, str(src), "-s", str(out), "--engine", "sinc")[0] == 0
    stale = out / f".a{SUFFIX}.wav.{dead_pid()}.q1w2e3r4.part"
    stale.write_bytes(b"x")
    assert run(capsys, str(src), "-s", str(out), "--engine", "sinc")[0] == 0  # skipped
    assert not stale.exists()


@pytest.mark.parametrize("suffix", [SUFFIX, SUFFIX + "_extra"])
def test_output_names_up_to_255_bytes_and_beyond(tmp_path, capsys, suffix) -> None:
    """A stem of 75 CJK characters (225 bytes): with the default suffix the output name is
    251 bytes and is used as is (the old temporary name added 15 bytes and failed); with a
    longer suffix it is 257 bytes and a shortened, hashed name is written instead."""
    src = tone_noise(tmp_path / ("音" * 75 + ".wav"))
    out = tmp_path / "out"
    code, err = run(capsys, str(src), "-s", str(out), "--engine", "sinc", "--suffix", suffix)
    assert code == 0, err
    written = list(out.iterdir())
    assert len(written) == 1, written
    name = written[0].name
    expected = f"{src.stem}{suffix}.wav"
    assert len(os.fsencode(name)) <= 255
    if len(os.fsencode(expected)) <= 255:
        assert name == expected
    else:
        assert name == audio_io.fit_name(expected)
        assert name.startswith("音" * 60) and name.endswith(".wav") and "~" in name
        assert "too long" in err
    assert sf.info(str(written[0])).samplerate == 48_000


# --------------------------------------------------------------------------------------------
# The network


def test_offline_first_run_fails_fast_with_the_hf_download_hint(tmp_path, capsys, monkeypatch):
    """No network (DNS fails, as on a machine without one), no cache, no --engine."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("AUDIOSR_CHECKPOINT_BASIC", raising=False)

    def no_dns(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    src = tone_noise(tmp_path / "a.wav")
    start = time.monotonic()
    code, err = run(capsys, str(src), "-s", str(tmp_path / "out"), "-q")
    elapsed = time.monotonic() - start
    assert code == 1
    assert elapsed < 10, elapsed
    assert "Retrying" not in err
    assert "hf download haoheliu/audiosr_basic pytorch_model.bin" in err
    assert "--engine dsp" in err and "huggingface-cli" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_a_hanging_resolver_fails_fast_too(tmp_path, capsys, monkeypatch) -> None:
    """DNS that never answers: the request's own timeout does not cover name resolution."""
    import huggingface_hub
    import huggingface_hub.constants as hub_constants

    from audiosr import weights

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("AUDIOSR_CHECKPOINT_BASIC", raising=False)
    monkeypatch.setattr(weights, "HUB_TIMEOUT_S", 1.0)
    release = threading.Event()

    def hangs(*_args, **_kwargs):
        release.wait(60)  # a resolver that does not answer
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", hangs)
    src = tone_noise(tmp_path / "a.wav")
    start = time.monotonic()
    try:
        code, err = run(capsys, str(src), "-s", str(tmp_path / "out"), "-q")
    finally:
        release.set()
    assert time.monotonic() - start < 8
    assert code == 1 and "no answer within 2 s" in err
    assert "hf download haoheliu/audiosr_basic pytorch_model.bin" in err


def test_hf_hub_offline_names_the_variable(tmp_path, capsys, monkeypatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = tone_noise(tmp_path / "a.wav")
    code, err = run(capsys, str(src), "-s", str(tmp_path / "out"), "--model_name", "speech")
    assert code == 1
    assert "HF_HUB_OFFLINE" in err and "hf download haoheliu/audiosr_speech" in err


# --------------------------------------------------------------------------------------------
# Flags a path does not read


def test_chunking_flags_without_upstream_preset_warn(tmp_path, capsys) -> None:
    src = tone_noise(tmp_path / "a.wav")
    argv = [str(src), "-s", str(tmp_path / "o"), "--engine", "sinc", "--chunking"]
    code, err = run(capsys, *argv, "--chunk_duration", "10")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("ignored:")]
    assert len(warnings) == 1
    assert "--chunking" in warnings[0] and "--chunk_duration" in warnings[0]
    assert "--overlap_duration" not in warnings[0]


def test_modern_flags_under_upstream_preset_warn(tmp_path, capsys, monkeypatch) -> None:
    """--preset upstream with --cutoff/--batch_size/--sampler: one line names them."""
    import audiosr.cli as cli

    monkeypatch.setattr(
        cli,
        "_upstream_processor",
        lambda args, options: cli._OneByOne(
            lambda src, dst, subtype: audio_io.write_audio(dst, np.zeros((1, 480)), 48_000)
        ),
    )
    src = tone_noise(tmp_path / "a.wav")
    argv = [str(src), "-s", str(tmp_path / "o"), "--preset", "upstream", "--cutoff", "4000"]
    code, err = run(capsys, *argv, "--batch_size", "2", "--sampler", "unipc", "--force")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("ignored:")]
    assert len(warnings) == 1, err
    for flag in ("--cutoff", "--batch_size", "--sampler", "--force"):
        assert flag in warnings[0]
    # No warning without such flags.
    code, err = run(capsys, str(src), "-s", str(tmp_path / "p"), "--preset", "upstream")
    assert code == 0 and "ignored:" not in err
