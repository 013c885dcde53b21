"""Step 2 of fitting the envelope prior: describe every corpus clip at every training cutoff.

For each clip of ``CORPUS/manifest.csv`` and each training cutoff (3 to 16 kHz in 1 kHz
steps; filter family and order 4/6/8/10 rotate with the clip and cutoff, as the degradations
of ``audiosr eval`` do), writes ``CACHE/<clip>.npz`` (plain arrays, no pickle) with, under
``t<cutoff>/``: the engine's own description of the low-passed input
(:func:`audiosr.engines.dsp_prior.describe`: ``anchor``, ``active``, ``feats``, ``frame``)
and ``m`` ``[N, J]``, the reference's mean log10 power (``P + 1e-8``, the LSD protocol's
STFT) in every 1/6-octave band above the cutoff (:func:`~audiosr.engines.dsp_prior.hf_bands`).

usage: python tools/dsp_prior/prep.py CORPUS CACHE [--part I --parts N]
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiosr.engines.dsp_prior import describe, hf_bands
from audiosr.eval import degrade
from audiosr.eval.metrics import power_spectrogram

log = logging.getLogger("prep")
TRAIN_CUTOFFS = tuple(range(3000, 16_001, 1000))  # Hz
KINDS = ("speech", "music", "other")


def describe_clip(ref: torch.Tensor, index: int) -> dict[str, np.ndarray]:
    """All training records of one reference ``[1, T]`` (48 kHz); ``index`` rotates filters."""
    ref_power = power_spectrogram(ref)[0].numpy().astype(np.float64)
    ref_log = np.log10(ref_power + 1e-8)
    out: dict[str, np.ndarray] = {}
    for j, cutoff in enumerate(TRAIN_CUTOFFS):
        family = degrade.FAMILIES[(index + j) % 4]
        order = (4, 6, 8, 10)[(index * 3 + j) % 4]
        y, _ = degrade.apply(degrade.Degradation("lowpass", float(cutoff), family, order), ref)
        power = power_spectrogram(y)[0].numpy().astype(np.float64)
        anchor, active, feats, frame = describe(power, cutoff)
        bands = hf_bands(cutoff)
        m = np.stack([ref_log[:, lo:hi].mean(1) for lo, hi in bands], 1)
        for key, value in (
            ("anchor", anchor),
            ("active", active),
            ("feats", feats),
            ("frame", frame),
            ("m", m),
        ):
            out[f"t{cutoff}/{key}"] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--part", type=int, default=0)
    ap.add_argument("--parts", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    with open(args.corpus / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    for kind in KINDS:
        clips = sorted(r["clip"] for r in manifest if r["kind"] == kind)
        for i, clip in enumerate(clips):
            if (i + KINDS.index(kind)) % args.parts != args.part:
                continue
            dst = args.cache / f"{clip}.npz"
            if dst.exists():
                continue
            x, sr = sf.read(args.corpus / kind / f"{clip}.wav", dtype="float32")
            if sr != 48_000 or x.ndim != 1:
                raise SystemExit(f"{clip}: corpus clips must be mono 48 kHz")
            np.savez(dst, **describe_clip(torch.from_numpy(x)[None], i))
            log.info("%s", dst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
