#!/usr/bin/env bash
# GPU smoke check of issue 10: run from anywhere on a machine with a CUDA device.
#
#   bash benchmarks/gpu_smoke.sh                 # everything, results under $OUT or a temp dir
#   AUDIOSR_GOLDEN_DIR=/path/to/golden bash benchmarks/gpu_smoke.sh
#   BENCH_ARGS="--durations 5.12 --steps 10" bash benchmarks/gpu_smoke.sh
#   SMOKE_DEVICE=cpu SMOKE_STEPS=2 bash benchmarks/gpu_smoke.sh   # dry run of step 2 on a CPU
#
# 1. the `gpu`-marked tests (CUDA offload, pinned weights, CUDA graphs, no fp64 on the device);
# 2. `audiosr -d cuda --preset fast` and `--preset upstream` on the tiny golden checkpoint, each
#    output checked (48 kHz, the input's length, finite, not silent);
# 3. `bench_speed.py --device cuda` on the full-size model with random weights.
#
# Needs: python3 with torch (CUDA) + numpy/scipy/tqdm/safetensors/pyyaml, and soundfile + soxr
# (+ librosa/pytest for step 1). Wheels found in ./.whl are installed first (a device machine
# without network gets them carried, see the device README); nothing is downloaded here.
# The golden data: $AUDIOSR_GOLDEN_DIR, else shared/golden inside the checkout, else
# ../shared/golden beside it (the test suite's default).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
DEVICE=${SMOKE_DEVICE:-cuda}
STEPS=${SMOKE_STEPS:-123}

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/audiosr-site .whl/*.whl
  export PYTHONPATH="/tmp/audiosr-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

golden=${AUDIOSR_GOLDEN_DIR:-}
if [ -z "$golden" ]; then
  for candidate in "$REPO/shared/golden" "$REPO/../shared/golden"; do
    if [ -d "$candidate" ]; then golden=$(cd "$candidate" && pwd); break; fi
  done
fi
if [ -z "$golden" ] || [ ! -f "$golden/tiny_checkpoint.pt" ]; then
  echo "gpu_smoke: golden data not found; set AUDIOSR_GOLDEN_DIR" >&2
  exit 2
fi
export AUDIOSR_GOLDEN_DIR=$golden
results=${OUT:-$(mktemp -d)}
mkdir -p "$results"
echo "gpu_smoke: golden $golden, results in $results"

if [ "$DEVICE" = cuda ]; then
  "$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_smoke: no CUDA device visible to torch"
print("torch", torch.__version__, "|", torch.cuda.get_device_name(0),
      "| capability", torch.cuda.get_device_capability(0))
PY
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

status=0
step() { echo; echo "=== $1"; }

if [[ $STEPS == *1* ]]; then
  step "1. gpu tests"
  "$PY" -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$results/gpu_tests.log" \
    || status=1
fi

for preset in fast upstream; do
  [[ $STEPS == *2* ]] || break
  step "2. audiosr -d $DEVICE --preset $preset (tiny golden checkpoint)"
  out="$results/cli_$preset"
  start=$SECONDS
  if "$PY" -m audiosr -d "$DEVICE" --preset "$preset" \
      --checkpoint "$golden/tiny_checkpoint.pt" --config "$golden/tiny_config.json" \
      -i "$golden/tiny_input.wav" -s "$out" --overwrite 2> "$results/cli_$preset.log"; then
    echo "wall $((SECONDS - start)) s (loading included)"
    "$PY" - "$golden/tiny_input.wav" "$out" <<'PY' || status=1
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

src, out = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(out.glob("*.wav"))
assert len(files) == 1, f"expected one output in {out}, found {files}"
y, sr = sf.read(str(files[0]), always_2d=True)
info = sf.info(str(src))
assert sr == 48_000, sr
assert abs(len(y) - round(info.duration * 48_000)) <= 1, (len(y), info.duration)
assert np.isfinite(y).all() and np.abs(y).max() > 1e-3, "silent or non-finite output"
print(f"ok: {files[0].name} {len(y)} samples, peak {np.abs(y).max():.3f}")
PY
  else
    tail -n 5 "$results/cli_$preset.log"
    status=1
  fi
done

if [[ $STEPS == *3* ]]; then
  step "3. bench_speed.py --device $DEVICE (full size, random weights)"
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
  "$PY" benchmarks/bench_speed.py --device "$DEVICE" \
    ${BENCH_ARGS:---durations 5.12,10.24 --repeats 2} 2>&1 | tee "$results/bench_speed.md" \
    || status=1
fi

echo
echo "gpu_smoke: $([ "$status" -eq 0 ] && echo passed || echo FAILED) (logs in $results)"
exit "$status"
