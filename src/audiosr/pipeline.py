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
import soundfile as sf
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
# Samples (all channels together) kept from pass 1 for the band-limit detector: about 85 s of
# 48 kHz stereo in 32 MB, whatever the file's length, rate or channel count.
ANALYSIS_BUDGET = 8_000_000
ANALYSIS_TAPER = 2048  # samples of raised-cosine fade at both ends of each analysis excerpt
# Below 1 kHz there is too little band to condition on (the original crashes there, spec §13.8);
# such a "band limit" is near-silence or sub-bass only, so the pipeline works from 1 kHz up.
MIN_CUTOFF_HZ = 1000.0
# A band limit at 90 % of 24 kHz (21.6 kHz) or above leaves nothing audible to regenerate:
# 44.1 kHz CD audio (22.05 kHz) is full band.
FULL_BAND_FRACTION = 0.9
ORIGINAL_PEAK = 0.5  # the level the original normalises its input and output to (spec §2.4, §9.5)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PipelineOptions:
    """Choices of the real-world path (the engine's own options live with the engine).

    Attributes:
        cutoff_hz: band limit of the input in Hz; None detects it.
        prefilter: low-pass the input at the cutoff before the engine (the MP3 fix).
        force: process inputs that are already full band instead of passing them through.
        keep_loudness: output at the input's level (True); False gives the original's output
            level: peak 0.5 (one gain for the whole file), then each channel's mean removed.
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
    reason: str = ""  # why the input was passed through ("" when it was processed)


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


def output_length(frames: int, sample_rate: int) -> int:
    """Samples at 48 kHz for ``frames`` at ``sample_rate``: the same duration, at least 1."""
    if frames <= 0:
        return 0
    return max(1, int(round(frames * SAMPLE_RATE / sample_rate)))


def resolve_cutoff(detected_hz: float, options: PipelineOptions) -> float:
    """The band limit to work with (Hz): the override, else the detected one, in [1, 24] kHz."""
    cutoff = float(options.cutoff_hz) if options.cutoff_hz is not None else float(detected_hz)
    cutoff = min(cutoff, SAMPLE_RATE / 2)
    if cutoff < MIN_CUTOFF_HZ:
        log.info("band limit %.0f Hz is below %.0f Hz; using the latter", cutoff, MIN_CUTOFF_HZ)
        cutoff = MIN_CUTOFF_HZ
    return cutoff


def decide(peak: float, cutoff_hz: float, options: PipelineOptions) -> tuple[bool, str]:
    """Whether to pass the input through unchanged, and why (for the log)."""
    if peak == 0.0:
        return True, "silent"
    if is_full_band(cutoff_hz, SAMPLE_RATE, FULL_BAND_FRACTION) and not options.force:
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

    Blocks are consumed lazily: at most one engine batch of segments is held at a time.

    Args:
        engine: band-limited [B, T] + cutoffs [B] -> full band [B, T].
        blocks: the input at 48 kHz, in order, any block sizes.
        total: expected number of samples (sets the segment plan).
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
    # Every channel of a segment goes into the same engine call (one seed for all channels).
    per_call = max(1, options.batch_size // max(1, channels))
    done = 0

    def flush() -> Iterator[Tensor]:
        nonlocal done
        raw = torch.stack(pending)  # [S, C, segment]
        pending.clear()
        flat = raw.reshape(-1, segment) * gain  # [S*C, segment], segment-major
        x = prefilter_lowpass(flat, SAMPLE_RATE, cutoff_hz) if options.prefilter else flat
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


def original_level(y: Tensor, peak: float, mean: Tensor) -> Tensor:
    """The original's output level (spec §9.5): ``0.5 * y / peak``, then the mean removed.

    Args:
        y: [C, n] a block of the output.
        peak: max |y| over the whole output (all channels: one gain per file).
        mean: [C] per-channel mean of the whole output.
    """
    scale = ORIGINAL_PEAK / peak if peak > 0 else 1.0
    return ((y.double() - mean.double()[:, None]) * scale).float()


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
    detected = detect_cutoff_hz(audio.numpy(), SAMPLE_RATE) if options.cutoff_hz is None else 0.0
    cutoff = resolve_cutoff(detected, options)
    passthrough, why = decide(peak, cutoff, options)
    gain = ORIGINAL_PEAK / peak if peak > 0 else 1.0
    if passthrough:
        log.info("input is %s: passed through unchanged (force to regenerate)", why)
        y, segments = audio.clone(), 0
    else:
        pieces = process_stream(engine, [audio], n, channels, cutoff, gain, options, progress)
        y, segments = torch.cat(list(fit_length(pieces, n)), dim=-1), count_segments(n, options)
    if not options.keep_loudness and n:
        y = original_level(y, float(y.abs().max()), y.double().mean(dim=-1))
    return y, UpsampleReport(cutoff, passthrough, segments, gain, n, why)


def _analysis_excerpt(block: np.ndarray) -> np.ndarray:
    """``block`` [C, n] with raised-cosine fades at both ends (a copy).

    Excerpts from far apart in a file are concatenated for the detector; untapered, every
    join would be a step whose broadband splatter can read as high-frequency content.
    """
    taper = min(ANALYSIS_TAPER, block.shape[-1] // 2)
    out = block.astype(np.float32, copy=True)
    if taper:
        fade = np.sin(0.5 * np.pi * (np.arange(taper) + 0.5) / taper) ** 2
        out[:, :taper] *= fade
        out[:, -taper:] *= fade[::-1]
    return out


def analyse_file(src: str | os.PathLike[str]) -> tuple[float, float]:
    """Pass 1 over a file: its peak and its band limit.

    The band limit is read from excerpts spread evenly over the file (whole read blocks, at
    most :data:`ANALYSIS_BUDGET` samples in all), at the file's own rate.

    Returns:
        (peak |x| over all channels, band limit in Hz at most the file's Nyquist frequency).
    """
    from .audio_io import audio_info, stream_audio

    info = audio_info(src)
    n_blocks = max(1, math.ceil(info.frames / READ_BLOCK))
    budget_blocks = max(1, ANALYSIS_BUDGET // (READ_BLOCK * max(1, info.channels)))
    keep_every = max(1, math.ceil(n_blocks / budget_blocks))
    peak = 0.0
    excerpts: list[np.ndarray] = []
    for i, block in enumerate(stream_audio(src, READ_BLOCK)):
        peak = max(peak, float(np.abs(block).max()) if block.size else 0.0)
        if i % keep_every == 0:
            excerpts.append(block if keep_every == 1 else _analysis_excerpt(block))
    cutoff = detect_cutoff_hz(np.concatenate(excerpts, axis=1), info.sample_rate)
    return peak, min(float(cutoff), info.sample_rate / 2)


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

    The file is read twice: first for its peak and band limit (:func:`analyse_file`), then to
    process it. The output is written block by block to a temporary file that replaces
    ``dst`` only when complete; it has the input's duration and channels.

    Raises:
        AudioReadError: the input cannot be read (see :mod:`audiosr.audio_io`).
        AudioWriteError: the output cannot be written or would overwrite the input.
    """
    from .audio_io import audio_info, resample_stream, stream_audio
    from .errors import AudioReadError

    src, dst = Path(src), Path(dst)
    info = audio_info(src)
    sr = info.sample_rate
    total = output_length(info.frames, sr)
    if total == 0:
        raise AudioReadError(f"cannot read {src}: no audio in the file (0 samples)")

    # Pass 1: level and band limit.
    peak, detected = analyse_file(src) if options.cutoff_hz is None else (_peak(src), 0.0)
    cutoff = resolve_cutoff(detected, options)
    passthrough, why = decide(peak, cutoff, options)
    gain = ORIGINAL_PEAK / peak if peak > 0 else 1.0

    # Pass 2: process and write.
    def blocks48() -> Iterator[Tensor]:
        raw = stream_audio(src, READ_BLOCK)
        for block in resample_stream(raw, sr, SAMPLE_RATE):
            yield torch.from_numpy(block)

    if passthrough:
        log.info("%s is %s: written at 48 kHz without regeneration (--force to redo)", src, why)
        stream: Iterable[Tensor] = blocks48()
        segments = 0
    else:
        stream = process_stream(
            engine, blocks48(), total, info.channels, cutoff, gain, options, progress
        )
        stream = (_limit(b, subtype) for b in stream) if options.keep_loudness else stream
        segments = count_segments(total, options)
    stream = fit_length(stream, total)
    if options.keep_loudness:
        _write(stream, dst, info.channels, subtype, src, total)
    else:
        _write_at_original_level(stream, dst, info.channels, subtype, src, total)
    return UpsampleReport(cutoff, passthrough, segments, gain, total, why)


def _peak(src: Path) -> float:
    """Peak |x| of a file (pass 1 when the cutoff is given)."""
    from .audio_io import stream_audio

    return max(
        (float(np.abs(b).max()) for b in stream_audio(src, READ_BLOCK) if b.size), default=0.0
    )


def _write(
    stream: Iterable[Tensor], dst: Path, channels: int, subtype: str, src: Path, frames: int
) -> None:
    from .audio_io import AtomicWriter

    with AtomicWriter(dst, SAMPLE_RATE, channels, subtype, protect=[src], frames=frames) as writer:
        for block in stream:
            writer.write(block.numpy())


def _write_at_original_level(
    stream: Iterable[Tensor], dst: Path, channels: int, subtype: str, src: Path, frames: int
) -> None:
    """Write at the original's level, which needs the whole output's peak and mean first.

    The float32 output is spooled to a hidden W64 file (no 4 GB limit) next to ``dst``, then
    read back, scaled and written: memory stays bounded for any length.
    """
    from .audio_io import spool_directory
    from .errors import AudioWriteError

    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        spool_dir = spool_directory(dst)
    except OSError as err:
        reason = f"folder {dst.parent} is not writable ({err.strerror})"
        raise AudioWriteError(f"cannot write {dst}: {reason}") from None
    with spool_dir as folder:
        spool = Path(folder) / "spool.w64"
        peak, sums, n = 0.0, torch.zeros(channels, dtype=torch.float64), 0
        with sf.SoundFile(spool, "w", SAMPLE_RATE, channels, "FLOAT", format="W64") as f:
            for block in stream:
                f.write(block.numpy().T)
                peak = max(peak, float(block.abs().max()) if block.numel() else 0.0)
                sums += block.double().sum(dim=-1)
                n += block.shape[-1]
        mean = sums / max(n, 1)
        scaled = (
            original_level(torch.from_numpy(np.ascontiguousarray(b.T)), peak, mean)
            for b in sf.blocks(spool, blocksize=READ_BLOCK, dtype="float32", always_2d=True)
        )
        _write(scaled, dst, channels, subtype, src, frames)


def _limit(block: Tensor, subtype: str) -> Tensor:
    """Integer formats clip at full scale: soft-limit the samples above 0.99 (smooth knee).

    Applied to regenerated output only: a pass-through keeps its samples exactly.
    """
    if subtype.upper() == "FLOAT":
        return block
    over = block.abs() > 0.99
    if not bool(over.any()):
        return block
    knee = 0.99 + 0.01 * torch.tanh((block.abs() - 0.99) / 0.01)
    return torch.where(over, torch.sign(block) * knee, block)
