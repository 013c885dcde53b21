"""The modern Python API: one loader, one call.

import audiosr
up = audiosr.load("basic")                  # or engine="dsp" (no download)
y48k = up(audio, sample_rate)               # audio: [C, T] or [T] float in [-1, 1]
up.upsample_file("in.mp3", "out.wav")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .config import PIPELINE_STEPS, AudioSRConfig, EngineSteps, SamplingOptions
from .devices import resolve_device
from .engines import ENGINES
from .engines.base import Engine
from .pipeline import SAMPLE_RATE, PipelineOptions, UpsampleReport, upsample, upsample_file
from .presets import preset_options

log = logging.getLogger(__name__)

ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)


def make_engine(
    engine: str = "audiosr",
    *,
    model: str | os.PathLike[str] = "basic",
    config: AudioSRConfig | str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "auto",
    options: SamplingOptions | None = None,
    preset: str | None = None,
    steps: EngineSteps | None = None,
    progress: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> Engine:
    """Build an engine by name (:data:`audiosr.engines.ENGINES`): ``audiosr`` (diffusion,
    official weights), ``dsp``, ``sinc``.

    Args:
        engine: engine name.
        model: ``basic``/``speech`` or a checkpoint path (diffusion engine).
        config: architecture for custom checkpoints.
        device: ``auto`` picks cuda, then mps, then cpu.
        options: sampling options; mutually exclusive with ``preset``.
        preset: ``upstream``, ``quality`` or ``fast`` (:mod:`audiosr.presets`), resolved for
            ``device``.
        steps: which of the original's own steps the diffusion engine runs; by default
            none of those the pipeline does itself (:data:`~audiosr.config.PIPELINE_STEPS`:
            low-pass simulation, per-row peak, mel-bin and STFT low-band replacement).
        progress: show the sampler's progress bar.
        on_step: the diffusion engine calls ``on_step(rows)`` after every sampler step.

    Raises:
        ValueError: unknown engine or preset name, or both ``options`` and ``preset``.
        CheckpointError: the diffusion weights cannot be found or loaded.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINE_NAMES)}")
    if preset is not None:
        if options is not None:
            raise ValueError("give either options or preset, not both")
        options = preset_options(preset, resolve_device(device))
    return ENGINES[engine](
        model=model,
        config=config,
        device=device,
        options=options,
        steps=PIPELINE_STEPS if steps is None else steps,
        progress=progress,
        on_step=on_step,
    )


def channels_first(x: np.ndarray) -> np.ndarray:
    """``[C, T]`` audio from ``[C, T]``, ``[T]``, or soundfile's ``[T, C]`` layout.

    A 2-D array is read as ``[T, C]`` (and transposed) only when that is unambiguous: its
    first axis is longer than :data:`~audiosr.audio_io.MAX_CHANNELS` and its second is not.

    Raises:
        ValueError: not 1-D or 2-D, or more than ``MAX_CHANNELS`` channels either way.
    """
    from .audio_io import MAX_CHANNELS

    if x.ndim == 1:
        return x[None]
    if x.ndim != 2:
        raise ValueError(f"audio must be [C, T] or [T], got shape {tuple(x.shape)}")
    rows, cols = x.shape
    if rows <= MAX_CHANNELS:
        return x
    if cols <= MAX_CHANNELS:
        log.debug("audio of shape %s read as [T, C] (soundfile's layout)", tuple(x.shape))
        return np.ascontiguousarray(x.T)
    raise ValueError(
        f"audio of shape {tuple(x.shape)}: expected [C, T] (channels first, at most "
        f"{MAX_CHANNELS} channels), [T, C] (as soundfile.read returns) or [T]"
    )


