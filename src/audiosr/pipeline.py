"""The real-world pipeline around any engine, in the paper's order, streaming.

    read (stream) -> resample to 48 kHz (soxr) -> detect the band limit -> one gain per file
    -> fixed 10.24 s segments, channels and segments batched -> steep low-pass at the cutoff
    (the MP3 "spectral hole" fix) -> engine -> keep the input's own band below the cutoff
    -> overlap-add with a raised-cosine cross-fade -> undo the gain -> write (atomic, streaming)

Memory is bounded by a few segments whatever the input length: files are read twice (once to
measure level and band limit, once to process) and written block by block. Every step is one
call into the module that owns it; this module holds no state.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .chunking import OverlapAdder, iter_segments
from .dsp.bandwidth import detect_cutoff_hz, is_full_band, prefilter_lowpass
from .dsp.crossover import merge_low_band
from .engines.base import Engine

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
BLOCK = 245_760  # samples in one 5.12 s block, the unit the model pads to (512 frames)
READ_BLOCK = 1 << 18  # frames per read when streaming a file
PREFILTER_CONTEXT = 4096  # zero samples around a segment while low-passing it (edge ringing)
CUTOFF_BUDGET_S = 120.0  # seconds of audio, spread over the file, used to find its band limit

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PipelineOptions:
    """Choices of the real-world path (the engine's own options live with the engine).

    Attributes:
        cutoff_hz: band limit of the input in Hz; None detects it.
        prefilter: low-pass the input at the cutoff before the engine (the MP3 fix).
        force: process inputs that are already full band instead of passing them through.
        keep_loudness: output at the input's level (True); False leaves it at the model's
            level, the input's peak mapped to 0.5 as in the original.
        segment_s: engine segment length in seconds (a multiple of 5.12).
        overlap_s: cross-fade between segments in seconds.
        batch_size: segments x channels per engine call.
        crossover_hz: width of the raised-cosine band, ending at the cutoff, where the input
            hands over to the generated band.
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
        if not 0 <= self.overlap_s <= self.segment_s / 2:
            raise ValueError("overlap_s must be >= 0 and at most half a segment")


@dataclass(frozen=True)
class UpsampleReport:
    """What happened to one input (for logs, batch summaries and JSONL records)."""

    cutoff_hz: float  # band limit used (Hz)
    passthrough: bool  # True when the input was returned unchanged (full band or silent)
    segments: int  # engine segments per channel
    gain: float  # linear gain applied before the engine (undone afterwards)
    samples: int  # output length at 48 kHz


def segment_plan(n: int, options: PipelineOptions) -> tuple[int, int]:
    """Segment and overlap lengths in samples: whole 5.12 s blocks, shorter for short inputs."""
    max_segment = int(round(options.segment_s / 5.12)) * BLOCK
    if n <= max_segment:
        return max(1, math.ceil(n / BLOCK)) * BLOCK, 0
    return max_segment, int(round(options.overlap_s * SAMPLE_RATE))


def count_segments(n: int, options: PipelineOptions) -> int:
    """Engine segments per channel for ``n`` samples."""
    segment, overlap = segment_plan(n, options)
    return 1 + max(0, math.ceil((n - segment) / (segment - overlap)))


def decide(peak: float, cutoff_hz: float, options: PipelineOptions) -> tuple[bool, str]:
    """Whether to pass the input through unchanged, and why (for the log)."""
    if peak == 0.0:
        return True, "silent"
    if is_full_band(cutoff_hz, SAMPLE_RATE) and not options.force:
        return True, f"already full band (cutoff {cutoff_hz:.0f} Hz)"
    return False, ""


def process_stream(
    engine: Engine,
    blocks: Iterable[Tensor],
    total: int,
    channels: int,
    cutoff_hz: float,
    gain: float,
    options: PipelineOptions,
    progress: Progress | None = None,
) -> Iterator[Tensor]:
    """Super-resolve a stream of 48 kHz blocks ``[C, n]``; yields finished ``[C, m]`` blocks.

    Args:
        engine: band-limited [B, T] + cutoffs [B] -> full band [B, T].
        blocks: the input at 48 kHz, in order, any block sizes.
        total: expected number of samples (sets the segment plan and the output length).
        channels: C.
        cutoff_hz: band limit of the input (Hz).
        gain: linear gain putting the file's peak at the model's level; undone on output
            when ``options.keep_loudness``.
        options: see :class:`PipelineOptions`.
        progress: called with (segments done, segments total).
    """
    segment, overlap = segment_plan(total, options)
    n_segments = count_segments(total, options)
    adder = OverlapAdder(segment, overlap)
    out_gain = 1.0 / gain if options.keep_loudness else 1.0
    pending: list[Tensor] = []
    per_call = max(1, options.batch_size // max(1, channels))
    done = 0

    def flush() -> Iterator[Tensor]:
        nonlocal done
        raw = torch.stack(pending)  # [S, C, segment]
        pending.clear()
        flat = raw.reshape(-1, segment) * gain
        x = flat
        if options.prefilter:
            ctx = PREFILTER_CONTEXT
            padded = torch.nn.functional.pad(flat, (ctx, ctx))
            x = prefilter_lowpass(padded, SAMPLE_RATE, cutoff_hz)[:, ctx:-ctx].contiguous()
        cut = torch.full((x.shape[0],), cutoff_hz, dtype=torch.float64)
        y = engine(x.float(), cut).float().cpu()
        # Below the cutoff the answer is the input itself (un-pre-filtered: the pre-filter's
        # transition band starts a few % below the cutoff).
        y = merge_low_band(y, flat, cutoff_hz, options.crossover_hz) * out_gain
        for seg in y.reshape(raw.shape):
            yield adder.push(seg)
            done += 1
        if progress is not None:
            progress(done, n_segments)

    for seg in iter_segments(blocks, segment, overlap):
        pending.append(seg.float())
        if len(pending) >= per_call:
            yield from flush()
    if pending:
        yield from flush()
    yield adder.finish()


def fit_length(blocks: Iterable[Tensor], total: int) -> Iterator[Tensor]:
    """Crop or zero-pad a stream of ``[C, n]`` blocks to exactly ``total`` samples."""
    written = 0
    channels = None
    for block in blocks:
        channels = block.shape[0]
        take = min(block.shape[-1], total - written)
        if take > 0:
            yield block[..., :take]
            written += take
    if written < total and channels is not None:
        yield torch.zeros(channels, total - written)


def upsample(
    engine: Engine,
    audio: Tensor,
    options: PipelineOptions = PipelineOptions(),
    *,
    progress: Progress | None = None,
) -> tuple[Tensor, UpsampleReport]:
    """Super-resolve in-memory 48 kHz audio ``[C, N]`` with any engine.

    Returns:
        (``[C, N]`` float32 at 48 kHz, report).
    """
    audio = audio.float()
    channels, n = audio.shape
    peak = float(audio.abs().max()) if n else 0.0
    cutoff = _cutoff(audio.numpy(), options)
    passthrough, why = decide(peak, cutoff, options)
    if passthrough:
        log.info("input is %s: passed through unchanged (use --force to regenerate)", why)
        return audio.clone(), UpsampleReport(cutoff, True, 0, 1.0, n)
    gain = 0.5 / peak
    pieces = process_stream(engine, [audio], n, channels, cutoff, gain, options, progress)
    y = torch.cat(list(fit_length(pieces, n)), dim=-1)
    return y, UpsampleReport(cutoff, False, count_segments(n, options), gain, n)


def _cutoff(audio: np.ndarray, options: PipelineOptions, sample_rate: int = SAMPLE_RATE) -> float:
    if options.cutoff_hz is not None:
        return float(options.cutoff_hz)
    return min(float(detect_cutoff_hz(audio, sample_rate)), SAMPLE_RATE / 2)


def upsample_file(
    engine: Engine,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    options: PipelineOptions = PipelineOptions(),
    *,
    subtype: str = "PCM_24",
    progress: Progress | None = None,
) -> UpsampleReport:
    """Stream ``src`` (any format and rate) through the pipeline into ``dst`` (48 kHz WAV).

    The file is read twice: first for its peak and band limit (from excerpts spread over the
    file, at most :data:`CUTOFF_BUDGET_S` seconds), then to process it. The output is written
    block by block to a temporary file that replaces ``dst`` only when complete.
    """
    from .audio_io import AtomicWriter, audio_info, resample_stream, stream_audio

    src, dst = Path(src), Path(dst)
    info = audio_info(src)
    sr = info.sample_rate
    total = int(round(info.frames * SAMPLE_RATE / sr))
    if total == 0:
        from .errors import AudioReadError

        raise AudioReadError(f"cannot read {src}: no audio in the file (0 samples)")

    # Pass 1: level and band limit.
    keep_every = max(1, math.ceil(info.frames / (CUTOFF_BUDGET_S * sr)))
    peak = 0.0
    excerpts: list[np.ndarray] = []
    for i, block in enumerate(stream_audio(src, READ_BLOCK)):
        peak = max(peak, float(np.abs(block).max()) if block.size else 0.0)
        if i % keep_every == 0:
            excerpts.append(block)
    if options.cutoff_hz is not None:
        cutoff = float(options.cutoff_hz)
    else:
        cutoff = min(float(detect_cutoff_hz(np.concatenate(excerpts, axis=1), sr)), sr / 2)
        cutoff = min(cutoff, SAMPLE_RATE / 2)
    del excerpts
    passthrough, why = decide(peak, cutoff, options)

    # Pass 2: process and write.
    def blocks48() -> Iterator[Tensor]:
        raw = stream_audio(src, READ_BLOCK)
        for block in resample_stream(raw, sr, SAMPLE_RATE):
            yield torch.from_numpy(block)

    gain = 0.5 / peak if peak > 0 else 1.0
    if passthrough:
        log.info(
            "%s is %s: written at 48 kHz without regeneration (--force to regenerate)", src, why
        )
        stream: Iterable[Tensor] = blocks48()
        segments = 0
    else:
        stream = process_stream(
            engine, blocks48(), total, info.channels, cutoff, gain, options, progress
        )
        segments = count_segments(total, options)
    with AtomicWriter(dst, SAMPLE_RATE, info.channels, subtype, protect=[src]) as writer:
        for block in fit_length(stream, total):
            writer.write(_limit(block, subtype).numpy())
    return UpsampleReport(cutoff, passthrough, segments, gain, total)


def _limit(block: Tensor, subtype: str) -> Tensor:
    """Integer formats clip at full scale: soft-limit only the samples that would."""
    if subtype.upper() == "FLOAT":
        return block
    over = block.abs() > 0.99
    if not bool(over.any()):
        return block
    knee = 0.99 + 0.01 * torch.tanh((block.abs() - 0.99) / 0.01)
    return torch.where(over, torch.sign(block) * knee, block)
