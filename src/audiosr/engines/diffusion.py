"""The AudioSR diffusion engine: condition -> sample -> decode, in the paper's order.

One call of :func:`generate` runs the whole model on a normalised, padded 48 kHz batch
(spec §4-§9): low-pass simulation of the condition, VAE#2 posterior of its log-mel, DDIM with
classifier-free guidance in v-space (cond and uncond in one batched UNet call), VAE#1 decode,
low mel-bin replacement, HiFi-GAN, and the STFT-domain low-band merge. Randomness comes from
explicit generators, drawn in the original's order (spec §8.6), so that with the original's seed
the result is the original's.

Speed and memory options (all in :class:`~audiosr.config.SamplingOptions`; the defaults are the
faithful fp32 path):

* ``precision``: bf16/fp16 autocast per stage. What each stage adds was measured against fp32
  (``benchmarks/bench_speed.py --stage-errors``); every stage listed in :data:`HALF_STAGES`
  runs in the requested dtype, the rest (the front end, the samplers' arithmetic, the mel
  replacement and the low-band merge) always run in fp32 or fp64.
* ``attention``, ``batched_cfg``, ``channels_last``, ``compile``/``cuda_graphs``: kernels and
  layouts; none changes the arithmetic beyond rounding.
* ``offload``: weights stay in host memory and each stage visits the device only while it runs.

Peak device memory does not grow with the batch beyond the latents: the encoder, decoder and
vocoder, whose activations are full-resolution (tens of MB per item and 5.12 s), run one item
at a time, and the UNet works on 8x-downsampled latents.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..config import ALL_STEPS, AudioSRConfig, EngineSteps, SamplingOptions
from ..diffusion.guidance import Denoiser, classifier_free, concat_condition
from ..diffusion.samplers import SAMPLERS, sample_ddim, timesteps_for
from ..diffusion.schedule import Schedule, ddim_timesteps, make_cosine_schedule
from ..dsp.cutoff import cutoff_hz_from_stft
from ..dsp.lowpass import draw_filter_family, simulate_lowpass
from ..dsp.mel import MelFrontEnd, fit_frames
from ..dsp.merge import replace_low_band, replace_low_mel_bins
from ..errors import AudioSRError
from ..models.latent_diffusion import AudioSRModel

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# The networks of one run, in call order. Each is a unit of precision, compilation and offload.
STAGES = ("encoder", "unet", "decoder", "vocoder")

# Stages that run in the requested half precision. Measured against fp32 with the same inputs
# (`bench_speed.py --stage-errors`, 1.28 s): each network alone in bf16 keeps 30-49 dB SNR
# (full size, random weights: encoder 36, UNet 38, decoder 30, vocoder 49; tiny golden model:
# 30/36/28/46), fp16 ~18 dB more (tiny: 45-63 dB), nothing overflowed. End to end (full size,
# DDIM 3 steps, CFG 3.5) one bf16 stage costs the latent 42-52 dB and all four together
# 41 dB (latent), 51 dB (mel), 63 dB (waveform): no network dominates, so none is pinned to
# fp32. Inside them, only the vocoder's first and last convolution gained from fp32 (49 -> 54
# dB full size, 46 -> 88 dB tiny, 0.1 % of its FLOPs) and stay fp32 (`FP32Conv1d`); for the
# other networks it gained 0.3-1.5 dB. All of this is far below the seed-to-seed variation of
# the generated band (eta 1 redraws it). The DSP around the networks (front end, sampler
# arithmetic, merges) always runs in fp32/fp64.
HALF_STAGES: frozenset[str] = frozenset(STAGES)

# Items per encoder/decoder/vocoder call. Their activations are full-resolution (a 128-channel
# 512 x 256 map is 67 MB in fp32 per 5.12 s item), so one at a time keeps peak memory independent
# of the batch at no cost in speed: these convolutions saturate the device at batch 1.
_ITEMS_PER_CALL = 1


@dataclass(frozen=True)
class Generators:
    """Where each random draw comes from (spec §8.6).

    The original draws both VAE posterior samples on the CPU generator and x_T plus the per-step
    noise on the model's device generator; on a CPU run both are the same generator.
    """

    cpu: torch.Generator
    device: torch.Generator

    @classmethod
    def from_seed(cls, seed: int, device: torch.device) -> Generators:
        cpu = torch.Generator("cpu").manual_seed(int(seed))
        if device.type == "cpu":
            return cls(cpu=cpu, device=cpu)
        return cls(cpu=cpu, device=torch.Generator(device).manual_seed(int(seed)))


@dataclass
class Conditioning:
    """The front end's output for one batch (all at 48 kHz).

    Attributes:
        wave_lowpass: [B, L] the simulated low-pass input that conditions the model.
        lowpass_mel: [B, T, n_mels] its natural-log mel spectrogram.
        cutoff_hz: [B] the detected cutoff that set the low-pass (Hz).
    """

    wave_lowpass: Tensor
    lowpass_mel: Tensor
    cutoff_hz: Tensor


@dataclass
class GenerateResult:
    """Output of :func:`generate` plus the intermediates the golden tests check."""

    wave: Tensor  # [B, 480*T + 16], after the low-band merge, before any final gain
    latent: Tensor  # [B, 16, T/8, n_mels/8], sampler output
    mel: Tensor  # [B, 1, T, n_mels], decoded mel after low-bin replacement
    condition: Tensor  # [B, 16, T/8, n_mels/8], unscaled concat condition
    conditioning: Conditioning
    # Seconds per stage (runtime.clock): condition, encoder, sampler, decoder, vocoder, post.
    timings: dict[str, float] = field(default_factory=dict)


class DiffusionRuntime:
    """The loaded model plus the non-learned parts it needs (mel front end, schedule).

    Holds no per-call state: every run takes its :class:`SamplingOptions`. It does keep what
    options make it build once and reuse: compiled stage functions and the memory format the
    weights are in.

    Args:
        model: the networks; may live on the CPU while ``device`` is a GPU (with
            ``offload`` each stage is copied over per call, otherwise once on first use).
        config: the model's configuration.
        device: where the computation runs; None uses the model's device.
    """

    def __init__(
        self, model: AudioSRModel, config: AudioSRConfig, device: torch.device | str | None = None
    ) -> None:
        self.model = model
        self.config = config
        dev = torch.device(device) if device is not None else _module_device(model)
        if dev.type == "cuda" and dev.index is None:
            # Tensors report "cuda:N"; compare like with like when deciding what to move.
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        self.frontend = MelFrontEnd(config.mel).to(self.device)
        self.schedule: Schedule = make_cosine_schedule(config.diffusion)
        # Measurement knobs: the stages that honour a half `precision` (see HALF_STAGES) and
        # the clock of GenerateResult.timings (e.g. time.process_time on a shared CPU).
        self.half_stages: frozenset[str] = HALF_STAGES
        self.clock: Callable[[], float] = time.perf_counter
        self._compiled: dict[tuple[str, str], Callable[..., Tensor]] = {}
        self._memory_format = torch.contiguous_format

    def condition(
        self,
        wave: Tensor,
        target_frames: int,
        family: str,
        cutoff_hz: Tensor | None = None,
        *,
        simulate: bool = True,
    ) -> Conditioning:
        """Detect each item's cutoff and build the low-pass condition (spec §3-§4).

        Args:
            wave: [B, L] normalised, padded waveform at 48 kHz.
            target_frames: T, the mel frame count (L = hop * T).
            family: low-pass filter family of the simulation.
            cutoff_hz: [B] known cutoffs in Hz; None (or a cutoff at Nyquist) uses the
                original's detector (spec §3).
            simulate: False conditions on ``wave`` as given (already band-limited); no cutoff
                is detected or simulated then.
        """
        wave = wave.to(self.device, torch.float32)
        batch = wave.shape[0]
        nyquist = self.config.mel.sample_rate / 2
        if not simulate:
            lowpass_mel, _ = self.frontend(wave)
            known = torch.full((batch,), nyquist, dtype=torch.float64)
            return Conditioning(
                wave_lowpass=wave,
                lowpass_mel=fit_frames(lowpass_mel, target_frames),
                cutoff_hz=known if cutoff_hz is None else cutoff_hz.to(torch.float64).cpu(),
            )
        # A known cutoff at Nyquist (a full-band input regenerated on request) leaves no
        # low-pass to simulate: such items get the original's detector, like unknown ones.
        known = [None] * batch if cutoff_hz is None else [float(c) for c in cutoff_hz]
        if any(c is None or c >= nyquist for c in known):
            _, magnitude = self.frontend(wave)
            magnitude = fit_frames(magnitude, target_frames)
            cutoffs = [
                cutoff_hz_from_stft(magnitude[b])[1] if c is None or c >= nyquist else c
                for b, c in enumerate(known)
            ]
        else:
            cutoffs = known
        # The simulation is scipy's fp64 IIR + polyphase code (spec §4), so it runs on the CPU.
        lows = [
            simulate_lowpass(wave[b : b + 1].cpu(), float(cutoffs[b]), family)
            for b in range(wave.shape[0])
        ]
        wave_lowpass = torch.cat(lows, dim=0).to(self.device)
        lowpass_mel, _ = self.frontend(wave_lowpass)
        lowpass_mel = fit_frames(lowpass_mel, target_frames)
        return Conditioning(
            wave_lowpass=wave_lowpass,
            lowpass_mel=lowpass_mel,
            cutoff_hz=torch.tensor([float(c) for c in cutoffs], dtype=torch.float64),
        )

    def latent_shape(self, batch: int, frames: int) -> tuple[int, int, int, int]:
        f = self.config.vae.downsample_factor
        return (batch, self.config.vae.embed_dim, frames // f, self.config.mel.n_mels // f)

    # --- per-stage execution ------------------------------------------------------------------

    def stage_modules(self, stage: str) -> list[nn.Module]:
        """The modules a stage needs on the device (VAE#1's unused encoder is never moved)."""
        model = self.model
        if stage == "encoder":
            return [model.cond_vae]
        if stage == "unet":
            return [model.unet]
        if stage == "decoder":
            return [model.decoder_vae.post_quant_conv, model.decoder_vae.decoder]
        if stage == "vocoder":
            return [model.vocoder]
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")

    def set_memory_format(self, channels_last: bool) -> None:
        """Put the 2-D convolution weights in NHWC (or back to NCHW) order; idempotent.

        Only layouts change, not values; the vocoder is 1-D and keeps its layout.
        """
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if fmt == self._memory_format:
            return
        for stage in ("encoder", "unet", "decoder"):
            for module in self.stage_modules(stage):
                module.to(memory_format=fmt)
        self._memory_format = fmt

    @contextlib.contextmanager
    def stage(self, stage: str, options: SamplingOptions) -> Iterator[Callable[..., Tensor]]:
        """Make one stage ready to run and yield its function.

        Inside the block the stage's weights are on :attr:`device` and one autocast region
        (when the stage runs in half precision) is open, so the half-precision weight copies
        autocast makes are cast once per block rather than once per call. With
        ``options.offload`` the weights go back to host memory (the host copy is kept, so
        nothing is copied back) when the block ends.

        Yields:
            ``encoder(mel [B, 1, T, F]) -> (mean, logvar)``, ``unet(x, t) -> v``,
            ``decoder(z) -> mel [B, 1, T, F]`` or ``vocoder(mel [B, F, T]) -> [B, 1, L']``.
        """
        dtype = stage_dtype(stage, options.precision, self.half_stages)
        with contextlib.ExitStack() as stack:
            for module in self.stage_modules(stage):
                stack.enter_context(_resident(module, self.device, options.offload))
            stack.enter_context(
                torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)
            )
            yield self._stage_function(stage, options)

    def _stage_function(self, stage: str, options: SamplingOptions) -> Callable[..., Tensor]:
        model = self.model
        fn: Callable[..., Tensor]
        if stage == "encoder":
            fn = model.cond_vae.encode
        elif stage == "unet":
            fn = model.unet
        elif stage == "decoder":
            fn = model.decoder_vae.decode
        else:
            fn = model.vocoder
        if not options.compile:
            return fn
        mode = "reduce-overhead" if options.cuda_graphs and stage == "unet" else "default"
        key = (stage, mode)
        if key not in self._compiled:
            log.info("compiling the %s (mode=%s); the first call per shape is slow", stage, mode)
            # dynamic=False: segments have fixed shapes, and static shapes fuse best.
            self._compiled[key] = torch.compile(fn, dynamic=False, mode=mode)
        return self._compiled[key]


