#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (about 8 minutes). From the repository root:
#
#   benchmarks/gpu_check.sh [tests] [engine] [learner] [pong] [peer] [dqn] [curve] [learn] [recipes]
#                                                             (no argument: the first four)
# Device calls are 10 minutes at most: `tests engine` in one call (about 4 minutes), `learn` in
# another. Without a GPU each GPU part says in one line what it skips.
#
# (a) tests:  python -m pytest -m gpu (every GPU kernel and layer against the CPU, the GPU learner)
# (b) engine: benchmarks/engine.py --device gpu (workbench on CuPy against PyTorch CUDA, eager and
#             with the gradients replayed as one CUDA graph: the "graph" cases and DQN's step)
# learner:    benchmarks/learner.py --device gpu (the GPU learner's ceiling on Pong rollouts)
# (c) pong:   2 minutes of `workbench train --env ALE/Pong-v5 --agent a3c --actors 15 --device gpu
#             $PONG_ARGS` (e.g. PONG_ARGS="--max-in-flight 2"); env frames/s (4 per agent step) and
#             the share of time the learner is busy
# peer:      stable-baselines3's A2C on Pong with its network on the GPU (rl_atari.py --peer-only
#             --peer-device cuda: RL Zoo's Atari settings, 16 envs, in one process and in subprocesses,
#             PyTorch on 1 and on 16 threads, the fastest kept), run after `pong` for the ratio
# dqn:       `workbench train --env ALE/Breakout-v5 --agent dqn` (15 actors, CleanRL's Atari settings)
#             for 110 s with the learner on the GPU, then 80 s on the CPU: env steps/s once learning
#             starts (80k steps; one gradient step of 32 per 4 env steps holds the actors back)
# curve:     benchmarks/scaling.py --curve 1 2 4 8 15: measured env steps/s of A3C with N actor
#             processes, gradients on the actors and on a CPU learner (the 16-core scaling curve)
# learn:     Pong learned: `workbench train --env ALE/Pong-v5 --agent $LEARN_AGENT (default ppo)
#             --actors 15 --device gpu $LEARN_ARGS` (for ppo: --set minibatches=30) for
#             $LEARN_SECONDS (default 540) s, then its env frames/s
#             and its last-10 mean return at each minute, and when it first reached 18
# recipes:   `workbench recipe mnist-sequence --device gpu` on the MNIST IDX files in $MNIST_DIR
#             (carried to the machine), its whole schedule or $RECIPE_SECONDS (default 540) s
# Logs go to $OUT (default ./gpu-check). Python packages the machine lacks are carried as wheels in
# .whl/ (benchmarks/gpu_wheels.sh fetches them, 4 MB; name .whl in the call's carry); on a machine
# with a GPU they are installed into /tmp/site first.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
PARTS=${*:-tests engine learner pong}
PART_NAMES=" tests engine learner pong peer dqn curve learn recipes "
for part in $PARTS; do  # before anything runs: a typo should not cost a device call
  [[ $PART_NAMES == *" $part "* ]] || { echo "unknown part $part: choose from$PART_NAMES"; exit 2; }
done
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD
gpu=$($PY -c "from nets import backend; print(backend.gpu_available())" 2>/dev/null)
if [ "$gpu" = True ] && compgen -G ".whl/*.whl" > /dev/null; then  # for a lent machine's image only
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/numba-cache}
summary=$OUT/summary.txt
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
# train_for SECONDS NAME ARGS...: `workbench train ARGS` into $OUT/NAME.log, stopped by SIGINT after
# SECONDS (the learner stops, saves and prints its last progress line; a DQN update on the CPU
# can take 25 s to finish first); returns timeout's exit status (124 when stopped on time)
train_for() {
  local seconds=$1 name=$2
  shift 2
  timeout -s INT -k 30 "$seconds" $PY -m workbench.cli train "$@" --steps 50000000 \
    --logdir /tmp/gpu-check-runs --name "$name" > "$OUT/$name.log" 2>&1
}
# key_lines NAME: the run's header, how it stopped, and any error (train's own bad-input and
# set-up errors start with "workbench train:")
key_lines() { grep -E "^workbench train:|actor\(s\)|stopped by|Error|error" "$OUT/$1.log" | head -5 | tee -a "$summary"; }

# needs_gpu PART WHAT: true on a machine with a GPU; elsewhere one line saying what PART skips
needs_gpu() { [ "$gpu" = True ] || { note "$1: skipped, no GPU here ($2)"; return 1; }; }

nvidia-smi -L 2>&1 | tee -a "$summary"
$PY -m workbench.cli doctor 2>&1 | tee "$OUT/doctor.log" | grep -E "^(python|numpy|numba|cupy|gpu) " | tee -a "$summary"
{ $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>/dev/null \
  || echo "torch: not installed (the engine part compares against PyTorch CUDA)"; } | tee -a "$summary"

