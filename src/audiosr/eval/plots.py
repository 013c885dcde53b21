"""Spectrogram pictures: input / output(s) / reference side by side, as in AudioSR's README.

Every panel shares one colour scale (dB relative to the loudest bin of all panels), one
frequency axis (linear, 0 Hz to Nyquist) and one time axis, so a missing band reads as a dark
area of the same colour in every panel. matplotlib is an optional dependency (the ``eval``
extra): it is imported inside the functions, and figures are made without pyplot and saved
with the Agg renderer, so importing this module needs neither a display nor matplotlib.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioSRError

log = logging.getLogger(__name__)

N_FFT = 2048  # samples (42.7 ms at 48 kHz; 23.4 Hz bins)
HOP_LENGTH = 512  # samples
MAX_COLUMNS = 1600  # time columns per panel; longer inputs average neighbouring frames
DYNAMIC_RANGE_DB = 100.0  # colour scale spans [peak - 100 dB, peak]
FRAMES_PER_BLOCK = 4096  # STFT frames computed at once (bounds memory on hour-long inputs)


def _mono(audio: np.ndarray) -> np.ndarray:
    """``[T]`` or ``[C, T]`` -> ``[T]`` float64 (channel mean: what a listener hears summed)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1:
        raise ValueError(f"a panel must be audio of shape [T] or [C, T], got {x.shape}")
    return x


def spectrogram_db(audio: np.ndarray, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, float]:
    """Power spectrogram in dB for display, at most ``max_columns`` frames wide.

    A Hann-windowed STFT (2048 samples, hop 512). Files long enough to give more than
    ``max_columns`` frames have groups of consecutive frames averaged in power, so an hour of
    audio costs a few blocks of memory and still shows every sound in its column.

    Args:
        audio: ``[T]`` or ``[C, T]`` samples (channels are averaged).
        max_columns: most time columns returned.

    Returns:
        ``(db [F=1025, columns], samples_per_column)``, with ``db = 10 log10(power + 1e-20)``
        and ``samples_per_column`` the hop of one column in samples.
    """
    x = _mono(audio)
    if x.shape[0] < N_FFT:
        x = np.pad(x, (0, N_FFT - x.shape[0]))
    n_frames = 1 + (x.shape[0] - N_FFT) // HOP_LENGTH
    group = max(1, math.ceil(n_frames / max_columns))
    window = np.hanning(N_FFT + 1)[:-1]  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH]
    columns: list[np.ndarray] = []
    step = max(group, (FRAMES_PER_BLOCK // group) * group)  # whole groups per block
    for start in range(0, n_frames, step):
        block = frames[start : start + step] * window
        power = np.abs(np.fft.rfft(block, axis=-1)) ** 2  # [frames, F]
        n_groups = math.ceil(power.shape[0] / group)
        pad = n_groups * group - power.shape[0]
        if pad:  # the last, partial group averages only the frames it has
            counts = np.full(n_groups, group, dtype=np.float64)
            counts[-1] = group - pad
            power = np.pad(power, ((0, pad), (0, 0)))
            columns.append(power.reshape(n_groups, group, -1).sum(axis=1) / counts[:, None])
        else:
            columns.append(power.reshape(n_groups, group, -1).mean(axis=1))
    power = np.concatenate(columns, axis=0).T  # [F, columns]
    return 10.0 * np.log10(power + 1e-20), float(group * HOP_LENGTH)


def new_figure(**kwargs: Any) -> Any:
    """A ``matplotlib.figure.Figure`` outside pyplot (PNG output renders with Agg).

    Not going through pyplot leaves the caller's backend and figure list alone (a notebook or
    GUI keeps working) and needs no ``close``: the figure is freed with its last reference.

    Raises:
        AudioSRError: matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise AudioSRError(
            "plots need matplotlib: pip install 'audiosr-forge[eval]' (or pip install matplotlib)"
        ) from None
    return Figure(**kwargs)


def save_spectrogram_comparison(
    panels: Sequence[tuple[str, np.ndarray]],
    sample_rate: int,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    cutoff_hz: float | None = None,
) -> Path:
    """Draw one spectrogram per panel, side by side, into a PNG.

    Args:
        panels: ``(label, audio)`` pairs in display order; audio is ``[T]`` or ``[C, T]`` at
            ``sample_rate`` (channels are averaged). Lengths may differ; the time axes are
            shared, so shorter panels end early.
        sample_rate: of every panel, in Hz (resample first; the frequency axis goes from 0 to
            ``sample_rate / 2``).
        path: output PNG; parent folders are created.
        title: figure title (e.g. file name and degradation).
        cutoff_hz: draw a dashed line at the input cutoff, in Hz.

    Returns:
        The path written.

    Raises:
        ValueError: no panels.
        AudioSRError: matplotlib is not installed.
    """
    if not panels:
        raise ValueError("save_spectrogram_comparison needs at least one (label, audio) panel")
    specs = [(label, *spectrogram_db(audio)) for label, audio in panels]
    # One colour scale for all panels: a band one engine fills and another leaves empty must
    # look different, which per-panel scaling would hide.
    peak = max(float(db.max()) for _, db, _ in specs)
    nyquist_khz = sample_rate / 2000
    n = len(specs)
    fig = new_figure(figsize=(3.0 * n + 1.0, 3.6), layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)
    image = None
    widths_s = [db.shape[1] * hop / sample_rate for _, db, hop in specs]
    for ax, (label, db, _), width_s in zip(axes[0], specs, widths_s):
        image = ax.imshow(
            db - peak,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-DYNAMIC_RANGE_DB,
            vmax=0.0,
            extent=(0.0, width_s, 0.0, nyquist_khz),
            interpolation="nearest",
        )
        if cutoff_hz is not None and 0 < cutoff_hz < sample_rate / 2:
            ax.axhline(cutoff_hz / 1000, color="white", lw=0.7, ls="--", alpha=0.6)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_xlim(0.0, max(widths_s))
    axes[0][0].set_ylabel("frequency (kHz)")
    fig.colorbar(image, ax=axes[0].tolist(), label="dB re loudest bin", pad=0.01, fraction=0.03)
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def save_file_comparison(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    cutoff_hz: float | None = None,
) -> Path:
    """Input / output spectrograms of one upsampled file (the CLI's ``--plot``).

    The input is resampled to the output's rate (soxr), so the band it lacks shows as the
    empty top of its panel.

    Args:
        src: the input file (any format and rate).
        dst: the output file (48 kHz).
        path: PNG to write; default ``dst`` with the suffix ``.png`` (``<output stem>.png``).
        cutoff_hz: the input cutoff, drawn as a dashed line (Hz).

    Returns:
        The path written.
    """
    from ..audio_io import read_audio, resample

    x, sr_in = read_audio(src)
    y, sr_out = read_audio(dst)
    if sr_in != sr_out:
        x = resample(x, sr_in, sr_out)
    out = Path(path) if path is not None else Path(dst).with_suffix(".png")
    title = f"{Path(src).name} ({sr_in} Hz) -> {Path(dst).name} ({sr_out} Hz)"
    panels = [(f"input ({sr_in / 1000:g} kHz)", x), ("output", y)]
    return save_spectrogram_comparison(panels, sr_out, out, title=title, cutoff_hz=cutoff_hz)
