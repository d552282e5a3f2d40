#!/usr/bin/env bash
# bench/fidelity.sh on one GPU: every stage with trainer=gpu (bf16-mixed), the attribute probe on the GPU too.
#
#   bench/gpu.sh                               # experiment=quickstart and experiment=t2v
#   EXPERIMENTS=t2v bench/gpu.sh logger=csv    # one experiment; arguments go to every train.py/evaluate.py call
#   TRAIN_ARGS='stage.overrides.stage1=["data.batch_size=64"]' bench/gpu.sh   # extras for train.py only
#
# OUT, PYTHON, TRAIN_ARGS and EVAL_ARGS mean what they mean for bench/fidelity.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-.venv/bin/python}" -c "import sys, torch; torch.cuda.is_available() or sys.exit('bench/gpu.sh: torch sees no CUDA GPU here; run bench/fidelity.sh for the CPU')"
export EXPERIMENTS=${EXPERIMENTS:-"quickstart t2v"}
export OUT=${OUT:-outputs/bench/gpu/$(date +%Y-%m-%d_%H-%M-%S)}
export TRAIN_ARGS="trainer=gpu ${TRAIN_ARGS:-}"
export EVAL_ARGS="probe.accelerator=gpu ${EVAL_ARGS:-}"
exec bench/fidelity.sh "$@"
