"""Cross-file batching: short files share engine calls.

A folder of short clips (TTS output, sound effects, training corpora) would otherwise cost one
engine call per clip with only that clip's channels as the batch. :class:`FileBatcher` reads
every clip that fits in one segment, groups clips of the same segment length and sends the
channels of several clips through the engine together, up to ``PipelineOptions.batch_size``
rows per call (the memory budget). Files longer than one segment, and files passed through
unchanged, stream through :func:`~audiosr.pipeline.upsample_file` as before.

Each row goes through exactly the steps :func:`~audiosr.pipeline.upsample_file` applies to a
one-segment file (same reads, resampler, level, pre-filter, low-band merge, limiter and
atomic write). The engines treat rows independently and the diffusion engine gives every row
the same noise, so a file's output does not depend on which files it was batched with (the
offline engines: bit for bit; the diffusion model: up to float rounding of batched kernels).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .dsp.bandwidth import detect_cutoff_hz, prefilter_lowpass
from .dsp.crossover import merge_low_band
from .engines.base import Engine
from .pipeline import (
    ORIGINAL_PEAK,
    READ_BLOCK,
    SAMPLE_RATE,
    PipelineOptions,
    UpsampleReport,
    _limit,
    _write,
    decide,
    original_level,
    output_length,
    resolve_cutoff,
    segment_plan,
    upsample_file,
)

log = logging.getLogger(__name__)

# Called once per submitted file when its output is written (report) or has failed (error).
Done = Callable[[Path, Path, UpsampleReport | None, Exception | None], None]


@dataclass
class _Clip:
    """A short file read into memory, waiting for its engine call."""

    src: Path
    dst: Path
    subtype: str
    audio: Tensor  # [C, n] float32 at 48 kHz, n <= segment
    total: int  # output samples (the input's duration at 48 kHz)
    segment: int  # samples: the engine input length
    cutoff_hz: float
    gain: float  # linear, puts the file's peak at the model's level
    on_done: Done


class FileBatcher:
    """Process many files, batching the short ones across files (see the module docstring).

    Submit files in any order, then call :meth:`finish`; ``on_done`` is called for every
    submitted file exactly once, possibly later than its :meth:`submit` (short files wait
    until their batch is full or :meth:`finish` runs). A call holds at most ``batch_size``
    rows (a file with more channels than that goes alone); at most that many rows per segment
    length wait in memory.

    Args:
        engine: band-limited ``[B, T]`` + cutoffs ``[B]`` -> full band ``[B, T]``.
        options: the pipeline options (defaults when None); ``batch_size`` caps the rows of
            one engine call.
    """

    def __init__(self, engine: Engine, options: PipelineOptions | None = None) -> None:
        self.engine = engine
        self.options = options or PipelineOptions()
        self._groups: dict[int, list[_Clip]] = {}  # segment length -> clips waiting
        self.engine_calls = 0  # engine calls made for short files (for logs and tests)

    def submit(
        self,
        src: str | os.PathLike[str],
        dst: str | os.PathLike[str],
        on_done: Done,
        *,
        subtype: str = "PCM_24",
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Queue ``src`` -> ``dst``; a long file is processed (and reported) right away.

        Args:
            progress: segment progress of a long file (short files have no progress).
        """
        src, dst = Path(src), Path(dst)
        try:
            clip = self._read_short(src, dst, subtype, on_done)
        except Exception as exc:  # reported through on_done like any failure
            on_done(src, dst, None, exc)
            return
        if clip is None:
            try:
                with torch.inference_mode():
                    report = upsample_file(
                        self.engine, src, dst, self.options, subtype=subtype, progress=progress
                    )
            except Exception as exc:
                on_done(src, dst, None, exc)
                return
            on_done(src, dst, report, None)
            return
        budget = self.options.batch_size
        rows = sum(c.audio.shape[0] for c in self._groups.get(clip.segment, []))
        if rows and rows + clip.audio.shape[0] > budget:
            self._flush(clip.segment)  # the clip does not fit: run the waiting ones first
        group = self._groups.setdefault(clip.segment, [])
        group.append(clip)
        if sum(c.audio.shape[0] for c in group) >= budget:
            self._flush(clip.segment)

    def finish(self) -> None:
        """Process every clip still waiting."""
        for segment in list(self._groups):
            self._flush(segment)

    def _read_short(self, src: Path, dst: Path, subtype: str, on_done: Done) -> _Clip | None:
        """Read ``src`` when it is one segment long and needs the engine, else None."""
        from .audio_io import audio_info, resample_stream, stream_audio

        info = audio_info(src)
        total = output_length(info.frames, info.sample_rate)
        if total == 0:
            return None  # upsample_file raises the one-line error
        segment, overlap = segment_plan(total, self.options)
        if overlap or segment < total:
            return None  # several segments: stream it
        # The same reads as upsample_file's two passes, kept in memory (the file is short).
        blocks = list(stream_audio(src, READ_BLOCK))
        peak = max((float(np.abs(b).max()) for b in blocks if b.size), default=0.0)
        if self.options.cutoff_hz is None:
            detected = detect_cutoff_hz(np.concatenate(blocks, axis=1), info.sample_rate)
            detected = min(float(detected), info.sample_rate / 2)
        else:
            detected = 0.0
        cutoff = resolve_cutoff(detected, self.options)
        if decide(peak, cutoff, self.options)[0]:
            return None  # passed through: upsample_file copies it at 48 kHz
        audio = torch.cat(
            [torch.from_numpy(b) for b in resample_stream(blocks, info.sample_rate, SAMPLE_RATE)],
            dim=-1,
        )
        if audio.shape[-1] > segment:
            return None  # the resampler's rounding reached into a second segment
        gain = ORIGINAL_PEAK / peak
        return _Clip(src, dst, subtype, audio.float(), total, segment, cutoff, gain, on_done)

    def _flush(self, segment: int) -> None:
        clips = self._groups.pop(segment, [])
        if not clips:
            return
        try:
            with torch.inference_mode():
                outputs = self._run(clips, segment)
        except Exception as exc:  # the engine failed: every clip of the call failed
            for clip in clips:
                clip.on_done(clip.src, clip.dst, None, exc)
            return
        for clip, y in zip(clips, outputs):
            try:
                report = self._write(clip, y)
            except Exception as exc:
                clip.on_done(clip.src, clip.dst, None, exc)
                continue
            clip.on_done(clip.src, clip.dst, report, None)

    def _run(self, clips: list[_Clip], segment: int) -> list[Tensor]:
        """One engine call for every channel of ``clips``; returns ``[C, segment]`` each."""
        opts = self.options
        rows, cuts = [], []
        for clip in clips:
            padded = torch.nn.functional.pad(clip.audio, (0, segment - clip.audio.shape[-1]))
            flat = padded * clip.gain  # [C, segment]
            rows.append(flat)
            cuts += [clip.cutoff_hz] * flat.shape[0]
        inputs = [
            prefilter_lowpass(flat, SAMPLE_RATE, clip.cutoff_hz) if opts.prefilter else flat
            for flat, clip in zip(rows, clips)
        ]
        x = torch.cat(inputs).float()
        y = self.engine(x, torch.tensor(cuts, dtype=torch.float64)).float().cpu()
        self.engine_calls += 1
        log.debug("one engine call for %d files (%d rows)", len(clips), x.shape[0])
        outputs, start = [], 0
        for flat, clip in zip(rows, clips):
            part = y[start : start + flat.shape[0]]
            start += flat.shape[0]
            out_gain = 1.0 / clip.gain if opts.keep_loudness else 1.0
            outputs.append(merge_low_band(part, flat, clip.cutoff_hz, opts.crossover_hz) * out_gain)
        return outputs

    def _write(self, clip: _Clip, y: Tensor) -> UpsampleReport:
        n = clip.total
        y = _fit(y, n)
        if self.options.keep_loudness:
            y = _limit(y, clip.subtype)
        else:
            y = original_level(y, float(y.abs().max()), y.double().mean(dim=-1))
        _write([y], clip.dst, y.shape[0], clip.subtype, clip.src, n)
        return UpsampleReport(clip.cutoff_hz, False, 1, clip.gain, n)


def _fit(audio: Tensor, total: int) -> Tensor:
    """Crop or zero-pad ``audio`` ``[C, n]`` to ``total`` samples (as ``fit_length`` does)."""
    n = audio.shape[-1]
    if n >= total:
        return audio[:, :total]
    return torch.nn.functional.pad(audio, (0, total - n))
