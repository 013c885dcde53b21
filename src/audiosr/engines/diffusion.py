"""The AudioSR diffusion engine: condition -> sample -> decode, in the paper's order.

One call of :func:`generate` runs the whole model on a normalised, padded 48 kHz batch
(spec §4-§9): low-pass simulation of the condition, VAE#2 posterior of its log-mel, DDIM with
classifier-free guidance in v-space (cond and uncond in one batched UNet call), VAE#1 decode,
low mel-bin replacement, HiFi-GAN, and the STFT-domain low-band merge. Randomness comes from
explicit generators, drawn in the original's order (spec §8.6), so that with the original's seed
the result is the original's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import AudioSRConfig, SamplingOptions
from ..diffusion.guidance import classifier_free, concat_condition
from ..diffusion.samplers import SAMPLERS, sample_ddim, timesteps_for
from ..diffusion.schedule import Schedule, ddim_timesteps, make_cosine_schedule
from ..dsp.cutoff import cutoff_hz_from_stft
from ..dsp.lowpass import draw_filter_family, simulate_lowpass
from ..dsp.mel import MelFrontEnd, fit_frames
from ..dsp.merge import replace_low_band, replace_low_mel_bins
from ..models.latent_diffusion import AudioSRModel

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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


class DiffusionRuntime:
    """The loaded model plus the non-learned parts it needs (mel front end, schedule).

    Holds no per-call state: every run takes its :class:`SamplingOptions`.
    """

    def __init__(self, model: AudioSRModel, config: AudioSRConfig) -> None:
        self.model = model
        self.config = config
        self.device = next(model.parameters()).device
        self.frontend = MelFrontEnd(config.mel).to(self.device)
        self.schedule: Schedule = make_cosine_schedule(config.diffusion)

    def condition(
        self, wave: Tensor, target_frames: int, family: str, cutoff_hz: Tensor | None = None
    ) -> Conditioning:
        """Detect each item's cutoff and build the low-pass condition (spec §3-§4).

        Args:
            wave: [B, L] normalised, padded waveform at 48 kHz.
            target_frames: T, the mel frame count (L = hop * T).
            family: low-pass filter family of the simulation.
            cutoff_hz: [B] known cutoffs in Hz; None uses the original's detector (spec §3).
        """
        wave = wave.to(self.device, torch.float32)
        if cutoff_hz is None:
            _, magnitude = self.frontend(wave)
            magnitude = fit_frames(magnitude, target_frames)
            cutoffs = [cutoff_hz_from_stft(magnitude[b])[1] for b in range(wave.shape[0])]
        else:
            cutoffs = [float(c) for c in cutoff_hz]
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
) -> GenerateResult:
    """Run AudioSR on a normalised, padded batch.

    Args:
        runtime: model, mel front end and schedule.
        wave: [B, L] at 48 kHz, L a multiple of 480 * 64 samples (whole latent blocks).
        options: steps, guidance, eta, sampler, precision, attention backend.
        family: low-pass family of the condition (butter, cheby1, ellip, bessel).
        generators: the random sources (see :class:`Generators`).
        first_call: False reproduces the original's extra ``torch.rand(1)`` draw on the
            second and later calls of one model object (spec §8.6, step 3).
        cutoff_hz: [B] known band limits (Hz); None detects them like the original.
        shared_noise: draw every random tensor for one item and share it across the batch, so
            an item's result does not depend on what it is batched with (channels of one file
            get the same noise, which keeps a centred source centred).
        callback: called after every sampler step with a dict of tensors.
        progress: show a progress bar over sampler steps.

    Returns:
        :class:`GenerateResult`; ``wave`` is [B, 480*T + 16] at 48 kHz.
    """
    model, config = runtime.model, runtime.config
    batch, length = wave.shape
    frames = length // config.mel.hop_length
    if frames * config.mel.hop_length != length or frames % config.frame_multiple:
        raise ValueError(
            f"wave length {length} must be a multiple of {config.mel.hop_length * config.frame_multiple}"
        )
    cond_in = runtime.condition(wave, frames, family, cutoff_hz)
    shape = runtime.latent_shape(batch, frames)
    draw_shape = (1, *shape[1:]) if shared_noise else shape

    def randn(generator: torch.Generator) -> Tensor:
        noise = torch.randn(draw_shape, generator=generator, device=generator.device)
        return noise.to(device).expand(shape)

    dtype = _DTYPES[options.precision]
    device = runtime.device
    sf = model.scale_factor.to(torch.float32)

    # Spec §8.6: the original first samples VAE#1's posterior of the input mel (value unused)
    # and, on later calls, evaluates one classifier-free-dropout draw. We keep both draws for
    # seed compatibility but skip the wasted encoder pass: only the shape matters.
    torch.randn(draw_shape, generator=generators.cpu)
    if not first_call:
        torch.rand(1, generator=generators.cpu)

    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        mean, logvar = model.cond_vae.encode(cond_in.lowpass_mel[:, None], attention=options.attention)
    mean, logvar = mean.float(), logvar.float()
    noise = randn(generators.cpu)
    condition = mean + torch.exp(0.5 * logvar) * noise
    uncond = torch.full_like(condition, config.diffusion.unconditional_value)

    unet = model.unet

    def unet_v(x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = unet(concat_condition(x, c, sf), t, attention=options.attention)
        return out.float()

    denoiser = classifier_free(unet_v, condition, uncond, options.guidance_scale)
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

    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        mel = model.decoder_vae.decode((1.0 / sf) * latent, attention=options.attention)
    mel = replace_low_mel_bins(mel.float(), cond_in.lowpass_mel)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        vocoded = model.vocoder(mel[:, 0].transpose(1, 2))
    merged = replace_low_band(vocoded.float()[:, 0], cond_in.wave_lowpass)
    return GenerateResult(
        wave=merged, latent=latent, mel=mel, condition=condition, conditioning=cond_in
    )


class AudioSREngine:
    """The diffusion model behind the :class:`~audiosr.engines.base.Engine` interface.

    Each segment is scaled to the level the model was trained on (peak 0.5), padded to whole
    5.12 s blocks, super-resolved and scaled back, so the pipeline's file-level gain is kept.
    """

    name = "audiosr"

    def __init__(
        self, runtime: DiffusionRuntime, options: SamplingOptions, *, progress: bool = False
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.progress = progress

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        """Super-resolve [B, T] 48 kHz segments band-limited at ``cutoff_hz`` [B] (Hz)."""
        batch, n = audio.shape
        block = self.runtime.config.mel.hop_length * self.runtime.config.segment_frames
        length = max(1, -(-n // block)) * block
        peak = audio.abs().amax(dim=-1, keepdim=True)
        scale = torch.where(peak > 0, 0.5 / peak.clamp_min(1e-12), torch.ones_like(peak))
        x = torch.nn.functional.pad(audio * scale, (0, length - n))
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
                progress=self.progress,
            )
        return (result.wave[:, :n].cpu() / scale.cpu()).float()
