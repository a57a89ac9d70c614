#!/usr/bin/env bash
# The whole SweetTok pipeline on the embedded synthetic demo set, on CPU, then a report:
#   data -> priors -> proxy (stage 0; beside it, the real clips' I3D features) -> stage 1 -> stage 2 ->
#   reconstruction eval -> dump indices -> generator -> sample -> generation eval (gFVD + per-class
#   accuracy) -> probe -> ablations (plain VQ; joint queries: stage 1 + 2, eval, probe) -> report.
#
#   bash run_demo.sh                    # every step whose output is missing; writes outputs/demo/report.md
#   bash run_demo.sh --force            # redo every step (each step's old output is removed first)
#   bash run_demo.sh --only stage2      # one step (a group prefix works too: --only ablation_vq)
#   bash run_demo.sh --skip-ablations   # leave out the two ablation variants
#   bash run_demo.sh --sequential       # ablations after the main run, not beside it on a second core
# A step is skipped when its output exists ("skip <step>: <output> exists"). Step times go to
# outputs/demo/timings.json; the report (scripts/make_report.py) shows them.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/launch_common.sh

DEMO=outputs/demo

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

# run_timed FILE COMMAND...: run COMMAND in a subshell and return its exit status; FILE gets the CPU
# seconds (user + sys) that COMMAND's processes used, from the subshell's own `times` (its second
# line: finished children, "0m1.5s 0m0.2s"). Counting this shell's children instead would add a
# background lane (the ablations, the features step) to the step that was running when it ended.
run_timed() {
  local file="$1"; shift
  ( status=0; "$@" || status=$?; times > "$file"; exit "$status" )
}
cpu_seconds() {
  tail -1 "$1" 2>/dev/null | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }'
}

# record STEP SECONDS STATUS [CPU_SECONDS]: merge one step's times (and the load average) into
# timings.json (under a lock: the ablations may record at the same time). STEP "run" records the
# wall clock of this whole invocation. The CPU time of a step is about its wall time on an idle
# machine (one thread per process), so steps compare even when other work shares the cores.
record() {
  flock "$DEMO/.timings.lock" "$PYTHON" - "$DEMO/timings.json" "$1" "$2" "$3" "${4:-0}" \
    "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" <<'PY'
import json, sys
path, name, seconds, status, cpu, load = sys.argv[1:]
try:
    data = json.load(open(path))
except (OSError, ValueError):
    data = {"steps": []}
if name == "run":
    data["run_wall_seconds"] = int(seconds)
else:
    steps = [s for s in data.get("steps", []) if s["name"] != name]
    old = [s for s in data.get("steps", []) if s["name"] == name]
    if status == "skipped" and old:  # keep the times of the run that made the output
        steps.append(old[0])
    else:
        steps.append({"name": name, "seconds": None if status == "skipped" else int(seconds),
                      "cpu_seconds": None if status == "skipped" else int(cpu), "status": status, "load": load})
    data["steps"] = steps
data["total_seconds"] = sum(s["seconds"] or 0 for s in data["steps"])
data["total_cpu_seconds"] = sum(s.get("cpu_seconds") or 0 for s in data["steps"])
data["load"] = load
json.dump(data, open(path, "w"), indent=1)
PY
}

