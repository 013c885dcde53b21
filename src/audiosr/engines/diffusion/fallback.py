"""Full-resolution stages item by item, with an fp32 retry for fp16 overflow.

fp16 has a 65504 ceiling that convolutional VAEs are known to exceed on some inputs (bf16
shares fp32's range and cannot overflow). An fp16 item whose output is not finite is
recomputed in fp32, with a warning, instead of spreading NaN into the audio. When the weights
themselves are stored in half precision, the retry runs on a temporary fp32 upcast of the
stage's weights (exact: every half value is an fp32 value) and puts the half weights back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

# Items per encoder/decoder/vocoder call. Their activations are full-resolution (a 128-channel
# 512 x 256 map is 67 MB in fp32 per 5.12 s item), so one at a time keeps peak memory independent
# of the batch at no cost in speed: these convolutions saturate the device at batch 1.
ITEMS_PER_CALL = 1

StageFn = Callable[..., Tensor | tuple[Tensor, ...]]


@contextlib.contextmanager
def fp32_weights(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Upcast half-precision parameters and buffers of ``modules`` to fp32 for the block."""
    saved: list[tuple[Tensor, Tensor]] = []
    with torch.inference_mode(False), torch.no_grad():
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                if tensor.dtype in (torch.float16, torch.bfloat16):
                    saved.append((tensor, tensor.data))
                    tensor.data = tensor.data.float()
    try:
        yield
    finally:
        with torch.inference_mode(False), torch.no_grad():
            for tensor, data in saved:
                tensor.data = data


def _as_fp32(out: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(o.float() for o in (out if isinstance(out, tuple) else (out,)))


def run_per_item(
    fn: StageFn,
    inputs: Tensor,
    *,
    stage: str,
    fp16: bool,
    eager: StageFn | None = None,
    modules: Iterable[nn.Module] = (),
    **kwargs: str,
) -> tuple[Tensor, ...]:
    """Run a full-resolution stage :data:`ITEMS_PER_CALL` items at a time; fp32 results.

    Args:
        fn: the stage function (maybe compiled).
        inputs: [B, ...] the stage's input.
        stage: its name (for the warning).
        fp16: the stage runs in fp16 autocast: check every output for overflow.
        eager: the uncompiled function for the fp32 retry (default ``fn``).
        modules: the stage's modules, upcast to fp32 for the retry if stored in half.
        **kwargs: passed to ``fn``.

    Returns:
        The stage's output(s), each concatenated over the batch, as fp32.
    """
    modules = list(modules)
    parts: list[tuple[Tensor, ...]] = []
    for i in range(0, inputs.shape[0], ITEMS_PER_CALL):
        x = inputs[i : i + ITEMS_PER_CALL]
        outs = _as_fp32(fn(x, **kwargs))
        if fp16 and not all(torch.isfinite(o).all() for o in outs):
            log.warning("fp16 overflow in the %s: item %d recomputed in fp32", stage, i)
            with torch.autocast(x.device.type, enabled=False), fp32_weights(modules):
                outs = _as_fp32((eager or fn)(x.float(), **kwargs))
        parts.append(outs)
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))
