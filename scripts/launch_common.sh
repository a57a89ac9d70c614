# Shared helpers for the top-level launchers (sourced, not run).
#   CONFIG          the YAML to run; always honoured (default: the UCF-101 config with GPUs, the demo on CPU)
#   NUM_GPUS        processes per node (default: every visible GPU; 0 = plain python on CPU);
#                   more than the visible GPUs is refused
#   NUM_MACHINES    nodes (default 1); with more, also MACHINE_RANK, MAIN_PROCESS_IP, MAIN_PROCESS_PORT
#   ACCELERATE_CONFIG  an `accelerate config` YAML (FSDP, DeepSpeed, multi-node); overrides the above
#   PYTHON          interpreter (default: .venv/bin/python when present)
#   WANDB_MODE      online | offline | disabled; unset: online when logged in to wandb, else offline
#   HF_HUB_OFFLINE  default 1: Hugging Face models only from the local cache

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

die() { echo "[sweettok] error: $*" >&2; exit 2; }

detect_gpus() {
  "$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0
}

# want_help ARGS...: true when -h or --help is among the arguments.
want_help() {
  local arg
  for arg in "$@"; do case "$arg" in -h|--help) return 0 ;; esac; done
  return 1
}

# launcher_usage KIND: the launcher's header comment, then the settings every launcher shares;
# KIND "train" adds how to list and check the config, else KIND is the script the arguments go to.
launcher_usage() {
  sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  echo
  echo "Environment (all optional):"
  sed -n '2,/^$/p' scripts/launch_common.sh | grep '^#   ' | sed 's/^# //'
  echo
  if [ "$1" = train ]; then
    cat <<EOF
Arguments: config overrides key=value (every key is in sweettok/config.py), and
  --print-config   print the resolved config (every key with its value) and exit
  --check-only     check config, weights, priors and data (what runs once before accelerate launch); train nothing
  -h, --help       this text
e.g. bash $(basename "$0") --print-config training.max_train_steps=10
     CONFIG=configs/ucf101/stage1.yaml bash $(basename "$0") --check-only
EOF
  else
    echo "Other arguments go to $1 (its flags: python $1 --help)."
  fi
}

# resolve_num_gpus: NUM_GPUS from the environment (a whole number, at most the visible GPUs), else
# every visible GPU; exported for the launch.
resolve_num_gpus() {
  if [ -z "${NUM_GPUS:-}" ]; then
    NUM_GPUS="$(detect_gpus)"
  elif ! [[ "$NUM_GPUS" =~ ^[0-9]+$ ]]; then
    die "NUM_GPUS='$NUM_GPUS' is not a whole number (0 = plain python on CPU)"
  elif [ "$NUM_GPUS" -gt 0 ] && [ -z "${ACCELERATE_CONFIG:-}" ]; then
    local visible
    visible="$(detect_gpus)"
    if [ "$visible" = 0 ]; then
      die "NUM_GPUS=$NUM_GPUS but no GPU is visible (torch.cuda.device_count() is 0); NUM_GPUS=0 runs plain python on CPU"
    elif [ "$NUM_GPUS" -gt "$visible" ]; then
      die "NUM_GPUS=$NUM_GPUS but only $visible GPU(s) are visible (torch.cuda.device_count()); set NUM_GPUS=$visible or fewer"
    fi
  fi
  export NUM_GPUS
}

# pick_config GPU_DEFAULT CPU_DEFAULT WHAT: CONFIG from the environment when set (on any machine),
# else the GPU or the CPU default; says what runs where.
pick_config() {
  if [ "$NUM_GPUS" -gt 0 ]; then
    CONFIG="${CONFIG:-$1}"
    echo "[sweettok] $3 with $CONFIG on $NUM_GPUS GPU(s) per node, ${NUM_MACHINES:-1} node(s)" >&2
  else
    CONFIG="${CONFIG:-$2}"
    echo "[sweettok] no GPU: $3 with $CONFIG on CPU" >&2
  fi
}

# is_demo_config: CONFIG is one of configs/demo/, whose data and priors the launchers build when absent.
is_demo_config() { [[ "$CONFIG" == configs/demo/* || "$CONFIG" == */configs/demo/* ]]; }

# train_flags ARGS...: --print-config / --check-only are answered by scripts/train.py; nothing else runs.
train_flags() {
  local arg
  for arg in "$@"; do
    case "$arg" in --print-config|--check-only) exec "$PYTHON" scripts/train.py config="$CONFIG" "$@" ;; esac
  done
}

# prepare_demo: for a demo config, one thread per CPU process (the demo models are tiny: one
# intra-op thread is faster than two that wait on each other) and the demo data and priors.
prepare_demo() {
  if is_demo_config; then
    [ "$NUM_GPUS" -gt 0 ] || export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    ensure_demo_assets
  fi
}

# launch_train ARGS...: scripts/train.py. Several processes: its checks (--check-only) run once
# first, so a missing file or an empty dataset is one line, not a traceback per rank.
launch_train() {
  if [ -n "${ACCELERATE_CONFIG:-}" ] || [ "${NUM_GPUS:-0}" -gt 0 ]; then
    "$PYTHON" scripts/train.py --check-only "$@" > /dev/null
  fi
  launch scripts/train.py "$@"
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
