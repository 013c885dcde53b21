"""Was anything the input had lost? Third-octave levels of an output against its input.

The pipeline's promise (issue 9): the missing band is generated and everything the input
already had is kept. This measures it per channel, on third-octave bands (IEC 61260 base-10
centres from 1 to 20 kHz) of the long-term spectrum (Welch, Hann, 4096-sample frames at 48 kHz):

* a band *has content* when the input's level there lies within ``edge_db`` (80) dB of its
  loudest band and ``floor_margin_db`` (6) dB above its noise floor (the 5th percentile of its
  fine spectrum, dB per bin, from 1 kHz to 95 % of the input's own Nyquist), and the band lies
  below that 95 %;
* the *loss* is the largest amount (dB) by which the output lies under the input over those
  bands (0 when it is nowhere weaker).

Used by ``tests/test_keep_real.py`` and ``benchmarks/bench_keep.py``.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

SAMPLE_RATE = 48_000  # Hz
# Third-octave band centres (Hz), 1 kHz to 20 kHz.
CENTRES = 1000.0 * 10.0 ** (np.arange(0, 14) / 10.0)
_NPERSEG = 4096


def third_octave_levels(
    x: np.ndarray, nyquist_hz: float = SAMPLE_RATE / 2
) -> tuple[np.ndarray, np.ndarray]:
    """Third-octave levels of ``x`` ``[C, T]`` (or ``[T]``) at 48 kHz.

    Returns:
        ``(levels [C, len(CENTRES)] in dB, noise floor [C] in dB)``; the floor is read from
        1 kHz to 95 % of ``nyquist_hz``.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    f, p = signal.welch(x, SAMPLE_RATE, window="hann", nperseg=min(_NPERSEG, x.shape[-1]), axis=-1)
    levels = np.full((x.shape[0], len(CENTRES)), -300.0)
    for i, fc in enumerate(CENTRES):
        sel = (f >= fc * 2 ** (-1 / 6)) & (f < fc * 2 ** (1 / 6))
        if sel.any():
            levels[:, i] = 10 * np.log10(np.maximum(p[:, sel].mean(axis=-1), 1e-30))
    fine = 10 * np.log10(np.maximum(p[:, (f >= 1000.0) & (f <= 0.95 * nyquist_hz)], 1e-30))
    floor = np.percentile(fine, 5.0, axis=-1) if fine.shape[-1] else np.full(x.shape[0], -300.0)
    return levels, floor


def content_loss_db(
    reference: np.ndarray,
    output: np.ndarray,
    nyquist_hz: float = SAMPLE_RATE / 2,
    *,
    edge_db: float = 80.0,
    floor_margin_db: float = 6.0,
) -> np.ndarray:
    """Per channel, the largest loss (dB, >= 0) of ``output`` against ``reference`` over the
    bands where the reference has content (module docstring).

    Args:
        reference: the input at 48 kHz, ``[C, T]`` or ``[T]``.
        output: the result, same shape.
        nyquist_hz: the input's own Nyquist before resampling to 48 kHz (bands above 95 % of
            it are not the input's).

    Returns:
        ``[C]`` float64.
    """
    lx, floor = third_octave_levels(reference, nyquist_hz)
    ly, _ = third_octave_levels(output, nyquist_hz)
    if lx.shape != ly.shape:
        raise ValueError(f"shapes differ: {np.shape(reference)} vs {np.shape(output)}")
    usable = CENTRES * 2 ** (1 / 6) <= 0.95 * nyquist_hz
    worst = np.zeros(lx.shape[0])
    if not usable.any():
        return worst
    for c in range(lx.shape[0]):
        content = usable & (lx[c] >= lx[c, usable].max() - edge_db)
        content &= lx[c] >= floor[c] + floor_margin_db
        if content.any():
            worst[c] = max(0.0, float((lx[c, content] - ly[c, content]).max()))
    return worst
