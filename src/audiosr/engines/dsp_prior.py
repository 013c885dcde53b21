"""A learned spectral-envelope prior for the offline engine: the high band's level from the low.

Without a transmitted envelope (HE-AAC sends one; we have only the band-limited input) the
level of the missing band must be guessed. :class:`EnvelopePrior` guesses it with small ridge
regressions fitted on real recordings (``data/dsp_prior.npz``, 55 KB, trained by
``tools/dsp_prior/train.py`` on 285 clips from 22 Debian packages, low-passed and also passed
through real codecs (lame, AAC, Vorbis, Opus) and resamplers, each used only at cutoffs below
its own band limit; provenance in ``tools/dsp_prior/README.md``):

1. :func:`describe` the known band of one item from its STFT power (2048-point Hann, hop 512):
   each frame's "anchor" (log10 power of the quarter-octave just below 0.97 x the cutoff), and
   per item 27 features: the median level of 15 third-octaves below the anchor relative to it,
   the spectral flatness of the top octave, anchor spread and step, the share of active
   frames, the mean known-band level over the anchor, the absolute anchor level (mean, max and
   four hinges: quiet items more often have nothing above the cutoff) and the noise floor of
   the top octave (10th percentile of its bins). Per frame, 8 deviations from those medians.
2. For the two trained cutoffs around the input's (3 to 20 kHz in 1 kHz steps), a ridge
   regression maps the standardised features (clipped to 3 training standard deviations: a
   linear model must not extrapolate) to the mean log10 power of every 1/6-octave band
   above the cutoff relative to the item's mean anchor, and a second one adds a per-frame term
   from the frame's deviations. Bands are interpolated to bins on log-frequency; the two
   cutoffs are blended linearly in log-cutoff.

Held out by source package (each package scored with a table fitted without it), the LSD
ratio to the unprocessed input at 4/8/12 kHz improved from 0.56 to 0.53 over the tilt
extrapolation; on real lame 128 kbps and 32 kHz-resampled inputs of held-out full-band
recordings, LSD-HF fell from 0.64 / 0.80 to 0.49 / 0.65 of plain resampling's (0.48 / 0.65
with the feature clip; each file's own long-term envelope would give 0.41 / 0.54). On
low-passed clips the best possible per-file envelope would give 0.34, and the features
explain only part of it (correlation 0.1 to 0.4 per band): the high band of real audio is
not very predictable from its low band.
"""

from __future__ import annotations

import logging
import math
from importlib import resources
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000  # Hz
N_FFT = 2048  # samples; the table was fitted on this STFT
HOP = 512  # samples
BIN_HZ = SAMPLE_RATE / N_FFT  # 23.4375 Hz
BANDS_PER_OCT = 6  # resolution of the predicted envelope
N_LF = 15  # third-octaves described below the cutoff
N_FRAME = 6  # of which the per-frame deviations feed the per-frame term
GUARD = 0.97  # top of the analysis band, as a fraction of the cutoff
SILENT = -7.0  # log10 anchor power below which a frame does not enter the description
FILL_MIN = -7.5  # log10 anchor power below which a frame gets no new band
HINGE_KNOTS = (-6.0, -5.0, -4.0, -3.0)  # log10 knots of the hinge features of the mean anchor
TABLE_KEYS = ("cutoffs", "n_bands", "x_mean", "x_std", "y0", "W", "G", "shift")


def default_table() -> Path:
    """Path of the bundled table."""
    return Path(str(resources.files("audiosr.engines") / "data" / "dsp_prior.npz"))


