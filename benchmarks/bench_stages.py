"""Time every inference stage of AudioSR and report peak memory, per model size.

Re-run with:  python benchmarks/bench_stages.py [--configs tiny,full] [--repeats 3]

Stages: front end (mel + cutoff + low-pass simulation of the condition), VAE encode (condition),
one UNet step (cond + uncond batched, i.e. one CFG step), VAE decode, vocoder, post-processing
(low-band merge). Weights are random (same shapes as the official checkpoint): speed does not
depend on their values. Each config runs in its own process so peak RSS is per config.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it resets on exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run_one(name: str, repeats: int, attention: str) -> dict:
    from audiosr.config import AudioSRConfig
    from audiosr.diffusion.guidance import classifier_free, concat_condition
    from audiosr.dsp.cutoff import cutoff_hz_from_stft
    from audiosr.dsp.lowpass import simulate_lowpass
    from audiosr.dsp.mel import MelFrontEnd, fit_frames
    from audiosr.dsp.merge import replace_low_band
    from audiosr.models.latent_diffusion import AudioSRModel

    torch.manual_seed(0)
    config = AudioSRConfig.tiny() if name == "tiny" else AudioSRConfig()
    t0 = time.perf_counter()
    model = AudioSRModel(config).eval()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    frames = 512  # one 5.12 s block
    samples = frames * 480
    t = torch.arange(samples) / 48_000
    wave = (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.01 * torch.randn(samples))[None]
    frontend = MelFrontEnd(config.mel)
    results: dict[str, float] = {}
    with torch.inference_mode():

        def front() -> None:
            _, mag = frontend(wave)
            _, hz = cutoff_hz_from_stft(fit_frames(mag, frames)[0])
            low = simulate_lowpass(wave, float(hz), "butter")
            fit_frames(frontend(low)[0], frames)

        results["front_end"] = _time(front, repeats)
        _, mag = frontend(wave)
        low = simulate_lowpass(
            wave, float(cutoff_hz_from_stft(fit_frames(mag, frames)[0])[1]), "butter"
        )
        lp_mel = fit_frames(frontend(low)[0], frames)
        results["vae_encode"] = _time(
            lambda: model.cond_vae.encode(lp_mel[:, None], attention=attention), repeats
        )
        mean, logvar = model.cond_vae.encode(lp_mel[:, None], attention=attention)
        cond = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        sf = model.scale_factor

        def unet_v(x, tt, c):
            return model.unet(concat_condition(x, c, sf), tt, attention=attention)

        denoiser = classifier_free(unet_v, cond, torch.full_like(cond, -11.4981), 3.5)
        x = torch.randn_like(cond)
        tt = torch.tensor([501])
        results["unet_step_cfg"] = _time(lambda: denoiser(x, tt), repeats)
        results["vae_decode"] = _time(
            lambda: model.decoder_vae.decode(x / sf, attention=attention), repeats
        )
        mel = model.decoder_vae.decode(x / sf, attention=attention)
        results["vocoder"] = _time(lambda: model.vocoder(mel[:, 0].transpose(1, 2)), repeats)
        voc = model.vocoder(mel[:, 0].transpose(1, 2))[:, 0]
        results["post_processing"] = _time(lambda: replace_low_band(voc, low), repeats)
    per_block_50 = (
        results["front_end"]
        + results["vae_encode"]
        + 50 * results["unet_step_cfg"]
        + results["vae_decode"]
        + results["vocoder"]
        + results["post_processing"]
    )
    return {
        "config": name,
        "params_M": round(params / 1e6, 1),
        "build_s": round(build_s, 2),
        "threads": torch.get_num_threads(),
        "attention": attention,
        **{k: round(v, 4) for k, v in results.items()},
        "est_50_steps_per_5.12s": round(per_block_50, 2),
        "rtf_50_steps": round(per_block_50 / 5.12, 2),
        "peak_rss_MB": round(_peak_rss_mb(), 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="tiny,full")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--attention", default="math,sdpa")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        name, attention = args.one.split(":")
        print(json.dumps(run_one(name, args.repeats, attention)))
        return
    rows = []
    for name in args.configs.split(","):
        for attention in args.attention.split(","):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{name}:{attention}",
                    "--repeats",
                    str(args.repeats),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("CPU, torch", torch.__version__, "- seconds per call on one 5.12 s block (T=512)")
    print("| " + " | ".join(k.ljust(w) for k, w in zip(keys, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths)) + " |")


if __name__ == "__main__":
    main()
