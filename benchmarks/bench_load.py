"""Loading cost of a full-size checkpoint: the original's way vs ours vs safetensors.

Writes a checkpoint with EVERY key and shape of the official file
(``shared/golden/state_dict_manifest_full.tsv``: 3,743 tensors, 6.18 GB, including CLAP and the
EMA copy, values uninitialised) to a scratch folder, then measures in fresh processes:

* ``torch.load`` of the whole file (what the original does before ``load_state_dict``),
* ``audiosr.weights.load_model`` (memory-mapped, only the 672 M parameters inference needs),
* the same from the safetensors files written by ``audiosr convert`` (fp32 and fp16).

Re-run with:  python benchmarks/bench_load.py [--scratch /tmp/audiosr_bench] [--keep]
Needs ~12 GB of free disk and ~7 GB of RAM for the first step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = (
    Path(os.environ.get("AUDIOSR_GOLDEN_DIR", REPO.parent / "shared" / "golden"))
    / "state_dict_manifest_full.tsv"
)


def _rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it resets on exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_fake_checkpoint(path: Path) -> None:
    import torch

    dtypes = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64}
    sd = {}
    for line in MANIFEST.read_text().splitlines()[1:]:
        key, shape, dtype, _ = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
        sd[key] = torch.zeros(dims, dtype=dtypes[dtype])
    sd["scale_factor"] = torch.tensor(0.3)
    torch.save({"state_dict": sd}, path)


def measure(mode: str, path: str) -> dict:
    import torch

    t0 = time.perf_counter()
    if mode == "torch.load (original)":
        sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        n = sum(v.numel() for v in sd.values())
    else:
        from audiosr.config import AudioSRConfig
        from audiosr.weights import load_model

        model = load_model(AudioSRConfig(), path)
        n = sum(v.numel() for v in model.state_dict().values())
    return {
        "mode": mode,
        "seconds": round(time.perf_counter() - t0, 1),
        "tensors_M_elements": round(n / 1e6, 1),
        "peak_rss_MB": round(_rss_mb()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", default="/tmp/audiosr_bench_load")
    ap.add_argument("--keep", action="store_true", help="keep the scratch files")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one)))
        return
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    ckpt = scratch / "pytorch_model.bin"
    if not ckpt.exists():
        t0 = time.perf_counter()
        write_fake_checkpoint(ckpt)
        print(
            f"wrote {ckpt} ({ckpt.stat().st_size / 1e9:.2f} GB) in "
            f"{time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
    from audiosr.config import AudioSRConfig
    from audiosr.weights import convert_checkpoint

    st = {}
    for dtype in ("fp32", "fp16"):
        st[dtype] = scratch / f"audiosr_{dtype}.safetensors"
        if not st[dtype].exists():
            convert_checkpoint(ckpt, st[dtype], config=AudioSRConfig(), dtype=dtype)
    cases = [
        ("torch.load (original)", ckpt),
        ("load_model .bin (mmap)", ckpt),
        ("load_model safetensors fp32", st["fp32"]),
        ("load_model safetensors fp16", st["fp16"]),
    ]
    rows = []
    for mode, path in cases:
        subprocess.run(["sync"], check=False)
        out = subprocess.run(
            [sys.executable, __file__, "--one", mode, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["file_GB"] = round(path.stat().st_size / 1e9, 2)
        rows.append(row)
    print("| mode | file GB | seconds | tensors read (M elements) | peak RSS MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['file_GB']} | {r['seconds']} | {r['tensors_M_elements']} | "
            f"{r['peak_rss_MB']} |"
        )
    if not args.keep:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
