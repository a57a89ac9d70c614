#!/usr/bin/env bash
# Stage 0: train the proxy VQ tokenizer from scratch (only needed without the published
# OmniTokenizer checkpoint, e.g. for the demo). Extra arguments are config overrides (key=value).
#   bash run_train_proxy.sh                                # GPUs: configs/ucf101/proxy.yaml; CPU: the demo
#   NUM_GPUS=4 CONFIG=configs/k600/proxy.yaml bash run_train_proxy.sh training.max_train_steps=1000
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

NUM_GPUS="${NUM_GPUS:-$(detect_gpus)}"
if [ "$NUM_GPUS" -gt 0 ]; then
  CONFIG="${CONFIG:-configs/ucf101/proxy.yaml}"
else
  CONFIG="${CONFIG:-configs/demo/proxy_train.yaml}"
  echo "[sweettok] no GPU: stage 0 on the demo set ($CONFIG)"
  check_config config="$CONFIG" "$@"   # a mistyped key fails here, before any demo building
  # the demo models are tiny: one intra-op thread is faster than two that wait on each other
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  ensure_demo_assets
fi

launch scripts/train.py config="$CONFIG" "$@"
