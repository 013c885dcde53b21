"""Speed of the offline ``dsp`` engine: real-time factor on one CPU thread, per envelope.

Re-run with:  python benchmarks/bench_dsp.py [--seconds 10] [--repeats 3] [--cutoffs 4000,16000]

The engine alone (no file I/O, no pipeline) on ``--seconds`` of 48 kHz mono: a harmonic
tone sequence with tilted noise, low-passed at each cutoff (order-8 Butterworth). One warm-up
call, then the median of ``--repeats`` calls; one torch thread (the default the command line
uses for this engine). Prints seconds per call, the real-time factor (audio seconds per
second of work) and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from audiosr.engines.dsp import DSPConfig, DSPEngine  # noqa: E402
from audiosr.eval.degrade import Degradation, apply  # noqa: E402

SR = 48_000


def make_signal(seconds: float, seed: int = 0) -> torch.Tensor:
    """``[T]`` harmonic notes (random f0 each second, -6 dB/octave) over breath noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.choice([110.0, 196.0, 262.0, 330.0, 440.0], size=n // SR + 1)[(t // 1).astype(int)]
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(2.0 ** (-k / 2) * np.sin(k * phase) for k in range(1, 40))
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    noise = np.fft.irfft(spec / np.sqrt(np.maximum(f, 50.0) / 50.0), n=n)
    x = x + 0.05 * noise / np.abs(noise).max() * np.abs(x).max()
    return torch.from_numpy(0.5 * x / np.abs(x).max()).float()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cutoffs", default="4000,16000", help="Hz, comma-separated")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ref = make_signal(args.seconds)
    print(f"dsp engine, {args.seconds:g} s of 48 kHz mono, 1 thread, median of {args.repeats}")
    print("| envelope | cutoff Hz | seconds per call | real-time factor |")
    print("|---|---|---|---|")
    for envelope in ("learned", "tilt"):
        engine = DSPEngine(DSPConfig(envelope=envelope))
        for cutoff in (float(c) for c in args.cutoffs.split(",")):
            x, _ = apply(Degradation("lowpass", cutoff, "butter", 8), ref)
            cut = torch.tensor([cutoff])
            engine(x[None, : SR // 2], cut)  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                engine(x[None], cut)
                times.append(time.perf_counter() - start)
            t = statistics.median(times)
            print(f"| {envelope} | {cutoff:.0f} | {t:.3f} | {args.seconds / t:.0f}x |")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
