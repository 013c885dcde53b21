"""Wall time of ``audiosr`` with 1, 2 and the default number of CPU threads on a shared CPU.

Re-run with:  python benchmarks/bench_threads.py [--seconds 150] [--engines sinc,dsp]
              [--busy 1] [--repeats 2]

Each case runs the command line in a fresh process on a stereo 44.1 kHz file (noise
band-limited to 11 kHz plus tones, so every segment goes through the engine) while ``--busy``
other processes spin on the CPU, as other work on a shared machine does. Modes:

* ``threads=1`` / ``threads=2``: ``--threads N``;
* ``OMP_NUM_THREADS=1``: the environment variable, no flag;
* ``old default``: what the command did before ``--threads`` existed: torch imported first,
  so its OpenMP runtime keeps its defaults (one thread per core, spinning waits);
* ``new default``: no flag, no variable.

Times include starting Python and importing torch (about 2 s on the machine of the README).

``--engines unet`` times the diffusion model's main cost instead: one step of the full-size
UNet (random weights, batch 2 as with guidance, a 5.12 s latent), median of 3 after a warm-up,
in a fresh process set up as the command line does it (same modes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

INPUT_SR = 44_100  # Hz
REPO = Path(__file__).resolve().parents[1]


def write_input(path: Path, seconds: int) -> None:
    """A stereo file: noise low-passed at 11 kHz plus a tone per channel, -20 dBFS."""
    import soundfile as sf
    from scipy import signal

    n = seconds * INPUT_SR
    rng = np.random.default_rng(0)
    sos = signal.butter(8, 11_000, fs=INPUT_SR, output="sos")
    x = 0.1 * signal.sosfilt(sos, rng.standard_normal((n, 2)), axis=0)
    t = np.arange(n) / INPUT_SR
    x[:, 0] += 0.1 * np.sin(2 * np.pi * 220 * t)
    x[:, 1] += 0.1 * np.sin(2 * np.pi * 330 * t)
    sf.write(path, x, INPUT_SR, subtype="PCM_16")


def modes(cpus: int) -> dict[str, tuple[list[str], dict[str, str], bool]]:
    """Mode name -> (extra CLI args, extra environment, import torch before main)."""
    return {
        "threads=1": (["--threads", "1"], {}, False),
        "threads=2": (["--threads", "2"], {}, False),
        "OMP_NUM_THREADS=1": ([], {"OMP_NUM_THREADS": "1"}, False),
        "old default": (["--threads", str(cpus)], {}, True),
        "new default": ([], {}, False),
    }


UNET_CHILD = """
import statistics, sys, time
{prelude}
from audiosr.threads import default_threads, prepare_runtime, set_threads
n = int(sys.argv[1]) if len(sys.argv) > 1 else default_threads("audiosr")
prepare_runtime(n)
set_threads(n)
import torch
from audiosr.config import AudioSRConfig
from audiosr.models.unet import UNetModel
torch.manual_seed(0)
unet = UNetModel(AudioSRConfig().unet).eval()
x, t = torch.randn(2, 32, 64, 32), torch.tensor([500, 500])
times = []
with torch.inference_mode():
    for i in range(4):
        start = time.perf_counter()
        unet(x, t, "sdpa")
        times.append(time.perf_counter() - start)
print("UNET", statistics.median(times[1:]))
"""


def run_unet(extra: list[str], env_extra: dict[str, str], torch_first: bool) -> float:
    """One UNet timing in a fresh process; returns seconds per step."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "OPENBLAS_"))}
    env.update(env_extra)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    code = UNET_CHILD.format(prelude="import torch" if torch_first else "")
    argv = [sys.executable, "-c", code, *extra[1:]]  # extra is ["--threads", N] or []
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return float(out.split("UNET")[-1])


def run_case(
    engine: str,
    src: Path,
    out: Path,
    extra: list[str],
    env_extra: dict[str, str],
    torch_first: bool,
) -> float:
    """One run of the command line in a fresh process; returns its wall time in seconds."""
    if engine == "unet":
        return run_unet(extra, env_extra, torch_first)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "OPENBLAS_"))}
    env.update(env_extra)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    prelude = "import torch; " if torch_first else ""
    code = f"{prelude}import sys; from audiosr.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "--engine", engine, str(src), "-s", str(out),
            "--overwrite", "-q", *extra]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=150, help="input length")
    ap.add_argument("--engines", default="sinc,dsp")
    ap.add_argument("--busy", type=int, default=1, help="competing busy processes")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modes", default=None, help="comma-separated subset of the modes")
    args = ap.parse_args()

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    table = modes(cpus or 1)
    chosen = args.modes.split(",") if args.modes else list(table)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "stereo.wav"
            write_input(src, args.seconds)
            for engine in args.engines.split(","):
                times: dict[str, list[float]] = {m: [] for m in chosen}
                for _ in range(args.repeats):  # interleaved, so load drifts hit every mode
                    for mode in chosen:
                        extra, env, torch_first = table[mode]
                        times[mode].append(
                            run_case(engine, src, Path(tmp) / "out", extra, env, torch_first)
                        )
                base = statistics.median(times[chosen[0]])
                for mode in chosen:
                    med = statistics.median(times[mode])
                    rows.append((engine, mode, med, min(times[mode]), med / base))
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(
        f"{args.seconds} s stereo 44.1 kHz, {cpus} CPUs, {args.busy} busy process(es), "
        f"median of {args.repeats}, 1-min load average at the end {os.getloadavg()[0]:.1f}"
    )
    print("(unet: seconds per UNet step; others: seconds per run of the command)")
    print(f"| engine | mode | wall s (median) | best s | vs {chosen[0]} |")
    print("|---|---|---|---|---|")
    for engine, mode, med, best, ratio in rows:
        print(f"| {engine} | {mode} | {med:.1f} | {best:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
