"""Step 3 of fitting the envelope prior: closed-form ridge fits -> the engine's ``.npz`` table.

Reads the records written by ``prep.py`` and, for every training cutoff (3 to 20 kHz), pools
the clips low-passed there and the clips whose real codec or resampler (``c<j>/`` records) cut
them there. A record enters only if the reference itself has content above the cutoff: its
own band limit (``edge``) is at least ``min(cutoff * 2^(1/4), 21 kHz)`` (``prep.usable``).
Real inputs are cut by a codec or a resampler, not by their source, and a reference that
stops at the cutoff would teach the prior that nothing is there (the previous table, fitted
without this rule on a corpus of mostly 44.1 kHz Vorbis sources, put the band above 16 kHz
30-45 dB below the known band, where real full-band music is 10-20 dB below it). Then:

* ``mu[b]`` = per clip, the mean over active frames of (reference band log10 power - the
  clip's mean anchor); a ridge regression (``LAMBDA * n_clips / 100``) of ``mu`` on the
  standardised per-clip features gives ``y0`` (mean), ``W`` and the standardisation;
* the per-frame residual (band power - mean anchor - mu) is regressed, pooled over clips, on
  the frame's clipped deviations (ridge ``FRAME_LAMBDA * n_frames``) to give ``G``;
* ``shift`` is added to every prediction. It is 0: the previous table's -1.5 dB suited
  references that stop at the cutoff (content over silence costs the LSD more than the
  reverse), which the edge rule now leaves out; on full-band clips of packages held out, the
  band means came out 5-7 dB low with it (and a little less low without it).

Deterministic: two runs give byte-identical files. ``--exclude`` leaves packages out (for
held-out scoring).

usage: python tools/dsp_prior/train.py CORPUS CACHE OUT.npz [--exclude pkg1,pkg2]
       [--no-codecs]  (ablation: only the low-pass records)
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
import realcodecs
from prep import CODEC_MIN_EDGE, usable

from audiosr.engines.dsp_prior import EnvelopePrior

log = logging.getLogger("train")
LAMBDA = 10.0  # ridge strength of the per-clip model, per 100 clips
FRAME_LAMBDA = 0.01  # ridge strength of the per-frame model, per frame
SHIFT = 0.0  # log10 units added to every prediction
FRAME_CLIP = 3.0  # bound on the per-frame deviations (as the engine's default)
TRAIN_CUTOFFS = tuple(range(3000, 20_001, 1000))  # Hz, as prep.py
KEYS = ("anchor", "active", "feats", "frame", "m")


def fit(records: list[dict[str, np.ndarray]]):
    """Ridge fits of one cutoff; returns (x_mean, x_std, y0, W, G)."""
    xs, ys, frames, residuals = [], [], [], []
    for r in records:
        active = r["active"]
        mean_anchor = r["anchor"][active].mean()
        mu = (r["m"][active] - mean_anchor).mean(0)
        xs.append(r["feats"])
        ys.append(mu)
        frames.append(np.clip(r["frame"][active], -FRAME_CLIP, FRAME_CLIP))
        residuals.append(r["m"][active] - mean_anchor - mu)
    x, y = np.array(xs), np.array(ys)
    f, res = np.concatenate(frames), np.concatenate(residuals)
    x_mean, x_std = x.mean(0), x.std(0) + 1e-9
    xs_ = (x - x_mean) / x_std
    eye = np.eye(x.shape[1])
    w = np.linalg.solve(xs_.T @ xs_ + LAMBDA * len(x) / 100 * eye, xs_.T @ (y - y.mean(0)))
    g = np.linalg.solve(f.T @ f + FRAME_LAMBDA * len(f) * np.eye(f.shape[1]), f.T @ res)
    return x_mean, x_std, y.mean(0), w, g


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--exclude", default="", help="comma-separated packages to leave out")
    ap.add_argument("--no-codecs", action="store_true", help="only the low-pass records")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    excluded = set(filter(None, args.exclude.split(",")))
    with open(args.corpus / "manifest.csv", newline="") as f:
        clips = sorted(r["clip"] for r in csv.DictReader(f) if r["package"] not in excluded)
    data = {}
    for clip in clips:
        with np.load(args.cache / f"{clip}.npz", allow_pickle=False) as z:
            data[clip] = {k: z[k] for k in z.files}
    parts = []
    for cutoff in TRAIN_CUTOFFS:
        records = []
        for c in clips:
            if not usable(float(data[c]["edge"]), cutoff):
                continue
            records.append({k: data[c][f"t{cutoff}/{k}"] for k in KEYS})
            j = 0
            while not args.no_codecs and f"c{j}/cutoff" in data[c]:
                coded = str(data[c][f"c{j}/kind"]) not in realcodecs.RESAMPLERS
                if data[c][f"c{j}/cutoff"] == cutoff and not (
                    coded and data[c]["edge"] < CODEC_MIN_EDGE
                ):
                    records.append({k: data[c][f"c{j}/{k}"] for k in KEYS})
                j += 1
        log.info("%d Hz: %d records", cutoff, len(records))
        parts.append(fit(records))
    n_bands = max(len(p[2]) for p in parts)
    n_feats, n_frame = parts[0][3].shape[0], parts[0][4].shape[0]
    table = {
        "cutoffs": np.array(TRAIN_CUTOFFS, np.float32),
        "n_bands": np.array([len(p[2]) for p in parts], np.int32),
        "x_mean": np.stack([p[0] for p in parts]).astype(np.float32),
        "x_std": np.stack([p[1] for p in parts]).astype(np.float32),
        "y0": np.zeros((len(parts), n_bands), np.float32),
        "W": np.zeros((len(parts), n_feats, n_bands), np.float32),
        "G": np.zeros((len(parts), n_frame, n_bands), np.float32),
        "shift": np.float32(SHIFT),
    }
    for i, (_, _, y0, w, g) in enumerate(parts):
        nb = len(y0)
        table["y0"][i, :nb], table["W"][i, :, :nb], table["G"][i, :, :nb] = y0, w, g
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **table)
    EnvelopePrior(args.out)  # the engine can read it
    log.info("fitted on %d clips (left out: %s) -> %s", len(clips), sorted(excluded), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
