"""Engines by name: each entry builds one from the same keyword arguments.

Every factory takes ``model``, ``config``, ``device``, ``options``, ``steps``, ``progress``
and ``on_step`` (what :func:`audiosr.api.make_engine` passes); the engines that need no
weights ignore them.
Imports are deferred so that picking ``dsp`` never imports the diffusion code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch

from .base import Engine

log = logging.getLogger(__name__)


def _diffusion(
    *,
    model: str | os.PathLike[str] = "basic",
    config: Any = None,
    device: str | torch.device | None = "auto",
    options: Any = None,
    steps: Any = None,
    progress: bool = False,
    on_step: Any = None,
) -> Engine:
    from ..config import AudioSRConfig, EngineSteps, SamplingOptions
    from ..devices import resolve_device
    from ..weights import load_model
    from .diffusion import AudioSREngine, DiffusionRuntime
    from .diffusion.placement import pin_host_weights

    if config is None:
        cfg = AudioSRConfig()
    elif isinstance(config, AudioSRConfig):
        cfg = config
    else:
        cfg = AudioSRConfig.from_file(config)
    options = options or SamplingOptions()
    dev = resolve_device(device)
    # Offload keeps the weights in host memory (pinned for asynchronous copies to a GPU) and
    # moves each stage per call; otherwise they are loaded straight onto the device.
    net = load_model(cfg, model, device="cpu" if options.offload else dev)
    if options.offload and dev.type == "cuda":
        pin_host_weights(net)
    runtime = DiffusionRuntime(net, cfg, device=dev)
    steps = steps or EngineSteps()
    return AudioSREngine(runtime, options, steps=steps, progress=progress, on_step=on_step)


def _dsp(**_: Any) -> Engine:
    from .dsp import DSPEngine

    return DSPEngine()


def _sinc(**_: Any) -> Engine:
    from .base import SincEngine

    return SincEngine()


# name -> factory(**make_engine keyword arguments)
ENGINES: dict[str, Callable[..., Engine]] = {
    "audiosr": _diffusion,
    "dsp": _dsp,
    "sinc": _sinc,
}
