#!/usr/bin/env bash
# Stage 2: encoder and quantizers frozen; decoder + the proxy's pixel decoder trained with
# L2 + perceptual + 3-D PatchGAN. Extra arguments are config overrides (key=value).
#   bash run_train_stage2.sh                               # GPUs: configs/ucf101/stage2.yaml; CPU: the demo
#   NUM_GPUS=8 bash run_train_stage2.sh experiment.init_weight=outputs/ucf101_stage1/export
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

if want_help "$@"; then launcher_usage train; exit 0; fi
resolve_num_gpus
pick_config configs/ucf101/stage2.yaml configs/demo/stage2.yaml "stage 2"
train_flags "$@"                      # --print-config / --check-only: answered without training
check_config config="$CONFIG" "$@"   # a mistyped key fails here, once, before anything is built or launched
prepare_demo
if is_demo_config; then
  # the demo stage 2 starts from the demo stage-1 export (unless experiment.init_weight=... is given)
  if [ ! -f outputs/demo/stage1/export/model.safetensors ] && [[ " $* " != *" experiment.init_weight="* ]]; then
    echo "[sweettok] error: outputs/demo/stage1/export is missing; run stage 1 first: bash run_train_stage1.sh" >&2
    exit 1
  fi
fi

launch_train config="$CONFIG" "$@"
