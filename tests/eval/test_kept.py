"""content_loss_db: which bands count as the input's content, and how much of it is lost."""

from __future__ import annotations

import numpy as np
import pytest

from audiosr.eval.kept import content_loss_db

SR = 48_000


def _band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    spec[(f < lo) | (f >= hi)] = 0
    return np.fft.irfft(spec, n=len(x))


def test_losses_are_measured_only_where_the_input_had_content() -> None:
    x = _band(np.random.default_rng(0).standard_normal(2 * SR), 0, 12_000)
    assert content_loss_db(x, x)[0] == 0.0
    assert content_loss_db(x, 2 * x)[0] == 0.0  # louder is not a loss
    assert content_loss_db(x, 0.5 * x)[0] == pytest.approx(6.02, abs=0.01)
    # 8-12 kHz removed (the 10 kHz third-octave band and more): a large loss.
    notched = _band(x, 0, 8000)
    assert content_loss_db(x, notched)[0] > 60
    # Above 12 kHz the input has nothing: removing it there loses nothing.
    assert content_loss_db(x, _band(x, 0, 12_000))[0] < 0.01
    # Bands above 95 % of the input's own Nyquist are not the input's.
    assert content_loss_db(x, notched, nyquist_hz=8000)[0] < 0.01
    two = np.stack([x, x])
    np.testing.assert_allclose(content_loss_db(two, np.stack([x, notched])) > 60, [False, True])
