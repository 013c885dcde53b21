"""Step 2 of fitting the envelope prior: describe every corpus clip at every training cutoff.

For each clip of ``CORPUS/manifest.csv`` writes ``CACHE/<clip>.npz`` (plain arrays, no
pickle) with ``edge`` (the reference's own band limit, :func:`audiosr.eval.degrade.
measure_cutoff_hz`: Nyquist when it has no cliff) and one record per degraded input:

Records that :func:`usable` rules out (the reference has nothing above their cutoff) are
not written. The kinds:

* ``t<cutoff>/``: low-passed at each training cutoff (3 to 20 kHz in 1 kHz steps; filter
  family and order 4/6/8/10 rotate with the clip and cutoff, as ``audiosr eval`` does);
* ``c<j>/`` (j = 0, 1, ...): the clip through real codecs and resamplers as users meet them
  (``realcodecs.py``: one lame, one AAC, one Vorbis or Opus encode, rotating over bit rates
  with the clip, for references reaching ``CODEC_MIN_EDGE``; and resampling through 32 and
  22.05 kHz). The measured band limit is rounded
  down to the 1 kHz grid (``cutoff``) and the decoded signal is cut there by an exact FFT
  brick wall, so the known band is the codec's own up to that grid cutoff.

Every record holds the engine's own description of the degraded input
(:func:`audiosr.engines.dsp_prior.describe`: ``anchor``, ``active``, ``feats``, ``frame``)
and ``m`` ``[N, J]``, the reference's mean log10 power (``P + 1e-8``, the LSD protocol's
STFT) in every 1/6-octave band above the cutoff (:func:`~audiosr.engines.dsp_prior.hf_bands`).

usage: python tools/dsp_prior/prep.py CORPUS CACHE [--part I --parts N] [--no-codecs]
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
import realcodecs
import soundfile as sf
import torch

from audiosr.engines.dsp_prior import describe, hf_bands
from audiosr.eval import degrade
from audiosr.eval.metrics import power_spectrogram

log = logging.getLogger("prep")
TRAIN_CUTOFFS = tuple(range(3000, 20_001, 1000))  # Hz
EDGE_RATIO = 2**0.25  # a record needs a reference that reaches a quarter octave above its cutoff
EDGE_MAX = 21_000.0  # ... or this (Hz): 44.1 kHz sources end at about 21-22 kHz
CODEC_MIN_EDGE = 18_000.0  # Hz; references ending below it get no codec records
KINDS = ("speech", "music", "other")
# real codecs, rotating with the clip: one of each group per clip
CODEC_GROUPS = (
    ("lame128", "lame160", "lame192", "lame-v2"),
    ("aac96", "aac128", "aac160"),
    ("vorbis-q2", "opus64", "vorbis-q3", "opus96", "vorbis-q5"),
)


def usable(edge: float, cutoff: float) -> bool:
    """Whether a reference whose own band ends at ``edge`` (Hz) can teach the band above
    ``cutoff``: real inputs are cut by a codec or a resampler, not by their source, and a
    reference that stops at the cutoff would teach that nothing is there."""
    return edge >= min(cutoff * EDGE_RATIO, EDGE_MAX)


def _record(ref_log: np.ndarray, y: torch.Tensor, cutoff: float) -> dict[str, np.ndarray]:
    """Description of the degraded ``y`` ``[1, T]`` and the reference's bands above ``cutoff``."""
    power = power_spectrogram(y)[0].numpy().astype(np.float64)
    anchor, active, feats, frame = describe(power, cutoff)
    m = np.stack([ref_log[:, lo:hi].mean(1) for lo, hi in hf_bands(cutoff)], 1)
    return {"anchor": anchor, "active": active, "feats": feats, "frame": frame, "m": m}


def _brickwall(y: np.ndarray, cutoff: float) -> np.ndarray:
    """``y`` ``[C, T]`` with every FFT bin above ``cutoff`` (Hz, 48 kHz) set to zero."""
    spec = np.fft.rfft(y, axis=-1)
    spec[:, np.fft.rfftfreq(y.shape[-1], 1 / 48_000) > cutoff] = 0
    return np.fft.irfft(spec, n=y.shape[-1], axis=-1)


def describe_clip(ref: torch.Tensor, index: int, codecs: bool = True) -> dict[str, np.ndarray]:
    """All training records of one reference ``[1, T]`` (48 kHz); ``index`` rotates filters
    and codecs; ``codecs=False`` leaves out the encoders (not the resamplers)."""
    ref_power = power_spectrogram(ref)[0].numpy().astype(np.float64)
    ref_log = np.log10(ref_power + 1e-8)
    edge = float(degrade.measure_cutoff_hz(ref))
    out: dict[str, np.ndarray] = {"edge": np.float64(edge)}
    for j, cutoff in enumerate(TRAIN_CUTOFFS):
        if not usable(edge, cutoff):
            continue
        family = degrade.FAMILIES[(index + j) % 4]
        order = (4, 6, 8, 10)[(index * 3 + j) % 4]
        y, _ = degrade.apply(degrade.Degradation("lowpass", float(cutoff), family, order), ref)
        for key, value in _record(ref_log, y, cutoff).items():
            out[f"t{cutoff}/{key}"] = value
    kinds = [group[index % len(group)] for group in CODEC_GROUPS]
    if edge < CODEC_MIN_EDGE or not codecs:
        kinds = []
    j = 0
    for kind in [*kinds, *realcodecs.RESAMPLERS]:
        if kind in realcodecs.RESAMPLERS and not usable(edge, realcodecs.RESAMPLERS[kind] / 2):
            continue
        y, measured = realcodecs.degrade_real(ref.double().numpy(), kind)
        cutoff = float(np.floor(measured / 1000) * 1000)
        if cutoff not in TRAIN_CUTOFFS or not usable(edge, cutoff):
            continue
        cut = torch.from_numpy(_brickwall(y, cutoff)).float()
        record = _record(ref_log, cut, cutoff)
        record.update(kind=np.array(kind), measured=np.float64(measured), cutoff=np.float64(cutoff))
        for key, value in record.items():
            out[f"c{j}/{key}"] = value
        j += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--part", type=int, default=0)
    ap.add_argument("--parts", type=int, default=1)
    ap.add_argument("--no-codecs", action="store_true", help="no encoder records (tests)")
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
            np.savez(dst, **describe_clip(torch.from_numpy(x)[None], i, not args.no_codecs))
            log.info("%s", dst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
