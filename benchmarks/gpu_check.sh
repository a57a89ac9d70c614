#!/usr/bin/env bash
# One-GPU performance check: stage-1 and stage-2 step time, peak memory, MFU and the largest batch
# that fits, at the paper preset (17x256x256 clips, 185 M parameters) in bf16 autocast.
#
#   bash benchmarks/gpu_check.sh                    # on a machine with one CUDA GPU
#   PEAK_TFLOPS=989 bash benchmarks/gpu_check.sh    # also MFU against the vendor's dense bf16 peak
#   DRY_RUN=1 bash benchmarks/gpu_check.sh          # no GPU: the same steps on the tiny (demo) preset
#
# Each line comes from benchmarks/gpu_step.py (its --help says what a step is); results also
# go, one JSON line each, to $OUT_DIR/gpu_check.jsonl. Runs: each stage plain (batch $BATCH), with
# activation checkpointing + chunked CE, and the largest-batch search for both settings.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
BATCH=${BATCH:-1}
STEPS=${STEPS:-5}
PEAK_TFLOPS=${PEAK_TFLOPS:-0}
OUT_DIR=${OUT_DIR:-outputs/gpu_check}
PRESET=paper
EXTRA=()
if [[ "${DRY_RUN:-0}" == "1" ]] || ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU (or DRY_RUN=1): dry run on the tiny preset, CPU, largest batch capped at 2"
  PRESET=tiny STEPS=1
  EXTRA=(--max-batch 2 --threads "${THREADS:-1}")
fi
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.jsonl"
: > "$LOG"

run() {  # run <args...>: print the summary line, append the JSON line to $LOG
  local out
  out=$("$PYTHON" benchmarks/gpu_step.py --preset "$PRESET" --steps "$STEPS" --bf16 \
        --peak-tflops "$PEAK_TFLOPS" "${EXTRA[@]}" "$@")
  echo "$out" | head -n -1
  echo "$out" | tail -n 1 >> "$LOG"
}

for stage in 1 2; do
  echo "== stage $stage, $PRESET preset, bf16 autocast"
  run --stage "$stage" --batch "$BATCH" --find-max-batch
  run --stage "$stage" --batch "$BATCH" --find-max-batch --activation-checkpointing --ce-chunk-rows 1024
done
echo "results: $LOG"
