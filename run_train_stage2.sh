#!/usr/bin/env bash
# Stage 2: encoder and quantizers frozen; decoder + the proxy's pixel decoder trained with
# L2 + perceptual + 3-D PatchGAN. Extra arguments are config overrides (key=value).
#   bash run_train_stage2.sh                               # GPUs: configs/ucf101/stage2.yaml; CPU: the demo
#   NUM_GPUS=8 bash run_train_stage2.sh experiment.init_weight=outputs/ucf101_stage1/export
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

NUM_GPUS="${NUM_GPUS:-$(detect_gpus)}"
if [ "$NUM_GPUS" -gt 0 ]; then
  CONFIG="${CONFIG:-configs/ucf101/stage2.yaml}"
else
  CONFIG="${CONFIG:-configs/demo/stage2.yaml}"
  echo "[sweettok] no GPU: stage 2 on the demo set ($CONFIG)"
  check_config config="$CONFIG" "$@"   # a mistyped key fails here, before any demo building
  # the demo models are tiny: one intra-op thread is faster than two that wait on each other
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  ensure_demo_assets
  # the demo stage 2 starts from the demo stage-1 export (unless experiment.init_weight=... is given)
  if [ ! -f outputs/demo/stage1/export/model.safetensors ] && [[ " $* " != *" experiment.init_weight="* ]]; then
    echo "[sweettok] error: outputs/demo/stage1/export is missing; run stage 1 first: bash run_train_stage1.sh" >&2
    exit 1
  fi
fi

launch scripts/train.py config="$CONFIG" "$@"
