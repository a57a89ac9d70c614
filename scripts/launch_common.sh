# Shared helpers for the top-level launchers (sourced, not run).
#   NUM_GPUS        processes per node (default: every visible GPU; 0 = plain python on CPU)
#   NUM_MACHINES    nodes (default 1); with more, also MACHINE_RANK, MAIN_PROCESS_IP, MAIN_PROCESS_PORT
#   ACCELERATE_CONFIG  an `accelerate config` YAML (FSDP, DeepSpeed, multi-node); overrides the above
#   PYTHON          interpreter (default: .venv/bin/python when present)

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export WANDB_MODE="${WANDB_MODE:-offline}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

detect_gpus() {
  "$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0
}

# launch SCRIPT ARGS...: accelerate on GPUs, plain python on CPU.
launch() {
  local script="$1"; shift
  if [ -n "${ACCELERATE_CONFIG:-}" ]; then
    "$PYTHON" -m accelerate.commands.launch --config_file "$ACCELERATE_CONFIG" "$script" "$@"
  elif [ "${NUM_GPUS:-0}" -gt 0 ]; then
    local args=(--num_processes "$((NUM_GPUS * ${NUM_MACHINES:-1}))" --num_machines "${NUM_MACHINES:-1}")
    if [ "${NUM_MACHINES:-1}" -gt 1 ]; then
      args+=(--machine_rank "${MACHINE_RANK:?set MACHINE_RANK}" --main_process_ip "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP}")
      [ -n "${MAIN_PROCESS_PORT:-}" ] && args+=(--main_process_port "$MAIN_PROCESS_PORT")
    fi
    [ "$((NUM_GPUS * ${NUM_MACHINES:-1}))" -gt 1 ] && args+=(--multi_gpu)
    "$PYTHON" -m accelerate.commands.launch "${args[@]}" "$script" "$@"
  else
    "$PYTHON" "$script" "$@"
  fi
}

# The demo configs need the synthetic videos and the small MLC priors; build them when absent.
ensure_demo_assets() {
  if [ ! -f data/demo/train.txt ]; then
    echo "[sweettok] demo data missing: building data/demo (python scripts/make_demo_dataset.py)"
    "$PYTHON" scripts/make_demo_dataset.py --out data/demo
  fi
  if [ ! -f codebook_priors/demo/mlc_codebook_noun_adj.json ]; then
    echo "[sweettok] demo priors missing: building codebook_priors/demo (python scripts/build_codebook_priors.py --demo)"
    "$PYTHON" scripts/build_codebook_priors.py --demo --out codebook_priors/demo
  fi
}

# check_config config=PATH OVERRIDES...: fail at once (naming the key) on a bad config or override,
# before building demo assets or starting processes.
check_config() {
  "$PYTHON" - "$@" <<'PY'
import sys
from sweettok.config import ConfigError, load_config_from_cli
try:
    load_config_from_cli(sys.argv[1:])
except ConfigError as err:
    sys.exit(f"error: {err}")
PY
}