@dataclass
class Upsampler:
    """An engine plus the real-world pipeline around it. Holds no per-call state."""

    engine: Engine
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)

    def __call__(
        self,
        audio: np.ndarray | Tensor,
        sample_rate: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Super-resolve ``audio`` to 48 kHz ([C, T48] float32).

        ``audio`` is ``[C, T]``, ``[T]`` or soundfile's ``[T, C]`` (see
        :func:`channels_first`), float in [-1, 1], at any rate.
        """
        y, _ = self.process(audio, sample_rate, progress=progress)
        return y

    def process(
        self,
        audio: np.ndarray | Tensor,
        sample_rate: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[Tensor, UpsampleReport]:
        """Like ``__call__`` but also returns the :class:`UpsampleReport`."""
        from .audio_io import resample

        x = audio.detach().cpu().float().numpy() if isinstance(audio, Tensor) else np.asarray(audio)
        x = channels_first(np.asarray(x, dtype=np.float32))
        if not np.isfinite(x).all():
            raise ValueError("audio contains NaN or Inf samples")
        if sample_rate != SAMPLE_RATE:
            x = resample(x, int(sample_rate), SAMPLE_RATE)
        with torch.inference_mode():
            return upsample(self.engine, torch.from_numpy(x), self.pipeline, progress=progress)

    def upsample_file(
        self,
        src: str | os.PathLike[str],
        dst: str | os.PathLike[str],
        *,
        subtype: str = "PCM_24",
        progress: Callable[[int, int], None] | None = None,
    ) -> UpsampleReport:
        """Stream ``src`` (any supported format and rate) to a 48 kHz ``dst``, atomically.

        The output has the input's duration and channels; ``subtype`` is its sample format
        ("PCM_24", "PCM_16" or "FLOAT").
        """
        with torch.inference_mode():
            return upsample_file(
                self.engine, src, dst, self.pipeline, subtype=subtype, progress=progress
            )

    def upsample_files(
        self,
        pairs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
        *,
        subtype: str = "PCM_24",
    ) -> dict[Path, UpsampleReport | Exception]:
        """Many ``(src, dst)`` pairs; short files share engine calls (``pipeline.batch_size``
        rows per call, see :class:`audiosr.pipeline.FileBatcher`).

        A failing file does not stop the others.

        Returns:
            For each input path: its report, or the exception it failed with.
        """
        from .pipeline import FileBatcher

        outcome: dict[Path, UpsampleReport | Exception] = {}

        def done(src: Path, _dst: Path, report, exc) -> None:
            outcome[src] = exc if exc is not None else report

        batcher = FileBatcher(self.engine, self.pipeline)
        for src, dst in pairs:
            batcher.submit(src, dst, done, subtype=subtype)
        batcher.finish()
        return outcome


def load(
    name_or_path: str | os.PathLike[str] = "basic",
    *,
    engine: str = "audiosr",
    device: str | torch.device | None = "auto",
    config: AudioSRConfig | str | os.PathLike[str] | None = None,
    options: SamplingOptions | None = None,
    preset: str | None = None,
    pipeline: PipelineOptions | None = None,
    progress: bool = False,
) -> Upsampler:
    """Load an :class:`Upsampler`.

    Args:
        name_or_path: ``basic``/``speech`` (official weights) or a checkpoint path.
        engine: ``audiosr`` (default), ``dsp`` (no weights) or ``sinc`` (plain resampling).
        device: ``auto`` picks cuda, then mps, then cpu.
        config: architecture for custom checkpoints (original nested YAML/JSON).
        options: sampling options of the diffusion engine.
        preset: ``upstream``, ``quality`` or ``fast`` instead of ``options`` (the CLI's
            ``--preset``, same definitions: :mod:`audiosr.presets`).
        pipeline: cutoff, pre-filter, loudness, segmenting options.
        progress: show the sampler's progress bar.
    """
    eng = make_engine(
        engine,
        model=name_or_path,
        config=config,
        device=device,
        options=options,
        preset=preset,
        progress=progress,
    )
    return Upsampler(eng, pipeline or PipelineOptions())