def stage_dtype(
    stage: str, precision: str, half_stages: frozenset[str] = HALF_STAGES
) -> torch.dtype:
    """The dtype a stage's matmuls/convolutions run in for a requested precision.

    Args:
        stage: one of :data:`STAGES`.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        half_stages: the stages allowed to run in half precision.
    """
    if precision not in _DTYPES:
        raise ValueError(f"precision must be one of {tuple(_DTYPES)}, got {precision!r}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
    return _DTYPES[precision] if stage in half_stages else torch.float32


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _resident(module: nn.Module, device: torch.device, offload: bool) -> Iterator[None]:
    """Keep ``module`` on ``device`` for the block.

    Without offload a module found elsewhere is moved once and stays. With offload, the host
    tensors are remembered and put back afterwards instead of copying the device tensors back
    (weights never change during inference), and the device copies are freed.
    """
    if _module_device(module) == device:
        yield
        return
    # Module.to() moves a parameter in place (same object, new .data) when the two tensor types
    # allow it and replaces the object otherwise: remember both the object and its data.
    saved = [
        (slots, name, tensor, tensor.data)
        for m in module.modules()
        for slots in (m._parameters, m._buffers)
        for name, tensor in slots.items()
        if tensor is not None
    ]
    module.to(device)
    try:
        yield
    finally:
        if offload:
            for slots, name, tensor, data in saved:
                tensor.data = data
                slots[name] = tensor


class _StageClock:
    """Time per stage; synchronises CUDA at stage boundaries so times are real."""

    def __init__(self, device: torch.device, clock: Callable[[], float]) -> None:
        self.device = device
        self.clock = clock
        self.timings: dict[str, float] = {}
        self._start = clock()

    def lap(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = self.clock()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._start
        self._start = now


def two_call_guidance(
    model: Callable[[Tensor, Tensor, Tensor], Tensor], cond: Tensor, uncond: Tensor, scale: float
) -> Denoiser:
    """Classifier-free guidance as the original computes it: two UNet calls of batch B per step.

    The conditional pass runs first, then the unconditional one; the result is
    ``v_u + scale * (v_c - v_u)`` like :func:`~audiosr.diffusion.guidance.classifier_free`,
    which does the same in one call of batch 2B. With ``scale`` 0 or 1 both make one call.

    Args:
        model: ``(x [B, C, H, W], t [B], cond [B, C', H, W]) -> v [B, C, H, W]``.
        cond: [B, C', H, W] condition.
        uncond: unconditional condition, broadcastable to ``cond``.
        scale: guidance weight w.

    Returns:
        A denoiser ``(x, t) -> v``.
    """
    scale = float(scale)
    if scale in (0.0, 1.0):
        return classifier_free(model, cond, uncond, scale)
    uncond = uncond.expand_as(cond)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        v_cond = model(x, t, cond)
        v_uncond = model(x, t, uncond)
        return v_uncond + scale * (v_cond - v_uncond)

    return guided


def _per_item(
    fn: Callable[..., Tensor | tuple[Tensor, ...]],
    inputs: Tensor,
    stage: str,
    options: SamplingOptions,
    **kwargs: str,
) -> tuple[Tensor, ...]:
    """Run a full-resolution stage ``_ITEMS_PER_CALL`` items at a time; fp32 results.

    fp16 has a 65504 ceiling that convolutional VAEs are known to exceed on some inputs (bf16
    shares fp32's range and cannot overflow). An fp16 item whose output is not finite is
    recomputed in fp32, with a warning, instead of spreading NaN into the audio.

    Returns:
        The stage's output(s), each concatenated over the batch, as fp32.
    """
    parts: list[tuple[Tensor, ...]] = []
    for i in range(0, inputs.shape[0], _ITEMS_PER_CALL):
        x = inputs[i : i + _ITEMS_PER_CALL]
        out = fn(x, **kwargs)
        outs = tuple(o.float() for o in (out if isinstance(out, tuple) else (out,)))
        if options.precision == "fp16" and not all(torch.isfinite(o).all() for o in outs):
            log.warning("fp16 overflow in the %s: item %d recomputed in fp32", stage, i)
            with torch.autocast(x.device.type, enabled=False):
                out = fn(x.float(), **kwargs)
            outs = tuple(o.float() for o in (out if isinstance(out, tuple) else (out,)))
        parts.append(outs)
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))


