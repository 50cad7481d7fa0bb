#!/usr/bin/env bash
# Reproduce the committed pretrained runs in saved_models/: train each with a fixed seed, export
# only what is committed (ONNX + batch-1 TFLite generator, verified against Keras; ONNX only for
# diffusion), score it with
# `zoo eval`, and write the exact command lines into its config.json ("commands"). Only export/,
# eval.json, config.json, history.csv and grid.png (the last epoch's grid) are committed
# (see .gitignore).
# Refuses to touch a run folder that already exists.
#
#   bash tools/train_pretrained.sh                       # every run below
#   RUNS="cgan-mnist5k gan-mnist5k" bash tools/train_pretrained.sh
#
# The Fashion-MNIST runs read Debian's dataset-fashion-mnist (installed here with apt when run as
# root; the tests never need it) and are scored by a cheaper classifier (3 epochs on 20,000
# images, test accuracy 0.82, ~6 min to train once) than zoo eval's default (~68 min here).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
SEED=0
FASHION=/usr/share/datasets/fashion-mnist

# run name -> "family dataset epochs batch [--model-arg ...]"
declare -A RECIPES=(
  [gan-mnist5k]="gan mnist5k 30 64 --model-arg latent_dim=32 --model-arg base_filters=32 --model-arg ema_decay=0.999 --model-arg gan_loss=hinge --model-arg spectral_norm=true --model-arg upsampling=resize"
  [cgan-mnist5k]="cgan mnist5k 60 64 --model-arg latent_dim=32 --model-arg base_filters=32 --model-arg upsampling=resize"
  [vae-mnist5k]="vae mnist5k 30 64 --model-arg latent_dim=16 --model-arg base_filters=16"
  [cddpm-mnist5k]="cddpm mnist5k 40 64"
  [cgan-fashion]="cgan idx:$FASHION 5 128 --model-arg latent_dim=32 --model-arg base_filters=32 --model-arg upsampling=resize"
  [cddpm-fashion]="cddpm idx:$FASHION 3 128"
)
# what each run ships: ONNX + batch-1 TFLite, the diffusion runs ONNX only (their denoiser is
# ~3 MB a file; the whole gallery stays under 20 MB)
declare -A SHIPPED=([cddpm-mnist5k]=onnx [cddpm-fashion]=onnx)
# (cddpm-mnist5k at 12 epochs of 64, 744 steps, read as the class asked for in 0.17 of samples:
# it trains for 40)
ORDER="gan-mnist5k cgan-mnist5k vae-mnist5k cddpm-mnist5k cgan-fashion cddpm-fashion"

for name in ${RUNS:-$ORDER}; do
  recipe=${RECIPES[$name]:-}
  if [ -z "$recipe" ]; then
    echo "unknown run '$name'; known: $ORDER" >&2
    exit 1
  fi
  out="saved_models/$name"
  if [ -e "$out" ]; then
    echo "$out exists; move it away to retrain it" >&2
    exit 1
  fi
  read -r family dataset epochs batch extra <<<"$recipe"
  scoring=""
  [[ $dataset == idx:* ]] && scoring="--classifier-epochs 3 --classifier-max-train 20000"
  if [[ $dataset == idx:* ]] && [ ! -d "${dataset#idx:}" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
      echo "$name needs Fashion-MNIST: sudo apt-get install dataset-fashion-mnist" >&2
      exit 1
    fi
  fi
  commands=(
    "zoo train $family --dataset $dataset --epochs $epochs --batch-size $batch --seed $SEED --out $out --verbose 2 $extra"
    "zoo export $out --formats ${SHIPPED[$name]:-onnx,tflite} --tflite-batch-sizes 1 --overwrite"
    "zoo eval $out --n 2000 $scoring"
  )
  for command in "${commands[@]}"; do
    echo "+ $command"
    # shellcheck disable=SC2086
    .venv/bin/$command
  done
  cp "$(ls "$out"/grids/epoch-*.png | tail -1)" "$out/grid.png"  # the one grid committed
  .venv/bin/python tools/ship_generator_only.py "$out/export"  # a VAE's encoder is not shipped
  .venv/bin/python - "$out" "${commands[@]}" <<'EOF'
import json, sys
from exporters.run_folder import RunFolder, write_json_atomically
run = RunFolder(sys.argv[1])
config = run.read_config()
config["commands"] = sys.argv[2:]
write_json_atomically(run.config_path, config)
EOF
done
