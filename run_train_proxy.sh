#!/usr/bin/env bash
# Stage 0: train the proxy VQ tokenizer from scratch (only needed without the published
# OmniTokenizer checkpoint, e.g. for the demo). Extra arguments are config overrides (key=value).
#   bash run_train_proxy.sh                                # GPUs: configs/ucf101/proxy.yaml; CPU: the demo
#   NUM_GPUS=4 CONFIG=configs/k600/proxy.yaml bash run_train_proxy.sh training.max_train_steps=1000
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

if want_help "$@"; then launcher_usage train; exit 0; fi
resolve_num_gpus
pick_config configs/ucf101/proxy.yaml configs/demo/proxy_train.yaml "stage 0"
train_flags "$@"                      # --print-config / --check-only: answered without training
check_config config="$CONFIG" "$@"   # a mistyped key fails here, once, before anything is built or launched
prepare_demo

launch_train config="$CONFIG" "$@"