def _vocode_prefixes(
    vocode: Callable[..., Tensor],
    mels: Tensor,
    keep_samples: Tensor,
    vocoder: nn.Module,
    options: SamplingOptions,
) -> Tensor:
    """Vocode each item's first ``keep_samples`` samples only; zeros after them.

    Args:
        mels: [B, n_mels, T] natural-log mel.
        keep_samples: [B] samples of each item's output that are used.

    Returns:
        [B, 1, 480 * T + 16] like the whole vocoder output.
    """
    frames = mels.shape[-1]
    out = torch.zeros(mels.shape[0], 1, vocoder.output_length(frames), device=mels.device)
    hop = vocoder.output_length(2) - vocoder.output_length(1)  # samples per frame
    for b, keep in enumerate(int(k) for k in keep_samples):
        if keep <= 0:
            continue
        need = min(frames, -(-keep // hop) + vocoder.context_frames)
        (wave,) = _per_item(vocode, mels[b : b + 1, :, :need], "vocoder", options)
        take = min(keep, wave.shape[-1])
        out[b, :, :take] = wave[0, :, :take]
    return out


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
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
    steps: EngineSteps = ALL_STEPS,
    keep_samples: Tensor | None = None,
) -> GenerateResult:
    """Run AudioSR on a normalised, padded batch.

    Args:
        runtime: model, mel front end and schedule.
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
        callback: called after every sampler step with a dict of tensors (inside the UNet's
            autocast region when ``precision`` is not fp32).
        progress: show a progress bar over sampler steps.
        steps: which of the original's own steps run (see
            :class:`~audiosr.config.EngineSteps`).
        keep_samples: [B] how many leading output samples of each item the caller uses
            (with ``steps.merge_low_band`` off only: the original's merge reads the whole
            output). The vocoder then runs on the frames those need plus its receptive field
            (``HiFiGAN.context_frames``) and the rest of the item is zeros: the padding of a
            short input is not vocoded.

    Returns:
        :class:`GenerateResult`; ``wave`` is [B, 480*T + 16] at 48 kHz.
    """
    model, config = runtime.model, runtime.config
    device = runtime.device
    batch, length = wave.shape
    frames = length // config.mel.hop_length
    if frames * config.mel.hop_length != length or frames % config.frame_multiple:
        multiple = config.mel.hop_length * config.frame_multiple
        raise ValueError(f"wave length {length} must be a multiple of {multiple} samples")
    if options.cuda_graphs and device.type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device, this runtime uses {device}")
    if options.precision == "fp16" and device.type == "cpu":
        log.warning("fp16 on the CPU is emulated and very slow; use bf16 or fp32 there")
    weight_dtype = next(model.unet.parameters()).dtype
    if options.precision == "fp32" and weight_dtype != torch.float32:
        raise ValueError(
            f"the model's weights are {weight_dtype} (loaded with a half dtype): use precision "
            "bf16/fp16, or load the weights in fp32 for the fp32 path"
        )
    runtime.set_memory_format(options.channels_last)
    clock = _StageClock(device, runtime.clock)

    cond_in = runtime.condition(wave, frames, family, cutoff_hz, simulate=steps.simulate_lowpass)
    shape = runtime.latent_shape(batch, frames)
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
    clock.lap("condition")

    with runtime.stage("encoder", options) as encode:
        mean, logvar = _per_item(
            encode, cond_in.lowpass_mel[:, None], "encoder", options, attention=options.attention
        )
    noise = randn(generators.cpu)
    condition = mean + torch.exp(0.5 * logvar) * noise
    uncond = torch.full_like(condition, config.diffusion.unconditional_value)
    clock.lap("encoder")

    with runtime.stage("unet", options) as unet:
        # channels_last: hand the UNet NHWC input so its first convolution needs no reorder.
        fmt = torch.channels_last if options.channels_last else torch.contiguous_format

        def unet_v(x: Tensor, t: Tensor, c: Tensor) -> Tensor:
            h = concat_condition(x, c, sf).contiguous(memory_format=fmt)
            out = unet(h, t, attention=options.attention).float()
            if options.cuda_graphs:
                out = out.clone()  # a graph replay overwrites its output buffer
            return out.contiguous()

        guidance = classifier_free if options.batched_cfg else two_call_guidance
        denoiser = guidance(unet_v, condition, uncond, options.guidance_scale)
        x_t = randn(generators.device).contiguous()
        if options.sampler == "ddim":
            timesteps = ddim_timesteps(options.steps, config.diffusion.timesteps)
            latent = sample_ddim(
                denoiser,
                x_t,
                runtime.schedule,
                timesteps,
                eta=options.eta,
                generator=generators.device,
                noise=(lambda _i: randn(generators.device)) if shared_noise else None,
                callback=callback,
                progress=progress,
            )
        else:
            sampler = SAMPLERS[options.sampler]
            timesteps = timesteps_for(options.sampler, options.steps, runtime.schedule)
            latent = sampler(
                denoiser, x_t, runtime.schedule, timesteps, callback=callback, progress=progress
            )
    if options.precision == "fp16" and not torch.isfinite(latent).all():
        raise AudioSRError(
            "the UNet overflowed in fp16 (non-finite latent); use precision bf16 or fp32"
        )
    clock.lap("sampler")

    with runtime.stage("decoder", options) as decode:
        (mel,) = _per_item(
            decode, (1.0 / sf) * latent, "decoder", options, attention=options.attention
        )
    mel = mel.contiguous()
    if steps.replace_mel_bins:
        mel = replace_low_mel_bins(mel, cond_in.lowpass_mel)
    clock.lap("decoder")

    if keep_samples is not None and steps.merge_low_band:
        raise ValueError("keep_samples needs merge_low_band=False (the merge reads every sample)")
    with runtime.stage("vocoder", options) as vocode:
        mels = mel[:, 0].transpose(1, 2)  # [B, n_mels, T], upstream's layout
        if keep_samples is None:
            (vocoded,) = _per_item(vocode, mels, "vocoder", options)
        else:
            vocoded = _vocode_prefixes(vocode, mels, keep_samples, model.vocoder, options)
    clock.lap("vocoder")

    if steps.merge_low_band:
        merged = replace_low_band(vocoded[:, 0], cond_in.wave_lowpass)
    else:
        merged = vocoded[:, 0].contiguous()
    clock.lap("post")
    return GenerateResult(
        wave=merged,
        latent=latent,
        mel=mel,
        condition=condition,
        conditioning=cond_in,
        timings=clock.timings,
    )


class AudioSREngine:
    """The diffusion model behind the :class:`~audiosr.engines.base.Engine` interface.

    Each segment is padded to whole 5.12 s blocks, super-resolved and cropped. With
    ``steps.peak_normalize`` (the original's behaviour) each row is first scaled to the level
    the model was trained on (peak 0.5) and scaled back afterwards; the pipeline's engine has
    it off, because the pipeline has already put the whole file at that level with one gain.
    Without ``steps.merge_low_band`` only the samples up to each row's last non-zero one are
    vocoded (the zero padding of a short input or of a file's last segment is not).

    Args:
        runtime: the model.
        options: sampling options of every call.
        steps: which of the original's own steps the engine runs.
        progress: show the sampler's own progress bar.
        on_step: called after every sampler step with the number of rows it advanced.
    """

    name = "audiosr"

    def __init__(
        self,
        runtime: DiffusionRuntime,
        options: SamplingOptions,
        *,
        steps: EngineSteps = ALL_STEPS,
        progress: bool = False,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.steps = steps
        self.progress = progress
        self.on_step = on_step

    @property
    def sampler_steps(self) -> int:
        """Sampler steps (model evaluations) per call."""
        opts = self.options
        if opts.sampler == "ddim":
            return len(ddim_timesteps(opts.steps, self.runtime.config.diffusion.timesteps))
        return len(timesteps_for(opts.sampler, opts.steps, self.runtime.schedule))

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        """Super-resolve [B, T] 48 kHz segments band-limited at ``cutoff_hz`` [B] (Hz)."""
        batch, n = audio.shape
        block = self.runtime.config.mel.hop_length * self.runtime.config.segment_frames
        length = max(1, -(-n // block)) * block
        scale = None
        if self.steps.peak_normalize:
            peak = audio.abs().amax(dim=-1, keepdim=True)
            scale = torch.where(peak > 0, 0.5 / peak.clamp_min(1e-12), torch.ones_like(peak))
        x = torch.nn.functional.pad(audio if scale is None else audio * scale, (0, length - n))
        on_step = self.on_step
        callback = None if on_step is None else (lambda _info: on_step(batch))
        keep = None
        if not self.steps.merge_low_band:
            # Up to each row's last non-zero sample: the zero padding of a short input (or of
            # a file's last segment) is not vocoded.
            idx = torch.arange(1, n + 1)
            keep = torch.where(audio.cpu() != 0, idx, 0).amax(dim=-1)
        family = self.options.filter_family or draw_filter_family(self.options.seed)
        generators = Generators.from_seed(self.options.seed, self.runtime.device)
        with torch.inference_mode():
            result = generate(
                self.runtime,
                x,
                self.options,
                family=family,
                generators=generators,
                cutoff_hz=cutoff_hz,
                shared_noise=True,
                callback=callback,
                progress=self.progress,
                steps=self.steps,
                keep_samples=keep,
            )
        y = result.wave[:, :n].cpu()
        return (y if scale is None else y / scale.cpu()).float()
