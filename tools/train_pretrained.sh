#!/usr/bin/env bash
# Reproduce the small pretrained runs in saved_models/{gan,cgan,vae}-mnist5k: train each on the
# bundled real MNIST digits with a fixed seed, export ONNX + TFLite (verified against Keras), and
# score them with `zoo eval`. Only export/, eval.json, config.json, history.csv and the last grid
# are committed (see .gitignore), and of export/ only the ONNX and batch-1 TFLite generators, to
# keep the repository small. Refuses to touch a run folder that already exists.
#   EPOCHS=20 [MODELS="gan cgan vae"] bash tools/train_pretrained.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
EPOCHS=${EPOCHS:-20}
SEED=0
declare -A MODEL_ARGS=(
  [gan]="--model-arg latent_dim=32 --model-arg base_filters=32"
  [cgan]="--model-arg latent_dim=32 --model-arg base_filters=32"
  [vae]="--model-arg latent_dim=16 --model-arg base_filters=16"
)
for model in ${MODELS:-gan cgan vae}; do
  out="saved_models/$model-mnist5k"
  if [ -e "$out" ]; then
    echo "$out exists; move it away to retrain it" >&2
    exit 1
  fi
  # shellcheck disable=SC2086
  .venv/bin/zoo train "$model" --dataset mnist5k --epochs "$EPOCHS" --batch-size 64 --seed "$SEED" \
    --out "$out" --export onnx,tflite --verbose 2 ${MODEL_ARGS[$model]}
  .venv/bin/zoo eval "$out" --n 2000
done
