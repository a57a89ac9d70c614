#!/usr/bin/env bash
# Stage 1: the tokenizer learns to predict the frozen proxy tokenizer's codes.
# Extra arguments are config overrides (key=value).
#   bash run_train_stage1.sh                               # GPUs: configs/ucf101/stage1.yaml; CPU: the demo
#   NUM_GPUS=8 bash run_train_stage1.sh model.proxy.weights=checkpoints/imagenet_ucf.ckpt
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

if want_help "$@"; then launcher_usage train; exit 0; fi
resolve_num_gpus
pick_config configs/ucf101/stage1.yaml configs/demo/stage1.yaml "stage 1"
train_flags "$@"                      # --print-config / --check-only: answered without training
check_config config="$CONFIG" "$@"   # a mistyped key fails here, once, before anything is built or launched
prepare_demo
if is_demo_config; then
  # the demo proxy comes from stage 0 (unless model.proxy.weights=... is given)
  if [ ! -f outputs/demo/proxy/export/model.safetensors ] && [[ " $* " != *" model.proxy.weights="* ]]; then
    echo "[sweettok] error: outputs/demo/proxy/export is missing; train the demo proxy first: bash run_train_proxy.sh" >&2
    exit 1
  fi
fi

launch_train config="$CONFIG" "$@"
