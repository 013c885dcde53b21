"""Tables and plots from a benchmark's ``results.jsonl`` (see :mod:`audiosr.eval.benchmark`).

:func:`write_report` turns the records of one output folder into ``results.md``:

* an overall table per engine,
* an engine x degradation table with mean ± std over files of every metric,
* a compact engine x cutoff table of LSD / LSD-HF (low-pass and resampling degradations,
  whose cutoff is exact; codec cutoffs are measured per file and vary),
* the references (rate, channels, duration, measured band limit),
* ``lsd_vs_cutoff.png`` (LSD and LSD-HF against the input cutoff, one line per engine) and
  links to the per-file spectrogram figures the benchmark drew.

"std" is the population standard deviation over the records of a cell (0 for one record).
matplotlib is imported only inside the plotting function.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioSRError
from .benchmark import FIGURES_DIR, RESULTS_FILE, read_records

log = logging.getLogger(__name__)

REPORT_FILE = "results.md"
CUTOFF_PLOT = "lsd_vs_cutoff.png"
NOMINAL_KINDS = ("lowpass", "resample")  # degradations whose cutoff is exact, not measured

# (record key, column title, True when lower is better)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("lsd", "LSD", True),
    ("lsd_hf", "LSD-HF", True),
    ("lsd_lf", "LSD-LF", True),
    ("lsd_gm", "LSD-GM", True),
    ("si_sdr", "SI-SDR (dB)", False),
    ("rtf", "RTF", True),
)


def load_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records from a ``results.jsonl`` or from the folder holding one.

    Raises:
        AudioSRError: no such file, or it holds no record.
    """
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.is_file():
        raise AudioSRError(f"no benchmark results at {p}: run 'audiosr eval' first")
    records = read_records(p)
    if not records:
        raise AudioSRError(f"{p} holds no benchmark record")
    return records


