"""The real-world pipeline around any engine: one implementation, each step once, in this order.

    1. read            decode the file block by block (``audio_io``)
    2. analyse         peak over all channels; band limit of EACH channel (``dsp/bandwidth``)
    3. decide          pass through (silent, or every channel already full band) or process
    4. gain            one gain for the whole file: its peak to the model's 0.5
    5. resample        to 48 kHz (soxr, streaming)
    6. segment         fixed 10.24 s segments (5.12 s blocks for short inputs), 1.28 s overlap
    7. pre-filter      steep zero-phase low-pass of each channel at its own band limit
                       (the engine sees a clean band limit, not codec residue: the MP3
                       "spectral hole" fix)
    8. engine          band-limited rows -> full band; rows of one or many files are grouped
                       into calls of at most ``batch_size`` rows (:mod:`audiosr.batching`)
    9. keep the input  below each channel's band limit the output is that channel's input
                       (raised-cosine crossover, ``dsp/crossover``); above a *detected* band
                       limit, what the pre-filter removed is added back to the generated band,
                       so nothing the input had is deleted, even where the detector reads low
    10. overlap-add    raised-cosine cross-fade between segments (``chunking``)
    11. undo gain      the input's loudness back (or, with ``keep_loudness=False``, the
                       original's level: peak 0.5, mean removed)
    12. write          soft limit above 0.99 for integer formats; atomic, block by block

The engine does none of 4, 7 or 9 a second time: the diffusion engine built for this pipeline
(:func:`audiosr.api.make_engine`) runs with :data:`~audiosr.config.PIPELINE_STEPS`, i.e.
without its own low-pass simulation, per-row peak normalisation, mel-bin replacement and STFT
low-band merge (:class:`~audiosr.config.EngineSteps`), and vocodes only the samples a row holds.
Channels already full band in a processed file (and silent ones) skip the engine and are kept
as they are.

Memory is bounded by a few segments whatever the input length: a file whose samples fit in
:data:`ANALYSIS_BUDGET` is read once and kept; a longer one is read twice (excerpts for the
analysis, then the stream to process). Batching is only how engine calls are grouped: a file
gives the same output alone or with others. This module holds no state between files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from .batching import Scheduler
from .chunking import OverlapAdder, iter_segments
from .dsp.bandwidth import detect_cutoffs_hz, is_full_band, prefilter_lowpass
from .dsp.crossover import merge_low_band
from .engines.base import Engine

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
BLOCK = 245_760  # samples in one 5.12 s block, the unit the model pads to (512 frames)
READ_BLOCK = 1 << 18  # frames per read when streaming a file
# Samples (all channels together) kept from pass 1 for the band-limit detector: about 85 s of
# 48 kHz stereo in 32 MB, whatever the file's length, rate or channel count. A file that fits
# is read once and kept in memory.
ANALYSIS_BUDGET = 8_000_000
ANALYSIS_TAPER = 2048  # samples of raised-cosine fade at both ends of each analysis excerpt
# Below 1 kHz there is too little band to condition on (the original crashes there, spec §13.8);
# such a "band limit" is near-silence or sub-bass only, so the pipeline works from 1 kHz up.
MIN_CUTOFF_HZ = 1000.0
# A band limit at 90 % of 24 kHz (21.6 kHz) or above leaves nothing audible to regenerate:
# 44.1 kHz CD audio (22.05 kHz) is full band.
FULL_BAND_FRACTION = 0.9
ORIGINAL_PEAK = 0.5  # the level the original normalises its input and output to (spec §2.4, §9.5)

Progress = Callable[[int, int], None]  # (segments done, segments in the file)
# (input, output, report or None, error or None): once per submitted file.
Done = Callable[[Path, Path, "UpsampleReport | None", "Exception | None"], None]


@dataclass(frozen=True)
class PipelineOptions:
    """Choices of the real-world path (the engine's own options live with the engine).

    Attributes:
        cutoff_hz: band limit of the input in Hz, for every channel; None detects each
            channel's own. A detected band limit deletes nothing: whatever the input has above
            it is kept in the output (added to the generated band). A given one is a decision
            to replace: the band above it is the engine's alone.
        prefilter: low-pass each channel at its cutoff before the engine (the MP3 fix).
        force: process inputs (and channels) that are already full band instead of passing
            them through.
        keep_loudness: output at the input's level (True); False gives the original's output
            level: peak 0.5 (one gain for the whole file), then each channel's mean removed.
        segment_s: engine segment length in seconds (a multiple of 5.12).
        overlap_s: cross-fade between segments in seconds.
        batch_size: rows (segments x channels, of one or many files) per engine call.
        crossover_hz: width of the raised-cosine band, ending at the cutoff, where the input
            hands over to the generated band.
        keep_above_cutoff: add what the pre-filter removed back to the engine's output, so
            the input's own content above the band limit stays in the result. None (default):
            when the band limit is detected, not when ``cutoff_hz`` is given.
    """

    cutoff_hz: float | None = None
    prefilter: bool = True
    force: bool = False
    keep_loudness: bool = True
    segment_s: float = 10.24
    overlap_s: float = 1.28
    batch_size: int = 4
    crossover_hz: float = 500.0
    keep_above_cutoff: bool | None = None

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

    cutoff_hz: float  # lowest band limit used over the channels (Hz)
    passthrough: bool  # True when the input was returned unchanged (full band or silent)
    segments: int  # engine segments per channel
    gain: float  # linear gain applied before the engine (undone afterwards)
    samples: int  # output length at 48 kHz
    reason: str = ""  # why the input was passed through ("" when it was processed)
    cutoffs_hz: tuple[float, ...] = ()  # band limit of each channel (Hz)
    kept_channels: tuple[int, ...] = ()  # channels kept as they are (full band or silent)

    def describe(self) -> str:
        """One line for the CLI: the band limit(s) used, or why the input was passed through."""
        if self.passthrough:
            return f"passed through unchanged: {self.reason}"
        cuts = self.cutoffs_hz or (self.cutoff_hz,)
        groups: dict[str, list[int]] = {}
        for c, hz in enumerate(cuts):
            label = "kept (full band)" if c in self.kept_channels else f"{hz / 1000:.1f} kHz"
            groups.setdefault(label, []).append(c + 1)
        if len(groups) == 1:
            return f"band limit {next(iter(groups))}"
        parts = [f"{label} (ch {', '.join(map(str, chs))})" for label, chs in groups.items()]
        return "band limits " + "; ".join(parts)


@dataclass(frozen=True)
class Plan:
    """Steps 2-4 for one input, decided before any engine call.

    Attributes:
        cutoffs_hz: band limit of each channel (Hz), as used.
        active: channels that go through the engine; the others are kept as they are.
        passthrough: nothing goes through the engine.
        reason: why it is passed through ("" otherwise).
        gain: linear, puts the file's peak (over all channels) at :data:`ORIGINAL_PEAK`.
        samples: output length at 48 kHz.
    """

    cutoffs_hz: tuple[float, ...]
    active: tuple[int, ...]
    passthrough: bool
    reason: str
    gain: float
    samples: int

    @property
    def channels(self) -> int:
        return len(self.cutoffs_hz)

    def report(self, options: PipelineOptions) -> UpsampleReport:
        segments = 0 if self.passthrough else count_segments(self.samples, options)
        kept = tuple(c for c in range(self.channels) if c not in self.active)
        return UpsampleReport(
            min(self.cutoffs_hz),
            self.passthrough,
            segments,
            self.gain,
            self.samples,
            self.reason,
            self.cutoffs_hz,
            () if self.passthrough else kept,
        )


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


def detect_channel_cutoffs(audio: np.ndarray, sample_rate: int) -> tuple[float, ...]:
    """Step 2: the band limit of each channel of ``audio`` ``[C, n]`` (Hz, at most Nyquist)."""
    nyquist = sample_rate / 2
    return tuple(min(float(c), nyquist) for c in detect_cutoffs_hz(audio, sample_rate))


def make_plan(
    peak: float, detected_hz: Sequence[float], samples: int, options: PipelineOptions
) -> Plan:
    """Steps 3-4: decide what goes through the engine, and the file's one gain.

    Args:
        peak: max |x| over all channels.
        detected_hz: each channel's detected band limit (ignored with ``options.cutoff_hz``).
        samples: output length at 48 kHz.
    """
    cutoffs = tuple(resolve_cutoff(d, options) for d in detected_hz)
    full = [is_full_band(c, SAMPLE_RATE, FULL_BAND_FRACTION) for c in cutoffs]
    gain = ORIGINAL_PEAK / peak if peak > 0 else 1.0
    if peak == 0.0:
        return Plan(cutoffs, (), True, "silent", gain, samples)
    if all(full) and not options.force:
        why = f"already full band (cutoff {min(cutoffs):.0f} Hz)"
        return Plan(cutoffs, (), True, why, gain, samples)
    active = tuple(c for c, f in enumerate(full) if options.force or not f)
    return Plan(cutoffs, active, False, "", gain, samples)


# --- after the plan: one input's segments through steps 6-12 --------------------------------


class _Job:
    """One planned input on its way through segment -> pre-filter -> engine -> ... -> sink.

    The engine calls are the :class:`~audiosr.batching.Scheduler`'s; the job receives its
    segments' engine outputs in order and finishes (closes the sink, calls ``done``) after
    the last one.
    """

    def __init__(
        self,
        plan: Plan,
        options: PipelineOptions,
        sink: _Sink,
        done: Callable[[UpsampleReport | None, Exception | None], None],
        progress: Progress | None = None,
    ) -> None:
        self.plan, self.options, self.sink, self.done = plan, options, sink, done
        self.progress = progress
        self.segment, overlap = segment_plan(plan.samples, options)
        self.adder = OverlapAdder(self.segment, overlap)
        self.total_segments = count_segments(plan.samples, options)
        self.active = list(plan.active)
        self.kept = [c for c in range(plan.channels) if c not in plan.active]
        self.cutoffs = [plan.cutoffs_hz[c] for c in self.active]
        self.cutoff_rows = torch.tensor(self.cutoffs, dtype=torch.float64)
        self.out_gain = 1.0 / plan.gain if options.keep_loudness else 1.0
        # Above a detected band limit the input's own content is added back (step 9); a band
        # limit the caller gave replaces it.
        keep = options.keep_above_cutoff
        keep = options.cutoff_hz is None if keep is None else keep
        self.keep_above = options.prefilter and keep
        self.pending = 0  # segments handed to the scheduler, not yet back
        self.segments_done = 0
        self.emitted = 0  # output samples written
        self.fed_all = False
        self.failed = False

    def feed(self, blocks: Iterable[Tensor], scheduler: Scheduler) -> Iterator[None]:
        """Steps 6-7: cut the 48 kHz stream into segments, pre-filter, hand rows over.

        A generator (one item per segment) so that an in-memory caller can collect output as
        it comes; exhaust it to process the whole input.
        """
        try:
            for seg in iter_segments(blocks, self.segment, self.adder.overlap):
                if self.failed:
                    return
                raw = seg.float()  # [C, segment] at the input's level
                flat = raw[self.active] * self.plan.gain  # [R, segment], the engine's level
                rows = self._prefilter(flat)
                removed = flat - rows if self.keep_above else None
                self.pending += 1
                scheduler.add(
                    rows,
                    self.cutoff_rows,
                    lambda y, r=raw, f=flat, d=removed: self._take(r, f, d, y),
                    self.fail,
                )
                yield
        except Exception as exc:  # e.g. the file cannot be decoded part-way
            self.fail(exc)
            return
        self.fed_all = True
        self._maybe_finish()

    def _prefilter(self, flat: Tensor) -> Tensor:
        """Step 7: each row low-passed at its own channel's band limit."""
        if not self.options.prefilter:
            return flat
        out = torch.empty_like(flat)
        for cutoff in sorted(set(self.cutoffs)):
            idx = [i for i, c in enumerate(self.cutoffs) if c == cutoff]
            out[idx] = prefilter_lowpass(flat[idx], SAMPLE_RATE, cutoff)
        return out

    def _take(self, raw: Tensor, flat: Tensor, removed: Tensor | None, y: Tensor) -> None:
        """Steps 9-11 for one segment's engine output ``y`` [R, segment].

        ``flat`` [R, segment] is the engine's input before the pre-filter and ``removed`` what
        the pre-filter took from it (None: nothing is added back).
        """
        if self.failed:
            return
        if removed is not None:
            # Whatever the input has above its band limit (a roll-off the detector read as a
            # band limit, codec residue) stays in the output, on top of the generated band.
            y = y + removed
        # Below the cutoff the answer is the input itself (un-pre-filtered: the pre-filter's
        # transition band starts a few % below the cutoff).
        merged = merge_low_band(y, flat, self.cutoffs, self.options.crossover_hz) * self.out_gain
        out = torch.empty_like(raw)
        out[self.active] = merged
        if self.kept:  # full-band (or silent) channels: the input, at the output's level
            keep = raw[self.kept]
            out[self.kept] = keep if self.options.keep_loudness else keep * self.plan.gain
        self._emit(self.adder.push(out))
        self.pending -= 1
        self.segments_done += 1
        if self.progress is not None:
            self.progress(self.segments_done, self.total_segments)
        self._maybe_finish()

    def _emit(self, block: Tensor) -> None:
        take = min(block.shape[-1], self.plan.samples - self.emitted)
        if take > 0:
            self.sink.write(block[..., :take])
            self.emitted += take

    def _maybe_finish(self) -> None:
        if not self.fed_all or self.pending or self.failed:
            return
        self._emit(self.adder.finish())
        if self.emitted < self.plan.samples:  # the resampler came up short by a few samples
            self._emit(torch.zeros(self.plan.channels, self.plan.samples - self.emitted))
        try:
            self.sink.close()
        except Exception as exc:
            self.fail(exc)
            return
        self.done(self.plan.report(self.options), None)

    def fail(self, exc: Exception) -> None:
        """Abandon this input: discard its partial output and report ``exc`` once."""
        if self.failed:
            return
        self.failed = True
        self.sink.abort()
        self.done(None, exc)


# --- sinks: where step 12 puts the samples ----------------------------------------------------


class _Sink:
    """Receives ``[C, n]`` output blocks in order; ``close`` completes, ``abort`` discards."""

    def write(self, block: Tensor) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


@dataclass
class _MemorySink(_Sink):
    """Collects the output in memory (the in-memory API)."""

    blocks: list[Tensor] = field(default_factory=list)

    def write(self, block: Tensor) -> None:
        self.blocks.append(block)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.blocks.clear()

    def drain(self) -> list[Tensor]:
        out, self.blocks = self.blocks, []
        return out


class _FileSink(_Sink):
    """Writes a 48 kHz file atomically, block by block.

    With ``keep_loudness`` the blocks go straight to the file (soft-limited for integer
    formats when ``limit``). Otherwise the original's level needs the whole output's peak and
    mean first: the float32 output is spooled to a hidden W64 file (no 4 GB limit) next to
    ``dst``, then read back, scaled and written, so memory stays bounded for any length.
    """

    def __init__(
        self,
        dst: Path,
        channels: int,
        subtype: str,
        src: Path,
        frames: int,
        *,
        keep_loudness: bool,
        limit: bool,
    ) -> None:
        from .audio_io import AtomicWriter

        self.dst, self.channels, self.subtype = dst, channels, subtype
        self.keep_loudness, self.limit = keep_loudness, limit and subtype.upper() != "FLOAT"
        self._writer = AtomicWriter(
            dst, SAMPLE_RATE, channels, subtype, protect=[src], frames=frames
        )
        self._stack = contextlib.ExitStack()
        if keep_loudness:
            self._stack.enter_context(self._writer)
            return
        self._peak, self._n = 0.0, 0
        self._sums = torch.zeros(channels, dtype=torch.float64)
        folder = self._stack.enter_context(self._spool_dir(dst))
        self._spool_path = Path(folder) / "spool.w64"
        self._spool = self._stack.enter_context(
            sf.SoundFile(self._spool_path, "w", SAMPLE_RATE, channels, "FLOAT", format="W64")
        )

    @staticmethod
    def _spool_dir(dst: Path) -> tempfile.TemporaryDirectory[str]:
        from .audio_io import spool_directory
        from .errors import AudioWriteError

        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            return spool_directory(dst)
        except OSError as err:
            reason = f"folder {dst.parent} is not writable ({err.strerror})"
            raise AudioWriteError(f"cannot write {dst}: {reason}") from None

    def write(self, block: Tensor) -> None:
        if self.keep_loudness:
            self._writer.write((_limit(block) if self.limit else block).numpy())
            return
        self._spool.write(block.numpy().T)
        self._peak = max(self._peak, float(block.abs().max()) if block.numel() else 0.0)
        self._sums += block.double().sum(dim=-1)
        self._n += block.shape[-1]

    def close(self) -> None:
        if not self.keep_loudness:
            self._spool.close()
            mean = self._sums / max(self._n, 1)
            with self._writer as writer:
                for b in sf.blocks(
                    self._spool_path, blocksize=READ_BLOCK, dtype="float32", always_2d=True
                ):
                    y = torch.from_numpy(np.ascontiguousarray(b.T))
                    writer.write(original_level(y, self._peak, mean).numpy())
        self._stack.close()

    def abort(self) -> None:
        # Leaving the writer's block with an exception deletes its temporary file.
        err = RuntimeError("aborted")
        self._stack.__exit__(type(err), err, None)


def _limit(block: Tensor) -> Tensor:
    """Integer formats clip at full scale: soft-limit the samples above 0.99 (smooth knee).

    Applied to regenerated output only: a pass-through keeps its samples exactly.
    """
    over = block.abs() > 0.99
    if not bool(over.any()):
        return block
    knee = 0.99 + 0.01 * torch.tanh((block.abs() - 0.99) / 0.01)
    return torch.where(over, torch.sign(block) * knee, block)


def original_level(y: Tensor, peak: float, mean: Tensor) -> Tensor:
    """The original's output level (spec §9.5): ``0.5 * y / peak``, then the mean removed.

    Args:
        y: [C, n] a block of the output.
        peak: max |y| over the whole output (all channels: one gain per file).
        mean: [C] per-channel mean of the whole output.
    """
    scale = ORIGINAL_PEAK / peak if peak > 0 else 1.0
    return ((y.double() - mean.double()[:, None]) * scale).float()


# --- in memory ---------------------------------------------------------------------------------


def process_stream(
    engine: Engine,
    blocks: Iterable[Tensor],
    total: int,
    channels: int,
    cutoff_hz: float | Sequence[float],
    gain: float,
    options: PipelineOptions,
    progress: Progress | None = None,
) -> Iterator[Tensor]:
    """Steps 6-11 on a stream of 48 kHz blocks ``[C, n]``; yields finished ``[C, m]`` blocks.

    Blocks are consumed lazily: at most one engine call's segments are held at a time. Every
    channel goes through the engine (``cutoff_hz``: one for all, or one per channel).

    Args:
        engine: band-limited [B, T] + cutoffs [B] -> full band [B, T].
        blocks: the input at 48 kHz, in order, any block sizes.
        total: number of samples of the output (sets the segment plan; longer input is cut).
        channels: C.
        cutoff_hz: band limit(s) of the input (Hz).
        gain: linear gain putting the file's peak at the model's level; undone on output
            when ``options.keep_loudness``.
        options: see :class:`PipelineOptions`.
        progress: called with (segments done, segments total).
    """
    cuts = (float(cutoff_hz),) * channels if np.isscalar(cutoff_hz) else tuple(cutoff_hz)
    plan = Plan(cuts, tuple(range(channels)), False, "", gain, total)
    sink = _MemorySink()
    outcome: list[Exception | None] = []
    job = _Job(plan, options, sink, lambda _r, exc: outcome.append(exc), progress)
    scheduler = Scheduler(engine, options.batch_size)
    for _ in job.feed(blocks, scheduler):
        yield from sink.drain()
    scheduler.flush()
    yield from sink.drain()
    if outcome and outcome[0] is not None:
        raise outcome[0]


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
    if options.cutoff_hz is None:
        detected = detect_channel_cutoffs(audio.numpy(), SAMPLE_RATE)
    else:
        detected = (float(options.cutoff_hz),) * channels
    plan = make_plan(peak, detected, n, options)
    if plan.passthrough:
        log.info("input is %s: passed through unchanged (force to regenerate)", plan.reason)
        y = audio.clone()
    else:
        sink = _MemorySink()
        outcome: list[Exception | None] = []
        job = _Job(plan, options, sink, lambda _r, exc: outcome.append(exc), progress)
        scheduler = Scheduler(engine, options.batch_size)
        for _ in job.feed([audio], scheduler):
            pass
        scheduler.flush()
        if outcome[0] is not None:
            raise outcome[0]
        y = torch.cat(sink.blocks, dim=-1)
    if not options.keep_loudness and n:
        y = original_level(y, float(y.abs().max()), y.double().mean(dim=-1))
    return y, plan.report(options)


# --- files -------------------------------------------------------------------------------------


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


def analyse_file(
    src: str | os.PathLike[str], *, detect: bool = True
) -> tuple[float, tuple[float, ...]]:
    """Pass 1 over a file too long to keep: its peak and each channel's band limit.

    The band limits are read from excerpts spread evenly over the file (whole read blocks, at
    most :data:`ANALYSIS_BUDGET` samples in all), at the file's own rate.

    Returns:
        (peak |x| over all channels, band limit of each channel in Hz, at most the file's
        Nyquist frequency; empty when ``detect`` is False).
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
        if detect and i % keep_every == 0:
            excerpts.append(block if keep_every == 1 else _analysis_excerpt(block))
    if not detect:
        return peak, ()
    return peak, detect_channel_cutoffs(np.concatenate(excerpts, axis=1), info.sample_rate)


@dataclass
class _Source:
    """A file after step 2: its analysis, and a way to stream it at 48 kHz (step 5)."""

    path: Path
    sample_rate: int
    channels: int
    samples: int  # output length at 48 kHz
    peak: float
    detected: tuple[float, ...]
    kept: list[np.ndarray] | None  # the decoded blocks when the file fit the budget

    def blocks48(self) -> Iterator[Tensor]:
        from .audio_io import resample_stream, stream_audio

        raw = self.kept if self.kept is not None else stream_audio(self.path, READ_BLOCK)
        for block in resample_stream(raw, self.sample_rate, SAMPLE_RATE):
            yield torch.from_numpy(block)


def read_source(src: Path, options: PipelineOptions) -> _Source:
    """Steps 1-2 for a file: read once (kept) when it fits :data:`ANALYSIS_BUDGET`, else
    analyse from excerpts and stream it again later.

    Raises:
        AudioReadError: the input cannot be read or holds no audio.
    """
    from .audio_io import audio_info, stream_audio
    from .errors import AudioReadError

    info = audio_info(src)
    samples = output_length(info.frames, info.sample_rate)
    if samples == 0:
        raise AudioReadError(f"cannot read {src}: no audio in the file (0 samples)")
    detect = options.cutoff_hz is None
    if info.frames * info.channels <= ANALYSIS_BUDGET:
        kept = list(stream_audio(src, READ_BLOCK))
        peak = max((float(np.abs(b).max()) for b in kept if b.size), default=0.0)
        whole = np.concatenate(kept, axis=1)
        detected = detect_channel_cutoffs(whole, info.sample_rate) if detect else ()
    else:
        kept = None
        peak, detected = analyse_file(src, detect=detect)
    if not detect:
        detected = (float(options.cutoff_hz),) * info.channels
    return _Source(src, info.sample_rate, info.channels, samples, peak, detected, kept)


class FileBatcher:
    """The pipeline over many files; engine calls are shared across files (see batching).

    Submit files in any order, then call :meth:`finish`; ``on_done`` is called for every
    submitted file exactly once, possibly later than its :meth:`submit` (a file's last rows
    wait until a call is full or :meth:`finish` runs). A call holds at most ``batch_size``
    rows; a segment with more channels than that goes alone.

    Args:
        engine: band-limited ``[B, T]`` + cutoffs ``[B]`` -> full band ``[B, T]``.
        options: the pipeline options (defaults when None).
        on_planned: called with the rows (segments x channels through the engine) of each
            file once it is planned (for a progress bar over the whole run).
        on_call: called after every engine call with its number of rows.
    """

    def __init__(
        self,
        engine: Engine,
        options: PipelineOptions | None = None,
        *,
        on_planned: Callable[[int], None] | None = None,
        on_call: Callable[[int], None] | None = None,
    ) -> None:
        self.options = options or PipelineOptions()
        self.scheduler = Scheduler(engine, self.options.batch_size, on_call)
        self.on_planned = on_planned
        self._open: set[_Sink] = set()  # outputs being written (for clean-up on interrupt)

    @property
    def engine_calls(self) -> int:
        """Engine calls made so far."""
        return self.scheduler.engine_calls

    def submit(
        self,
        src: str | os.PathLike[str],
        dst: str | os.PathLike[str],
        on_done: Done,
        *,
        subtype: str = "PCM_24",
        progress: Progress | None = None,
    ) -> None:
        """Queue ``src`` -> ``dst`` (a 48 kHz file of the input's duration and channels)."""
        src, dst = Path(src), Path(dst)
        options = self.options
        try:
            source = read_source(src, options)
            plan = make_plan(source.peak, source.detected, source.samples, options)
            sink = _FileSink(
                dst,
                source.channels,
                subtype,
                src,
                source.samples,
                keep_loudness=options.keep_loudness,
                limit=not plan.passthrough,
            )
        except Exception as exc:  # reported through on_done like any failure
            on_done(src, dst, None, exc)
            return
        self._open.add(sink)

        def job_done(report: UpsampleReport | None, exc: Exception | None) -> None:
            self._open.discard(sink)
            on_done(src, dst, report, exc)

        with self._abort_on_interrupt():
            if plan.passthrough:
                log.debug("%s is %s: written at 48 kHz without regeneration", src, plan.reason)
                _copy(source, plan, options, sink, job_done)
                return
            if self.on_planned is not None:
                self.on_planned(count_segments(plan.samples, options) * len(plan.active))
            job = _Job(plan, options, sink, job_done, progress)
            for _ in job.feed(source.blocks48(), self.scheduler):
                pass

    def finish(self) -> None:
        """Process every row still waiting."""
        with self._abort_on_interrupt():
            self.scheduler.flush()

    @contextlib.contextmanager
    def _abort_on_interrupt(self) -> Iterator[None]:
        """On Ctrl-C (or any non-Exception exit) discard every unfinished output file."""
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, Exception):
                for sink in list(self._open):
                    sink.abort()
                self._open.clear()
            raise


def _copy(
    source: _Source,
    plan: Plan,
    options: PipelineOptions,
    sink: _Sink,
    done: Callable[[UpsampleReport | None, Exception | None], None],
) -> None:
    """A pass-through file: steps 5 and 12 only (resampled, cut to length, written)."""
    written = 0
    try:
        for block in source.blocks48():
            take = min(block.shape[-1], plan.samples - written)
            if take > 0:
                sink.write(block[..., :take])
                written += take
        if written < plan.samples:
            sink.write(torch.zeros(source.channels, plan.samples - written))
        sink.close()
    except Exception as exc:
        sink.abort()
        done(None, exc)
        return
    done(plan.report(options), None)


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

    The same path as a batch of one (:class:`FileBatcher`). The output is written block by
    block to a temporary file that replaces ``dst`` only when complete; it has the input's
    duration and channels.

    Raises:
        AudioReadError: the input cannot be read (see :mod:`audiosr.audio_io`).
        AudioWriteError: the output cannot be written or would overwrite the input.
    """
    outcome: list[tuple[UpsampleReport | None, Exception | None]] = []
    batcher = FileBatcher(engine, options)
    batcher.submit(
        src, dst, lambda _s, _d, r, e: outcome.append((r, e)), subtype=subtype, progress=progress
    )
    batcher.finish()
    report, exc = outcome[0]
    if exc is not None:
        raise exc
    assert report is not None
    return report
