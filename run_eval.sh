#!/usr/bin/env bash
# Reconstruction eval of a tokenizer: rFVD, PSNR, SSIM, LPIPS, codebook usage -> <out>/report.json
# plus a few input | reconstruction | difference videos. Extra arguments go to
# scripts/eval_tokenizer.py (flags such as --num-clips 64 --no-fvd --out DIR, and key=value overrides).
#   bash run_eval.sh                                   # GPUs: outputs/ucf101_stage2/export on the UCF-101 test list
#                                                      # CPU: outputs/demo/stage2/export on the demo test clips
#   CHECKPOINT=outputs/ucf101_stage2/checkpoint-50000 NUM_GPUS=8 bash run_eval.sh --batch-size 4   # EMA weights
#   bash run_eval.sh --checkpoint outputs/demo/stage1/export --no-ema ...   # a stage-1 export: proxy argmax codes
# CHECKPOINT: export folder or checkpoint-<step> folder; CONFIG: data/eval settings (default: the
# checkpoint's own config.yaml on CPU, configs/ucf101/stage2.yaml on GPUs).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

if want_help "$@"; then launcher_usage scripts/eval_tokenizer.py; exit 0; fi
resolve_num_gpus
if [ "$NUM_GPUS" -gt 0 ]; then
  CHECKPOINT="${CHECKPOINT:-outputs/ucf101_stage2/export}"
  CONFIG="${CONFIG:-configs/ucf101/stage2.yaml}"
else
  CHECKPOINT="${CHECKPOINT:-outputs/demo/stage2/export}"
  CONFIG="${CONFIG:-}"
  echo "[sweettok] no GPU: reconstruction eval on CPU"
fi

# a --checkpoint/--tokenizer among the arguments wins over CHECKPOINT (argparse keeps the last one)
if [[ " $* " != *" --checkpoint"* && " $* " != *" --tokenizer"* ]] && [ ! -f "$CHECKPOINT/model.safetensors" ]; then
  echo "[sweettok] error: $CHECKPOINT/model.safetensors is missing; train the tokenizer first" \
       "(CPU demo: bash run_demo.sh --only stage2) or set CHECKPOINT=<export or checkpoint-<step> folder>" >&2
  exit 1
fi

args=(--checkpoint "$CHECKPOINT")
[ -n "$CONFIG" ] && args+=(--config "$CONFIG")
launch scripts/eval_tokenizer.py "${args[@]}" "$@"
