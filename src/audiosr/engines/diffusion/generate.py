"""One run of AudioSR on a normalised, padded 48 kHz batch, in the paper's order (spec §4-§9).

Low-pass simulation of the condition, VAE#2 posterior of its log-mel, the sampler with
classifier-free guidance in v-space, VAE#1 decode, low mel-bin replacement, HiFi-GAN, and the
STFT-domain low-band merge. Randomness comes from explicit generators, drawn in the original's
order (spec §8.6), so that with the original's seed the result is the original's.

Where each piece runs: the networks and the sampler on the runtime's device; the condition
(cutoff heuristic, low-pass simulation, mel), the mel-bin count and the low-band merge, which
are exact fp64 DSP, on the host (``placement.py``). Peak device memory does not grow with the
batch beyond the latents: the encoder, decoder and vocoder run one item at a time
(``fallback.py``) and the UNet works on 8x-downsampled latents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...config import ALL_STEPS, EngineSteps, SamplingOptions
from ...diffusion.guidance import classifier_free, concat_condition, two_call_guidance
from ...diffusion.samplers import SAMPLERS, timesteps_for
from ...dsp.merge import mel_cutoff_bins, replace_low_band, replace_low_mel_bins
from ...errors import AudioSRError
from .compiled import pad_rows, padded_batch
from .fallback import run_per_item
from .layout import memory_format
from .precision import float32_policy
from .runtime import Conditioning, DiffusionRuntime, Generators
from .timing import StageClock

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    """Output of :func:`generate` plus the intermediates the golden tests check."""

    wave: Tensor  # [B, 480*T + 16] on the host, after the low-band merge, before any final gain
    latent: Tensor  # [B, 16, T/8, n_mels/8] on the device, sampler output
    mel: Tensor  # [B, 1, T, n_mels] on the device, decoded mel after low-bin replacement
    condition: Tensor  # [B, 16, T/8, n_mels/8], unscaled concat condition
    conditioning: Conditioning
    # Seconds per stage: condition, encoder, sampler, decoder, vocoder, post.
    timings: dict[str, float] = field(default_factory=dict)


def _check(runtime: DiffusionRuntime, wave: Tensor, options: SamplingOptions) -> int:
    """Validate a call; returns the mel frame count T."""
    config, device = runtime.config, runtime.device
    length = wave.shape[-1]
    frames = length // config.mel.hop_length
    if frames * config.mel.hop_length != length or frames % config.frame_multiple:
        multiple = config.mel.hop_length * config.frame_multiple
        raise ValueError(f"wave length {length} must be a multiple of {multiple} samples")
    if options.cuda_graphs and device.type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device, this runtime uses {device}")
    if options.precision == "fp16" and device.type == "cpu":
        log.warning("fp16 on the CPU is emulated and very slow; use bf16 or fp32 there")
    weight_dtype = next(runtime.model.unet.parameters()).dtype
    if options.precision == "fp32" and weight_dtype != torch.float32:
        raise ValueError(
            f"the model's weights are {weight_dtype} (loaded with a half dtype): use precision "
            "bf16/fp16, or load the weights in fp32 for the fp32 path"
        )
    return frames


def generate(
    runtime: DiffusionRuntime,
    wave: Tensor,
    options: SamplingOptions,
    *,
    family: str,
    generators: Generators,
    first_call: bool = True,
    cutoff_hz: Tensor | None = None,
    shared_noise: bool = False,
    steps: EngineSteps = ALL_STEPS,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    keep_samples: Tensor | None = None,
) -> GenerateResult:
    """Run AudioSR on a normalised, padded batch.

    Args:
        runtime: model, placement, mel front end and schedule.
        wave: [B, L] at 48 kHz, L a multiple of 480 * 64 samples (whole latent blocks).
        options: steps, guidance, eta, sampler, precision, attention backend and the speed
            options (see :class:`~audiosr.config.SamplingOptions`).
        family: low-pass family of the condition (butter, cheby1, ellip, bessel).
        generators: the random sources (see :class:`Generators`).
        first_call: False reproduces the original's extra ``torch.rand(1)`` draw on the
            second and later calls of one model object (spec §8.6, step 3).
        cutoff_hz: [B] known band limits (Hz); None detects them like the original.
        shared_noise: draw every random tensor for one item and share it across the batch, so
            an item's result does not depend on what it is batched with (channels of one file
            get the same noise, which keeps a centred source centred).
        steps: which of the original's own steps run (all by default; see
            :class:`~audiosr.config.EngineSteps`).
        callback: called after every sampler step with a dict of tensors (inside the UNet's
            autocast region when ``precision`` is not fp32).
        progress: show a progress bar over sampler steps.
        clock: seconds counter of :attr:`GenerateResult.timings`.
        keep_samples: [B] how many leading output samples of each item the caller uses
            (with ``steps.merge_low_band`` off only: the original's merge reads the whole
            output). The vocoder then runs on the frames those need plus its receptive field
            (``HiFiGAN.context_frames``) and the rest of the item is zeros: the padding of a
            short input is not vocoded.

    Returns:
        :class:`GenerateResult`; ``wave`` is [B, 480*T + 16] at 48 kHz.
    """
    frames = _check(runtime, wave, options)
    if keep_samples is not None and steps.merge_low_band:
        raise ValueError("keep_samples needs steps.merge_low_band off (the merge reads all)")
    with float32_policy(options.tf32):
        return _generate(
            runtime, wave, frames, options, family, generators, first_call, cutoff_hz,
            shared_noise, steps, callback, progress, clock, keep_samples,
        )  # fmt: skip


def _generate(
    runtime: DiffusionRuntime,
    wave: Tensor,
    frames: int,
    options: SamplingOptions,
    family: str,
    generators: Generators,
    first_call: bool,
    cutoff_hz: Tensor | None,
    shared_noise: bool,
    steps: EngineSteps,
    callback: Callable[[dict], None] | None,
    progress: bool,
    clock: Callable[[], float],
    keep_samples: Tensor | None,
) -> GenerateResult:
    model, config = runtime.model, runtime.config
    device, host = runtime.placement.device, runtime.placement.host
    timer = StageClock(device, clock)

    # --- condition (host DSP) -----------------------------------------------------------------
    cond_in = runtime.condition(wave, frames, family, cutoff_hz, simulate=steps.simulate_lowpass)
    # Spec §9.2's bin count is an fp64 cumulative sum: taken here, on the host, once.
    mel_bins = mel_cutoff_bins(cond_in.lowpass_mel) if steps.replace_mel_bins else None
    lowpass_mel = cond_in.lowpass_mel.to(device)
    shape = runtime.latent_shape(wave.shape[0], frames)
    draw_shape = (1, *shape[1:]) if shared_noise else shape

    def randn(generator: torch.Generator) -> Tensor:
        noise = torch.randn(draw_shape, generator=generator, device=generator.device)
        return noise.to(device).expand(shape)

    sf = model.scale_factor.to(device, torch.float32)
    # Spec §8.6: the original first samples VAE#1's posterior of the input mel (value unused)
    # and, on later calls, evaluates one classifier-free-dropout draw. We keep both draws for
    # seed compatibility but skip the wasted encoder pass: only the shape matters.
    torch.randn(draw_shape, generator=generators.cpu)
    if not first_call:
        torch.rand(1, generator=generators.cpu)
    timer.lap("condition")

    def full_resolution(stage: str, fn: Callable, x: Tensor, **kw: str) -> tuple[Tensor, ...]:
        return run_per_item(
            fn,
            x,
            stage=stage,
            fp16=options.precision == "fp16",
            eager=runtime.eager_function(stage),
            modules=runtime.stage_modules(stage),
            **kw,
        )

    # --- VAE#2 posterior of the condition -----------------------------------------------------
    with runtime.stage("encoder", options) as encode:
        mean, logvar = full_resolution(
            "encoder", encode, lowpass_mel[:, None], attention=options.attention
        )
    noise = randn(generators.cpu)
    condition = mean + torch.exp(0.5 * logvar) * noise
    uncond = torch.full_like(condition, config.diffusion.unconditional_value)
    timer.lap("encoder")

    # --- sampling with classifier-free guidance -----------------------------------------------
    with runtime.stage("unet", options) as unet:
        fmt = memory_format(options.channels_last)

        def unet_v(x: Tensor, t: Tensor, c: Tensor) -> Tensor:
            h = concat_condition(x, c, sf).contiguous(memory_format=fmt)
            rows = h.shape[0]
            if options.compile:  # a few stable batch sizes: bounded recompiles and graphs
                h, t = pad_rows(h, padded_batch(rows)), pad_rows(t, padded_batch(rows))
            out = unet(h, t, attention=options.attention)[:rows].float()
            if options.cuda_graphs:
                out = out.clone()  # a graph replay overwrites its output buffer
            return out.contiguous()

        guidance = classifier_free if options.batched_cfg else two_call_guidance
        denoiser = guidance(unet_v, condition, uncond, options.guidance_scale)
        x_t = randn(generators.device).contiguous()
        latent = SAMPLERS[options.sampler](
            denoiser,
            x_t,
            runtime.schedule,
            timesteps_for(options.sampler, options.steps, runtime.schedule),
            eta=options.eta,
            noise=lambda _i: randn(generators.device),
            callback=callback,
            progress=progress,
        )
    if options.precision == "fp16" and not torch.isfinite(latent).all():
        raise AudioSRError(
            "the UNet overflowed in fp16 (non-finite latent); use precision bf16 or fp32"
        )
    timer.lap("sampler")

    # --- VAE#1 decode, low mel bins -----------------------------------------------------------
    with runtime.stage("decoder", options) as decode:
        z = (1.0 / sf) * latent
        (mel,) = full_resolution("decoder", decode, z, attention=options.attention)
    mel = mel.contiguous()
    if mel_bins is not None:
        mel = replace_low_mel_bins(mel, lowpass_mel, bins=mel_bins)
    timer.lap("decoder")

    # --- vocoder, low-band merge (host DSP) ---------------------------------------------------
    with runtime.stage("vocoder", options) as vocode:
        mels = mel[:, 0].transpose(1, 2)  # [B, n_mels, T], upstream's layout
        if keep_samples is None:
            (vocoded,) = full_resolution("vocoder", vocode, mels)
        else:
            # Each item's used samples only (the vocoder runs item by item anyway).
            vocoded = torch.zeros(mels.shape[0], 1, model.vocoder.output_length(frames))
            vocoded = vocoded.to(mels.device)
            hop = config.mel.hop_length
            for b, keep in enumerate(int(k) for k in keep_samples):
                if keep <= 0:
                    continue
                need = min(frames, -(-keep // hop) + model.vocoder.context_frames)
                (part,) = full_resolution("vocoder", vocode, mels[b : b + 1, :, :need])
                take = min(keep, part.shape[-1])
                vocoded[b, :, :take] = part[0, :, :take]
    timer.lap("vocoder")
    vocoded = vocoded[:, 0].to(host)
    merged = replace_low_band(vocoded, cond_in.wave_lowpass) if steps.merge_low_band else vocoded
    timer.lap("post")
    return GenerateResult(
        wave=merged,
        latent=latent,
        mel=mel,
        condition=condition,
        conditioning=cond_in,
        timings=timer.timings,
    )
