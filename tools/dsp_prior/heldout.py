"""Step 4: score the envelope prior held out by source package (leave-one-package-out).

For every package of ``CORPUS/manifest.csv``: fit a table without it (``train.py``), then run
the ``dsp`` engine with that table on the package's clips low-passed at 4, 8 and 12 kHz
(families rotating with the clip; ``--orders 8`` or ``--orders 4,6,8,10`` rotating) and
compare its LSD with the unprocessed input's. ``--envelope tilt`` scores the extrapolation
instead (no fitting). Prints LSD(input) -> LSD(dsp) (ratio) per kind and cutoff.

usage: python tools/dsp_prior/heldout.py CORPUS CACHE [--orders 8] [--envelope learned]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiosr.engines.dsp import DSPConfig, DSPEngine
from audiosr.eval import degrade
from audiosr.eval.metrics import lsd

log = logging.getLogger("heldout")
KINDS = ("speech", "music", "other")
CUTOFFS = (4000, 8000, 12000)  # Hz


def _train_module():
    path = Path(__file__).with_name("train.py")
    spec = importlib.util.spec_from_file_location("dsp_prior_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--orders", default="8", help="filter orders, rotating with the clip")
    ap.add_argument("--envelope", default="learned", choices=["learned", "tilt"])
    ap.add_argument("--packages", default="", help="comma-separated subset to score")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    orders = [int(o) for o in args.orders.split(",")]
    with open(args.corpus / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    package_of = {r["clip"]: r["package"] for r in manifest}
    wanted = set(filter(None, args.packages.split(","))) or set(package_of.values())
    train = _train_module()
    rows = []  # (kind, cutoff, lsd input, lsd dsp)
    with tempfile.TemporaryDirectory() as tmp:
        for package in sorted(wanted):
            if args.envelope == "learned":
                table = Path(tmp) / f"{package}.npz"
                train.main([str(args.corpus), str(args.cache), str(table), "--exclude", package])
                engine = DSPEngine(DSPConfig(table_path=str(table)))
            else:
                engine = DSPEngine(DSPConfig(envelope="tilt"))
            for kind in KINDS:
                clips = sorted(r["clip"] for r in manifest if r["kind"] == kind)
                for i, clip in enumerate(clips):
                    if package_of[clip] != package:
                        continue
                    x, _ = sf.read(args.corpus / kind / f"{clip}.wav", dtype="float32")
                    ref = torch.from_numpy(x)[None]
                    for j, cutoff in enumerate(CUTOFFS):
                        family = degrade.FAMILIES[(i + j) % 4]
                        order = orders[(i * 3 + j) % len(orders)]
                        d = degrade.Degradation("lowpass", float(cutoff), family, order)
                        y, _ = degrade.apply(d, ref)
                        out = engine(y, torch.tensor([float(cutoff)]))
                        rows.append((kind, cutoff, float(lsd(y, ref)), float(lsd(out, ref))))
            log.info("scored %s", package)
    for kind in (*KINDS, "all"):
        parts, pairs = [], []
        for cutoff in CUTOFFS:
            sel = [r for r in rows if r[1] == cutoff and kind in ("all", r[0])]
            if not sel:
                continue
            base, ours = np.mean([r[2] for r in sel]), np.mean([r[3] for r in sel])
            parts.append(f"{cutoff}: {base:.3f} -> {ours:.3f} ({ours / base:.2f})")
            pairs.append((base, ours))
        if pairs:
            base, ours = np.mean(pairs, axis=0)
            print(f"{kind:7s} " + "  ".join(parts) + f"  mean: {ours / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
