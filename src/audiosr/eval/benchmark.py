"""Benchmark: engines x reference folder x degradations -> metrics, RTF -> ``results.jsonl``.

Protocol, for every reference file (any format and rate libsndfile or PyAV reads):

1. Read it, resample it to 48 kHz (soxr, very high quality), mix the channels to mono (the
   mean; LSD tables in the literature are mono) and keep at most ``max_seconds``. Its own band
   limit is read with the pipeline's detector
   (:func:`~audiosr.dsp.bandwidth.detect_cutoff_hz`) and recorded.
2. Apply each :class:`~audiosr.eval.degrade.Degradation` (deterministic given its record; the
   filter families and orders are drawn once from ``seed``), which also gives the cutoff of the
   degraded input. A degradation whose cutoff is at or above 95 % of the reference's own band
   limit is skipped with a warning (no record): a 22.05 kHz recording under a 12 kHz low-pass,
   or a 128 kbps MP3 of a 16 kHz-wide sound, leaves nothing to recover, and any band an
   engine adds would be scored against a band the reference never had.
3. Run each engine through the full pipeline (:class:`audiosr.api.Upsampler`) with that cutoff
   passed explicitly, so no engine is helped or hurt by cutoff detection and the comparison is
   fair; the pipeline keeps the input's loudness.
4. Score the 48 kHz output against the reference with :mod:`audiosr.eval.metrics`: ``lsd``,
   ``lsd_hf`` / ``lsd_lf`` (split at the input cutoff), ``lsd_gm`` (gain-matched) and
   ``si_sdr``; time the pipeline call for the real-time factor ``rtf = seconds / duration_s``.

Each record is appended to ``out_dir/results.jsonl`` and flushed as soon as it exists, so an
interrupted run keeps its work; a rerun skips every (file, engine, degradation) already there
(idempotent; use a new ``out_dir`` when an engine's settings change). With ``plots``, one PNG
per (file, degradation) shows input / each engine's output / reference
(``out_dir/figures/<file>/<degradation>.png``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..dsp.bandwidth import detect_cutoff_hz
from ..errors import AudioSRError
from . import metrics
from .degrade import KINDS, Degradation, apply, default_degradations

if TYPE_CHECKING:
    from ..api import Upsampler

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000  # Hz
RESULTS_FILE = "results.jsonl"
FIGURES_DIR = "figures"
DEFAULT_CUTOFFS: tuple[float, ...] = (4000.0, 8000.0, 12_000.0)  # Hz
METRICS: tuple[str, ...] = ("lsd", "lsd_hf", "lsd_lf", "lsd_gm", "si_sdr")
# Containers libsndfile decodes (plus what PyAV adds when installed), by file name suffix.
REFERENCE_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64",
     ".caf", ".m4a", ".aac"}
)  # fmt: skip
WARMUP_S = 1.0  # seconds of noise run once per engine before timing (lazy init, autotuning)


def find_audio_files(root: str | os.PathLike[str]) -> list[Path]:
    """Audio files under ``root`` (recursive, sorted, hidden files skipped)."""
    base = Path(root)
    return sorted(
        p
        for p in base.rglob("*")
        if p.is_file()
        and p.suffix.lower() in REFERENCE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(base).parts)
    )


def select_degradations(
    kinds: Iterable[str] = KINDS,
    cutoffs: Sequence[float] = DEFAULT_CUTOFFS,
    seed: int = 0,
) -> list[Degradation]:
    """The benchmark's degradations of the given kinds.

    ``lowpass``: one per cutoff, family and order drawn from ``seed`` as in
    :func:`~audiosr.eval.degrade.default_degradations`. ``resample``: one per cutoff, through
    ``2 * cutoff`` Hz, so both kinds fill the same columns of the cutoff table. Codecs: the
    bit rates of :mod:`~audiosr.eval.degrade` (their cutoff is measured per file).

    Raises:
        ValueError: unknown kind, or a cutoff outside (500, 24000) Hz.
    """
    kinds = list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown degradation {unknown[0]!r}: choose from {', '.join(KINDS)}")
    bad = [c for c in cutoffs if not 500 < c < SAMPLE_RATE / 2]
    if bad:
        raise ValueError(f"cutoffs must be in (500, 24000) Hz, got {bad[0]:g}")
    drawn = default_degradations(tuple(float(c) for c in cutoffs), seed=seed, codecs=True)
    out: list[Degradation] = []
    for kind in kinds:
        if kind == "resample":
            out += [Degradation(kind="resample", rate=int(round(2 * c))) for c in cutoffs]
        else:
            out += [d for d in drawn if d.kind == kind]
    return out


def _expand(
    degradations: Sequence[Degradation | str] | None, cutoffs: Sequence[float], seed: int
) -> list[Degradation]:
    """Degradation records, with kind names expanded; duplicates (by name) dropped."""
    items: Sequence[Degradation | str] = KINDS if degradations is None else degradations
    out: dict[str, Degradation] = {}
    for item in items:
        expanded = select_degradations([item], cutoffs, seed) if isinstance(item, str) else [item]
        for d in expanded:
            out.setdefault(d.name, d)
    return list(out.values())


def nominal_cutoff_hz(d: Degradation) -> float | None:
    """Cutoff a degradation sets by construction (Hz); None for codecs (measured per file)."""
    if d.kind == "lowpass":
        return d.cutoff_hz
    if d.kind == "resample" and d.rate is not None:
        return d.rate / 2
    return None


def degradation_fields(d: Degradation) -> dict[str, Any]:
    """The record's ``deg_*`` fields: every parameter that matters for ``d.kind``, else None.

    ``Degradation(**{k[4:]: v for k, v in fields.items() if v is not None})`` rebuilds ``d``.
    """
    used = {
        "lowpass": ("cutoff_hz", "family", "order"),
        "resample": ("rate",),
        "mp3": ("bitrate_kbps",),
        "opus": ("bitrate_kbps",),
        "vorbis": ("quality",),
    }[d.kind]
    fields: dict[str, Any] = {"deg_kind": d.kind}
    for name in ("cutoff_hz", "family", "order", "rate", "bitrate_kbps", "quality"):
        fields[f"deg_{name}"] = getattr(d, name) if name in used else None
    return fields


def load_reference(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int, int]:
    """A reference as mono 48 kHz float32.

    Returns:
        ``(audio [T], original sample rate in Hz, original channel count)``.

    Raises:
        AudioReadError: unreadable file; AudioSRError: silent reference.
    """
    from ..audio_io import read_audio, resample

    audio, sr = read_audio(path)
    channels = audio.shape[0]
    if max_seconds is not None:  # crop before resampling: no work on what is dropped
        audio = audio[:, : max(1, int(math.ceil(max_seconds * sr)))]
    x = resample(audio, sr, SAMPLE_RATE).mean(axis=0)
    if max_seconds is not None:
        x = x[: max(1, int(round(max_seconds * SAMPLE_RATE)))]
    if not np.any(x):
        raise AudioSRError(f"reference {path} is silent: nothing to measure against")
    return np.ascontiguousarray(x, dtype=np.float32), sr, channels


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a ``results.jsonl`` (missing file: none; a torn last line is ignored)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            # An interrupted write leaves a partial last line; its item is simply redone.
            log.warning("%s:%d: unreadable record ignored (interrupted write?)", p, i)
    return out


def record_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """Identity of a record: (file, engine, degradation)."""
    return str(record["file"]), str(record["engine"]), str(record["degradation"])


def _finite(value: float) -> float | None:
    """JSON has no NaN/Inf: store None instead (the report skips it)."""
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def score(estimate: Tensor, reference: Tensor, cutoff_hz: float) -> dict[str, float | None]:
    """Every metric of one output.

    Args:
        estimate: engine output ``[T]`` at 48 kHz.
        reference: reference ``[T]`` at 48 kHz.
        cutoff_hz: input cutoff in Hz (splits ``lsd_hf`` / ``lsd_lf``).

    Returns:
        ``{"lsd", "lsd_hf", "lsd_lf", "lsd_gm", "si_sdr"}`` (None where not finite).
    """
    est, ref = estimate[None].float(), reference[None].float()
    values = {
        "lsd": metrics.lsd(est, ref),
        "lsd_hf": metrics.lsd_hf(est, ref, cutoff_hz),
        "lsd_lf": metrics.lsd_lf(est, ref, cutoff_hz),
        "lsd_gm": metrics.lsd_gain_matched(est, ref),
        "si_sdr": metrics.si_sdr(est, ref),
    }
    return {k: _finite(float(v[0])) for k, v in values.items()}


def figure_path(out_dir: str | os.PathLike[str], file_id: str, degradation: str) -> Path:
    """``out_dir/figures/<file id with safe characters>/<degradation>.png``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", file_id.replace("/", "__"))
    return Path(out_dir) / FIGURES_DIR / safe / f"{degradation}.png"


