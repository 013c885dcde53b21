"""Throughput on a folder of short clips: one engine call per file vs clips batched across files.

Re-run with::

    python benchmarks/bench_batch.py                          # CPU, tiny model, 16 clips
    python benchmarks/bench_batch.py --device cuda --full     # full-size random weights
    python benchmarks/bench_batch.py --batch-sizes 1,4,8,16 --clips 32 --steps 10

Every row processes the same clips (mono, 16 kHz, 1 to 4.5 s, band-limited at 4 kHz, i.e. a
TTS-like corpus) with :meth:`audiosr.api.Upsampler.upsample_files` through the diffusion engine
(random weights from a seeded generator: the speed, not the audio, is the point), with
``batch_size`` rows per engine call. ``batch_size 1`` is one call per file, as a per-file loop
does. Reported per row: wall seconds, clips per second, real-time factor (processing seconds per
second of audio), engine calls and peak memory (CUDA allocator peak, or the process's peak RSS),
and the largest difference from the ``batch_size 1`` outputs (batching must not change them
beyond float rounding).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiosr.api import Upsampler
from audiosr.audio_io import write_audio
from audiosr.config import PIPELINE_STEPS, AudioSRConfig, SamplingOptions
from audiosr.engines.diffusion import AudioSREngine, DiffusionRuntime
from audiosr.pipeline import PipelineOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import build_random_model  # noqa: E402

log = logging.getLogger("bench_batch")
INPUT_SR = 16_000  # Hz


def make_clips(folder: Path, count: int, seed: int) -> tuple[list[Path], float]:
    """``count`` mono clips of 1-4.5 s (band-limited noise + tones); returns paths and seconds."""
    rng = np.random.default_rng(seed)
    paths, total = [], 0.0
    for i in range(count):
        seconds = float(rng.uniform(1.0, 4.5))
        n = int(seconds * INPUT_SR)
        t = np.arange(n) / INPUT_SR
        x = 0.1 * rng.standard_normal(n)
        spec = np.fft.rfft(x)
        spec[np.fft.rfftfreq(n, 1 / INPUT_SR) > 4000] = 0
        x = np.fft.irfft(spec, n) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t)
        paths.append(
            write_audio(folder / f"clip{i:03d}.wav", (0.5 * x / np.abs(x).max())[None], INPUT_SR)
        )
        total += n / INPUT_SR
    return paths, total


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="full-size model (default: tiny)")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--batch-sizes", default="1,4,8")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = AudioSRConfig() if args.full else AudioSRConfig.tiny()
    model = build_random_model(config, args.seed, device)
    options = SamplingOptions(steps=args.steps, guidance_scale=3.5, sampler=args.sampler)
    engine = AudioSREngine(DiffusionRuntime(model, config), options, steps=PIPELINE_STEPS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        clips, audio_s = make_clips(folder, args.clips, args.seed)
        outputs: dict[int, list[np.ndarray]] = {}
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            calls = [0]

            def counted(audio, cutoff_hz, _calls=calls):
                _calls[0] += 1
                return engine(audio, cutoff_hz)

            up = Upsampler(counted, PipelineOptions(batch_size=bs))
            out_dir = Path(tmp) / f"out{bs}"
            pairs = [(c, out_dir / c.name) for c in clips]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            result = up.upsample_files(pairs, subtype="FLOAT")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall = time.perf_counter() - start
            failed = [str(v) for v in result.values() if isinstance(v, Exception)]
            if failed:
                raise SystemExit(f"batch size {bs}: {failed[0]}")
            outputs[bs] = [sf.read(d, dtype="float32")[0] for _, d in pairs]
            rows.append((bs, wall, calls[0], peak_memory_mb(device)))
            log.info("batch_size %d: %.1f s", bs, wall)
    base = outputs[rows[0][0]]
    print(
        f"\n{args.clips} clips, {audio_s:.1f} s of audio, {'full' if args.full else 'tiny'} model, "
        f"{args.sampler} {args.steps} steps, CFG 3.5, device {device}, "
        f"threads {torch.get_num_threads()}\n"
    )
    print("| batch_size | wall s | clips/s | RTF | engine calls | speed-up | peak MB | max diff |")
    print("|---|---|---|---|---|---|---|---|")
    for bs, wall, calls, mem in rows:
        diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs[bs], base))
        print(
            f"| {bs} | {wall:.1f} | {args.clips / wall:.2f} | {wall / audio_s:.3f} | {calls} | "
            f"{rows[0][1] / wall:.2f}x | {mem:.0f} | {diff:.1e} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
