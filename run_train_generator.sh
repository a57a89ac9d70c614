#!/usr/bin/env bash
# Stage 3: dump the train split's tokenizer indices (when the index folder has no index.json yet),
# then train the class-conditional GPT on them. Extra arguments are config overrides (key=value),
# given to both the dump and the training.
#   bash run_train_generator.sh                            # GPUs: configs/ucf101/generator.yaml; CPU: the demo
#   NUM_GPUS=8 bash run_train_generator.sh experiment.init_weight=outputs/ucf101_stage2/export
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

NUM_GPUS="${NUM_GPUS:-$(detect_gpus)}"
if [ "$NUM_GPUS" -gt 0 ]; then
  CONFIG="${CONFIG:-configs/ucf101/generator.yaml}"
  check_config config="$CONFIG" "$@"
else
  CONFIG="${CONFIG:-configs/demo/generator_train.yaml}"
  echo "[sweettok] no GPU: generator on the demo set ($CONFIG)"
  check_config config="$CONFIG" "$@"   # a mistyped key fails here, before any demo building
  # the demo models are tiny: one intra-op thread is faster than two that wait on each other
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  ensure_demo_assets
fi

# The tokenizer export (experiment.init_weight) and the index folder (dataset.index_dir) of the config.
read -r TOKENIZER INDEX_DIR < <("$PYTHON" - config="$CONFIG" "$@" <<'PY'
import sys
from sweettok.config import load_config_from_cli
cfg = load_config_from_cli(sys.argv[1:])
print(cfg.experiment.init_weight or "-", cfg.dataset.index_dir or "-")
PY
)
if [ ! -f "$INDEX_DIR/index.json" ]; then
  if [ ! -f "$TOKENIZER/model.safetensors" ]; then
    echo "[sweettok] error: the tokenizer export $TOKENIZER (experiment.init_weight) is missing; train the" \
         "tokenizer first (bash run_train_proxy.sh && bash run_train_stage1.sh && bash run_train_stage2.sh)" >&2
    exit 1
  fi
  echo "[sweettok] dumping the train split's indices into $INDEX_DIR"
  launch scripts/dump_indices.py --config "$CONFIG" "$@"
fi

launch scripts/train.py config="$CONFIG" "$@"
