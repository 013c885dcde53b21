"""The three presets, defined once: the CLI (``--preset``), the API (``audiosr.load(preset=)``)
and ``benchmarks/bench_speed.py`` all build their options here.

| preset | sampler | precision | attention | layout | TF32 (CUDA) |
|---|---|---|---|---|---|
| ``upstream`` | DDIM 50, eta 1, CFG 3.5 | fp32 | math | NCHW | on, as the original |
| ``quality`` | DDIM 50, eta 1, CFG 3.5 | fp32 | sdpa | channels-last | off: full fp32 |
| ``fast`` | UniPC 10, CFG 3.5 | bf16/fp16 ("auto") | sdpa | channels-last | on |

TF32 policy. The original CLI calls ``torch.set_float32_matmul_precision("high")`` and leaves
cuDNN's convolution TF32 at PyTorch's default (on), so on Ampere/Hopper its fp32 path multiplies
in TF32: ``upstream`` does the same, to give the original's numbers on those GPUs too.
``quality`` is the accuracy reference of the modern path and runs true fp32. ``fast`` runs its
networks in bf16/fp16 anyway; TF32 covers what stays fp32 there. Off CUDA the switch does
nothing.

``torch.compile`` is not part of any preset: its first call compiles for minutes, which only
pays off for long jobs; it stays an explicit option (``SamplingOptions(compile=True)``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .config import SamplingOptions

if TYPE_CHECKING:  # torch is imported when a preset is resolved, not by `audiosr --help`
    import torch

log = logging.getLogger(__name__)

# Fields of SamplingOptions each preset sets; "auto" precision is resolved per device.
PRESETS: dict[str, dict[str, Any]] = {
    "upstream": {
        "steps": 50,
        "guidance_scale": 3.5,
        "sampler": "ddim",
        "precision": "fp32",
        "attention": "math",
        "batched_cfg": True,
        "channels_last": False,
        "tf32": True,
    },
    "quality": {
        "steps": 50,
        "guidance_scale": 3.5,
        "sampler": "ddim",
        "precision": "fp32",
        "attention": "sdpa",
        "batched_cfg": True,
        "channels_last": True,
        "tf32": False,
    },
    "fast": {
        "steps": 10,
        "guidance_scale": 3.5,
        "sampler": "unipc",
        "precision": "auto",
        "attention": "sdpa",
        "batched_cfg": True,
        "channels_last": True,
        "tf32": True,
    },
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def preset_options(
    name: str, device: torch.device | str = "cpu", **overrides: Any
) -> SamplingOptions:
    """The :class:`SamplingOptions` of preset ``name`` on ``device``.

    Args:
        name: ``upstream``, ``quality`` or ``fast``.
        device: the device the networks will run on (resolves ``precision="auto"``: bf16
            where that very device runs it natively, see
            :func:`~audiosr.engines.diffusion.precision.auto_precision`).
        **overrides: fields to set on top of the preset (explicit CLI flags); a value of None
            keeps the preset's.

    Raises:
        ValueError: unknown preset name or invalid option value.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    fields = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    if fields["precision"] == "auto":
        from .engines.diffusion.precision import auto_precision

        fields["precision"] = auto_precision(device)
    return SamplingOptions(**fields)
