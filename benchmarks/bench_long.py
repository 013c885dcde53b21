"""Peak memory and time of the streaming pipeline on long stereo files: memory must stay flat.

Re-run with:  python benchmarks/bench_long.py [--durations 10,60,600] [--engines audiosr,dsp,sinc]

Each case (engine x input length) runs ``Upsampler.upsample_file`` in a fresh subprocess that
reports its own peak resident memory (``resource.getrusage(...).ru_maxrss``) after building
the engine and after processing the file, so the two numbers and their difference are per case.
Inputs are 16 kHz stereo WAV files (band-limited noise plus tones, different in each channel,
so every segment goes through the engine). The ``audiosr`` engine is the tiny golden checkpoint
(``$AUDIOSR_GOLDEN_DIR`` or ``../shared/golden``) with ``--steps`` DDIM steps and guidance 1:
its speed says nothing about the full model, but its memory shows what the pipeline holds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

INPUT_SR = 16_000  # Hz
BLOCK_S = 10  # seconds per block when generating an input file


def _golden_dir() -> Path:
    env = os.environ.get("AUDIOSR_GOLDEN_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "golden"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def write_input(path: Path, seconds: int) -> None:
    """A 16 kHz stereo file, written block by block: 3.4 kHz noise plus a few tones."""
    import soundfile as sf
    from scipy import signal

    sos = signal.butter(8, 3400, fs=INPUT_SR, output="sos")
    state = np.zeros((sos.shape[0], 2, 2))
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", INPUT_SR, 2, "PCM_16") as f:
        for start in range(0, seconds * INPUT_SR, BLOCK_S * INPUT_SR):
            n = min(BLOCK_S * INPUT_SR, seconds * INPUT_SR - start)
            noise, state = signal.sosfilt(sos, rng.standard_normal((n, 2)), axis=0, zi=state)
            t = (start + np.arange(n)) / INPUT_SR
            tones = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], -1)
            f.write(0.1 * noise + 0.1 * tones)


def child(engine_name: str, src: str, dst: str, steps: int) -> dict:
    """One case, in its own process: build the engine, process the file, report."""
    import torch

    from audiosr.api import Upsampler, make_engine
    from audiosr.config import SamplingOptions

    kwargs: dict = {"device": "cpu"}
    if engine_name == "audiosr":
        golden = _golden_dir()
        kwargs |= {
            "model": golden / "tiny_checkpoint.pt",
            "config": golden / "tiny_config.json",
            "options": SamplingOptions(steps=steps, guidance_scale=1.0),
        }
    engine = make_engine(engine_name, **kwargs)
    loaded_mb = _peak_rss_mb()
    t0 = time.perf_counter()
    with torch.inference_mode():
        report = Upsampler(engine).upsample_file(src, dst)
    wall = time.perf_counter() - t0
    return {
        "engine": engine_name,
        "wall_s": wall,
        "loaded_mb": loaded_mb,
        "peak_mb": _peak_rss_mb(),
        "segments": report.segments,
        "passthrough": report.passthrough,
        "threads": torch.get_num_threads(),
    }


def run_case(engine: str, src: Path, dst: Path, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, str(src), str(dst), "--steps", str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [
        "| engine | input | segments/ch | wall (s) | × real time | RSS after load (MB) "
        "| peak RSS (MB) | growth (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        minutes, seconds = divmod(r["seconds"], 60)
        length = f"{minutes} min" if minutes and not seconds else f"{r['seconds']} s"
        lines.append(
            f"| {r['engine']} | {length} stereo | {r['segments']} | {r['wall_s']:.1f} "
            f"| {r['seconds'] / r['wall_s']:.2f} | {r['loaded_mb']:.0f} | {r['peak_mb']:.0f} "
            f"| {r['peak_mb'] - r['loaded_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--durations", default="10,60,600", help="input lengths in seconds")
    p.add_argument("--engines", default="audiosr,dsp,sinc")
    p.add_argument("--steps", type=int, default=1, help="DDIM steps of the tiny model")
    p.add_argument("--json", default=None, help="also append one JSON line per case here")
    p.add_argument("--child", nargs=3, metavar=("ENGINE", "SRC", "DST"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, steps=args.steps)))
        return
    durations = [int(d) for d in args.durations.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_long_") as tmp:
        for seconds in durations:
            src = Path(tmp) / f"in_{seconds}s.wav"
            write_input(src, seconds)
            for engine in args.engines.split(","):
                row = run_case(engine, src, Path(tmp) / f"out_{engine}_{seconds}.wav", args.steps)
                row["seconds"] = seconds
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(row) + "\n")
    print(f"CPU threads: {rows[0]['threads']}; tiny model: {args.steps} DDIM step(s), guidance 1")
    print(table(rows))


if __name__ == "__main__":
    main()
