#!/usr/bin/env bash
# Reproduce vs improve: train experiment=seed_2017 and experiment=t2v end to end on the shapes dataset (CPU),
# evaluate both with evaluate.py, and print their tables side by side, with the wall time of each step.
#
#   bench/fidelity.sh                        # the real comparison (training dominates: about 1x and 2x `make train`)
#   EVAL_ARGS="probe.max_steps=15" bench/fidelity.sh debug=limit logger=csv   # a one-minute smoke test
#                                            # (arguments go to every train.py and evaluate.py call)
#   TRAIN_ARGS="seed=1" EVAL_ARGS="num_samples=8" bench/fidelity.sh   # extras for one app only
#   OUT=/tmp/fid bench/fidelity.sh           # where runs and artifacts go (default outputs/bench/fidelity/<time>)
#   bench/fidelity.sh held_out=three         # another held-out split (conf/held_out/, or 'data.held_out=[...]')
#
# The table starts with the held-out combinations balanced over the values each caption names: judge a change
# by those, on more than one split.
# Each experiment gets its own artifact registry ($OUT/<experiment>/artifacts); both evaluations share one
# attribute probe ($OUT/probe), trained once. The evaluations are in $OUT/<experiment>/eval/metrics.{json,md},
# the side-by-side table in $OUT/comparison.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-outputs/bench/fidelity/$(date +%Y-%m-%d_%H-%M-%S)}
EXPERIMENTS=${EXPERIMENTS:-"seed_2017 t2v"}
read -r -a train_args <<<"${TRAIN_ARGS:-}"
read -r -a eval_args <<<"${EVAL_ARGS:-}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
timing="$OUT/timing.txt"
: >"$timing"

timed() {  # timed <label> <command...>: run it, record its wall time
  local label=$1 start end
  shift
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  printf '%-28s %6ds\n' "$label" $((end - start)) | tee -a "$timing"
}

bench_start=$(date +%s)
runs=()
for exp in $EXPERIMENTS; do
  dir="$OUT/$exp"
  timed "train $exp" "$PY" train.py stage=pipeline "experiment=$exp" "paths.artifacts_dir=$dir/artifacts" \
    "hydra.run.dir=$dir/train" "$@" "${train_args[@]}"
  timed "evaluate $exp" "$PY" evaluate.py "experiment=$exp" "paths.artifacts_dir=$dir/artifacts" \
    "probe.artifacts_dir=$OUT/probe" "hydra.run.dir=$dir/eval" "$@" "${eval_args[@]}"
  runs+=("$dir/eval")
done
total=$(($(date +%s) - bench_start))
printf '%-28s %6ds\n' "total" "$total" | tee -a "$timing"

names=$(echo "$EXPERIMENTS" | tr ' ' ',')
{
  echo "# bench/fidelity.sh: $(echo "$EXPERIMENTS" | sed 's/ / vs /g')"
  echo
  echo "Extra arguments: ${*:-none}; TRAIN_ARGS: ${TRAIN_ARGS:-none}; EVAL_ARGS: ${EVAL_ARGS:-none}"
  echo
  "$PY" -m t2v.eval.compare "${runs[@]}" --names "$names"
  echo
  echo '```'
  cat "$timing"
  echo '```'
} >"$OUT/comparison.md"
echo
cat "$OUT/comparison.md"
echo
echo "written: $OUT/comparison.md"
