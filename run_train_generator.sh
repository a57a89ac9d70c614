#!/usr/bin/env bash
# Stage 3: dump the train split's tokenizer indices (when the index folder has no index.json yet),
# then train the class-conditional GPT on them. Extra arguments are config overrides (key=value),
# given to both the dump and the training.
#   bash run_train_generator.sh                            # GPUs: configs/ucf101/generator.yaml; CPU: the demo
#   NUM_GPUS=8 bash run_train_generator.sh experiment.init_weight=outputs/ucf101_stage2/export
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

if want_help "$@"; then launcher_usage train; exit 0; fi
resolve_num_gpus
pick_config configs/ucf101/generator.yaml configs/demo/generator_train.yaml "generator"
train_flags "$@"                      # --print-config / --check-only: answered without training
check_config config="$CONFIG" "$@"   # a mistyped key fails here, once, before anything is built or launched
prepare_demo

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

launch_train config="$CONFIG" "$@"