# step NAME OUTPUT CLEAN COMMAND...: run COMMAND unless OUTPUT exists; --force removes CLEAN first.
step() {
  local name="$1" output="$2" clean="$3"; shift 3
  if [ -n "$ONLY" ] && [[ "$name" != "$ONLY" && "$name" != "$ONLY"_* ]]; then return 0; fi
  if [ "$FORCE" = 0 ] && [ -e "$output" ]; then
    echo "skip $name: $output exists"; record "$name" 0 skipped; return 0
  fi
  [ "$FORCE" = 1 ] && [ -n "$clean" ] && rm -rf "$clean"
  echo; echo "======== [$(date -u +%H:%M:%S)] $name -> $output ========"
  local started=$SECONDS status=0 cpu_file="$DEMO/.cpu.$BASHPID"  # per shell: the lanes time steps at once
  run_timed "$cpu_file" "$@" || status=$?
  local cpu; cpu=$(cpu_seconds "$cpu_file"); cpu=${cpu:-0}; rm -f "$cpu_file"
  if [ "$status" != 0 ]; then
    record "$name" "$((SECONDS - started))" failed "$cpu"
    echo "run_demo.sh: step '$name' failed (exit $status) after $((SECONDS - started)) s; a rerun starts here" >&2
    exit 1
  fi
  record "$name" "$((SECONDS - started))" ran "$cpu"
  echo "======== $name done in $((SECONDS - started)) s (CPU $cpu s; load $(cut -d' ' -f1-3 /proc/loadavg)) ========"
}

# The generation eval of run_eval_gen.sh on the samples of the sample step (which it would redraw):
# gFVD against 48 train clips (I3D on CPU costs ~1 s a clip: all 120 made this step ~400 s), and the
# nearest-neighbour class accuracy of the samples against every train clip; the eval step's
# reconstructions of the test clips give the ceiling for samples decoded by this tokenizer. The real
# clips' I3D features come from $DEMO/cache (the features step; a cache made for other videos or
# settings is recomputed).
GFVD_REAL=(--real-config configs/demo/generator_train.yaml --real-split train --num-videos 48 --resolution 128
           --num-workers 0 --real-features $DEMO/cache/gfvd_real_features.safetensors)
CLASS_REAL=(--real-config configs/demo/generator_train.yaml --real-features $DEMO/cache/i3d_train_features.safetensors)
eval_generation() {
  "$PYTHON" scripts/eval_generation.py --generated $DEMO/samples "${GFVD_REAL[@]}" --output $DEMO/eval_gen/gfvd.json &&
  "$PYTHON" scripts/eval_class_accuracy.py --samples $DEMO/samples "${CLASS_REAL[@]}" \
    --output $DEMO/eval_gen/class_accuracy.json --reconstruction-features $DEMO/eval/i3d_features.safetensors
}

# The reconstruction evals (main run and ablations) share the real test clips' I3D features.
TEST_REAL=(--real-features $DEMO/cache/i3d_test_features.safetensors)

# The real sides of these evals (I3D features of the train clips and of the test clips) need only the
# data: the features step computes them on the second core while the proxy trains, which would
# otherwise leave that core idle.
real_features() {
  "$PYTHON" scripts/eval_generation.py "${GFVD_REAL[@]}" &&
  "$PYTHON" scripts/eval_tokenizer.py --config configs/demo/stage2.yaml "${TEST_REAL[@]}" &&
  "$PYTHON" scripts/eval_class_accuracy.py "${CLASS_REAL[@]}"
}

# The reconstruction eval of the main tokenizer (the eval step).
main_eval() {
  step eval $DEMO/eval/report.json $DEMO/eval \
    bash run_eval.sh --checkpoint $DEMO/stage2/export --out $DEMO/eval "${TEST_REAL[@]}"
}

