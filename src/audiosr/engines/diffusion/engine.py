"""The diffusion model behind the :class:`~audiosr.engines.base.Engine` interface."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from ...config import ALL_STEPS, EngineSteps, SamplingOptions
from ...diffusion.samplers import timesteps_for
from ...dsp.lowpass import draw_filter_family
from .generate import generate
from .runtime import DiffusionRuntime, Generators

log = logging.getLogger(__name__)


class AudioSREngine:
    """Band-limited 48 kHz segments in, full-band segments out.

    Each segment is padded to whole 5.12 s blocks, super-resolved and cropped. With
    ``steps.peak_normalize`` (the original's behaviour) each row is first scaled to the level
    the model was trained on (peak 0.5) and scaled back afterwards, so the pipeline's
    file-level gain is kept either way.

    Args:
        runtime: the loaded model and its placement.
        options: sampling options of every call.
        steps: which of the original's own steps the engine runs.
        progress: show the sampler's progress bar.
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
        return len(timesteps_for(opts.sampler, opts.steps, self.runtime.schedule))

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        """Super-resolve [B, T] 48 kHz segments band-limited at ``cutoff_hz`` [B] (Hz)."""
        batch, n = audio.shape
        block = self.runtime.config.mel.hop_length * self.runtime.config.segment_frames
        length = max(1, -(-n // block)) * block
        audio = audio.to(torch.float32)
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
                steps=self.steps,
                callback=callback,
                progress=self.progress,
                keep_samples=keep,
            )
        y = result.wave[:, :n].cpu()
        return (y if scale is None else y / scale.cpu()).float()
