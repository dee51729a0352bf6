#!/usr/bin/env bash
# Study 1 and 2 trainings: ε-DDPM vs v vs flow matching vs EDM on the same UNet (backbone=small,
# 1.18M) and budget (1000 steps of 64: 2 epochs × 500 batches, warm-up 200, the default train_ldm
# recipe otherwise, CFG training with p_uncond 0.1), seeds 0 1 2; plus the autoguidance guides
# (eps_weak: the ε model after 250 steps, same seed) and the noisy classifier for classifier
# guidance (on the ε models' schedule). A finished run is skipped on a rerun.
#   AE=.../train_ae/latest/checkpoints/last.ckpt LOG=/work/study/logs bash experiments/continuous-time/train.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
LOG=${LOG:-logs}
AE=${AE:-$LOG/train_ae/latest/checkpoints/last.ckpt}
SEEDS=${SEEDS:-0 1 2}
MODELS=${MODELS:-eps v flow edm eps_weak}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONWARNINGS=ignore

model_args() {
  case $1 in
    eps) echo "" ;;
    v) echo "diffusion/parameterization=v" ;;
    flow) echo "diffusion/objective=flow" ;;
    edm) echo "diffusion/objective=edm" ;;
    eps_weak) echo "trainer.max_epochs=1 trainer.limit_train_batches=250 module.warmup_steps=50" ;;
    *) echo "unknown model $1" >&2; return 1 ;;
  esac
}

for seed in $SEEDS; do
  for m in $MODELS; do
    task=ct_${m}_s$seed
    if [ -f "$LOG/$task/latest/checkpoints/last.ckpt" ] && grep -q '"completed"' "$LOG/$task/latest/summary.json"; then
      continue
    fi
    echo "== train $task"
    # shellcheck disable=SC2046
    $PY -m ldmlab.commands.train --config-name train_ldm backbone=small first_stage.ckpt="$AE" seed="$seed" \
      logger=csv paths.log_dir="$LOG" task_name="$task" trainer.max_epochs=2 trainer.limit_train_batches=500 \
      module.warmup_steps=200 $(model_args "$m") > "$LOG/$task.log" 2>&1 || { echo "failed: $task (see $LOG/$task.log)"; exit 1; }
  done
done
if [ ! -f "$LOG/ct_noisy_classifier/latest/checkpoints/last.ckpt" ]; then
  echo "== train ct_noisy_classifier"
  $PY -m ldmlab.commands.train --config-name train_noisy_classifier first_stage.ckpt="$AE" logger=csv \
    paths.log_dir="$LOG" task_name=ct_noisy_classifier > "$LOG/ct_noisy_classifier.log" 2>&1
fi