# The two ablation variants (they need only the proxy); with "with-main-eval" (beside the main run),
# the main tokenizer's eval too, between the joint variant's stage 1 and 2 (by then the main stage 2
# is about to be exported; this side waits for it): the main side has the longer path, so it gains
# what this side does for it (it waits for that eval before eval_gen, which reads its features).
ablation_stage1() {
  local root=$DEMO/ablation_$1
  step ablation_$1_stage1 $root/stage1/export/model.safetensors $root/stage1 \
    env CONFIG=configs/demo/ablation_$1/stage1.yaml bash run_train_stage1.sh experiment.output_dir=$root/stage1
}
ablation_rest() {
  local root=$DEMO/ablation_$1
  step ablation_$1_stage2 $root/stage2/export/model.safetensors $root/stage2 \
    env CONFIG=configs/demo/ablation_$1/stage2.yaml bash run_train_stage2.sh experiment.output_dir=$root/stage2 \
    experiment.init_weight=$root/stage1/export
  step ablation_$1_eval $root/eval/report.json $root/eval \
    bash run_eval.sh --checkpoint $root/stage2/export --out $root/eval "${TEST_REAL[@]}"
  step ablation_$1_probe $root/probe/probe.json $root/probe \
    "$PYTHON" scripts/eval_probe.py --checkpoint $root/stage2/export --out $root/probe/probe.json
}
ablations() {
  ablation_stage1 vq
  ablation_rest vq
  ablation_stage1 joint
  if [ "${1:-}" = with-main-eval ]; then
    while [ ! -e $DEMO/stage2/export/model.safetensors ] && [ ! -e $DEMO/.main_stopped ]; do sleep 2; done
    if [ -e $DEMO/stage2/export/model.safetensors ]; then main_eval; else echo "skip eval: the main run stopped"; fi
  fi
  ablation_rest joint
}

