"""audiosr: fast, faithful AudioSR (versatile audio super-resolution to 48 kHz).

Modern API: ``audiosr.load(...)`` -> :class:`Upsampler`; ``up(audio, sample_rate)``.
Drop-in API of the original: ``build_model``, ``super_resolution``,
``super_resolution_long_audio``, ``save_wave``, ``read_list`` and the other names the original
package exported (``seed_everything``, ``get_time``, ``get_duration``, ``read_audio_file``,
``normalize_wav``, ``pad_wav``, ``wav_feature_extraction``,
``lowpass_filtering_prepare_inference``, ``make_batch_for_super_resolution``).

Names are imported on first use, so ``import audiosr`` (and the command line, which must set
up CPU threads before torch loads; see :mod:`audiosr.threads`) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Upsampler": "api",
    "load": "api",
    "make_engine": "api",
    "BASIC": "config",
    "SPEECH": "config",
    "AudioSRConfig": "config",
    "SamplingOptions": "config",
    "PipelineOptions": "pipeline",
    "set_threads": "threads",
    "build_model": "upstream",
    "read_list": "upstream",
    "save_wave": "upstream",
    "super_resolution": "upstream",
    "super_resolution_long_audio": "upstream",
    "get_duration": "upstream_frontend",
    "get_time": "upstream_frontend",
    "lowpass_filtering_prepare_inference": "upstream_frontend",
    "make_batch_for_super_resolution": "upstream_frontend",
    "normalize_wav": "upstream_frontend",
    "pad_wav": "upstream_frontend",
    "read_audio_file": "upstream_frontend",
    "seed_everything": "upstream_frontend",
    "wav_feature_extraction": "upstream_frontend",
}

__all__ = [
    "BASIC",
    "SPEECH",
    "AudioSRConfig",
    "PipelineOptions",
    "SamplingOptions",
    "Upsampler",
    "__version__",
    "build_model",
    "get_duration",
    "get_time",
    "load",
    "lowpass_filtering_prepare_inference",
    "make_batch_for_super_resolution",
    "make_engine",
    "normalize_wav",
    "pad_wav",
    "read_audio_file",
    "read_list",
    "save_wave",
    "seed_everything",
    "set_threads",
    "super_resolution",
    "super_resolution_long_audio",
    "wav_feature_extraction",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audiosr' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .api import Upsampler, load, make_engine
    from .config import BASIC, SPEECH, AudioSRConfig, SamplingOptions
    from .pipeline import PipelineOptions
    from .threads import set_threads
    from .upstream import (
        build_model,
        read_list,
        save_wave,
        super_resolution,
        super_resolution_long_audio,
    )
    from .upstream_frontend import (
        get_duration,
        get_time,
        lowpass_filtering_prepare_inference,
        make_batch_for_super_resolution,
        normalize_wav,
        pad_wav,
        read_audio_file,
        seed_everything,
        wav_feature_extraction,
    )
