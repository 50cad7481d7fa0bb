#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU: every family for a fixed number of steps on one GPU,
# float32 and mixed_bfloat16, XLA off and on; writes JSON with images/s, step time and peak GPU
# memory (tf.config.experimental.get_memory_info) for each, plus what jit_compile="auto" picks.
#
#   bash tools/gpu_check.sh [OUT.json]            # default bench-results/gpu_check.json
#
# Environment:
#   GPU_VENV  venv to create/reuse (default ~/.cache/genzoo/gpu-venv); gets tensorflow[and-cuda]
#   PYTHON    use this interpreter as is, installing nothing (an offline machine with TF+CUDA)
#   STEPS     steps per timed epoch (default 30), REPEATS timed epochs (default 3, median kept)
#   BATCH     global batch (default 128), DATASET (default mnist5k, bundled: no download)
#   FAMILIES  comma-separated subset (default: every registered family)
# About 20 s per family and configuration on a recent GPU (XLA compiles take most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/gpu_check.json}

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: nvidia-smi not found; this check needs an NVIDIA GPU and driver" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

if [[ -n "${PYTHON:-}" ]]; then
    PY=$PYTHON
else
    VENV=${GPU_VENV:-$HOME/.cache/genzoo/gpu-venv}
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # tensorflow[and-cuda] brings the CUDA/cuDNN wheels that match TensorFlow's build
    "$VENV/bin/python" -m pip install -q "tensorflow[and-cuda]>=2.21,<2.22" -e .
    PY=$VENV/bin/python
fi

export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
"$PY" -c '
import sys, tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print("tensorflow", tf.__version__, "GPUs:", [g.name for g in gpus])
sys.exit(0 if gpus else "gpu_check: TensorFlow sees no GPU (CUDA libraries? driver?)")
'
args=(gpu --out "$OUT" --steps "${STEPS:-30}" --repeats "${REPEATS:-3}"
      --batch-size "${BATCH:-128}" --dataset "${DATASET:-mnist5k}")
if [[ -n "${FAMILIES:-}" ]]; then
    args+=(--families "$FAMILIES")
fi
# one GPU, as the check asks: the others (if any) stay free
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} "$PY" tools/bench_scale.py "${args[@]}"
