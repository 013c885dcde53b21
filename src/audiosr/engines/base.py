"""The engine contract shared by the diffusion model, the DSP baseline and the learned model.

The pipeline owns everything around an engine (resampling to 48 kHz, cutoff detection,
chunking, low-band merge, gain); an engine only turns one batch of band-limited segments into
full-band segments of the same length.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from torch import Tensor

log = logging.getLogger(__name__)


@runtime_checkable
class Engine(Protocol):
    """A bandwidth-extension engine.

    Attributes:
        name: short identifier used by the CLI and in benchmark tables ("sinc", "dsp", ...).
    """

    name: str

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        """Extend the bandwidth of a batch of segments.

        Args:
            audio: band-limited segments ``[B, T]`` float32 at 48 kHz (channels and segments
                of a file are stacked on ``B``).
            cutoff_hz: cutoff of each segment's input band ``[B]`` in Hz.

        Returns:
            Full-band segments ``[B, T]`` float32 at 48 kHz.
        """
        ...


class SincEngine:
    """The "unprocessed" baseline: band-limited (windowed-sinc) resampling and nothing else.

    The pipeline has already resampled the input to 48 kHz, so this engine returns it
    unchanged; in a benchmark it is the reference point every other engine must beat.
    """

    name = "sinc"

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        """Return a copy of ``audio`` ``[B, T]`` (``cutoff_hz`` ``[B]`` is ignored)."""
        if audio.dim() != 2:
            raise ValueError(f"expected audio of shape [B, T], got {tuple(audio.shape)}")
        # A copy, so callers may modify the output in place without touching their input.
        return audio.clone()
