"""Report tables and figures from hand-made records, and the spectrogram pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audiosr.errors import AudioSRError
from audiosr.eval.benchmark import RESULTS_FILE
from audiosr.eval.plots import save_file_comparison, save_spectrogram_comparison, spectrogram_db
from audiosr.eval.report import (
    CUTOFF_PLOT,
    REPORT_FILE,
    cutoff_table,
    degradation_table,
    engine_table,
    load_results,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(file: str, engine: str, degradation: str, kind: str, cutoff: float, **metrics):
    base = {"lsd": 1.0, "lsd_hf": 2.0, "lsd_lf": 0.1, "lsd_gm": 1.0, "si_sdr": 10.0, "rtf": 0.5}
    base.update(metrics)
    return {
        "file": file,
        "engine": engine,
        "degradation": degradation,
        "deg_kind": kind,
        "seed": 0,
        "cutoff_hz": cutoff,
        "duration_s": 2.0,
        "reference_rate_hz": 44_100,
        "reference_channels": 1,
        "reference_cutoff_hz": 21_000.0,
        **base,
    }


@pytest.fixture
def records():
    """2 files x 2 engines x (low-pass 4k, resample 8k, mp3 with a measured cutoff)."""
    out = []
    for i, f in enumerate(("a.wav", "b.flac")):
        for engine, scale in (("sinc", 2.0), ("dsp", 1.0)):
            out.append(_record(f, engine, "lowpass-butter-o8-4000", "lowpass", 4000.0,
                               lsd=scale * (1 + 2 * i), lsd_hf=scale * 3.0))  # fmt: skip
            out.append(_record(f, engine, "resample-16000", "resample", 8000.0,
                               lsd=scale * 0.5, lsd_hf=scale * 1.5))  # fmt: skip
            out.append(_record(f, engine, "mp3-64k", "mp3", 15_000.0 + 500 * i,
                               lsd=scale * 0.25, si_sdr=None if i else 20.0))  # fmt: skip
    return out


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_degradation_table_mean_std_and_best(records):
    rows = {(r[0], r[1]): r for r in _rows(degradation_table(records))}
    assert len(rows) == 6
    # lsd over the two files: sinc 2 and 6 -> 4 ± 2; dsp 1 and 3 -> 2 ± 1 (population std).
    assert rows[("lowpass-butter-o8-4000", "sinc")][4] == "4.000 ± 2.000"
    assert rows[("lowpass-butter-o8-4000", "dsp")][4] == "**2.000 ± 1.000**"
    assert rows[("lowpass-butter-o8-4000", "dsp")][2] == "2"  # n
    assert rows[("lowpass-butter-o8-4000", "dsp")][3] == "4000"
    assert rows[("mp3-64k", "sinc")][3] == "15250"  # mean of the measured cutoffs
    # A None metric is skipped, not counted as zero; equal SI-SDR means: sinc (first) wins.
    assert rows[("mp3-64k", "dsp")][8] == "20.0 ± 0.0"
    # RTF is never bolded (no "best" speed claim mixed into quality columns).
    assert not any(r[9].startswith("**") for r in rows.values())


def test_cutoff_table_uses_only_exact_cutoffs(records):
    table = cutoff_table(records)
    header = table.splitlines()[0]
    assert header == "| engine | 4 kHz | 8 kHz |"  # the mp3 cutoffs (15 kHz) stay out
    rows = {r[0]: r[1:] for r in _rows(table)}
    assert rows["sinc"] == ["4.000 / 6.000", "1.000 / 3.000"]
    assert rows["dsp"] == ["2.000 / 3.000", "0.500 / 1.500"]
    assert "no low-pass" in cutoff_table([r for r in records if r["deg_kind"] == "mp3"])


def test_engine_table(records):
    rows = {r[0]: r for r in _rows(engine_table(records))}
    assert rows["sinc"][1] == rows["dsp"][1] == "6"
    lsd_dsp = np.mean([1, 0.5, 0.25, 3, 0.5, 0.25])
    assert rows["dsp"][2].startswith(f"{lsd_dsp:.3f} ± ")


def test_write_report_files(records, tmp_path):
    with (tmp_path / RESULTS_FILE).open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    fig = tmp_path / "figures" / "a.wav" / "mp3-64k.png"
    fig.parent.mkdir(parents=True)
    fig.write_bytes(PNG_MAGIC)
    text = write_report(tmp_path)
    assert (tmp_path / REPORT_FILE).read_text() == text
    for section in ("## By engine", "## By input cutoff", "## By degradation", "## References"):
        assert section in text
    assert "| `b.flac` | 44100 | 1 | 2.00 | 21000 |" in text
    assert f"![LSD against the input cutoff]({CUTOFF_PLOT})" in text
    assert "- `a.wav`: [mp3-64k](figures/a.wav/mp3-64k.png)" in text
    data = (tmp_path / CUTOFF_PLOT).read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_load_results_errors(tmp_path):
    with pytest.raises(AudioSRError, match="run 'audiosr eval' first"):
        load_results(tmp_path)
    (tmp_path / RESULTS_FILE).write_text("\n")
    with pytest.raises(AudioSRError, match="no benchmark record"):
        load_results(tmp_path)


def test_spectrogram_columns_are_capped_and_averaged():
    sr = 48_000
    x = np.random.default_rng(0).standard_normal(sr * 60)
    db, hop = spectrogram_db(x, max_columns=100)
    assert db.shape[0] == 1025 and db.shape[1] <= 100 and hop % 512 == 0
    # White noise of unit variance: every column's mean power is ~ sum(window^2) = 768.
    assert np.median(db) == pytest.approx(10 * np.log10(768), abs=1.0)
    short, hop_short = spectrogram_db(x[:1000])  # shorter than one frame: zero-padded
    assert short.shape == (1025, 1) and hop_short == 512


def test_spectrogram_comparison_png(tmp_path):
    sr = 48_000
    t = np.arange(sr) / sr
    full = np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(sr)
    path = save_spectrogram_comparison(
        [("input", full[: sr // 2]), ("stereo", np.stack([full, full]))],
        sr,
        tmp_path / "deep" / "cmp.png",
        title="t",
        cutoff_hz=4000,
    )
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    with pytest.raises(ValueError, match="at least one"):
        save_spectrogram_comparison([], sr, tmp_path / "x.png")


def test_save_file_comparison_next_to_output(tmp_path):
    """The CLI's --plot: <output stem>.png next to the output, input at its own rate."""
    rng = np.random.default_rng(1)
    src, dst = tmp_path / "in.flac", tmp_path / "in_AudioSR_Processed_48K.wav"
    sf.write(src, 0.1 * rng.standard_normal(16_000), 16_000)
    sf.write(dst, 0.1 * rng.standard_normal(48_000), 48_000)
    path = save_file_comparison(src, dst, cutoff_hz=8000)
    assert path == tmp_path / "in_AudioSR_Processed_48K.png"
    assert path.read_bytes().startswith(PNG_MAGIC)