def describe(power: np.ndarray, cutoff_hz: float) -> tuple[np.ndarray, ...]:
    """Description of the known band of one item.

    Args:
        power: STFT power ``[N, F]`` (frames, bins) of the band-limited input, 2048-point Hann.
        cutoff_hz: its cutoff in Hz.

    Returns:
        ``anchor`` ``[N]`` (log10 power of the quarter-octave below the guard), ``active``
        ``[N]`` bool, per-item ``features`` ``[27]``, per-frame deviations ``[N, 8]``.
    """
    power = np.asarray(power, dtype=np.float64)
    k_top = max(int(GUARD * cutoff_hz / BIN_HZ), 8)
    k_anchor = max(int(k_top / 2**0.25), 1)
    anchor = np.log10(power[:, k_anchor:k_top].mean(1) + 1e-12)
    active = anchor > SILENT
    if not active.any():
        active = anchor >= anchor.max()
    a = anchor[active]
    p = power[active]
    feats: list[float] = []
    frame: list[np.ndarray] = []
    for j in range(N_LF):  # third-octave levels relative to each frame's anchor
        hi = max(int(k_top * 2 ** (-j / 3)), 1)
        lo = min(max(int(k_top * 2 ** (-(j + 1) / 3)), 0), hi - 1)
        level = np.log10(power[:, lo:hi].mean(1) + 1e-12) - anchor
        feats.append(float(np.median(level[active])) if hi > 2 else 0.0)
        if j < N_FRAME:
            frame.append(level - feats[-1])
    k_oct = max(k_top // 2, 1)
    top = np.log10(power[:, k_oct:k_top] + 1e-12)
    flat_all = top.mean(1) - np.log10(np.mean(10**top, 1))  # <= 0; 0 for white noise
    flat = float(flat_all[active].mean())
    step = np.abs(np.diff(a)).mean() if a.size > 1 else 0.0
    feats += [
        flat,
        float(a.std()),
        float(step),
        float(active.mean()),
        float(np.mean(np.log10(p[:, :k_top].mean(1) + 1e-12) - a)),
        float(a.mean()),
        float(a.max()),
    ]
    feats += [max(float(a.mean()) - t, 0.0) for t in HINGE_KNOTS]
    # Noise floor of the top octave (10th percentile of bin powers relative to each frame's
    # anchor): hiss and room noise in the known band usually continue above it.
    feats.append(float(np.quantile(top[active] - a[:, None], 0.1)))
    frame.append(flat_all - flat)
    frame.append(anchor - a.mean())
    return anchor, active, np.asarray(feats, dtype=np.float64), np.stack(frame, 1)


def hf_bands(cutoff_hz: float, n_bins: int = N_FFT // 2 + 1) -> list[tuple[int, int]]:
    """Bin ranges ``[lo, hi)`` of the 1/6-octave bands from the cutoff up to Nyquist."""
    out = []
    k_cut = min(int(math.ceil(cutoff_hz / BIN_HZ)), n_bins - 1)
    j = 0
    while True:
        lo = max(int(math.ceil(cutoff_hz * 2 ** (j / BANDS_PER_OCT) / BIN_HZ)), k_cut)
        hi = min(int(math.ceil(cutoff_hz * 2 ** ((j + 1) / BANDS_PER_OCT) / BIN_HZ)), n_bins)
        if lo >= n_bins:
            return out
        out.append((lo, max(hi, lo + 1)))
        j += 1


class EnvelopePrior:
    """The fitted table and its prediction (see the module docstring).

    Args:
        path: ``.npz`` written by ``tools/dsp_prior/train.py``; None loads the bundled table.
            Read with ``allow_pickle=False``.
        frame_clip: bound on the per-frame deviations fed to the model (log10 units).
        feature_clip: bound on the standardised per-item features (training standard
            deviations). A linear model extrapolates without limit: a loud input whose top
            band is a resampler's transition band (a band-limit detector may place the
            cutoff on it) gave features 5-20 deviations out and a band 100 dB too loud.
            Clipped, such an input is read as the most extreme one the table was fitted on.

    Raises:
        ValueError: the file lacks a key of the table or has inconsistent shapes.
    """

    def __init__(
        self, path: str | Path | None = None, frame_clip: float = 3.0, feature_clip: float = 3.0
    ) -> None:
        path = Path(path) if path is not None else default_table()
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in TABLE_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path} is not an envelope table: missing {missing}")
            self.table = {k: z[k].astype(np.float64) for k in TABLE_KEYS}
        cuts = self.table["cutoffs"]
        if cuts.ndim != 1 or len(cuts) < 2 or np.any(np.diff(cuts) <= 0):
            raise ValueError(f"{path}: cutoffs must be at least 2 increasing values")
        if frame_clip <= 0 or feature_clip <= 0:
            raise ValueError(f"clips must be > 0, got {frame_clip} and {feature_clip}")
        self.frame_clip = frame_clip
        self.feature_clip = feature_clip

    def predict(self, power: np.ndarray, cutoff_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """Log10 power above the cutoff for every frame of one item.

        Args:
            power: STFT power ``[N, F]`` of the band-limited input (2048-point Hann, hop 512).
            cutoff_hz: its cutoff (Hz).

        Returns:
            ``log10 power`` ``[N, F - k_cut]`` for the bins from ``ceil(cutoff / bin)`` up,
            and the per-frame anchor ``[N]`` (log10 power; frames at or below
            :data:`FILL_MIN` should get no new band).
        """
        n_bins = power.shape[1]
        k_cut = min(int(math.ceil(cutoff_hz / BIN_HZ)), n_bins - 1)
        anchor, active, feats, frame = describe(power, cutoff_hz)
        tab = self.table
        cuts = tab["cutoffs"]
        lc = np.log2(np.clip(cutoff_hz, cuts[0], cuts[-1]))
        i1 = int(np.clip(np.searchsorted(np.log2(cuts), lc), 1, len(cuts) - 1))
        i0 = i1 - 1
        w1 = (lc - math.log2(cuts[i0])) / (math.log2(cuts[i1]) - math.log2(cuts[i0]))
        a_mean = anchor[active].mean()
        deviations = np.clip(frame, -self.frame_clip, self.frame_clip)
        log_f = np.log2(np.maximum(np.arange(k_cut, n_bins) * BIN_HZ, 1.0))
        out = np.zeros((power.shape[0], n_bins - k_cut))
        for i, w in ((i0, 1.0 - w1), (i1, w1)):
            if w <= 0:
                continue
            nb = int(tab["n_bands"][i])
            xs = (feats - tab["x_mean"][i]) / tab["x_std"][i]
            xs = np.clip(xs, -self.feature_clip, self.feature_clip)
            band = a_mean + tab["y0"][i, :nb] + xs @ tab["W"][i, :, :nb] + tab["shift"]
            per_frame = band[None, :] + deviations @ tab["G"][i, :, :nb]  # [N, nb]
            centres = math.log2(cuts[i]) + (np.arange(nb) + 0.5) / BANDS_PER_OCT
            pos = np.interp(log_f, centres, np.arange(nb, dtype=np.float64))
            lo = np.floor(pos).astype(int)
            hi = np.minimum(lo + 1, nb - 1)
            frac = pos - lo
            out += w * (per_frame[:, lo] * (1 - frac) + per_frame[:, hi] * frac)
        return out, anchor
