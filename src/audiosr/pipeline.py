"""The real-world pipeline around any engine, in the paper's order.

resample to 48 kHz -> detect the band limit -> steep low-pass there (the MP3 "spectral hole"
fix) -> one gain for the whole file -> fixed-length segments (channels and segments batched) ->
engine -> keep the input's own band below the cutoff -> overlap-add -> undo the gain.

Every step is one call into the module that owns it; this module holds no state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .chunking import overlap_add, split
from .dsp.bandwidth import detect_cutoff_hz, is_full_band, prefilter_lowpass
from .dsp.crossover import merge_low_band
from .engines.base import Engine

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
BLOCK = 245_760  # samples in one 5.12 s block, the unit the model pads to (512 frames)


@dataclass(frozen=True)
class PipelineOptions:
    """Choices of the real-world path (the engine's own options live with the engine).

    Attributes:
        cutoff_hz: band limit of the input; None detects it.
        prefilter: low-pass the input at the cutoff before the engine (the MP3 fix).
        force: process inputs that are already full band instead of passing them through.
        keep_loudness: restore the input's level (True) or peak-normalise to 0.5 and remove
            the mean like the original (False).
        segment_s: engine segment length in seconds (a multiple of 5.12, at most 10.24).
        overlap_s: cross-fade between segments in seconds.
        batch_size: segments x channels per engine call.
        crossover_hz: width of the raised-cosine band below the cutoff where the input hands
            over to the generated band.
    """

    cutoff_hz: float | None = None
    prefilter: bool = True
    force: bool = False
    keep_loudness: bool = True
    segment_s: float = 10.24
    overlap_s: float = 1.28
    batch_size: int = 4
    crossover_hz: float = 500.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.cutoff_hz is not None and not 0 < self.cutoff_hz <= SAMPLE_RATE / 2:
            raise ValueError(f"cutoff must be in (0, 24000] Hz, got {self.cutoff_hz}")
        blocks = self.segment_s / 5.12
        if abs(blocks - round(blocks)) > 1e-6 or round(blocks) < 1:
            raise ValueError(f"segment_s must be a multiple of 5.12 s, got {self.segment_s}")
        if not 0 <= self.overlap_s < self.segment_s / 2:
            raise ValueError("overlap_s must be >= 0 and less than half a segment")


@dataclass
class UpsampleReport:
    """What happened to one input (for logs, batch summaries and JSONL records)."""

    cutoff_hz: float
    passthrough: bool
    segments: int
    gain: float


def upsample(
    engine: Engine,
    audio: Tensor,
    options: PipelineOptions = PipelineOptions(),
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Tensor, UpsampleReport]:
    """Super-resolve 48 kHz audio with any engine.

    Args:
        engine: maps band-limited 48 kHz segments [B, T] and cutoffs [B] to full band.
        audio: [C, N] float32 at 48 kHz (already resampled), any length >= 1 sample.
        options: see :class:`PipelineOptions`.
        progress: called with (segments done, segments total).

    Returns:
        ([C, N] float32 at 48 kHz, report).
    """
    audio = audio.float()
    channels, n = audio.shape
    peak = float(audio.abs().max()) if n else 0.0
    if options.cutoff_hz is not None:
        cutoff = float(options.cutoff_hz)
    else:
        cutoff = float(detect_cutoff_hz(audio.numpy(), SAMPLE_RATE))
    if peak == 0.0 or (is_full_band(cutoff, SAMPLE_RATE) and not options.force):
        reason = "silent" if peak == 0.0 else f"already full band (cutoff {cutoff:.0f} Hz)"
        log.info("input is %s: passed through unchanged (use --force to regenerate)", reason)
        return audio.clone(), UpsampleReport(cutoff, True, 0, 1.0)
    if options.prefilter:
        audio = torch.from_numpy(
            np.ascontiguousarray(prefilter_lowpass(audio.numpy(), SAMPLE_RATE, cutoff))
        ).float()

    # One gain per file: the model was trained on inputs peaking at 0.5 (spec §2.4).
    gain = 0.5 / peak
    x = audio * gain

    segment, overlap = _segment_plan(n, options)
    chunks = split(x, segment, overlap)  # [S, C, segment]
    count = chunks.shape[0]
    flat = chunks.reshape(count * channels, segment)
    outs = []
    cut = torch.full((flat.shape[0],), cutoff, dtype=torch.float64)
    for start in range(0, flat.shape[0], options.batch_size):
        stop = min(start + options.batch_size, flat.shape[0])
        piece = flat[start:stop]
        out = engine(piece, cut[start:stop])
        outs.append(merge_low_band(out.float().cpu(), piece, cutoff, options.crossover_hz))
        if progress is not None:
            progress(stop, flat.shape[0])
    y = overlap_add(torch.cat(outs).reshape(count, channels, segment), overlap, n)
    if options.keep_loudness:
        y = y / gain
    else:
        y = 0.5 * y / y.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        y = y - y.mean(dim=-1, keepdim=True)
    return y, UpsampleReport(cutoff, False, count, gain)


def _segment_plan(n: int, options: PipelineOptions) -> tuple[int, int]:
    """Segment and overlap lengths in samples: whole 5.12 s blocks, shorter for short inputs."""
    max_segment = int(round(options.segment_s / 5.12)) * BLOCK
    if n <= max_segment:
        return max(1, math.ceil(n / BLOCK)) * BLOCK, 0
    return max_segment, int(round(options.overlap_s * SAMPLE_RATE))