# The whole script is one function, read before it runs: editing this file mid-run cannot derail it.
main() {
  FORCE=0; SKIP_ABLATIONS=0; ONLY=""; SEQUENTIAL=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --force) FORCE=1 ;;
      --skip-ablations) SKIP_ABLATIONS=1 ;;
      --sequential) SEQUENTIAL=1 ;;
      --only) ONLY="${2:?--only needs a step name}"; shift ;;
      --only=*) ONLY="${1#--only=}" ;;
      -h|--help) usage; exit 0 ;;
      *) echo "run_demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
  done

  STEPS=(data priors features proxy stage1 stage2 eval dump generator sample eval_gen probe
         ablation_vq_stage1 ablation_vq_stage2 ablation_vq_eval ablation_vq_probe
         ablation_joint_stage1 ablation_joint_stage2 ablation_joint_eval ablation_joint_probe report)
  if [ -n "$ONLY" ] && ! printf '%s\n' "${STEPS[@]}" | grep -qE "^${ONLY}(_|$)"; then
    echo "run_demo.sh: unknown step '$ONLY'; steps: ${STEPS[*]}" >&2; exit 2
  fi
  # The demo is a CPU recipe: the launchers would pick the full-size configs on a GPU machine.
  export NUM_GPUS=0
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # the demo models are tiny: one thread per process is fastest
  mkdir -p "$DEMO"

  # ---------------------------------------------------------------- tokenizer
  step data   data/demo/train.txt data/demo \
    "$PYTHON" scripts/make_demo_dataset.py --out data/demo
  step priors codebook_priors/demo/mlc_codebook_verb_adv.json codebook_priors/demo \
    "$PYTHON" scripts/build_codebook_priors.py --demo --out codebook_priors/demo
  local features_pid=""
  if [ -z "$ONLY" ] && [ "$SEQUENTIAL" = 0 ]; then
    echo; echo "======== [$(date -u +%H:%M:%S)] real-clip features start in the background: log $DEMO/features.log ========"
    step features $DEMO/cache/i3d_train_features.safetensors $DEMO/cache real_features >> "$DEMO/features.log" 2>&1 &
    features_pid=$!
  else
    step features $DEMO/cache/i3d_train_features.safetensors $DEMO/cache real_features
  fi
  step proxy  $DEMO/proxy/export/model.safetensors $DEMO/proxy \
    env CONFIG=configs/demo/proxy_train.yaml bash run_train_proxy.sh
  if [ -n "$features_pid" ] && ! wait "$features_pid"; then
    tail -n 20 "$DEMO/features.log" >&2
    echo "run_demo.sh: the features step failed; full log: $DEMO/features.log" >&2
    exit 1
  fi
  if [ -n "$features_pid" ]; then grep -E "^(skip |========)" "$DEMO/features.log" | tail -n 2 || true; fi

  # Every step runs one thread: on a second core the ablations train beside the main run.
  local ablations_pid=""
  if [ "$SKIP_ABLATIONS" = 0 ] && [ -z "$ONLY" ] && [ "$SEQUENTIAL" = 0 ]; then
    echo; echo "======== [$(date -u +%H:%M:%S)] ablations (and the main eval) start in the background: log $DEMO/ablations.log ========"
    rm -f $DEMO/.main_stopped
    [ "$FORCE" = 1 ] && rm -rf $DEMO/eval  # eval_gen must not read a previous run's eval
    ablations with-main-eval >> "$DEMO/ablations.log" 2>&1 &
    ablations_pid=$!
    # a failed main step still lets the ablations finish (their results stand); Ctrl-C stops both
    trap "touch $DEMO/.main_stopped; echo 'run_demo.sh: waiting for the ablations to finish ($DEMO/ablations.log)' >&2; wait $ablations_pid" EXIT
  fi

  step stage1 $DEMO/stage1/export/model.safetensors $DEMO/stage1 \
    env CONFIG=configs/demo/stage1.yaml bash run_train_stage1.sh
  step stage2 $DEMO/stage2/export/model.safetensors $DEMO/stage2 \
    env CONFIG=configs/demo/stage2.yaml bash run_train_stage2.sh
  [ -z "$ablations_pid" ] && main_eval

  # ---------------------------------------------------------------- generator
  step dump      $DEMO/indices/train/index.json $DEMO/indices \
    "$PYTHON" scripts/dump_indices.py --config configs/demo/generator_train.yaml
  step generator $DEMO/generator/export/model.safetensors $DEMO/generator \
    env CONFIG=configs/demo/generator_train.yaml bash run_train_generator.sh
  step sample    $DEMO/samples/samples.json $DEMO/samples \
    "$PYTHON" scripts/sample.py --checkpoint $DEMO/generator/export --out $DEMO/samples --num-per-class 2
  if [ -n "$ablations_pid" ]; then  # eval_gen reads the eval's I3D features: wait for the other side's eval
    while [ ! -e $DEMO/eval/report.json ] && kill -0 "$ablations_pid" 2>/dev/null; do sleep 2; done
    [ -e $DEMO/eval/report.json ] || main_eval  # that side stopped first: evaluate here
  fi
  step eval_gen  $DEMO/eval_gen/class_accuracy.json $DEMO/eval_gen eval_generation
  step probe     $DEMO/probe/probe.json $DEMO/probe \
    "$PYTHON" scripts/eval_probe.py --checkpoint $DEMO/stage2/export --out $DEMO/probe/probe.json

  # ---------------------------------------------------------------- ablations (same budget as the main run)
  if [ -n "$ablations_pid" ]; then
    echo; echo "======== [$(date -u +%H:%M:%S)] waiting for the ablations ($DEMO/ablations.log) ========"
    local status=0
    wait "$ablations_pid" || status=$?
    trap - EXIT
    grep -E "^(skip |========)" "$DEMO/ablations.log" || true
    if [ "$status" != 0 ]; then
      tail -n 20 "$DEMO/ablations.log" >&2
      echo "run_demo.sh: the ablations failed (exit $status); full log: $DEMO/ablations.log" >&2
      exit 1
    fi
  elif [ "$SKIP_ABLATIONS" = 0 ]; then
    ablations
  fi

  # ---------------------------------------------------------------- report (always rewritten: cheap)
  if [ -z "$ONLY" ] || [ "$ONLY" = report ]; then
    echo; echo "======== [$(date -u +%H:%M:%S)] report ========"
    if [ -z "$ONLY" ]; then record run "$SECONDS" ran; fi
    "$PYTHON" scripts/make_report.py --demo-dir $DEMO --out $DEMO/report.md
  fi
  echo "run_demo.sh: done in $SECONDS s (every step's time: $DEMO/timings.json); report: $DEMO/report.md"
}

main "$@"; exit $?
