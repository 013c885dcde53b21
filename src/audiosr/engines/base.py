"""Engine interface (placeholder until the engines module lands)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Engine(Protocol):
    name: str

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor: ...


class SincEngine:
    name = "sinc"

    def __call__(self, audio: Tensor, cutoff_hz: Tensor) -> Tensor:
        return audio.clone()
