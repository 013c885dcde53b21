"""Precision policy: which dtype each stage runs in, TF32, and what "auto" means per device.

Half precision is autocast per stage (weights stay as loaded). Measured against fp32 with the
same inputs (``bench_speed.py --stage-errors``, 1.28 s): each network alone in bf16 keeps 30-49
dB SNR (full size, random weights: encoder 36, UNet 38, decoder 30, vocoder 49; tiny golden
model: 30/36/28/46), fp16 ~18 dB more (tiny: 45-63 dB), nothing overflowed. End to end (full
size, DDIM 3 steps, CFG 3.5) one bf16 stage costs the latent 42-52 dB and all four together 41
dB (latent), 51 dB (mel), 63 dB (waveform): no network dominates, so by default every stage
honours the requested precision (``SamplingOptions.half_stages``). Inside them, only the
vocoder's first and last convolution gained from fp32 (49 -> 54 dB full size) and stay fp32
(``FP32Conv1d``). The DSP around the networks (front end, sampler arithmetic, merges) always
runs in fp32/fp64.

TF32 (CUDA only): ``SamplingOptions.tf32`` sets both the matmul precision ("high" = TF32
allowed, "highest" = full fp32) and cuDNN's convolution TF32 switch for the duration of a call,
then restores them. The presets choose it (``audiosr/presets.py``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from ...config import PRECISIONS, STAGES

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def stage_dtype(stage: str, precision: str, half_stages: tuple[str, ...] = STAGES) -> torch.dtype:
    """The dtype a stage's matmuls/convolutions run in for a requested precision.

    Args:
        stage: one of :data:`~audiosr.config.STAGES`.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        half_stages: the stages allowed to run in half precision.
    """
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return DTYPES[precision] if stage in half_stages else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """An autocast region for a half ``dtype``; nothing for fp32 (any device, ``meta`` too)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def float32_policy(tf32: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 for CUDA fp32 matmuls and convolutions inside the block.

    Both switches are process-wide in PyTorch, so they are set on entry and restored on exit.
    They have no effect off CUDA.
    """
    matmul = torch.get_float32_matmul_precision()
    cudnn = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn


def bf16_native(device: torch.device | str) -> bool:
    """Whether ``device`` itself runs bf16 natively (not the current CUDA device: the one asked).

    CUDA: compute capability 8.0 or newer (Ampere, Hopper). CPU: AVX512-BF16. Other devices:
    False (fp32 is the safe choice there).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_capability(index) >= (8, 0)
    if dev.type == "cpu":
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    return False


def auto_precision(device: torch.device | str) -> str:
    """What ``precision="auto"`` (the fast preset) means on ``device``.

    CUDA: bf16 where native, else fp16 (Turing and older have fp16 tensor cores). CPU: bf16
    where native, else fp32 (emulated half precision is slower than fp32). MPS: fp32.
    """
    dev = torch.device(device)
    if bf16_native(dev):
        return "bf16"
    return "fp16" if dev.type == "cuda" else "fp32"
