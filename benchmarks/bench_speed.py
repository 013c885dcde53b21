"""Speed, memory and accuracy of each inference optimisation against the reference path.

Re-run with::

    python benchmarks/bench_speed.py                      # CPU, 5.12 s, 50 steps (slow)
    python benchmarks/bench_speed.py --steps 3            # quick: 3 steps run, 50 extrapolated
    python benchmarks/bench_speed.py --device cuda --durations 5.12,10.24
    python benchmarks/bench_speed.py --stage-errors       # per-stage half-precision error only
    python benchmarks/bench_speed.py --pipeline upstream,quality,fast --threads 1 --steps 2
                                                          # the whole path of each CLI preset

One process builds the full-size model (``AudioSRConfig()``, 672 M parameters) with random
weights from a seeded generator (PyTorch's default init ranges, norms at 1/0), so every row
sees the same weights and the same input: a 5.12 s (or 10.24 s) band-limited harmonic signal.
Random weights make the speed and the numerical differences meaningful, not the audio.

Rows (cumulative: each adds one optimisation to the row above, unless marked preset):

* ``reference``: the original's computation: fp32, DDIM 50 steps, eta 1, CFG 3.5 as two UNet
  calls of batch 1 per step, reference ("math") attention.
* ``+batched CFG``, ``+sdpa``, ``+bf16``, ``+channels_last``, ``+compile`` (``--compile`` on
  CPU, where compiling takes minutes; always on CUDA), ``+cuda graphs`` (CUDA only),
  ``+dpmpp_2m N`` / ``+unipc N`` (fewer solver steps, replacing DDIM).
* presets ``quality`` and ``fast``: exactly what ``audiosr --preset quality|fast`` runs on the
  device (:func:`audiosr.presets.preset_options`, the one definition the CLI and the API use;
  only the filter family is fixed to butter, as in every row), and on CUDA ``fast+offload``.

Timing: every stage is timed by the engine (``GenerateResult.timings``, CUDA-synchronised).
When ``--steps`` is below a row's step count, that many steps are run and the sampler time
is extrapolated as ``first step + median(later steps) x (steps - 1)``; such rows say
``extrapolated``. Numbers are the minimum over ``--repeats`` runs (contention on shared cores
only ever adds time); on a shared CPU, ``--threads 1 --clock cpu`` times the process's CPU
seconds instead of wall seconds, which other jobs cannot inflate (with two threads, wall time
is roughly half of that when the cores are free). Peak memory is the process RSS on CPU
(sampled every 20 ms during the row;
the weights alone are ~2.7 GB) and ``torch.cuda.max_memory_allocated`` on CUDA. Differences
are against the reference row's waveform at the same number of run steps and seed (the DDIM
rows draw the same noise; the ODE solver rows follow another path, so their difference is the
solver's, not rounding).

FLOPs per UNet step are counted once with ``torch.utils.flop_counter.FlopCounterMode`` on the
meta device (batch 2, i.e. one batched CFG step); on CUDA the achieved fraction of the dense
peak of the row's dtype is reported (``--peak-tflops`` overrides the built-in table).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from audiosr.config import STAGES, AudioSRConfig, SamplingOptions
from audiosr.diffusion.guidance import concat_condition
from audiosr.engines.diffusion import DiffusionRuntime, Generators, generate
from audiosr.engines.diffusion.placement import pin_host_weights
from audiosr.engines.diffusion.precision import bf16_native
from audiosr.models.latent_diffusion import AudioSRModel
from audiosr.presets import preset_options

log = logging.getLogger("bench_speed")

SAMPLE_RATE = 48_000
BLOCK_S = 5.12
# Dense peak TFLOP/s by (device name fragment, dtype), from the vendors' data sheets; TF32 is
# what fp32 matmuls use when allowed, plain fp32 otherwise. Checked in order.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100", {"fp32": 67.0, "tf32": 495.0, "bf16": 989.0, "fp16": 989.0}),
    ("H200", {"fp32": 67.0, "tf32": 495.0, "bf16": 989.0, "fp16": 989.0}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
]


# --- model and input --------------------------------------------------------------------------


def build_random_model(config: AudioSRConfig, seed: int, device: torch.device) -> AudioSRModel:
    """The full model with deterministic random weights, without touching the global RNG.

    Built on the meta device (instant), then each weight and bias is drawn from
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (PyTorch's default ranges) with one seeded
    generator; norm layers get weight 1, bias 0; ``scale_factor`` is 1.
    """
    with torch.device("meta"):
        model = AudioSRModel(config)
    model = model.to_empty(device=device)
    gen = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.Linear)):
                w = module.weight
                # ConvTranspose weights are [in, out, k]: fan_in is out * k as PyTorch computes.
                fan_in = w.shape[1] * math.prod(w.shape[2:])
                bound = 1.0 / math.sqrt(fan_in)
                w.uniform_(-bound, bound, generator=gen)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=gen)
            elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                module.weight.fill_(1.0)
                module.bias.zero_()
        model.scale_factor.fill_(1.0)
    return model.eval()


def make_input(duration_s: float, seed: int) -> Tensor:
    """[1, L] a band-limited test signal at 48 kHz, L = duration * 48000 (peak 0.5).

    Harmonics of 220 Hz up to 7 kHz with a slow tremolo, plus white noise low-passed at
    7 kHz (FFT brick wall), so the model has a 7 kHz band limit to extend.
    """
    n = int(round(duration_s * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for k in range(1, 32):
        if 220.0 * k < 7000.0:
            x += (0.5 / k) * np.sin(2 * np.pi * 220.0 * k * t + 0.3 * k)
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / SAMPLE_RATE) > 7000.0] = 0.0
    noise = np.fft.irfft(spec, n)
    x += 0.05 * noise / noise.std()
    x *= 0.5 / np.abs(x).max()
    return torch.from_numpy(x.astype(np.float32))[None]


# --- measurement helpers ----------------------------------------------------------------------


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak, or process RSS sampled every 20 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_bytes = max(self.peak_bytes, self._rss())

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            torch.cuda.synchronize(self.device)
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(self.device))
            return
        self.peak_bytes = max(self.peak_bytes, self._rss())
        thread = threading.Thread(target=self._poll, daemon=True)
        self._stop.clear()
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()


def snr_db(reference: Tensor, other: Tensor) -> float:
    """10 log10(sum ref^2 / sum (other - ref)^2) in dB; inf when identical."""
    ref = reference.double()
    err = (other.double() - ref).pow(2).sum().item()
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(ref.pow(2).sum().item() / err)


def count_flops(config: AudioSRConfig, frames: int) -> dict[str, float]:
    """FLOPs of one call of each network on the meta device (no compute, no memory).

    Returns:
        ``unet_step`` (one CFG step: batch 2), ``encoder``, ``decoder``, ``vocoder`` (batch 1).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = AudioSRModel(config)
    f = config.vae.downsample_factor
    n_mels = config.mel.n_mels
    latent = torch.empty(2, config.vae.embed_dim, frames // f, n_mels // f, device="meta")
    out = {}
    calls = {
        "unet_step": lambda: model.unet(
            concat_condition(latent, latent, 1.0),
            torch.zeros(2, dtype=torch.int64, device="meta"),
            attention="math",
        ),
        "encoder": lambda: model.cond_vae.encode(torch.empty(1, 1, frames, n_mels, device="meta")),
        "decoder": lambda: model.decoder_vae.decode(latent[:1]),
        "vocoder": lambda: model.vocoder(torch.empty(1, n_mels, frames, device="meta")),
    }
    for name, call in calls.items():
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            call()
        out[name] = float(counter.get_total_flops())
    return out


def peak_tflops(device: torch.device, dtype_name: str, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    # cuDNN runs fp32 convolutions (most of the UNet's FLOPs) on TF32 tensor cores by default.
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    if dtype_name == "fp32" and tf32:
        dtype_name = "tf32"
    for fragment, table in PEAK_TFLOPS:
        if fragment in name:
            return table[dtype_name]
    return None


# --- the rows ---------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    options: SamplingOptions
    note: str = ""
    results: dict = field(default_factory=dict)


def reference_options(steps: int = 50) -> SamplingOptions:
    """The original's settings and computation (two-call CFG, fp32, math attention)."""
    return SamplingOptions(
        steps=steps,
        guidance_scale=3.5,
        eta=1.0,
        sampler="ddim",
        precision="fp32",
        attention="math",
        filter_family="butter",
        batched_cfg=False,
    )


def preset_row(name: str, device: torch.device) -> Row:
    """The row of a CLI preset on ``device`` (filter family fixed like every other row)."""
    return Row(f"preset {name}", preset_options(name, device).replace(filter_family="butter"))


def build_rows(args: argparse.Namespace, device: torch.device) -> list[Row]:
    cuda = device.type == "cuda"
    half = "bf16" if not cuda or bf16_native(device) else "fp16"  # the device asked for
    ref = reference_options()
    rows = [Row("reference", ref, "fp32, DDIM 50, eta 1, CFG 2 calls, math")]
    ladder = [
        ("+batched CFG", dict(batched_cfg=True)),
        ("+sdpa", dict(attention="sdpa")),
        (f"+{half}", dict(precision=half)),
        ("+channels_last", dict(channels_last=True)),
    ]
    if cuda or args.compile:
        ladder.append(("+compile", dict(compile=True)))
    if cuda:
        ladder.append(("+cuda graphs", dict(cuda_graphs=True)))
    current = ref
    for name, change in ladder:
        current = current.replace(**change)
        rows.append(Row(name, current))
    n = args.solver_steps
    rows.append(Row(f"+dpmpp_2m {n}", current.replace(sampler="dpmpp_2m", steps=n)))
    rows.append(Row(f"+unipc {n}", current.replace(sampler="unipc", steps=n)))
    rows.append(preset_row("quality", device))
    rows.append(preset_row("fast", device))
    if cuda:
        fast = preset_row("fast", device)
        rows.append(Row("preset fast+offload", fast.options.replace(offload=True)))
        # Offload needs the weights in host memory; run it first, before rows that move them.
        rows.insert(0, rows.pop())
    if args.rows:
        wanted = {w.strip() for w in args.rows.split(",")}
        rows = [r for r in rows if r.name in wanted or r.name == "reference"]
    return rows


def run_row(
    runtime: DiffusionRuntime, row: Row, wave: Tensor, args: argparse.Namespace
) -> tuple[dict, tuple[Tensor, Tensor]]:
    """Time one row; returns (results, (waveform, latent) of the first timed run)."""
    device = runtime.device
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    target = row.options.steps
    run_steps = min(target, args.steps) if args.steps else target
    options = row.options.replace(steps=run_steps)
    best: dict[str, float] = {}
    step_times: list[float] = []
    first_step = math.inf
    peak = PeakMemory(device)
    output = None
    compile_s = None
    runs = args.repeats + (1 if options.compile else 0)
    for r in range(runs):
        stamps: list[float] = []

        def on_step(_info: dict, stamps: list[float] = stamps) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(clock())

        with peak.watch(), torch.inference_mode():
            t0 = time.perf_counter()  # wall: compilation runs in worker processes
            result = generate(
                runtime,
                wave.to(device),
                options,
                family=options.filter_family or "butter",
                generators=Generators.from_seed(args.seed, device),
                callback=on_step,
                clock=clock,
            )
        if options.compile and r == 0:
            # Warm-up run: compilation included, not counted below.
            compile_s = time.perf_counter() - t0
            continue
        if output is None:
            output = (result.wave.detach().cpu(), result.latent.detach().float().cpu())
        sampler_start = stamps[0] - _first_step_duration(result, stamps)
        durations = np.diff([sampler_start, *stamps]).tolist()
        first_step = min(first_step, durations[0])
        step_times.extend(durations[1:])
        for stage, seconds in result.timings.items():
            best[stage] = min(best.get(stage, math.inf), seconds)
    steady = statistics.median(step_times) if step_times else first_step
    visited = _visited_steps(row.options)
    run_steps = _visited_steps(options)
    measured = run_steps == visited
    sampler = best["sampler"] if measured else first_step + steady * (visited - 1)
    stages = {k: best[k] for k in ("condition", "encoder", "decoder", "vocoder", "post")}
    total = sum(stages.values()) + sampler
    duration = wave.shape[-1] / SAMPLE_RATE
    res = {
        "run_steps": run_steps,
        "steps": _visited_steps(row.options),
        "extrapolated": not measured,
        "per_step_s": steady,
        "sampler_s": sampler,
        **{f"{k}_s": v for k, v in stages.items()},
        "total_s": total,
        "per_block_s": total * BLOCK_S / duration,
        "rtf": total / duration,
        "peak_gb": peak.peak_bytes / 2**30,
        "compile_s": compile_s,
    }
    return res, output


def _visited_steps(options: SamplingOptions) -> int:
    """Model evaluations (sampler steps) a run makes with these options."""
    if options.sampler == "ddim":
        stride = 1000 // min(options.steps, 1000)
        return math.ceil(1000 / stride)
    return min(options.steps, 1000)


def _first_step_duration(result, stamps: list[float]) -> float:
    """Time of the first sampler step: sampler total minus the later steps (from the stamps)."""
    later = stamps[-1] - stamps[0]
    return max(result.timings["sampler"] - later, 0.0)


# --- half-precision error per stage -----------------------------------------------------------


def stage_errors(
    model: AudioSRModel, config: AudioSRConfig, device: torch.device, frames: int, dtypes: list
) -> list[dict]:
    """SNR (dB) each network adds in half precision, fed the same fp32 inputs.

    Inputs: the condition mel of :func:`make_input` (encoder), the UNet at t = 999/500/1 on a
    random x_t with that condition, a random latent (decoder), and the decoder's fp32 mel
    (vocoder). The "ends fp32" column repeats the first dtype with each network's first and
    last convolution in fp32, to see whether quantising its input/output dominates (the
    vocoder's are fp32 in the model since this measurement, so its two columns now agree).
    """
    runtime = DiffusionRuntime(model, config)
    wave = make_input(frames * config.mel.hop_length / SAMPLE_RATE, seed=0).to(device)
    gen = torch.Generator(device).manual_seed(0)
    rows = []
    with torch.inference_mode():
        cond_in = runtime.condition(wave, frames, "butter")
        mel_in = cond_in.lowpass_mel[:, None]
        mean, _ = model.cond_vae.encode(mel_in)
        x_t = torch.randn(mean.shape, generator=gen, device=device)
        latent = 0.5 * torch.randn(mean.shape, generator=gen, device=device)
        mel = model.decoder_vae.decode(latent)
        calls = {
            "encoder": lambda: model.cond_vae.encode(mel_in)[0],
            "unet t=999": lambda: model.unet(
                concat_condition(x_t, mean, 1.0), torch.full((1,), 999, device=device)
            ),
            "unet t=500": lambda: model.unet(
                concat_condition(x_t, mean, 1.0), torch.full((1,), 500, device=device)
            ),
            "unet t=1": lambda: model.unet(
                concat_condition(x_t, mean, 1.0), torch.full((1,), 1, device=device)
            ),
            "decoder": lambda: model.decoder_vae.decode(latent),
            "vocoder": lambda: model.vocoder(mel[:, 0].transpose(1, 2)),
        }
        u, enc, dec, voc = model.unet, model.cond_vae, model.decoder_vae, model.vocoder
        ends = {
            "encoder": [enc.encoder.conv_in, enc.encoder.conv_out, enc.quant_conv],
            "unet": [u.input_blocks[0][0], u.out[2]],
            "decoder": [dec.post_quant_conv, dec.decoder.conv_in, dec.decoder.conv_out],
            "vocoder": [voc.conv_pre, voc.conv_post],
        }
        for name, call in calls.items():
            ref = call().float()
            row = {"stage": name}
            for dtype in dtypes:
                t0 = time.perf_counter()
                with torch.autocast(device.type, dtype=dtype):
                    out = call().float()
                key = str(dtype).removeprefix("torch.")
                row[key] = snr_db(ref, out)
                row[f"{key} finite"] = bool(torch.isfinite(out).all())
                row[f"{key} s"] = time.perf_counter() - t0
            key = str(dtypes[0]).removeprefix("torch.")
            with _fp32_modules(ends[name.split()[0]]), torch.autocast(device.type, dtype=dtypes[0]):
                row[f"{key} ends fp32"] = snr_db(ref, call().float())
            rows.append(row)
    return rows


@contextlib.contextmanager
def _fp32_modules(modules: list[nn.Module]) -> Iterator[None]:
    """Run these modules in fp32 (autocast off, input cast up) inside an autocast region."""
    for module in modules:
        original = module.forward

        def forward(x: Tensor, original=original) -> Tensor:
            with torch.autocast(x.device.type, enabled=False):
                return original(x.float())

        module.forward = forward
    try:
        yield
    finally:
        for module in modules:
            del module.forward  # the instance attribute; the class method shows through again


def end_to_end_stage_errors(
    model: AudioSRModel,
    config: AudioSRConfig,
    device: torch.device,
    frames: int,
    steps: int,
    precision: str,
) -> list[dict]:
    """Output error when only one stage runs in half precision (all others fp32), DDIM eta 1."""
    runtime = DiffusionRuntime(model, config)
    wave = make_input(frames * config.mel.hop_length / SAMPLE_RATE, seed=0)
    base = reference_options(steps).replace(batched_cfg=True)

    def run(options: SamplingOptions):
        with torch.inference_mode():
            return generate(
                runtime,
                wave.to(device),
                options,
                family="butter",
                generators=Generators.from_seed(0, device),
            )

    ref = run(base)
    rows = []
    for half in [*({s} for s in STAGES), set(STAGES)]:
        half_stages = tuple(s for s in STAGES if s in half)
        out = run(base.replace(precision=precision, half_stages=half_stages))
        rows.append(
            {
                "half stages": "+".join(sorted(half)) if len(half) < len(STAGES) else "all",
                "latent dB": snr_db(ref.latent, out.latent),
                "mel dB": snr_db(ref.mel, out.mel),
                "wave dB": snr_db(ref.wave, out.wave),
                "wave max abs": (ref.wave - out.wave).abs().max().item(),
            }
        )
    return rows


# --- the whole pipeline, per stage --------------------------------------------------------------

# Functions timed wherever an ``audiosr`` module has imported them: the pipeline's own DSP
# steps, then the engine's copies of them (the original's low-pass simulation and low-band
# merges), which the pipeline path should not run a second time.
TIMED_STEPS = (
    "detect_cutoff_hz",
    "prefilter_lowpass",
    "merge_low_band",
    "simulate_lowpass",
    "replace_low_mel_bins",
    "replace_low_band",
)


@contextlib.contextmanager
def _timed_functions(names: tuple[str, ...], clock, totals: dict[str, float]) -> Iterator[None]:
    """Accumulate the time of each named function in ``totals`` (nested calls counted once).

    Every loaded ``audiosr`` module holding the function under that name gets a timing
    wrapper for the block, so the module-level imports (``from .x import f``) are covered.
    """
    patched: list[tuple[object, str, object]] = []
    originals = {}
    for mod_name, module in list(sys.modules.items()):
        if not mod_name.startswith("audiosr") or module is None:
            continue
        for name in names:
            fn = module.__dict__.get(name)
            if fn is None or not callable(fn):
                continue
            base = originals.setdefault(name, fn)
            if fn is not base:
                continue

            def wrapper(*a, _fn=fn, _name=name, **kw):
                start = clock()
                try:
                    return _fn(*a, **kw)
                finally:
                    totals[_name] = totals.get(_name, 0.0) + clock() - start
                    totals[f"{_name} calls"] = totals.get(f"{_name} calls", 0) + 1

            patched.append((module, name, fn))
            setattr(module, name, wrapper)
    try:
        yield
    finally:
        for module, name, fn in patched:
            setattr(module, name, fn)


def pipeline_options_for(preset: str, steps: int | None) -> tuple[SamplingOptions, int]:
    """The CLI preset's sampling options on this CPU, and the steps it visits.

    Returns:
        (options, the preset's own number of sampler steps); ``steps`` caps the steps run.
    """
    options = preset_options(preset, torch.device("cpu"))
    target = _visited_steps(options)
    if steps is not None and steps < options.steps:
        options = options.replace(steps=steps)
    return options, target


def run_pipeline(model, config, args: argparse.Namespace) -> list[dict]:
    """Time the real path of each preset on one mono input (``--input-s``), per stage.

    ``quality``/``fast``: :func:`audiosr.pipeline.upsample` with the engine ``make_engine``
    builds (the CLI's path); ``upstream``: ``upstream.super_resolution`` on a WAV file (the
    ``--preset upstream`` path). Times are CPU seconds of this process (``time.process_time``;
    robust to other jobs on shared cores); the sampler is extrapolated from ``--steps`` run
    steps to the preset's steps (sampler seconds x preset steps / run steps).
    """
    import tempfile

    import soundfile as sf

    from audiosr import pipeline, upstream
    from audiosr.engines import diffusion

    clock = time.process_time
    wave = make_input(args.input_s, args.seed)  # [1, L], band-limited at 7 kHz
    rows = []
    for preset in args.pipeline.split(","):
        options, target = pipeline_options_for(preset, args.steps)
        run = _visited_steps(options)
        totals: dict[str, float] = {}
        stage_times: dict[str, float] = {}
        real_generate = diffusion.generate

        def timed_generate(*a, _real=real_generate, _times=stage_times, **kw):
            result = _real(*a, **{"clock": clock, **kw})
            for k, v in result.timings.items():
                _times[k] = _times.get(k, 0.0) + v
            return result

        runtime = DiffusionRuntime(model, config)
        with tempfile.TemporaryDirectory() as tmp:
            src = f"{tmp}/in.wav"
            sf.write(src, wave[0].numpy(), SAMPLE_RATE, subtype="FLOAT")
            lat = upstream.LatentDiffusion(runtime=runtime)
            engine = _pipeline_engine(runtime, options)
            modules = [m for n, m in sys.modules.items() if n.startswith("audiosr") and m]
            holders = [m for m in modules if m.__dict__.get("generate") is real_generate]
            for m in holders:
                m.generate = timed_generate
            try:
                with _timed_functions(TIMED_STEPS, clock, totals), torch.inference_mode():
                    start = clock()
                    if preset == "upstream":
                        upstream.super_resolution(
                            lat, src, seed=args.seed, ddim_steps=options.steps, guidance_scale=3.5
                        )
                    else:
                        pipeline.upsample(engine, wave, pipeline.PipelineOptions())
                    total = clock() - start
            finally:
                for m in holders:
                    m.generate = real_generate
        sampler = stage_times.get("sampler", 0.0)
        extrapolated = total - sampler + sampler * target / run
        networks = sum(stage_times.get(k, 0.0) for k in ("encoder", "decoder", "vocoder"))
        row = {
            "preset": preset,
            "steps": f"{target}" + (f" ({run} run)" if run != target else ""),
            "total_s": extrapolated,
            "sampler_s": sampler * target / run,
            "networks_s": networks,
            **{f"{k}_s": stage_times.get(k, 0.0) for k in ("encoder", "decoder", "vocoder")},
            "condition_s": stage_times.get("condition", 0.0),
            "post_s": stage_times.get("post", 0.0),
            "other_s": extrapolated - sampler * target / run - networks,
        }
        for name in TIMED_STEPS:
            row[name] = (totals.get(name, 0.0), int(totals.get(f"{name} calls", 0)))
        rows.append(row)
        log.info("%s: %s", preset, row)
    return rows


def _pipeline_engine(runtime, options: SamplingOptions):
    """The engine ``api.make_engine`` builds around an existing runtime (no weight loading)."""
    from audiosr import config
    from audiosr.engines.diffusion import AudioSREngine

    steps = getattr(config, "PIPELINE_STEPS", None)  # absent before the one-pipeline change
    return (
        AudioSREngine(runtime, options)
        if steps is None
        else AudioSREngine(runtime, options, steps=steps)
    )


def report_pipeline(rows: list[dict]) -> str:
    header = ["preset", "steps", "total s", "sampler s", "enc s", "dec s", "voc s", "cond s"]
    header += ["post s"]
    header += ["other s"] + [f"{n} ms (calls)" for n in TIMED_STEPS]
    body = []
    for r in rows:
        cells = [r["preset"], r["steps"]]
        cells += [_fmt(r[k], 1) for k in ("total_s", "sampler_s")]
        cells += [_fmt(r[k], 1) for k in ("encoder_s", "decoder_s", "vocoder_s")]
        cells += [_fmt(r[k], 3) for k in ("condition_s", "post_s", "other_s")]
        cells += [f"{1000 * r[n][0]:.0f} ({r[n][1]})" for n in TIMED_STEPS]
        body.append(cells)
    return markdown_table(header, body)


# --- report -----------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def report_speed(rows: list[Row], flops: dict[str, float], args, device) -> str:
    ref = rows[[r.name for r in rows].index("reference")].results
    header = [
        "row",
        "steps",
        "cond",
        "enc",
        "step",
        "sampler",
        "dec",
        "voc",
        "post",
        "total/5.12s",
        "RTF",
        "speed-up",
        "peak GB",
        "wave max abs",
        "wave SNR dB",
        "latent SNR dB",
    ]
    if device.type == "cuda":
        header.insert(5, "UNet % peak")
    body = []
    for row in rows:
        r = row.results
        cells = [
            row.name,
            f"{r['steps']}"
            + (f" ({r['run_steps']} run, extrapolated)" if r["extrapolated"] else ""),
            _fmt(r["condition_s"]),
            _fmt(r["encoder_s"]),
            _fmt(r["per_step_s"], 3),
            _fmt(r["sampler_s"]),
            _fmt(r["decoder_s"]),
            _fmt(r["vocoder_s"]),
            _fmt(r["post_s"]),
            _fmt(r["per_block_s"]),
            _fmt(r["rtf"], 3),
            _fmt(ref["total_s"] / r["total_s"], 2) + "x",
            _fmt(r["peak_gb"]),
            _fmt(r.get("max_abs"), 4),
            _fmt(r.get("snr_db"), 1),
            _fmt(r.get("latent_snr_db"), 1),
        ]
        if device.type == "cuda":
            peak = peak_tflops(device, row.options.precision, args.peak_tflops)
            # Two-call CFG makes 2 calls of batch 1 per step: the same FLOPs as one of batch 2.
            achieved = flops["unet_step"] / r["per_step_s"] / 1e12
            cells.insert(5, _fmt(100 * achieved / peak, 1) if peak else "-")
        body.append(cells)
    return markdown_table(header, body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--durations", default="5.12", help="comma-separated input lengths (s)")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="run at most this many sampler steps per row and extrapolate",
    )
    ap.add_argument("--solver-steps", type=int, default=10, help="steps of the ODE-solver rows")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, robust to other jobs on shared cores (use with --threads 1)",
    )
    ap.add_argument("--compile", action="store_true", help="add the compile row on CPU")
    ap.add_argument("--rows", default=None, help="comma-separated row names to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument(
        "--stage-errors",
        action="store_true",
        help="only measure the half-precision error of each stage",
    )
    ap.add_argument("--tiny", action="store_true", help="use AudioSRConfig.tiny() (smoke test)")
    ap.add_argument(
        "--pipeline",
        default=None,
        help="comma-separated CLI presets (upstream,quality,fast): time the whole path of each "
        "on one --input-s mono input, per stage, in CPU seconds",
    )
    ap.add_argument("--input-s", type=float, default=3.7, help="input length for --pipeline (s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = AudioSRConfig.tiny() if args.tiny else AudioSRConfig()

    t0 = time.perf_counter()
    # On CUDA the weights start in host memory so the offload row can run first; the first
    # non-offload row moves each stage to the GPU for good.
    model = build_random_model(config, args.seed, torch.device("cpu"))
    params = sum(p.numel() for p in model.parameters())
    log.info("built %.1f M parameters in %.1f s", params / 1e6, time.perf_counter() - t0)
    env = (
        f"torch {torch.__version__}, device {device}"
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if device.type == "cuda"
            else f" ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"
        )
        + f", {'tiny' if args.tiny else 'full'} model {params / 1e6:.0f} M params, random weights"
        + f", {'process CPU' if args.pipeline else args.clock} clock"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# AudioSR inference speed\n\n{env}; load average at start {load:.1f}\n")

    if args.pipeline:
        rows = run_pipeline(model, config, args)
        print(
            f"## Whole path per preset, {args.input_s:g} s mono input, CPU seconds of this "
            "process (sampler extrapolated to the preset's steps)\n"
        )
        print(report_pipeline(rows))
        return 0

    if args.stage_errors:
        if device.type == "cuda":
            model.to(device)
        frames = 128  # 1.28 s: errors per sample do not depend on length, CPU fp16 is slow
        dtypes = [torch.bfloat16, torch.float16]
        if device.type == "cpu" and not args.tiny:
            dtypes = [torch.bfloat16]  # emulated fp16 convolutions take many minutes on CPU
        errs = stage_errors(model, config, device, frames, dtypes)
        keys = [k for k in errs[0] if k != "stage"]
        print("## Half precision: SNR (dB) each stage adds, same fp32 inputs\n")
        print(
            markdown_table(
                ["stage", *keys],
                [
                    [
                        e["stage"],
                        *(_fmt(e[k], 1) if isinstance(e[k], float) else str(e[k]) for k in keys),
                    ]
                    for e in errs
                ],
            )
        )
        # End to end in fp16 only on CUDA: on the CPU a few fp16 runs take an hour.
        for precision in ["bf16"] + (["fp16"] if device.type == "cuda" else []):
            e2e = end_to_end_stage_errors(model, config, device, frames, args.steps or 5, precision)
            print(
                f"\n## End to end, one stage in {precision} (others fp32), "
                f"DDIM {args.steps or 5} steps, CFG 3.5: SNR vs all-fp32 (dB)\n"
            )
            keys = [k for k in e2e[0] if k != "half stages"]
            print(
                markdown_table(
                    ["half stages", *keys],
                    [
                        [e["half stages"], *(_fmt(e[k], 1 if "dB" in k else 4) for k in keys)]
                        for e in e2e
                    ],
                )
            )
        return 0

    if device.type == "cuda":
        # What make_engine does for offload: page-locked host weights, asynchronous copies.
        pin_host_weights(model)
    runtime = DiffusionRuntime(model, config, device=device)
    if args.clock == "cpu" and device.type == "cuda":
        raise SystemExit("--clock cpu measures host CPU time; use wall time on CUDA")
    for duration in [float(d) for d in args.durations.split(",")]:
        frames = int(round(duration * 100))
        flops = count_flops(config, frames)
        wave = make_input(duration, args.seed)
        rows = build_rows(args, device)
        outputs: dict[str, tuple[Tensor, Tensor]] = {}
        for row in rows:
            log.info("%.2f s: %s ...", duration, row.name)
            row.results, outputs[row.name] = run_row(runtime, row, wave, args)
            row.results["duration_blocks"] = duration / BLOCK_S
            log.info(
                "  %s",
                {k: round(v, 3) if isinstance(v, float) else v for k, v in row.results.items()},
            )
        ref_wave, ref_latent = outputs["reference"]
        for row in rows:
            wave_out, latent_out = outputs[row.name]
            row.results["max_abs"] = (wave_out - ref_wave).abs().max().item()
            row.results["snr_db"] = snr_db(ref_wave, wave_out)
            row.results["latent_snr_db"] = snr_db(ref_latent, latent_out)
        print(f"## {duration:.2f} s input ({frames} frames)\n")
        print(
            f"UNet FLOPs per step (CFG batch 2): {flops['unet_step'] / 1e9:.1f} G; per call "
            f"(batch 1): encoder {flops['encoder'] / 1e9:.1f} G, decoder "
            f"{flops['decoder'] / 1e9:.1f} G, vocoder {flops['vocoder'] / 1e9:.1f} G\n"
        )
        print(
            "Seconds per stage (cond = front end + cutoff + low-pass simulation; step = one "
            "sampler step; post = low-band merge), end-to-end seconds per 5.12 s of audio, "
            "RTF = compute time / audio time, speed-up vs reference, difference vs the "
            "reference waveform (same seed).\n"
        )
        print(report_speed(rows, flops, args, device))
        if hasattr(os, "getloadavg"):
            print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}")
        compiled = [r for r in rows if r.results.get("compile_s")]
        for r in compiled:
            print(f"\n{r.name}: first call incl. compilation {r.results['compile_s']:.1f} s")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