class _Engines:
    """Engines built on first use (an audiosr engine loads weights), then warmed up once."""

    def __init__(self, kwargs: Mapping[str, Mapping[str, Any]], warmup: bool) -> None:
        self._kwargs = kwargs
        self._warmup = warmup
        self._built: dict[str, Any] = {}

    def upsampler(self, name: str, cutoff_hz: float) -> Upsampler:
        """The pipeline around engine ``name`` with the cutoff given (never detected)."""
        from ..api import Upsampler, make_engine
        from ..pipeline import PipelineOptions

        if name not in self._built:
            engine = make_engine(name, **dict(self._kwargs.get(name, {})))
            if self._warmup:
                noise = np.random.default_rng(0).standard_normal((1, int(WARMUP_S * SAMPLE_RATE)))
                Upsampler(engine, PipelineOptions(cutoff_hz=4000.0)).process(
                    0.1 * noise.astype(np.float32), SAMPLE_RATE
                )
            self._built[name] = engine
        return Upsampler(self._built[name], PipelineOptions(cutoff_hz=cutoff_hz))


def _peak_gpu_mb_start() -> bool:
    """Reset CUDA's peak-memory counter when CUDA is in use; True if it was."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
        return True
    return False


def evaluate(
    reference_dir: str | os.PathLike[str],
    engines: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    degradations: Sequence[Degradation | str] | None = None,
    cutoffs: Sequence[float] = DEFAULT_CUTOFFS,
    seed: int = 0,
    engine_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    max_files: int | None = None,
    max_seconds: float | None = None,
    plots: bool = True,
    warmup: bool = True,
) -> list[dict[str, Any]]:
    """Score every engine on every reference under every degradation (module docstring).

    Args:
        reference_dir: folder of reference recordings (searched recursively).
        engines: engine names for :func:`audiosr.api.make_engine` ("dsp", "sinc", "audiosr").
        out_dir: where ``results.jsonl`` and ``figures/`` go (created).
        degradations: :class:`Degradation` records and/or kind names ("lowpass", "resample",
            "mp3", "opus", "vorbis", expanded by :func:`select_degradations`); None: all kinds.
        cutoffs: low-pass and resampling cutoffs in Hz.
        seed: draws the low-pass families and orders; recorded in every record.
        engine_kwargs: extra keyword arguments of ``make_engine`` per engine name, e.g.
            ``{"audiosr": {"model": "basic", "device": "cuda"}}``.
        max_files: use only the first N files (sorted by path).
        max_seconds: use only the first S seconds of each reference.
        plots: write one spectrogram PNG per (file, degradation) computed in this run.
        warmup: run each engine once on 1 s of noise before timing it.

    Returns:
        The records of this grid (files x degradations x engines), earlier ones included, in
        that order. Each has ``file`` (path relative to ``reference_dir``), ``engine``,
        ``degradation`` (its name) and ``deg_*`` parameters, ``seed``, ``cutoff_hz`` (given to
        the engine), the metrics, ``rtf``, ``seconds`` (processing wall time), ``duration_s``
        (audio), ``reference_rate_hz``, ``reference_channels``, ``reference_cutoff_hz``,
        ``passthrough`` and ``peak_gpu_mb`` (None on CPU).

    Raises:
        ValueError: unknown engine or degradation kind, bad cutoffs or limits.
        AudioSRError: missing folder, no audio files, or (at the end, after every other file
            was scored) references that could not be read.
    """
    from ..api import ENGINE_NAMES

    unknown = [e for e in engines if e not in ENGINE_NAMES]
    if unknown or not engines:
        what = f"unknown engine {unknown[0]!r}" if unknown else "no engine given"
        raise ValueError(f"{what}: choose from {', '.join(ENGINE_NAMES)}")
    if max_files is not None and max_files < 1:
        raise ValueError(f"max_files must be >= 1, got {max_files}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    engines = list(dict.fromkeys(engines))
    degs = _expand(degradations, cutoffs, seed)
    root = Path(reference_dir).expanduser()
    if not root.is_dir():
        raise AudioSRError(f"reference folder not found: {root}")
    files = find_audio_files(root)[:max_files]
    if not files:
        raise AudioSRError(f"no audio files in {root}")
    if plots:  # fail now, with the install hint, not after the first engine run
        from .plots import new_figure

        new_figure()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_FILE
    done = {record_key(r): r for r in read_records(results_path)}
    pool = _Engines(engine_kwargs or {}, warmup)
    # A reference with less band than the highest input cutoff tested has nothing to recover.
    highest = max([nominal_cutoff_hz(d) or 0.0 for d in degs] + [0.0]) or max(cutoffs)
    log.info(
        "evaluating %d file(s) x %d degradation(s) x %d engine(s); %d record(s) already in %s",
        len(files), len(degs), len(engines), len(done), results_path,
    )  # fmt: skip

    grid: list[dict[str, Any]] = []
    failed: list[str] = []
    with results_path.open("a", encoding="utf-8") as sink:
        if sink.tell() > 0 and not results_path.read_bytes().endswith(b"\n"):
            sink.write("\n")  # never glue a new record onto a torn line
        for path in files:
            file_id = path.relative_to(root).as_posix()
            if all((file_id, e, d.name) in done for d in degs for e in engines):
                grid += [done[(file_id, e, d.name)] for d in degs for e in engines]
                continue
            try:
                ref, ref_rate, ref_channels = load_reference(path, max_seconds)
            except AudioSRError as exc:
                log.error("%s", exc)
                failed.append(str(exc))
                continue
            # Where the reference's real content ends: the pipeline's detector, which does not
            # mistake a steep natural tilt (bass-heavy music) for a band limit.
            ref_cutoff = detect_cutoff_hz(ref, SAMPLE_RATE)
            if ref_cutoff < 0.95 * highest:
                log.warning(
                    "%s is band-limited at about %.0f Hz (read at %d Hz): degradations that "
                    "keep that band are skipped",
                    file_id, ref_cutoff, ref_rate,
                )  # fmt: skip
            context = {
                "reference_rate_hz": ref_rate,
                "reference_channels": ref_channels,
                "reference_cutoff_hz": round(ref_cutoff, 1),
            }
            ref_t = torch.from_numpy(ref)
            for d in degs:
                todo = [e for e in engines if (file_id, e, d.name) not in done]
                if not todo:
                    grid += [done[(file_id, e, d.name)] for e in engines]
                    continue
                degraded, cutoff = apply(d, ref_t, SAMPLE_RATE)
                if cutoff >= 0.95 * ref_cutoff:
                    # The input keeps the reference's whole band: there is nothing to
                    # recover, and an engine would be scored on a band the reference never
                    # had (e.g. a 22.05 kHz recording under a 12 kHz low-pass).
                    log.warning(
                        "%s | %s: skipped, the input keeps the reference's band "
                        "(cutoff %.0f Hz, reference band limit %.0f Hz)",
                        file_id, d.name, cutoff, ref_cutoff,
                    )  # fmt: skip
                    continue
                outputs: dict[str, np.ndarray] = {}
                for name in engines:
                    if name not in todo:
                        grid.append(done[(file_id, name, d.name)])
                        continue
                    record, y = _run_one(pool, name, degraded, ref_t, cutoff)
                    record = {
                        "file": file_id,
                        "engine": name,
                        "degradation": d.name,
                        **degradation_fields(d),
                        "seed": seed,
                        **record,
                        **context,
                    }
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
                    done[record_key(record)] = record
                    grid.append(record)
                    outputs[name] = y
                    log.info(
                        "%s | %s | %s: %s",
                        file_id, d.name, name,
                        ", ".join(f"{k} {_fmt(record[k])}" for k in (*METRICS, "rtf")),
                    )  # fmt: skip
                if plots:
                    _save_figure(out, file_id, d, cutoff, degraded, outputs, ref)
    if failed:
        raise AudioSRError(
            f"{len(failed)} reference file(s) could not be used (the others were scored): "
            f"{failed[0]}"
        )
    return grid


def _run_one(
    pool: _Engines, name: str, degraded: Tensor, reference: Tensor, cutoff_hz: float
) -> tuple[dict[str, Any], np.ndarray]:
    """Pipeline + metrics for one (engine, degraded input): (record fields, output [T])."""
    up = pool.upsampler(name, min(float(cutoff_hz), SAMPLE_RATE / 2))
    gpu = _peak_gpu_mb_start()
    start = time.perf_counter()
    y, report = up.process(degraded[None], SAMPLE_RATE)
    seconds = time.perf_counter() - start
    peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if gpu else None
    y = y[0]
    duration = reference.shape[-1] / SAMPLE_RATE
    record = {
        "cutoff_hz": round(float(cutoff_hz), 1),
        **score(y, reference, cutoff_hz),
        "rtf": seconds / duration,
        "seconds": seconds,
        "duration_s": duration,
        "passthrough": report.passthrough,
        "peak_gpu_mb": peak_gpu_mb,
    }
    return record, y.numpy()


def _save_figure(
    out: Path,
    file_id: str,
    d: Degradation,
    cutoff_hz: float,
    degraded: Tensor,
    outputs: Mapping[str, np.ndarray],
    reference: np.ndarray,
) -> None:
    """Input / outputs / reference spectrograms of one (file, degradation)."""
    from .plots import save_spectrogram_comparison

    panels = [(f"input ({d.name})", degraded.numpy())]
    panels += list(outputs.items())
    panels.append(("reference", reference))
    path = figure_path(out, file_id, d.name)
    save_spectrogram_comparison(
        panels,
        SAMPLE_RATE,
        path,
        title=f"{file_id}: {d.name}, cutoff {cutoff_hz:.0f} Hz",
        cutoff_hz=cutoff_hz,
    )
    log.debug("wrote %s", path)