def _values(records: Iterable[Mapping[str, Any]], key: str) -> np.ndarray:
    """Finite values of one field (None and NaN, stored for non-finite metrics, are skipped)."""
    vals = [r.get(key) for r in records]
    arr = np.array([v for v in vals if isinstance(v, (int, float))], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _mean(records: Sequence[Mapping[str, Any]], key: str) -> float:
    v = _values(records, key)
    return float(v.mean()) if v.size else math.nan


def _mean_std(records: Sequence[Mapping[str, Any]], key: str) -> str:
    v = _values(records, key)
    if not v.size:
        return "–"
    digits = 1 if key == "si_sdr" else 3
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def _group(
    records: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], Any]
) -> dict[Any, list[Mapping[str, Any]]]:
    """Records by ``key(record)``, in first-seen order."""
    out: dict[Any, list[Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _best(groups: Mapping[str, Sequence[Mapping[str, Any]]], key: str, lower: bool) -> str | None:
    """The group with the best mean of ``key`` (None with fewer than two groups)."""
    means = {g: _mean(rs, key) for g, rs in groups.items()}
    means = {g: m for g, m in means.items() if math.isfinite(m)}
    if len(means) < 2:
        return None
    return (min if lower else max)(means, key=means.__getitem__)


def engine_table(records: Sequence[Mapping[str, Any]]) -> str:
    """One row per engine: every metric over all files and degradations."""
    by_engine = _group(records, lambda r: r["engine"])
    rows = [
        [engine, str(len(rs))] + [_mean_std(rs, key) for key, _, _ in COLUMNS]
        for engine, rs in by_engine.items()
    ]
    return _table(["engine", "n"] + [title for _, title, _ in COLUMNS], rows)


def degradation_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Engine x degradation: mean ± std over files of every metric; best engine in bold."""
    rows = []
    for degradation, rs in _group(records, lambda r: r["degradation"]).items():
        by_engine = _group(rs, lambda r: r["engine"])
        best = {key: _best(by_engine, key, lower) for key, _, lower in COLUMNS if key != "rtf"}
        for engine, ers in by_engine.items():
            cells = []
            for key, _, _ in COLUMNS:
                cell = _mean_std(ers, key)
                cells.append(f"**{cell}**" if best.get(key) == engine else cell)
            rows.append(
                [degradation, engine, str(len(ers)), f"{_mean(ers, 'cutoff_hz'):.0f}"] + cells
            )
    header = ["degradation", "engine", "n", "cutoff (Hz)"] + [t for _, t, _ in COLUMNS]
    return _table(header, rows)


def _nominal(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("deg_kind") in NOMINAL_KINDS]


def cutoff_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Engine x input cutoff: mean LSD / LSD-HF over files and low-pass/resample kinds."""
    nominal = _nominal(records)
    if not nominal:
        return "(no low-pass or resampling degradation in these results)"
    cutoffs = sorted({round(float(r["cutoff_hz"])) for r in nominal})
    rows = []
    for engine, rs in _group(nominal, lambda r: r["engine"]).items():
        by_cut = _group(rs, lambda r: round(float(r["cutoff_hz"])))
        cells = []
        for c in cutoffs:
            cell = by_cut.get(c, [])
            cells.append(f"{_mean(cell, 'lsd'):.3f} / {_mean(cell, 'lsd_hf'):.3f}" if cell else "–")
        rows.append([engine] + cells)
    return _table(["engine"] + [f"{c / 1000:g} kHz" for c in cutoffs], rows)


def reference_table(records: Sequence[Mapping[str, Any]]) -> str:
    """One row per reference file: original rate, channels, seconds used, measured band limit."""
    rows = []
    for file_id, rs in _group(records, lambda r: r["file"]).items():
        r = rs[0]
        rows.append(
            [
                f"`{file_id}`",
                str(r.get("reference_rate_hz", "–")),
                str(r.get("reference_channels", "–")),
                f"{float(r.get('duration_s', math.nan)):.2f}",
                f"{float(r.get('reference_cutoff_hz', math.nan)):.0f}",
            ]
        )
    return _table(["file", "rate (Hz)", "channels", "seconds", "band limit (Hz)"], rows)


def plot_lsd_vs_cutoff(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]
) -> Path | None:
    """LSD and LSD-HF against the input cutoff, one line per engine (low-pass/resample only).

    Returns:
        The PNG written, or None when no record has a nominal cutoff.
    """
    nominal = _nominal(records)
    if not nominal:
        return None
    from .plots import new_figure

    fig = new_figure(figsize=(9.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for engine, rs in _group(nominal, lambda r: r["engine"]).items():
        by_cut = _group(rs, lambda r: round(float(r["cutoff_hz"])))
        cuts = sorted(by_cut)
        for ax, key in zip(axes, ("lsd", "lsd_hf")):
            means = [_mean(by_cut[c], key) for c in cuts]
            stds = [float(_values(by_cut[c], key).std()) if by_cut[c] else 0.0 for c in cuts]
            ax.errorbar(
                [c / 1000 for c in cuts], means, yerr=stds, marker="o", capsize=3, label=engine
            )
    for ax, title in zip(axes, ("LSD (all bins)", "LSD-HF (above the cutoff)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("input cutoff (kHz)")
        ax.set_ylabel("log-spectral distance (lower is better)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def render_markdown(
    records: Sequence[Mapping[str, Any]],
    cutoff_plot: str | None = None,
    figures: Sequence[str] = (),
) -> str:
    """The whole report as Markdown (paths are relative to the report's folder)."""
    engines = list(dict.fromkeys(r["engine"] for r in records))
    seeds = sorted({r.get("seed") for r in records if r.get("seed") is not None})
    parts = [
        "# Benchmark results",
        "",
        f"{len(records)} records: {len({r['file'] for r in records})} file(s), "
        f"{len({r['degradation'] for r in records})} degradation(s), engines "
        f"{', '.join(engines)}; seed {', '.join(map(str, seeds)) or '–'}.",
        "",
        "Mean ± std over files (population std). LSD is in log10-power units (1.0 = 10 dB), "
        "lower is better; LSD-HF / LSD-LF split the bins at the input cutoff; LSD-GM is LSD "
        "after matching the gain on the lowest 10 % of bins; SI-SDR in dB, higher is better; "
        "RTF = processing seconds / audio seconds. Each engine got the degradation's cutoff; "
        "references are mono (channel mean) at 48 kHz.",
        "",
        "## By engine",
        "",
        engine_table(records),
        "",
        "## By input cutoff: LSD / LSD-HF",
        "",
        cutoff_table(records),
        "",
        "## By degradation (best engine in bold)",
        "",
        degradation_table(records),
        "",
        "## References",
        "",
        reference_table(records),
        "",
    ]
    if cutoff_plot or figures:
        parts += ["## Figures", ""]
    if cutoff_plot:
        parts += [f"![LSD against the input cutoff]({cutoff_plot})", ""]
    # One line per file: links to its figures, one per degradation.
    for folder, paths in _group(figures, lambda f: Path(f).parent.name).items():
        parts.append(f"- `{folder}`: " + " · ".join(f"[{Path(f).stem}]({f})" for f in paths))
    return "\n".join(parts).rstrip() + "\n"


def write_report(out_dir: str | os.PathLike[str], *, plots: bool = True) -> str:
    """Write ``out_dir/results.md`` (and ``lsd_vs_cutoff.png`` with ``plots``) from the results.

    Args:
        out_dir: a benchmark output folder (holding ``results.jsonl``).
        plots: draw the LSD-vs-cutoff figure (needs matplotlib).

    Returns:
        The Markdown text written.

    Raises:
        AudioSRError: no results in ``out_dir``.
    """
    out = Path(out_dir)
    records = load_results(out)
    cutoff_plot = None
    if plots and plot_lsd_vs_cutoff(records, out / CUTOFF_PLOT) is not None:
        cutoff_plot = CUTOFF_PLOT
    figures = sorted(p.relative_to(out).as_posix() for p in (out / FIGURES_DIR).rglob("*.png"))
    text = render_markdown(records, cutoff_plot, figures)
    (out / REPORT_FILE).write_text(text, encoding="utf-8")
    log.info("wrote %s", out / REPORT_FILE)
    return text
