"""A stand-in accelerator for CPU-only tests: the engine's device is ``meta``.

``meta`` tensors have shapes and dtypes but no data, so the networks "run" there instantly while
the exact DSP runs for real on the CPU host. :class:`StandInDevice` (a TorchDispatchMode) sees
every operator call and

* raises :class:`Fp64OnDevice` as soon as an operator creates a float64/complex128 tensor on the
  device (what Apple's MPS cannot hold), naming the operator;
* answers copies from the device back to the host with zeros of the right shape and dtype (the
  data a real device would return is not needed by these tests);
* counts host-to-device copies of the given weight tensors (offload and re-move checks).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten
DEVICE = torch.device("meta")
NO_FP64 = (torch.float64, torch.complex128)


class Fp64OnDevice(AssertionError):
    pass


class StandInDevice(TorchDispatchMode):
    """Args: weights: host tensors whose copies to the device are counted; device: the device
    that must not hold fp64 (``meta``, or a real accelerator in the ``gpu`` tests)."""

    def __init__(self, weights: list[torch.Tensor] = (), device: torch.device = DEVICE) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.weight_ptrs = {w.data_ptr() for w in weights}
        self.weight_moves = 0
        self.ops_on_device = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        src = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if src is not None and func.overloadpacket in (aten.to, aten._to_copy):
            extras = [*args[1:], *kwargs.values()]
            devices = [torch.device(a) for a in extras if isinstance(a, torch.device)]
            target = devices[0] if devices else src.device
            if src.device == DEVICE and target.type == "cpu":  # meta has no data to copy
                dtypes = [a for a in extras if isinstance(a, torch.dtype)]
                return torch.zeros(src.shape, dtype=dtypes[0] if dtypes else src.dtype)
            if src.device.type == "cpu" and target.type == self.device.type:
                if src.data_ptr() in self.weight_ptrs:
                    self.weight_moves += 1
        if func is aten.copy_.default and args[0].device.type == "cpu" and args[1].is_meta:
            return args[0].zero_()
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == self.device.type:
                self.ops_on_device += 1
                if t.dtype in NO_FP64:
                    raise Fp64OnDevice(f"{func} created a {t.dtype} tensor on the device")
        return out
