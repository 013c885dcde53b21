"""Band-limit detector on the measured long-term spectra of real recordings (issue 9).

``tests/data/detector_spectra.npz`` holds the detector's own long-term spectra (not the audio)
of real files from Debian packages, written by ``tools/detector_spectra.py`` (sources and
licences in ``tests/data/README.md``): the four xmoto-data songs whose natural roll-off the
detector once read as a band limit (mono mix at 48 kHz, the issue's protocol, and all channels
at their own 44.1 kHz), and real lame / FFmpeg AAC / sox outputs of such files.

The real edge of a recording is the highest frequency where its spectrum lies within 80 dB of
its loudest bin (the issue's measure); the detector must never read more than
``max(500 Hz, 5 %)`` below it. A coder's cutoff (stored with the
case, measured from the coded and original spectra) must be found within the same margin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, signal

from audiosr.dsp.bandwidth import cutoff_from_spectrum, detect_cutoff_hz, detect_cutoffs_hz

DATA = np.load(Path(__file__).resolve().parents[1] / "data" / "detector_spectra.npz")
CASES = sorted({k.split("__")[0] for k in DATA.files})
# skirt_*: a filter's skirt, read at its start while content goes on far below it; the
# pipeline keeps that content (tests/test_keep_real.py), the detector is not asked to.
ORIGINALS = [c for c in CASES if f"{c}__cut" not in DATA.files and not c.startswith("skirt_")]
CODED = [c for c in CASES if f"{c}__cut" in DATA.files]


def _spectrum(case: str) -> tuple[np.ndarray, np.ndarray, int]:
    db = DATA[f"{case}__db"].astype(np.float64)
    sr = int(DATA[f"{case}__sr"])
    freqs = np.fft.rfftfreq(2 * (len(db) - 1), 1.0 / sr)
    return freqs, 10.0 ** (db / 10.0), sr


def _real_edge(freqs: np.ndarray, power: np.ndarray, median_hz: float = 0.0) -> float:
    """Highest frequency within 80 dB of the loudest bin (of a running median over
    ``median_hz`` when given)."""
    db = 10 * np.log10(np.maximum(power, 1e-30))
    if median_hz:
        size = max(3, int(round(median_hz / freqs[1])) | 1)
        db = ndimage.median_filter(db, size=size, mode="nearest")
    return float(freqs[np.nonzero(db >= db.max() - 80.0)[0].max()])


def _margin(hz: float) -> float:
    return max(500.0, 0.05 * hz)


def test_stored_spectra_are_the_issues_measurements() -> None:
    # The issue's real edges (kHz) of the mono mixes at 48 kHz, within 0.3 kHz.
    issue = {"MadeiraStew": 20.4, "legolodio": 20.4, "batcave": 14.3, "ridealong": 10.5}
    for name, khz in issue.items():
        freqs, power, sr = _spectrum(f"xmoto_{name}_mono48")
        assert sr == 48_000
        assert abs(_real_edge(freqs, power) / 1e3 - khz) <= 0.3, name


@pytest.mark.parametrize("case", ORIGINALS)
def test_natural_roll_off_is_kept(case: str) -> None:
    freqs, power, sr = _spectrum(case)
    edge = _real_edge(freqs, power)
    got = cutoff_from_spectrum(freqs, power, sr)
    assert got >= edge - _margin(edge), (case, got, edge)


@pytest.mark.parametrize("case", CODED)
def test_real_coder_cutoff_is_found(case: str) -> None:
    freqs, power, sr = _spectrum(case)
    cut = float(DATA[f"{case}__cut"])
    got = cutoff_from_spectrum(freqs, power, sr)
    assert abs(got - cut) <= _margin(cut), (case, got, cut)


def test_plateau_under_a_cliff_is_content() -> None:
    """A band that falls 30 dB over an octave, then holds a plateau 35-45 dB under it for two
    octaves up to a resampler's cliff (as MadeiraStew.ogg does): the cliff is the band limit,
    not the foot of the fall (read at 11 kHz before issue 9)."""
    sr = 48_000
    n = 4 * sr
    f = np.fft.rfftfreq(n, 1 / sr)
    knots_hz = [20.0, 200.0, 2000.0, 4000.0, 6000.0, 8000.0, 20_000.0, 20_600.0, 21_000.0, sr / 2]
    knots_db = [-20.0, 0.0, -8.0, -14.0, -36.0, -42.0, -50.0, -52.0, -150.0, -150.0]
    gain_db = np.interp(np.log2(np.maximum(f, 20.0)), np.log2(knots_hz), knots_db)
    spec = np.fft.rfft(np.random.default_rng(4).standard_normal(n)) * 10 ** (gain_db / 20)
    x = np.fft.irfft(spec, n)
    got = detect_cutoff_hz(0.5 * x / np.abs(x).max(), sr)
    assert 20_000 <= got <= 21_200, got


def test_one_cutoff_per_channel() -> None:
    rng = np.random.default_rng(8)
    white = 0.1 * rng.standard_normal((3, 2 * 48_000))
    sos = signal.ellip(8, 0.1, 60, 5000 / 24_000, output="sos")
    x = np.stack([white[0], signal.sosfiltfilt(sos, white[1]), white[2]])
    x[2] = signal.sosfiltfilt(signal.ellip(8, 0.1, 60, 12_000 / 24_000, output="sos"), x[2])
    got = detect_cutoffs_hz(x, 48_000)
    assert len(got) == 3
    assert got[0] >= 0.98 * 24_000
    assert 5000 <= got[1] <= 5250 and 12_000 <= got[2] <= 12_600, got
    # Analysed together, the widest channel decides.
    assert detect_cutoff_hz(x, 48_000) >= 0.98 * 24_000
    assert detect_cutoffs_hz(x[1], 48_000) == [got[1]]
