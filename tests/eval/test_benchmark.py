"""The benchmark end to end on a tiny synthetic folder: records, resume, figures, the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from audiosr.errors import AudioSRError
from audiosr.eval.benchmark import (
    METRICS,
    RESULTS_FILE,
    evaluate,
    figure_path,
    read_records,
    record_key,
    select_degradations,
)
from audiosr.eval.cli import build_parser, run
from audiosr.eval.degrade import Degradation, apply
from audiosr.eval.metrics import lsd

ENGINES = ["sinc", "dsp"]
LOWPASS = Degradation(kind="lowpass", cutoff_hz=4000.0, family="butter", order=8)
MP3 = Degradation(kind="mp3", bitrate_kbps=32)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _harmonic_noise(sr: int, seconds: float, seed: int) -> np.ndarray:
    """A 220 Hz tone with harmonics up to 20 kHz plus white noise: energy in every band."""
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 91))
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.1 * tone + 0.01 * noise).astype(np.float32)


def _chirp(sr: int, seconds: float) -> np.ndarray:
    """A linear sweep from 100 Hz to 20 kHz."""
    t = np.arange(int(seconds * sr)) / sr
    f0, f1 = 100.0, 20_000.0
    return (0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))).astype(
        np.float32
    )


def _make_references(folder: Path) -> None:
    """Two references in different formats, rates and layouts (the harness must cope)."""
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "tone.wav", _harmonic_noise(48_000, 1.0, 0), 48_000)
    chirp = _chirp(44_100, 1.0)
    (folder / "sub").mkdir()
    sf.write(folder / "sub" / "chirp.flac", np.stack([chirp, 0.5 * chirp], axis=1), 44_100)
    (folder / "notes.txt").write_text("not audio")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    refs, out = root / "refs", root / "out"
    _make_references(refs)
    records = evaluate(refs, ENGINES, out, degradations=[LOWPASS, MP3], seed=3)
    return refs, out, records


def test_records_cover_the_grid_with_every_field(bench):
    _, out, records = bench
    on_disk = read_records(out / RESULTS_FILE)
    assert len(records) == len(on_disk) == 2 * 2 * len(ENGINES)
    assert {record_key(r) for r in on_disk} == {
        (f, e, d.name)
        for f in ("sub/chirp.flac", "tone.wav")
        for e in ENGINES
        for d in (LOWPASS, MP3)
    }
    for r in on_disk:
        for key in ("cutoff_hz", *METRICS, "rtf", "seconds", "duration_s", "reference_cutoff_hz"):
            assert isinstance(r[key], float) and np.isfinite(r[key]), (key, r)
        assert r["seed"] == 3
        assert r["duration_s"] == pytest.approx(1.0, abs=1e-3)
        assert r["rtf"] == pytest.approx(r["seconds"] / r["duration_s"])
        # The degradation parameters rebuild the degradation itself.
        params = {k[4:]: v for k, v in r.items() if k.startswith("deg_") and v is not None}
        assert Degradation(**params).name == r["degradation"]
    rates = {r["file"]: r["reference_rate_hz"] for r in on_disk}
    assert rates == {"sub/chirp.flac": 44_100, "tone.wav": 48_000}
    assert {r["reference_channels"] for r in on_disk if r["file"] == "sub/chirp.flac"} == {2}


def test_cutoffs_are_the_degradations_own(bench):
    _, out, _ = bench
    for r in read_records(out / RESULTS_FILE):
        if r["deg_kind"] == "lowpass":
            assert r["cutoff_hz"] == 4000.0
        else:  # measured from the decoded MP3 (32 kbps keeps roughly 5-12 kHz)
            assert 4000.0 < r["cutoff_hz"] < 14_000.0
            assert r["deg_bitrate_kbps"] == 32 and r["deg_family"] is None


def test_sinc_keeps_the_low_band_and_misses_the_high_band(bench):
    """The unprocessed baseline: right below the cutoff, tens of dB off above it."""
    _, out, _ = bench
    rec = {record_key(r): r for r in read_records(out / RESULTS_FILE)}
    r = rec[("tone.wav", "sinc", LOWPASS.name)]
    assert r["lsd_lf"] < 0.5
    assert r["lsd_hf"] > 2.0
    assert r["lsd_hf"] > 5 * r["lsd_lf"]


def test_record_matches_a_direct_computation(bench):
    """The recorded LSD is the metric of the pipeline output against the mono 48 kHz reference."""
    from audiosr.api import Upsampler, make_engine
    from audiosr.pipeline import PipelineOptions

    refs, out, _ = bench
    ref = torch.from_numpy(sf.read(refs / "tone.wav", dtype="float32")[0])
    degraded, cutoff = apply(LOWPASS, ref)
    up = Upsampler(make_engine("sinc"), PipelineOptions(cutoff_hz=cutoff))
    y, _ = up.process(degraded[None], 48_000)
    rec = {record_key(r): r for r in read_records(out / RESULTS_FILE)}
    assert rec[("tone.wav", "sinc", LOWPASS.name)]["lsd"] == pytest.approx(
        float(lsd(y[0], ref)), rel=1e-5
    )


def test_one_figure_per_file_and_degradation(bench, tmp_path):
    from audiosr.eval.plots import save_spectrogram_comparison

    _, out, _ = bench
    # The same four panels of digital silence: axes, labels and colour bar but no picture.
    blank = save_spectrogram_comparison([("x", np.zeros(48_000))] * 4, 48_000, tmp_path / "b.png")
    blank_size = blank.stat().st_size
    for file_id in ("sub/chirp.flac", "tone.wav"):
        for d in (LOWPASS, MP3):
            data = figure_path(out, file_id, d.name).read_bytes()
            assert data.startswith(PNG_MAGIC)
            assert len(data) > 1.5 * blank_size  # spectrograms with structure in them


def test_rerun_is_idempotent_and_resumes(bench, monkeypatch):
    refs, out, records = bench
    path = out / RESULTS_FILE
    before = path.read_bytes()
    again = evaluate(refs, ENGINES, out, degradations=[LOWPASS, MP3], seed=3, plots=False)
    assert path.read_bytes() == before  # nothing recomputed, nothing appended
    assert again == records

    # Interrupted run: the last two records lost and a torn line left behind.
    lines = before.decode().splitlines()
    lost = [record_key(json.loads(line)) for line in lines[-2:]]
    path.write_text("\n".join(lines[:-2]) + "\n" + lines[-1][:25])
    calls: list[str] = []
    import audiosr.api

    real = audiosr.api.make_engine
    monkeypatch.setattr(audiosr.api, "make_engine", lambda n, **kw: calls.append(n) or real(n))
    resumed = evaluate(refs, ENGINES, out, degradations=[LOWPASS, MP3], seed=3, plots=False)
    keys = [record_key(r) for r in read_records(path)]
    assert len(keys) == len(set(keys)) == len(records)
    assert set(keys) == {record_key(r) for r in records}
    assert sorted(calls) == sorted({k[1] for k in lost})  # only the lost engines were built
    assert [record_key(r) for r in resumed] == [record_key(r) for r in records]


def test_select_degradations_kinds_and_cutoffs():
    degs = select_degradations(["lowpass", "resample", "mp3"], [4000, 8000], seed=1)
    kinds = [d.kind for d in degs]
    assert kinds.count("lowpass") == 2 and kinds.count("resample") == 2
    assert [d.rate for d in degs if d.kind == "resample"] == [8000, 16_000]
    assert [d.cutoff_hz for d in degs if d.kind == "lowpass"] == [4000.0, 8000.0]
    assert degs == select_degradations(["lowpass", "resample", "mp3"], [4000, 8000], seed=1)
    with pytest.raises(ValueError, match="unknown degradation"):
        select_degradations(["aac"])
    with pytest.raises(ValueError, match="cutoffs"):
        select_degradations(["lowpass"], [30_000])


def test_evaluate_rejects_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="unknown engine 'magic'"):
        evaluate(tmp_path, ["magic"], tmp_path / "out")
    with pytest.raises(AudioSRError, match="reference folder not found"):
        evaluate(tmp_path / "missing", ["sinc"], tmp_path / "out")
    with pytest.raises(AudioSRError, match="no audio files"):
        evaluate(tmp_path, ["sinc"], tmp_path / "out")


def test_unreadable_reference_fails_after_the_others(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    sf.write(refs / "good.wav", _harmonic_noise(48_000, 0.25, 0), 48_000)
    (refs / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioSRError, match="1 reference file.*broken.wav"):
        evaluate(refs, ["sinc"], tmp_path / "out", degradations=[LOWPASS], plots=False)
    records = read_records(tmp_path / "out" / RESULTS_FILE)
    assert [(r["file"], r["engine"]) for r in records] == [("good.wav", "sinc")]


def test_degradations_that_keep_the_reference_band_are_skipped(tmp_path):
    """A reference band-limited at 6 kHz: a 4 kHz low-pass is scored, an 8 kHz one is not."""
    from audiosr.eval.degrade import design_lowpass

    refs = tmp_path / "refs"
    refs.mkdir()
    noise = np.random.default_rng(0).standard_normal(12_000)
    narrow = 0.1 * scipy.signal.sosfiltfilt(design_lowpass("ellip", 10, 6000.0, 48_000), noise)
    sf.write(refs / "narrow.wav", narrow.astype(np.float32), 48_000)
    wide = Degradation(kind="lowpass", cutoff_hz=8000.0, family="butter", order=8)
    records = evaluate(refs, ["sinc"], tmp_path / "out", degradations=[LOWPASS, wide], plots=False)
    assert [r["degradation"] for r in records] == [LOWPASS.name]
    assert 5000 < records[0]["reference_cutoff_hz"] < 7000


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_cli_runs_and_writes_the_report(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    sf.write(refs / "a.wav", _harmonic_noise(32_000, 0.5, 1), 32_000)
    sf.write(refs / "b.wav", _harmonic_noise(48_000, 0.5, 2), 48_000)
    out = tmp_path / "out"
    args = _args(
        str(refs), "--engines", "sinc", "--out", str(out), "--cutoffs", "4000",
        "--degradations", "lowpass,resample", "--max-files", "1", "--max-seconds", "0.25",
        "--no-plots", "-q",
    )  # fmt: skip
    assert run(args) == 0
    records = read_records(out / RESULTS_FILE)
    assert [r["file"] for r in records] == ["a.wav", "a.wav"]
    assert {r["degradation"] for r in records} == {"resample-8000", records[0]["degradation"]}
    assert all(r["duration_s"] == pytest.approx(0.25) for r in records)
    text = (out / "results.md").read_text()
    assert "| resample-8000 | sinc | 1 | 4000 |" in text
    assert not (out / "figures").exists() and not (out / "lsd_vs_cutoff.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engines", "sinc,warp"], "unknown engine 'warp'"),
        (["--cutoffs", "4k"], "--cutoffs must be numbers"),
        (["--degradations", "lowpass,aac"], "unknown degradation 'aac'"),
        (["--engines", " , "], "--engines is empty"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, argv, message):
    (tmp_path / "refs").mkdir()
    sf.write(tmp_path / "refs" / "a.wav", _harmonic_noise(48_000, 0.25, 0), 48_000)
    args = _args(str(tmp_path / "refs"), "--out", str(tmp_path / "out"), *argv)
    with pytest.raises((AudioSRError, ValueError), match=message) as info:
        run(args)
    assert "\n" not in str(info.value)
