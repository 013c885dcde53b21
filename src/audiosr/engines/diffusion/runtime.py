"""The loaded model plus what it needs to run: placement, mel front end, schedule, stages.

A :class:`DiffusionRuntime` holds no per-call settings: every run takes its frozen
:class:`~audiosr.config.SamplingOptions`. What it keeps is built once and reused (the host mel
front end, the schedule, compiled stage functions).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...config import STAGES, AudioSRConfig, SamplingOptions
from ...diffusion.schedule import Schedule, make_cosine_schedule
from ...dsp.cutoff import cutoff_hz_from_stft
from ...dsp.lowpass import simulate_lowpass
from ...dsp.mel import MelFrontEnd, fit_frames
from ...models.latent_diffusion import AudioSRModel
from .compiled import CompileCache
from .layout import ensure_memory_format
from .placement import Placement, module_device, resident
from .precision import autocast, stage_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generators:
    """Where each random draw comes from (spec §8.6).

    The original draws both VAE posterior samples on the CPU generator and x_T plus the per-step
    noise on the model's device generator; on a CPU run both are the same generator.
    """

    cpu: torch.Generator
    device: torch.Generator

    @classmethod
    def from_seed(cls, seed: int, device: torch.device | str) -> Generators:
        cpu = torch.Generator("cpu").manual_seed(int(seed))
        where = Placement(torch.device(device)).generator_device()
        if where.type == "cpu":
            return cls(cpu=cpu, device=cpu)
        return cls(cpu=cpu, device=torch.Generator(where).manual_seed(int(seed)))


@dataclass
class Conditioning:
    """The front end's output for one batch (all at 48 kHz, on the host).

    Attributes:
        wave_lowpass: [B, L] the (simulated) low-pass input that conditions the model.
        lowpass_mel: [B, T, n_mels] its natural-log mel spectrogram.
        cutoff_hz: [B] float64 cutoff that set the low-pass (Hz; NaN where none was needed).
    """

    wave_lowpass: Tensor
    lowpass_mel: Tensor
    cutoff_hz: Tensor


class DiffusionRuntime:
    """Model, placement, host front end and schedule.

    Args:
        model: the networks; may live on the CPU while ``device`` is a GPU (with
            ``offload`` each stage is copied over per call, otherwise once on first use).
        config: the model's configuration.
        device: where the networks run; None uses the model's device.
        compile_backend: ``torch.compile`` backend for ``SamplingOptions.compile``.
    """

    def __init__(
        self,
        model: AudioSRModel,
        config: AudioSRConfig,
        device: torch.device | str | None = None,
        *,
        compile_backend: str | Callable = "inductor",
    ) -> None:
        self.model = model
        self.config = config
        self.placement = Placement(device if device is not None else module_device(model))
        # Host DSP: the condition's mel front end runs next to the fp64 steps that use it.
        self.frontend = MelFrontEnd(config.mel).to(self.placement.host)
        self.schedule: Schedule = make_cosine_schedule(config.diffusion)
        self.compiled = CompileCache(compile_backend)

    @property
    def device(self) -> torch.device:
        """Where the networks run."""
        return self.placement.device

    def condition(
        self,
        wave: Tensor,
        target_frames: int,
        family: str,
        cutoff_hz: Tensor | None = None,
        *,
        simulate: bool = True,
    ) -> Conditioning:
        """Detect each item's cutoff and build the low-pass condition (spec §3-§4), on the host.

        Args:
            wave: [B, L] normalised, padded waveform at 48 kHz.
            target_frames: T, the mel frame count (L = hop * T).
            family: low-pass filter family of the simulation.
            cutoff_hz: [B] known cutoffs in Hz; None (or a cutoff at Nyquist) uses the
                original's detector (spec §3).
            simulate: False conditions on ``wave`` as given (already band-limited).
        """
        host = self.placement.host
        wave = wave.to(host, torch.float32)
        batch = wave.shape[0]
        nyquist = self.config.mel.sample_rate / 2
        if not simulate:
            unknown = [float("nan")] * batch
            cutoffs = unknown if cutoff_hz is None else [float(c) for c in cutoff_hz]
            wave_lowpass = wave
        else:
            # A known cutoff at Nyquist (a full-band input regenerated on request) leaves no
            # low-pass to simulate: such items get the original's detector, like unknown ones.
            known = [None] * batch if cutoff_hz is None else [float(c) for c in cutoff_hz]
            if any(c is None or c >= nyquist for c in known):
                _, magnitude = self.frontend(wave)
                magnitude = fit_frames(magnitude, target_frames)
                cutoffs = [
                    float(cutoff_hz_from_stft(magnitude[b])[1]) if c is None or c >= nyquist else c
                    for b, c in enumerate(known)
                ]
            else:
                cutoffs = [float(c) for c in known if c is not None]
            # scipy's fp64 IIR + polyphase code (spec §4), one row at a time on the host.
            wave_lowpass = torch.cat(
                [simulate_lowpass(wave[b : b + 1], cutoffs[b], family) for b in range(batch)]
            )
        lowpass_mel, _ = self.frontend(wave_lowpass)
        lowpass_mel = fit_frames(lowpass_mel, target_frames)
        return Conditioning(
            wave_lowpass=wave_lowpass,
            lowpass_mel=lowpass_mel,
            cutoff_hz=torch.tensor(cutoffs, dtype=torch.float64),
        )

    def latent_shape(self, batch: int, frames: int) -> tuple[int, int, int, int]:
        f = self.config.vae.downsample_factor
        return (batch, self.config.vae.embed_dim, frames // f, self.config.mel.n_mels // f)

    # --- per-stage execution ------------------------------------------------------------------

    def stage_modules(self, stage: str) -> list[nn.Module]:
        """The modules a stage needs on the device (VAE#1's unused encoder is never moved)."""
        model = self.model
        modules = {
            "encoder": [model.cond_vae],
            "unet": [model.unet],
            "decoder": [model.decoder_vae.post_quant_conv, model.decoder_vae.decoder],
            "vocoder": [model.vocoder],
        }
        if stage not in modules:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        return modules[stage]

    def eager_function(self, stage: str) -> Callable[..., Tensor]:
        """``encoder(mel [B, 1, T, F]) -> (mean, logvar)``, ``unet(x, t) -> v``,
        ``decoder(z) -> mel [B, 1, T, F]`` or ``vocoder(mel [B, F, T]) -> [B, 1, L']``."""
        model = self.model
        functions = {
            "encoder": model.cond_vae.encode,
            "unet": model.unet,
            "decoder": model.decoder_vae.decode,
            "vocoder": model.vocoder,
        }
        return functions[stage]

    @contextlib.contextmanager
    def stage(self, stage: str, options: SamplingOptions) -> Iterator[Callable[..., Tensor]]:
        """Make one stage ready to run and yield its function.

        Inside the block the stage's weights are on the device in the requested memory layout
        and one autocast region (when the stage runs in half precision) is open, so the
        half-precision weight copies autocast makes are cast once per block rather than once
        per call. With ``options.offload`` the weights go back to host memory when it ends.
        """
        modules = self.stage_modules(stage)
        dtype = stage_dtype(stage, options.precision, options.half_stages)
        with contextlib.ExitStack() as stack:
            if stage != "vocoder":  # 1-D: keeps its layout
                # Before the move, so an offloaded stage's host copy keeps the layout too.
                ensure_memory_format(modules, options.channels_last)
            stack.enter_context(resident(modules, self.device, options.offload))
            stack.enter_context(autocast(self.device, dtype))
            fn = self.eager_function(stage)
            if options.compile:
                mode = "reduce-overhead" if options.cuda_graphs and stage == "unet" else "default"
                fn = self.compiled.get(stage, fn, mode)
            yield fn
