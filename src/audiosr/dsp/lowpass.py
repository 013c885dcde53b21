"""Low-pass simulation that builds the conditioning waveform (spec §4).

AudioSR conditions its diffusion model on a band-limited copy of the input, made the way its
training inputs were degraded: an order-8 IIR low-pass at the detected cutoff (random family),
applied forward-backward, then a polyphase resampling round trip through 2x the cutoff (the
upstream function calls it ``stft_hard_lowpass``), then the zero-phase filter again. The
filtering runs in fp64 in scipy (as in the original) and the result is rounded to fp32.

Divergences from the original, both documented where they apply:

* Near-silent input: the original replaces a cutoff below 1 kHz by 24 kHz, which makes every
  scipy design raise (``Wn`` must be < 1). :func:`simulate_lowpass` returns such inputs
  unfiltered instead.
* The family is drawn from numpy's global RNG right after ``np.random.seed(seed)`` upstream;
  :func:`draw_filter_family` reproduces that draw with a private ``RandomState``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.signal
import torch
from torch import Tensor

log = logging.getLogger(__name__)

FILTER_FAMILIES = ("butter", "cheby1", "ellip", "bessel")
DEFAULT_ORDER = 8
MIN_CUTOFF_HZ = 1000.0  # below this the original treats the input as (almost) empty
_RIPPLE_DB = 0.1  # cheby1 / ellip passband ripple
_STOPBAND_DB = 60.0  # ellip stopband attenuation


def draw_filter_family(seed: int) -> str:
    """The family the original draws with ``np.random.choice`` right after seeding with ``seed``.

    Upstream ``seed_everything(seed)`` calls ``np.random.seed(seed)`` and the low-pass family
    is the first numpy draw after it; a fresh ``RandomState(seed)`` gives the same draw
    without touching numpy's global state (e.g. 42 -> ellip, 0 -> butter, 1 -> cheby1).
    """
    return str(np.random.RandomState(seed).choice(FILTER_FAMILIES))


def design_lowpass(
    family: str, order: int, cutoff_hz: float, sample_rate: int = 48_000
) -> np.ndarray:
    """Digital low-pass in second-order sections, as the original designs it.

    The cutoff is truncated to whole Hz and normalised by the Nyquist frequency in fp64
    (``Wn = int(cutoff_hz) / (sample_rate / 2)``); the order is clipped to [2, 10].

    Args:
        family: one of :data:`FILTER_FAMILIES` (butter; cheby1 0.1 dB ripple; ellip 0.1 dB
            ripple / 60 dB stopband; bessel with scipy's default ``norm="phase"``).
        order: filter order.
        cutoff_hz: cutoff in Hz, 0 < int(cutoff_hz) < sample_rate / 2.
        sample_rate: sampling rate in Hz.

    Returns:
        [n_sections, 6] float64 ``sos`` array.
    """
    order = int(np.clip(order, 2, 10))
    wn = int(cutoff_hz) / (0.5 * sample_rate)
    if not 0.0 < wn < 1.0:
        raise ValueError(
            f"cutoff {cutoff_hz} Hz must lie strictly between 1 Hz and Nyquist "
            f"({sample_rate / 2} Hz)"
        )
    if family == "butter":
        return scipy.signal.butter(order, wn, btype="low", output="sos")
    if family == "cheby1":
        return scipy.signal.cheby1(order, _RIPPLE_DB, wn, btype="low", output="sos")
    if family == "ellip":
        return scipy.signal.ellip(order, _RIPPLE_DB, _STOPBAND_DB, wn, btype="low", output="sos")
    if family == "bessel":
        return scipy.signal.bessel(order, wn, btype="low", output="sos")
    raise ValueError(f"unknown filter family {family!r}; choose one of {FILTER_FAMILIES}")


def resample_down_rate(cutoff_hz: float, sample_rate: int = 48_000) -> int:
    """Intermediate rate of the resampling round trip: ``int(Wn * sample_rate)`` in fp64.

    Equals 2 * int(cutoff_hz), or one less for some cutoffs because of the fp64 product
    (57 of the 1024 possible cutoff bins at 48 kHz); kept for fidelity.
    """
    wn = int(cutoff_hz) / (0.5 * sample_rate)
    return int(wn * sample_rate)


@contextlib.contextmanager
def _blocked_modules_hidden() -> Iterator[None]:
    """Temporarily drop ``None`` entries from ``sys.modules``; put them back afterwards.

    Hosts block optional libraries with ``sys.modules["cupy"] = None``. scipy's array-API
    layer (``resample_poly`` in scipy 1.15+) tells array types apart by looking up
    ``sys.modules["cupy"]``, ``["jax"]``, ``["sparse"]``, ... and takes ``None`` for a loaded
    module (``'NoneType' object has no attribute 'ndarray'``). Nothing is imported here.
    """
    blocked = [name for name, module in list(sys.modules.items()) if module is None]
    for name in blocked:
        sys.modules.pop(name, None)
    try:
        yield
    finally:
        for name in blocked:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def resample_poly(x: np.ndarray, up: int, down: int, axis: int = 0) -> np.ndarray:
    """``scipy.signal.resample_poly(x, up, down, axis=axis)`` (its defaults), also on hosts
    that block modules with ``sys.modules[name] = None`` (see :func:`_blocked_modules_hidden`)."""
    try:
        return scipy.signal.resample_poly(x, up, down, axis=axis)
    except AttributeError:
        if not any(module is None for module in list(sys.modules.values())):
            raise
    with _blocked_modules_hidden():
        return scipy.signal.resample_poly(x, up, down, axis=axis)


def _fit_length(y: np.ndarray, length: int) -> np.ndarray:
    """Crop, or zero-pad at the end, to ``length`` samples."""
    if len(y) >= length:
        return y[:length]
    return np.pad(y, (0, length - len(y)))


@dataclass(frozen=True)
class LowpassStages:
    """Intermediate fp64 signals of one item, for tests and debugging.

    Attributes:
        sos: [n_sections, 6] filter.
        fs_down: intermediate rate in Hz of the resampling round trip.
        stage1: [L] first zero-phase filtering of the input.
        stage2: [L] after the resampling round trip (cropped/padded to L).
        stage3: [L] after the second zero-phase filtering.
    """

    sos: np.ndarray
    fs_down: int
    stage1: np.ndarray
    stage2: np.ndarray
    stage3: np.ndarray


def lowpass_stages(
    wave: np.ndarray,
    cutoff_hz: float,
    family: str,
    order: int = DEFAULT_ORDER,
    sample_rate: int = 48_000,
) -> LowpassStages:
    """Run the three stages of the original on one fp32/fp64 signal (numpy, fp64 inside).

    Args:
        wave: [L] samples.
        cutoff_hz: cutoff in Hz (MIN_CUTOFF_HZ <= cutoff < sample_rate / 2).
        family: filter family.
        order: filter order.
        sample_rate: sampling rate in Hz.

    Returns:
        The stages, see :class:`LowpassStages`.
    """
    sos = design_lowpass(family, order, cutoff_hz, sample_rate)
    stage1 = scipy.signal.sosfiltfilt(sos, wave)
    fs_down = resample_down_rate(cutoff_hz, sample_rate)
    down = resample_poly(stage1, fs_down, sample_rate)
    stage2 = _fit_length(resample_poly(down, sample_rate, fs_down), len(stage1))
    stage3 = _fit_length(scipy.signal.sosfiltfilt(sos, stage2), len(stage1))
    return LowpassStages(sos, fs_down, stage1, stage2, stage3)


def simulate_lowpass(
    wave: Tensor,
    cutoff_hz: float,
    family: str,
    order: int = DEFAULT_ORDER,
    sample_rate: int = 48_000,
) -> Tensor:
    """Band-limit ``wave`` like the original's ``lowpass_filtering_prepare_inference``.

    Each item: ``sosfiltfilt`` -> ``resample_poly`` down to ``int(Wn * sample_rate)`` Hz and
    back (Kaiser window, beta 5) -> ``sosfiltfilt``, lengths kept, fp64 inside, fp32 out.

    Divergence: a cutoff below 1 kHz (near-silent input) crashes the original (its 24 kHz
    fallback is an invalid design); here the input is returned unfiltered, with a warning.

    Args:
        wave: [B, L] waveform (fp32); processed on the CPU.
        cutoff_hz: cutoff in Hz (the detected band limit).
        family: one of :data:`FILTER_FAMILIES`.
        order: filter order (8 in the original).
        sample_rate: sampling rate in Hz.

    Returns:
        [B, L] float32 on wave's device.
    """
    if family not in FILTER_FAMILIES:
        raise ValueError(f"unknown filter family {family!r}; choose one of {FILTER_FAMILIES}")
    if cutoff_hz < MIN_CUTOFF_HZ:
        log.warning(
            "cutoff %.1f Hz < %.0f Hz (near-silent input): low-pass simulation skipped",
            cutoff_hz,
            MIN_CUTOFF_HZ,
        )
        return wave.to(torch.float32).clone()
    x = wave.detach().to("cpu", torch.float32).numpy()
    out = np.stack([lowpass_stages(row, cutoff_hz, family, order, sample_rate).stage3 for row in x])
    return torch.from_numpy(out.astype(np.float32)).to(wave.device)