for part in $PARTS; do
  start=$(date +%s)
  case $part in
    tests)
      timeout 200 $PY -m pytest -m gpu -q -p no:cacheprovider tests > "$OUT/tests.log" 2>&1
      note "(a) pytest -m gpu: exit $? in $(( $(date +%s) - start )) s: $(tail -1 "$OUT/tests.log")"
      grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -20 | tee -a "$summary"
      ;;
    engine)
      needs_gpu engine "workbench on CuPy against PyTorch CUDA" || continue
      timeout 200 $PY benchmarks/engine.py --device gpu > "$OUT/engine.log" 2>&1
      note "(b) engine.py --device gpu: exit $? in $(( $(date +%s) - start )) s"
      grep -v "^  done:" "$OUT/engine.log" | grep -v "CapturedGradients\|warnings.warn" | tail -20 | tee -a "$summary"
      grep -m 3 -o "CapturedGradients: .*" "$OUT/engine.log" | tee -a "$summary"  # a graph that fell back
      ;;
    learner)
      needs_gpu learner "the GPU learner's ceiling on Pong rollouts" || continue
      timeout 90 $PY benchmarks/learner.py --device gpu > "$OUT/learner.log" 2>&1
      note "learner.py --device gpu: exit $? in $(( $(date +%s) - start )) s"
      tail -4 "$OUT/learner.log" | tee -a "$summary"
      ;;
    pong)
      needs_gpu pong "2 minutes of Pong with the learner on the GPU" || continue
      # shellcheck disable=SC2086 # PONG_ARGS: more flags, split on spaces
      train_for 140 pong --env ALE/Pong-v5 --agent a3c --actors 15 --device gpu ${PONG_ARGS:-}
      note "(c) Pong, 15 actors ${PONG_ARGS:-}, GPU learner: exit $? in $(( $(date +%s) - start )) s"
      key_lines pong
      $PY benchmarks/gpu_check_rates.py "$OUT/pong.log" | tee -a "$summary"
      ;;
    peer)
      needs_gpu peer "SB3 A2C with its network on the GPU" || continue
      timeout 400 $PY benchmarks/rl_atari.py --env ALE/Pong-v5 --peer-only --peer-device cuda --seconds 20 \
        --warmup 15 > "$OUT/peer.log" 2>&1
      note "peer: SB3 A2C on Pong, network on the GPU: exit $? in $(( $(date +%s) - start )) s"
      grep -E "^    " "$OUT/peer.log" | tee -a "$summary"
      ;;
    dqn)
      needs_gpu dqn "DQN's Breakout learner on the GPU, then on the CPU" || continue
      for device in gpu cpu; do
        start=$(date +%s)
        train_for $([ $device = gpu ] && echo 110 || echo 80) dqn-$device --env ALE/Breakout-v5 \
          --agent dqn --device $device --log-every 2
        note "DQN Breakout, 15 actors, learner on the $device: exit $? in $(( $(date +%s) - start )) s"
        key_lines dqn-$device
        $PY benchmarks/gpu_check_rates.py "$OUT/dqn-$device.log" --from-step 80000 | tee -a "$summary"
      done
      ;;
    curve)
      timeout 360 $PY benchmarks/scaling.py --curve 1 2 4 8 15 --sample 6 > "$OUT/curve.log" 2>&1
      note "curve (scaling.py --curve 1 2 4 8 15, $(nproc) cores): exit $? in $(( $(date +%s) - start )) s"
      grep -E "^\|" "$OUT/curve.log" | tee -a "$summary"
      ;;
    learn)
      agent=${LEARN_AGENT:-ppo}
      # PPO: 15 actors x 4 envs x 128 steps in 30 minibatches of 256, CleanRL's size (its 4 would be
      # 1,920 each: an eighth of the gradient steps per env step; docs/performance.md#ppo-pong)
      [ "$agent" = ppo ] && default_args="--set minibatches=30" || default_args=""
      args=${LEARN_ARGS-$default_args}
      needs_gpu learn "$agent on Pong for ${LEARN_SECONDS:-540} s with the learner on the GPU" || continue
      # shellcheck disable=SC2086 # args: flags, split on spaces
      train_for "${LEARN_SECONDS:-540}" learn --env ALE/Pong-v5 --agent "$agent" --actors 15 --device gpu $args
      note "(d) Pong learned by $agent $args, 15 actors, GPU learner: exit $? in $(( $(date +%s) - start )) s"
      key_lines learn
      $PY benchmarks/gpu_check_rates.py "$OUT/learn.log" | tee -a "$summary"
      $PY benchmarks/gpu_check_rates.py "$OUT/learn.log" --curve | tee -a "$summary"
      ;;
    recipes)
      needs_gpu recipes "mnist-sequence's schedule on the GPU" || continue
      if ! compgen -G "${MNIST_DIR:-/nonexistent}/train-images-idx3-ubyte*" > /dev/null; then
        note "recipes: skipped, MNIST_DIR names no folder with MNIST's IDX files (the machine cannot download them)"
        continue
      fi
      timeout "${RECIPE_SECONDS:-540}" $PY -m workbench.cli recipe mnist-sequence --device gpu --data "$MNIST_DIR" \
        --logdir /tmp/gpu-check-runs --name mnist-sequence --no-progress > "$OUT/recipes.log" 2>&1
      note "recipes: mnist-sequence on the GPU: exit $? in $(( $(date +%s) - start )) s"
      grep -iE "^(epoch|test|best|stopped|early)" "$OUT/recipes.log" | tail -4 | tee -a "$summary"
      ;;
  esac
done
echo "---- summary ($summary)"
cat "$summary"
