"""The diffusion model behind the :class:`~audiosr.engines.base.Engine` interface."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from ...config import ALL_STEPS, EngineSteps, SamplingOptions
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
    """

    name = "audiosr"

    def __init__(
        self,
        runtime: DiffusionRuntime,
        options: SamplingOptions,
        *,
        steps: EngineSteps = ALL_STEPS,
        progress: bool = False,
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.steps = steps
        self.progress = progress

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        """Super-resolve [B, T] 48 kHz segments band-limited at ``cutoff_hz`` [B] (Hz)."""
        batch, n = audio.shape
        block = self.runtime.config.mel.hop_length * self.runtime.config.segment_frames
        length = max(1, -(-n // block)) * block
        audio = audio.to(torch.float32)
        if self.steps.peak_normalize:
            peak = audio.abs().amax(dim=-1, keepdim=True)
            scale = torch.where(peak > 0, 0.5 / peak.clamp_min(1e-12), torch.ones_like(peak))
        else:
            scale = torch.ones(batch, 1)
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
                steps=self.steps,
                progress=self.progress,
            )
        return (result.wave[:, :n].cpu() / scale.cpu()).float()
