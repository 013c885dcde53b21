"""Seeded, recorded degradations that turn a 48 kHz reference into a band-limited input.

Each :class:`Degradation` is a frozen record whose ``name`` (e.g. ``"lowpass-cheby1-o8-4000"``)
keys result tables; :func:`apply` is deterministic given the record, and
:func:`default_degradations` draws filter families and orders from an explicit
``numpy.random.Generator``, so a benchmark is reproducible from its seed alone.

Kinds:

* ``lowpass``: zero-phase IIR low-pass (``scipy.signal.sosfiltfilt``, float64) with the filter
  families AudioSR was trained with (Liu et al., ICASSP 2024, §3.1, after NVSR): Butterworth,
  Chebyshev I (0.1 dB ripple), elliptic (0.1 dB ripple, 60 dB stop band) and Bessel (scipy's
  default phase normalisation, as upstream), orders 2 to 10, cutoff 2 to 16 kHz (the nominal
  ``Wn``; a Bessel filter's -6 dB point sits at about 0.5 to 0.8 times it).
* ``resample``: band-limited down-and-up resampling through ``rate`` Hz
  (``scipy.signal.resample_poly``, Kaiser window), i.e. a telephone / old-recording chain.
* ``mp3``, ``opus``, ``vorbis``: a real encode/decode through libsndfile (soundfile >= 0.12
  exposes ``compression_level`` and ``bitrate_mode``). The decoder delay is estimated by
  cross-correlation and removed so the output lines up sample-exactly with the reference, and
  the codec's own low-pass is measured from the decoded signal.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.signal as ss
import soundfile as sf
import torch
from torch import Tensor

from ..dsp.lowpass import resample_poly

log = logging.getLogger(__name__)

Kind = Literal["lowpass", "resample", "mp3", "opus", "vorbis"]
Family = Literal["butter", "cheby1", "ellip", "bessel"]

KINDS: tuple[str, ...] = ("lowpass", "resample", "mp3", "opus", "vorbis")
FAMILIES: tuple[str, ...] = ("butter", "cheby1", "ellip", "bessel")
RESAMPLE_RATES: tuple[int, ...] = (8000, 12000, 16000, 24000, 32000)  # Hz
MP3_BITRATES: tuple[int, ...] = (32, 64, 128)  # kbps, constant bit rate
OPUS_BITRATES: tuple[int, ...] = (8, 12, 24)  # kbps per channel
VORBIS_QUALITIES: tuple[float, ...] = (0.0, 0.3)  # libsndfile quality, 0 (low) to 1 (high)

# libsndfile maps compression_level c to an MP3 bit rate of about 320 - 288 c kbps (snapped to
# the nearest MPEG-1 rate) and to an Opus rate of about 6 + 250 (1 - c) kbps per channel; it
# rejects c = 1.0 for MP3, so the top is kept just below it.
_MP3_MAX_LEVEL = 0.99
_MAX_DELAY = 8192  # samples searched on each side when re-aligning decoded audio


@dataclass(frozen=True)
class Degradation:
    """One degradation, fully specified so it can be re-applied and looked up by name.

    Attributes:
        kind: "lowpass", "resample", "mp3", "opus" or "vorbis".
        cutoff_hz: nominal low-pass cutoff in Hz (``lowpass`` only).
        family: IIR family for ``lowpass``: "butter", "cheby1", "ellip" or "bessel".
        order: IIR order for ``lowpass``, 2 to 10.
        rate: intermediate sample rate in Hz for ``resample``.
        bitrate_kbps: constant bit rate for ``mp3`` (kbps), target rate per channel for
            ``opus`` (kbps, 6 to 256).
        quality: Vorbis quality in [0, 1] (libsndfile's scale; 0 is about 64 kbps stereo).
    """

    kind: str = "lowpass"
    cutoff_hz: float | None = None
    family: str = "butter"
    order: int = 8
    rate: int | None = None
    bitrate_kbps: int | None = None
    quality: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown degradation kind {self.kind!r}; choose one of {KINDS}")
        if self.kind == "lowpass":
            if self.family not in FAMILIES:
                raise ValueError(f"unknown filter family {self.family!r}; choose one of {FAMILIES}")
            if not 2 <= self.order <= 10:
                raise ValueError(f"filter order must be in [2, 10], got {self.order}")
            if self.cutoff_hz is None or not 0 < self.cutoff_hz < 24_000:
                raise ValueError(f"lowpass needs 0 < cutoff_hz < 24000 Hz, got {self.cutoff_hz}")
        elif self.kind == "resample":
            if self.rate is None or not 1000 <= self.rate < 48_000:
                raise ValueError(f"resample needs 1000 <= rate < 48000 Hz, got {self.rate}")
        elif self.kind in ("mp3", "opus"):
            low, high = (32, 320) if self.kind == "mp3" else (6, 256)
            if self.bitrate_kbps is None or not low <= self.bitrate_kbps <= high:
                raise ValueError(
                    f"{self.kind} needs bitrate_kbps in [{low}, {high}], got {self.bitrate_kbps}"
                )
        elif self.quality is None or not 0.0 <= self.quality <= 1.0:
            raise ValueError(f"vorbis needs quality in [0, 1], got {self.quality}")

    @property
    def name(self) -> str:
        """Table key, e.g. ``lowpass-cheby1-o8-4000``, ``resample-16000``, ``mp3-64k``."""
        if self.kind == "lowpass":
            return f"lowpass-{self.family}-o{self.order}-{self.cutoff_hz:g}"
        if self.kind == "resample":
            return f"resample-{self.rate}"
        if self.kind == "vorbis":
            return f"vorbis-q{self.quality:g}"
        return f"{self.kind}-{self.bitrate_kbps}k"


def design_lowpass(family: str, order: int, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """Second-order sections of the training low-pass (same designs as upstream, §4 of the spec).

    Returns:
        SOS array ``[n_sections, 6]`` (float64).
    """
    wn = cutoff_hz / (sample_rate / 2)
    if family == "butter":
        return ss.butter(order, wn, output="sos")
    if family == "cheby1":
        return ss.cheby1(order, 0.1, wn, output="sos")
    if family == "ellip":
        return ss.ellip(order, 0.1, 60, wn, output="sos")
    if family == "bessel":
        return ss.bessel(order, wn, output="sos")
    raise ValueError(f"unknown filter family {family!r}; choose one of {FAMILIES}")


def _lowpass(x: np.ndarray, d: Degradation, sample_rate: int) -> np.ndarray:
    assert d.cutoff_hz is not None
    sos = design_lowpass(d.family, d.order, d.cutoff_hz, sample_rate)
    return ss.sosfiltfilt(sos, x, axis=-1)


def _resample(x: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    g = math.gcd(rate, sample_rate)
    down = resample_poly(x, rate // g, sample_rate // g, axis=-1)
    up = resample_poly(down, sample_rate // g, rate // g, axis=-1)
    return _fit_length(up, x.shape[-1])


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[-1] >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])


def _codec_settings(d: Degradation) -> dict[str, object]:
    """soundfile.write keyword arguments for a codec degradation."""
    if d.kind == "mp3":
        assert d.bitrate_kbps is not None
        level = min((320 - d.bitrate_kbps) / 288, _MP3_MAX_LEVEL)
        return {
            "format": "MP3",
            "subtype": "MPEG_LAYER_III",
            "compression_level": level,
            "bitrate_mode": "CONSTANT",
        }
    if d.kind == "opus":
        assert d.bitrate_kbps is not None
        level = min(max(1 - (d.bitrate_kbps - 6) / 250, 0.0), 1.0)
        return {"format": "OGG", "subtype": "OPUS", "compression_level": level}
    assert d.quality is not None
    return {"format": "OGG", "subtype": "VORBIS", "compression_level": 1.0 - d.quality}


def estimate_delay(decoded: np.ndarray, reference: np.ndarray, max_delay: int = _MAX_DELAY) -> int:
    """Lag (samples) that best aligns ``decoded`` to ``reference`` by cross-correlation.

    Args:
        decoded: ``[C, T1]`` decoded audio.
        reference: ``[C, T]`` reference.
        max_delay: largest lag searched in either direction, in samples.

    Returns:
        ``d`` such that ``decoded[:, t + d]`` matches ``reference[:, t]`` (may be negative).
    """
    n = decoded.shape[-1] + reference.shape[-1]
    size = 1 << (n - 1).bit_length()
    spec = np.fft.rfft(decoded, size, axis=-1) * np.conj(np.fft.rfft(reference, size, axis=-1))
    corr = np.fft.irfft(spec.sum(axis=0), size)  # corr[d] = sum_t dec[t + d] ref[t]
    lags = np.arange(-max_delay, max_delay + 1)
    window = corr[lags % size]
    if not np.any(window > 0):  # silence (or nothing correlated): leave the signal in place
        return 0
    return int(lags[np.argmax(window)])


def _codec(x: np.ndarray, d: Degradation, sample_rate: int) -> np.ndarray:
    """Encode ``x`` [C, T] with a real codec, decode it and re-align it to ``x``."""
    suffix = ".mp3" if d.kind == "mp3" else ".ogg"
    with tempfile.TemporaryDirectory(prefix="audiosr-degrade-") as tmp:
        path = Path(tmp) / f"coded{suffix}"
        try:
            sf.write(path, x.T.astype(np.float32), sample_rate, **_codec_settings(d))  # type: ignore[arg-type]
        except TypeError as err:  # soundfile before 0.13 has no compression_level/bitrate_mode
            raise RuntimeError(
                f"{d.name} needs soundfile >= 0.13 (compression_level and bitrate_mode); "
                f"found {sf.__version__}: pip install -U soundfile"
            ) from err
        decoded, rate = sf.read(path, dtype="float64", always_2d=True)
    if rate != sample_rate:
        raise RuntimeError(f"{d.name}: decoder returned {rate} Hz, expected {sample_rate} Hz")
    decoded = decoded.T
    delay = estimate_delay(decoded, x)
    log.debug("%s: decoded %d samples, delay %d", d.name, decoded.shape[-1], delay)
    if delay >= 0:
        decoded = decoded[:, delay:]
    else:
        decoded = np.pad(decoded, ((0, 0), (-delay, 0)))
    return _fit_length(decoded, x.shape[-1])


def measure_cutoff_hz(
    audio: Tensor | np.ndarray,
    sample_rate: int = 48_000,
    drop_db: float = 6.0,
    cliff_db: float = 20.0,
) -> float:
    """Effective cutoff of band-limited audio, measured from its long-term spectrum.

    The long-term power spectrum (Welch, 2048-sample Hann frames, 75 % overlap, averaged over
    channels) is smoothed over about 150 Hz in dB. The band limit is the lowest frequency
    ``f`` where the mean level over ``[f / 2^(1/4), f)`` exceeds the mean over
    ``[f, f * 2^(1/4))`` by at least ``cliff_db`` and no bin above ``f * 2^(1/4)`` comes back
    within ``cliff_db / 2`` of the level below ``f``. Without such a fall the audio is taken as
    full-band and the Nyquist frequency is returned (a gentle 2nd-order slope is not a band
    limit). Otherwise a line in dB against log-frequency, fitted to the band from ``f / 2.5``
    to ``f / 1.5``, gives the pass-band trend, and the cutoff is the highest frequency up to
    ``f * 2^(1/4)`` that is within ``drop_db`` of that trend. With the default 6 dB this is exactly
    the nominal cutoff of a zero-phase Butterworth low-pass (-3 dB per pass, applied twice).

    Args:
        audio: ``[C, T]`` or ``[T]`` audio.
        sample_rate: in Hz.
        drop_db: level below the pass-band trend that defines the edge, in dB.
        cliff_db: smallest fall across the quarter-octaves around the edge, in dB, that counts
            as a band limit.

    Returns:
        Cutoff in Hz (0.0 for digital silence).
    """
    x = audio.detach().cpu().double().numpy() if isinstance(audio, Tensor) else np.asarray(audio)
    x = np.atleast_2d(x).astype(np.float64)
    n_fft = 2048
    if x.shape[-1] < n_fft:
        x = np.pad(x, ((0, 0), (0, n_fft - x.shape[-1])))
    freqs, psd = ss.welch(x, sample_rate, window="hann", nperseg=n_fft, noverlap=3 * n_fft // 4)
    power = psd.mean(axis=0)
    if not np.any(power > 0):
        return 0.0
    floor = power.max() * 1e-15  # keep digital silence finite in dB (-150 dB re the peak)
    bin_hz = float(freqs[1])
    smooth = max(1, round(150 / bin_hz)) | 1
    level = 10 * np.log10(np.convolve(power, np.ones(smooth) / smooth, "same") + floor)
    csum = np.concatenate([[0.0], np.cumsum(level)])
    n = len(level)
    ratio = 2**0.25
    k = np.arange(max(4, round(500 / bin_hz)), n - 1)
    lo = np.minimum(np.floor(k / ratio).astype(int), k - 2)
    hi = np.maximum(np.minimum(np.ceil(k * ratio).astype(int), n), k + 2)
    below = (csum[k] - csum[lo]) / (k - lo)
    fall = below - (csum[hi] - csum[k]) / (hi - k)
    # Everything above the quarter-octave after a band limit stays low; a dip between
    # harmonics or formants is followed by louder bins and does not count.
    rest = np.maximum.accumulate(level[::-1])[::-1]  # rest[i] = max(level[i:])
    ceiling = rest[np.minimum(hi, n - 1)]
    is_cliff = (fall >= cliff_db) & (ceiling <= below - cliff_db / 2)
    if not np.any(is_cliff):
        return sample_rate / 2
    # The first such fall: past a Butterworth edge every quarter-octave falls by the same
    # asymptotic amount, so the largest fall can lie anywhere in the stop band.
    cliff = int(k[np.argmax(is_cliff)])
    # Pass-band trend, fitted well below the transition band so that neither the spectral
    # tilt of speech or music nor the filter's own roll-in moves the edge.
    band = np.arange(max(1, round(cliff / 2.5)), max(3, round(cliff / 1.5)))
    coef = np.polyfit(np.log2(freqs[band]), level[band], 1)
    # The quarter-octave test fires as soon as part of the upper window is past a sharp
    # edge, so the edge itself is searched up to the end of that window.
    search = np.arange(band[-1], min(n, int(np.ceil(cliff * ratio)) + 1))
    excess = level[search] - (np.polyval(coef, np.log2(freqs[search])) - drop_db)
    inside = np.nonzero(excess >= 0)[0]
    if inside.size == 0:
        return float(freqs[search[0]])
    last = int(inside.max())
    if last + 1 >= len(search):
        return float(freqs[search[last]])
    # Linear interpolation of the crossing between the last bin inside and the next one.
    a, b = excess[last], excess[last + 1]
    return float(freqs[search[last]] + a / (a - b) * bin_hz)


def apply(
    degradation: Degradation, audio: Tensor, sample_rate: int = 48_000
) -> tuple[Tensor, float]:
    """Degrade a reference and report the cutoff of the result.

    Args:
        degradation: what to do.
        audio: reference ``[C, T]`` (or ``[T]``) float at ``sample_rate``.
        sample_rate: in Hz (48000 for this package).

    Returns:
        ``(degraded, cutoff_hz)``: degraded audio with the reference's shape, dtype and device
        (sample-aligned with it), and its cutoff in Hz: the nominal cutoff for ``lowpass``,
        ``rate / 2`` for ``resample`` and the measured one (:func:`measure_cutoff_hz`) for codecs.
    """
    x = audio.detach().cpu().double().numpy()
    squeeze = x.ndim == 1
    x = np.atleast_2d(x)
    d = degradation
    if d.kind == "lowpass":
        y, cutoff = _lowpass(x, d, sample_rate), float(d.cutoff_hz or 0.0)
    elif d.kind == "resample":
        assert d.rate is not None
        y, cutoff = _resample(x, d.rate, sample_rate), d.rate / 2
    else:
        y = _codec(x, d, sample_rate)
        cutoff = measure_cutoff_hz(y, sample_rate)
    out = torch.from_numpy(np.ascontiguousarray(y[0] if squeeze else y))
    return out.to(dtype=audio.dtype, device=audio.device), cutoff


def default_degradations(
    cutoffs: tuple[float, ...] = (4000.0, 8000.0, 12_000.0),
    seed: int = 0,
    codecs: bool = True,
) -> list[Degradation]:
    """The benchmark's degradation set, drawn reproducibly.

    For each cutoff one low-pass with a family drawn uniformly from the four training families
    and an order drawn uniformly from 2..10 (as in training); then every resampling rate and,
    when ``codecs`` is true, MP3, Opus and Vorbis at the module's bit rates.

    Args:
        cutoffs: low-pass cutoffs in Hz.
        seed: seed of the ``numpy.random.Generator`` that draws families and orders.
        codecs: include the codec degradations.

    Returns:
        List of :class:`Degradation`, in a fixed order.
    """
    rng = np.random.default_rng(seed)
    out = [
        Degradation(
            kind="lowpass",
            cutoff_hz=float(c),
            family=FAMILIES[int(rng.integers(len(FAMILIES)))],
            order=int(rng.integers(2, 11)),
        )
        for c in cutoffs
    ]
    out += [Degradation(kind="resample", rate=r) for r in RESAMPLE_RATES]
    if codecs:
        out += [Degradation(kind="mp3", bitrate_kbps=b) for b in MP3_BITRATES]
        out += [Degradation(kind="opus", bitrate_kbps=b) for b in OPUS_BITRATES]
        out += [Degradation(kind="vorbis", quality=q) for q in VORBIS_QUALITIES]
    return out
