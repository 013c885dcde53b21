"""Throughput of ``audiosr ... --ray`` with 1 and 2 workers against the local CLI.

Re-run with::

    pip install -e ".[ray]"
    python benchmarks/bench_ray.py                        # dsp engine and the tiny model
    python benchmarks/bench_ray.py --engines dsp --copies 8 --workers 1,2,4

The corpus is the bundled real recordings (``examples/``: speech at 8 kHz, a 64 kbit/s MP3 of
piano, a knock and bell at 22 kHz), copied ``--copies`` times under distinct names. Every row
is one fresh command in a subprocess, exactly as a user runs it (interpreter start, model load,
and for ``--ray`` a local Ray instance and its actors), writing into an empty folder:

* ``local``: ``audiosr FOLDER -s OUT ...``
* ``ray N``: the same command with ``--ray --workers N``

With ``--repeats R`` the three commands run R times in turn (local, ray 1, ray 2, local, ...)
and the fastest run of each is reported (the one least slowed by other jobs on a shared
machine); the load average before each run is printed with it.

Reported: wall seconds, files per second, seconds of audio per second of wall time, the
overhead of the Ray row against the local row, the time Ray's run itself took (actors started
and every file processed, from the ``ray: N files in S s`` log line; the rest is interpreter
start and ``ray.init``), and whether the outputs are the same bytes as the local run's (for the
diffusion model, files batched with other neighbours differ by float rounding: the largest
sample difference is shown instead).

The tiny model is the golden test checkpoint (random weights, the full pipeline): its numbers
measure the machinery, not the real model's speed (see ``benchmarks/bench_speed.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("speech_8k.flac", "piano_mp3_64k.mp3", "knock_bell_22k.ogg")


def make_corpus(folder: Path, copies: int) -> float:
    """``copies`` copies of each example in ``folder``; returns the total audio seconds."""
    folder.mkdir(parents=True)
    total = 0.0
    for i in range(copies):
        for name in EXAMPLES:
            src = REPO / "examples" / name
            dst = folder / f"{Path(name).stem}_{i:02d}{Path(name).suffix}"
            shutil.copyfile(src, dst)
            total += sf.info(str(dst)).duration
    return total


def run(argv: list[str]) -> tuple[float, float | None]:
    """Run ``audiosr`` with ``argv``; returns wall seconds and Ray's own run time if any."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "audiosr", *argv], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"audiosr {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    found = re.search(r"ray: \d+ files in ([0-9.]+) s", proc.stderr)
    return wall, float(found.group(1)) if found else None


def compare(reference: Path, other: Path) -> str:
    """ "same bytes", or the largest sample difference between two output folders."""
    worst = 0.0
    for ref in sorted(reference.glob("*.wav")):
        twin = other / ref.name
        if ref.read_bytes() == twin.read_bytes():
            continue
        a, _ = sf.read(str(ref), dtype="float64")
        b, _ = sf.read(str(twin), dtype="float64")
        worst = max(worst, float(np.abs(a - b).max()))
    return "same bytes" if worst == 0.0 else f"max diff {worst:.1e}"


def engine_args(engine: str, steps: int) -> list[str]:
    if engine == "dsp":
        return ["--engine", "dsp"]
    golden = Path(os.environ.get("AUDIOSR_GOLDEN_DIR", REPO.parent / "shared" / "golden"))
    return [
        "--checkpoint",
        str(golden / "tiny_checkpoint.pt"),
        "--config",
        str(golden / "tiny_config.json"),
        "--ddim_steps",
        str(steps),
        "-d",
        "cpu",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", default="dsp,tiny", help="dsp and/or tiny")
    p.add_argument("--copies", type=int, default=4, help="copies of the examples (dsp)")
    p.add_argument("--tiny-copies", type=int, default=1, help="copies of the examples (tiny)")
    p.add_argument("--steps", type=int, default=2, help="sampler steps of the tiny model")
    p.add_argument("--workers", default="1,2", help="comma-separated pool sizes")
    p.add_argument("--repeats", type=int, default=1, help="runs of each command (best kept)")
    opts = p.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    header = (
        f"{'engine':<6} {'run':<7} {'files':>5} {'audio s':>8} {'wall s':>7} {'files/s':>8} "
        f"{'audio s/s':>9} {'vs local':>9} {'ray run s':>9}  outputs"
    )
    for engine in opts.engines.split(","):
        copies = opts.copies if engine == "dsp" else opts.tiny_copies
        with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
            corpus = Path(tmp) / "corpus"
            audio_s = make_corpus(corpus, copies)
            files = copies * len(EXAMPLES)
            common = [str(corpus), *engine_args(engine, opts.steps)]
            configs = {"local": []} | {
                f"ray {n}": ["--ray", "--workers", n] for n in opts.workers.split(",")
            }
            best: dict[str, tuple[float, float | None]] = {}
            for rep in range(opts.repeats):
                for name, extra in configs.items():
                    out = Path(tmp) / f"{name.replace(' ', '')}_{rep}"
                    load = os.getloadavg()[0]
                    wall, ray_s = run([*common, "-s", str(out), *extra])
                    print(
                        f"# {engine} {name} run {rep + 1}: {wall:.1f} s (load {load:.1f})",
                        flush=True,
                    )
                    if name not in best or wall < best[name][0]:
                        best[name] = (wall, ray_s)
            local_out = Path(tmp) / "local_0"
            local_wall = best["local"][0]
            rows = [
                (
                    name,
                    *best[name],
                    "reference"
                    if name == "local"
                    else compare(local_out, Path(tmp) / f"{name.replace(' ', '')}_0"),
                )
                for name in configs
            ]
            print(header)
            for name, wall, ray_s, same in rows:
                over = "" if name == "local" else f"{wall - local_wall:+.1f} s"
                ray_col = "" if ray_s is None else f"{ray_s:.1f}"
                print(
                    f"{engine:<6} {name:<7} {files:>5} {audio_s:>8.1f} {wall:>7.1f} "
                    f"{files / wall:>8.2f} {audio_s / wall:>9.2f} {over:>9} {ray_col:>9}  {same}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
