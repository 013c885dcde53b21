"""audiosr: fast, faithful AudioSR (versatile audio super-resolution to 48 kHz).

Modern API: ``audiosr.load(...)`` -> :class:`Upsampler`; ``up(audio, sample_rate)``.
Drop-in API of the original: ``build_model``, ``super_resolution``,
``super_resolution_long_audio``, ``save_wave``, ``read_list``.
"""

from __future__ import annotations

from .api import Upsampler, load, make_engine
from .config import BASIC, SPEECH, AudioSRConfig, SamplingOptions
from .pipeline import PipelineOptions
from .upstream import (
    build_model,
    read_list,
    save_wave,
    super_resolution,
    super_resolution_long_audio,
)

__version__ = "0.1.0"

__all__ = [
    "BASIC",
    "SPEECH",
    "AudioSRConfig",
    "PipelineOptions",
    "SamplingOptions",
    "Upsampler",
    "__version__",
    "build_model",
    "load",
    "make_engine",
    "read_list",
    "save_wave",
    "super_resolution",
    "super_resolution_long_audio",
]
