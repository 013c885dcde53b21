"""Where tensors live: the device the networks run on, the host for exact DSP, and offload.

The rule (README, "Devices"): the networks and their fp32 tensor work (mel front end of the
condition is host DSP too) run on :attr:`Placement.device`; every exact fp64/complex128 step
(cutoff heuristics, the original's low-pass simulation, the librosa-order STFT merge) runs on
:attr:`Placement.host`, the CPU. Those steps are cheap next to the networks and Apple's MPS has
no float64 at all, so nothing float64 is ever created on the device. ``tests/test_devices.py``
checks this with a dispatch mode on a stand-in device.

Offload keeps the weights in (pinned) host memory and moves a stage's modules to the device for
the duration of a ``with resident(...)`` block only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

HOST = torch.device("cpu")


def normalize_device(device: torch.device | str) -> torch.device:
    """The device as tensors on it report it: ``cuda`` -> ``cuda:<current>``, ``mps`` -> ``mps:0``.

    ``torch.device("mps") != torch.device("mps:0")`` although tensors created on the first
    report the second; comparing un-normalised devices made every stage re-move its weights.
    """
    dev = torch.device(device)
    if dev.index is not None or dev.type in ("cpu", "meta"):
        return dev
    if dev.type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(dev.type, 0)


@dataclass(frozen=True)
class Placement:
    """The two places of a run.

    Attributes:
        device: where the networks, the sampler and other fp32 tensor work run (normalised).
        host: where the exact fp64 DSP runs; always the CPU.
    """

    device: torch.device
    host: torch.device = field(default=HOST)

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", normalize_device(self.device))
        if self.host != HOST:
            raise ValueError(f"the DSP host must be the CPU, got {self.host}")

    def generator_device(self) -> torch.device:
        """Where the device-side random draws are made: the device, or the CPU for devices
        without a generator of their own (``meta``, the shape-only stand-in of the tests)."""
        return HOST if self.device.type in ("cpu", "meta") else self.device


def _tensors(module: nn.Module) -> Iterator[Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for an empty module)."""
    for tensor in _tensors(module):
        return tensor.device
    return HOST


def is_resident(module: nn.Module, device: torch.device) -> bool:
    """True when every parameter and buffer of ``module`` is on ``device`` (normalised)."""
    device = normalize_device(device)
    return all(t.device == device for t in _tensors(module))


def pin_host_weights(module: nn.Module) -> None:
    """Copy the weights into page-locked host memory, so offload copies can be asynchronous.

    Only meaningful for a CUDA target; the weights of a memory-mapped checkpoint are read once
    here instead of page by page on every transfer.
    """
    with torch.inference_mode(False), torch.no_grad():
        for tensor in _tensors(module):
            if tensor.device.type == "cpu" and not tensor.is_pinned():
                tensor.data = tensor.data.pin_memory()


@contextlib.contextmanager
def resident(modules: Iterable[nn.Module], device: torch.device, offload: bool) -> Iterator[None]:
    """Keep ``modules`` on ``device`` for the block.

    A module found elsewhere is moved; without ``offload`` it stays there afterwards (moved
    once, on first use), with ``offload`` the host tensors are put back when the block ends
    (weights never change during inference, so nothing is copied back) and the device copies
    are freed. Moves run outside inference mode, so the parameters never become inference
    tensors, and are non-blocking (from pinned memory, see :func:`pin_host_weights`).
    """
    to_move = [m for m in modules if not is_resident(m, device)]
    if not to_move:
        yield
        return
    # Module.to() moves a parameter in place (same object, new .data) when the two tensor types
    # allow it and replaces the object otherwise: remember both the object and its data.
    saved = [
        (slots, name, tensor, tensor.data)
        for module in to_move
        for m in module.modules()
        for slots in (m._parameters, m._buffers)
        for name, tensor in slots.items()
        if tensor is not None
    ]
    with torch.inference_mode(False), torch.no_grad():
        for module in to_move:
            module.to(device, non_blocking=True)
    try:
        yield
    finally:
        if offload:
            with torch.inference_mode(False), torch.no_grad():
                for slots, name, tensor, data in saved:
                    tensor.data = data
                    slots[name] = tensor
