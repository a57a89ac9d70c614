#!/usr/bin/env bash
# Stage 1: the tokenizer learns to predict the frozen proxy tokenizer's codes.
# Extra arguments are config overrides (key=value).
#   bash run_train_stage1.sh                               # GPUs: configs/ucf101/stage1.yaml; CPU: the demo
#   NUM_GPUS=8 bash run_train_stage1.sh model.proxy.weights=checkpoints/imagenet_ucf.ckpt
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

NUM_GPUS="${NUM_GPUS:-$(detect_gpus)}"
if [ "$NUM_GPUS" -gt 0 ]; then
  CONFIG="${CONFIG:-configs/ucf101/stage1.yaml}"
else
  CONFIG="${CONFIG:-configs/demo/stage1.yaml}"
  echo "[sweettok] no GPU: stage 1 on the demo set ($CONFIG)"
  check_config config="$CONFIG" "$@"   # a mistyped key fails here, before any demo building
  # the demo models are tiny: one intra-op thread is faster than two that wait on each other
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  ensure_demo_assets
  # the demo proxy comes from stage 0 (unless model.proxy.weights=... is given)
  if [ ! -f outputs/demo/proxy/export/model.safetensors ] && [[ " $* " != *" model.proxy.weights="* ]]; then
    echo "[sweettok] error: outputs/demo/proxy/export is missing; train the demo proxy first: bash run_train_proxy.sh" >&2
    exit 1
  fi
fi

launch scripts/train.py config="$CONFIG" "$@"
