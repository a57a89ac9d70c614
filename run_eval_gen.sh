#!/usr/bin/env bash
# Generation eval: sample NUM_PER_CLASS clips per class with the trained generator, then gFVD
# against the real train split (scripts/eval_generation.py: I3D, 128x128 reads, centre 17 frames),
# and the nearest-neighbour class accuracy of the samples (scripts/eval_class_accuracy.py).
# Extra arguments go to scripts/sample.py (e.g. --cfg-scale 1.0 --top-p 0.95).
#   bash run_eval_gen.sh                                   # GPUs: UCF-101; CPU: the demo (2 per class)
#   CHECKPOINT=outputs/ucf101_generator/export NUM_PER_CLASS=21 bash run_eval_gen.sh --seed 2000
# CHECKPOINT: the generator export; NUM_PER_CLASS, NUM_VIDEOS (gFVD clips), RESOLUTION (128), OUT (the
# samples folder, default <checkpoint>/../eval_samples); CONFIG: the real data (the generator config);
# RECON_FEATURES: the i3d_features.safetensors that run_eval.sh wrote for the tokenizer: adds its
# reconstructions' class accuracy, the ceiling for samples decoded by that tokenizer.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

if want_help "$@"; then launcher_usage scripts/sample.py; exit 0; fi
resolve_num_gpus
if [ "$NUM_GPUS" -gt 0 ]; then
  CONFIG="${CONFIG:-configs/ucf101/generator.yaml}"
  CHECKPOINT="${CHECKPOINT:-outputs/ucf101_generator/export}"
  NUM_PER_CLASS="${NUM_PER_CLASS:-21}"   # 101 x 21 = 2121 >= the 2,048 clips of the gFVD protocol
  NUM_VIDEOS="${NUM_VIDEOS:-2048}"
else
  CONFIG="${CONFIG:-configs/demo/generator_train.yaml}"
  CHECKPOINT="${CHECKPOINT:-outputs/demo/generator/export}"
  NUM_PER_CLASS="${NUM_PER_CLASS:-2}"
  NUM_VIDEOS="${NUM_VIDEOS:-2048}"       # every clip there is (24 generated, 120 real)
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  echo "[sweettok] no GPU: generation eval on the demo set ($CHECKPOINT)"
fi
OUT="${OUT:-$(dirname "$CHECKPOINT")/eval_samples}"
if [ ! -f "$CHECKPOINT/model.safetensors" ]; then
  echo "[sweettok] error: $CHECKPOINT is missing; train the generator first: bash run_train_generator.sh" >&2
  exit 1
fi

"$PYTHON" scripts/sample.py --checkpoint "$CHECKPOINT" --out "$OUT" --num-per-class "$NUM_PER_CLASS" "$@"
launch scripts/eval_generation.py --generated "$OUT" --real-config "$CONFIG" --real-split train \
  --num-videos "$NUM_VIDEOS" --resolution "${RESOLUTION:-128}" --output "$OUT/gfvd.json"
# the real side's I3D features are kept beside the samples folder (delete the file when the data change)
"$PYTHON" scripts/eval_class_accuracy.py --samples "$OUT" --real-config "$CONFIG" --output "$OUT/class_accuracy.json" \
  --real-features "$(dirname "$OUT")/real_train_i3d_$(basename "$CONFIG" .yaml).safetensors" \
  ${RECON_FEATURES:+--reconstruction-features "$RECON_FEATURES"}
