"""Everything a real recording has is kept (issue 9), on the measured spectra of real files.

``tests/data/detector_spectra.npz`` holds long-term spectra of real recordings and of real
coder outputs (sources in ``tests/data/README.md``). Noise shaped to each spectrum goes through
the whole pipeline as the CLI runs it (band limit detected per channel) with the engines that
need no download; in every third-octave band where the input has content
(:func:`audiosr.eval.kept.content_loss_db`), the output must not be weaker. The ``skirt_*``
cases are filters' skirts that the detector reads at their start, 2-4 kHz under the end of the
content: before issue 9 the pipeline deleted that content.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiosr.api import Upsampler
from audiosr.audio_io import resample
from audiosr.engines.base import SincEngine
from audiosr.engines.dsp import DSPEngine
from audiosr.eval.kept import content_loss_db
from audiosr.pipeline import PipelineOptions

DATA = np.load(Path(__file__).resolve().parent / "data" / "detector_spectra.npz")
CASES = sorted({k.split("__")[0] for k in DATA.files})
SKIRTS = [c for c in CASES if c.startswith("skirt_")]


def shaped_noise(case: str, seconds: float = 3.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """Gaussian noise whose power spectrum is the stored one: ``([1, T], sample rate)``."""
    db = DATA[f"{case}__db"].astype(np.float64)
    sr = int(DATA[f"{case}__sr"])
    n = int(seconds * sr)
    stored_f = np.fft.rfftfreq(2 * (len(db) - 1), 1.0 / sr)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    amp = 10.0 ** (np.interp(f, stored_f, db) / 20.0)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n)) * amp
    x = np.fft.irfft(spec, n)
    return (0.5 * x / np.abs(x).max())[None].astype(np.float32), sr


def worst_loss(x: np.ndarray, sr: int, y: np.ndarray) -> float:
    """Largest third-octave loss (dB) of ``y`` (48 kHz) against ``x`` (at ``sr``)."""
    x48 = resample(x, sr, 48_000) if sr != 48_000 else x
    return float(content_loss_db(x48, y, sr / 2).max())


@pytest.mark.parametrize("engine", ["sinc", "dsp"])
@pytest.mark.parametrize("case", CASES)
def test_real_spectra_lose_nothing(case: str, engine: str) -> None:
    x, sr = shaped_noise(case)
    eng = SincEngine() if engine == "sinc" else DSPEngine()
    y, report = Upsampler(eng, PipelineOptions()).process(x, sr)
    assert worst_loss(x, sr, y.numpy()) <= 1.0, (case, report.describe())


@pytest.mark.parametrize("case", SKIRTS)
def test_skirts_are_read_at_their_start_and_kept(case: str) -> None:
    """The skirt cases do exercise the add-back: the band limit lies well under the content's
    end, and with the band above it replaced (the pipeline before issue 9) content is lost."""
    x, sr = shaped_noise(case)
    y, report = Upsampler(SincEngine(), PipelineOptions(keep_above_cutoff=False)).process(x, sr)
    assert report.cutoff_hz < 18_000, f"{case}: no longer read short; pick another case"
    assert worst_loss(x, sr, y.numpy()) > 10.0, report.describe()
    y, _ = Upsampler(SincEngine(), PipelineOptions()).process(x, sr)
    np.testing.assert_allclose(y.numpy(), x, atol=1e-4)  # 48 kHz in: the output is the input
