#!/usr/bin/env bash
# Evaluations of train.sh's models (300 samples per point vs 1000 test images, Inception-64 and the
# short domain classifier's features; one sampling seed per checkpoint, training seeds 0 1 2).
# Study 1 (STUDY=1): unguided (s = 1) FID vs NFE ∈ {5, 10, 20, 50}: DPM-Solver++(2M) for every
#   objective (1 NFE/step); plus each continuous objective's own sampler: flow → Euler (1 NFE/step),
#   EDM → EDM's Heun (steps 3, 5, 10, 25 = NFE 5, 9, 19, 49).
# Study 2 (STUDY=2): guidance frontier on the ε models, DPM-Solver++ 20 steps: CFG s ∈ {1, 2, 3, 5};
#   guidance interval s ∈ {2, 3, 5}: CFG inside σ̃ ∈ (0.56, 10.84], the paper's EDM2-S interval
#   (0.28, 5.42] in units of σ_data (EDM2's latents have σ_data = 0.5, ours 1);
#   autoguidance (guide: the same seed's eps_weak, 250 steps) s ∈ {2, 3};
#   classifier guidance (noisy classifier, on the conditional model) s ∈ {1, 3}.
# A finished evaluation (summary.json) is skipped on a rerun.
#   LOG=/work/study/logs STUDY=1 SEEDS="0 1 2" bash experiments/continuous-time/evaluate.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
LOG=${LOG:-logs}
SEEDS=${SEEDS:-0 1 2}
STUDY=${STUDY:-1}
CLS=${CLS:-$LOG/train_classifier/latest/checkpoints/last.ckpt}
N=${N:-300}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONWARNINGS=ignore

run_eval() {  # task ckpt-run args...
  local task=$1 run=$2; shift 2
  if ls "$LOG/$task"/runs/*/summary.json > /dev/null 2>&1; then return; fi
  echo "== $task"
  $PY -m ldmlab.commands.evaluate ckpt="$run" metrics.classifier_ckpt="$CLS" num_samples="$N" \
    num_reference=1000 paths.log_dir="$LOG" task_name="$task" "$@" > "$LOG/$task.log" 2>&1 \
    || { echo "failed: $task (see $LOG/$task.log)"; exit 1; }
}

for seed in $SEEDS; do
  if [ "$STUDY" = 1 ]; then
    for m in eps v flow edm; do
      run_eval "cte_${m}_dpmpp_s$seed" "$LOG/ct_${m}_s$seed/latest" guidance_scales=[1] sampler=dpmpp \
        'grid.steps=[5,10,20,50]'
    done
    run_eval "cte_flow_euler_s$seed" "$LOG/ct_flow_s$seed/latest" guidance_scales=[1] sampler=euler \
      'grid.steps=[5,10,20,50]'
    run_eval "cte_edm_edm_s$seed" "$LOG/ct_edm_s$seed/latest" guidance_scales=[1] sampler=edm \
      'grid.steps=[3,5,10,25]'
  else
    run="$LOG/ct_eps_s$seed/latest"
    common=(sampler=dpmpp sampler.steps=20)
    run_eval "ctg_cfg_s$seed" "$run" "${common[@]}" guidance=cfg 'guidance_scales=[1,2,3,5]'
    run_eval "ctg_interval_s$seed" "$run" "${common[@]}" guidance=interval 'guidance_scales=[2,3,5]' \
      guidance.sigma_low=0.56 guidance.sigma_high=10.84
    run_eval "ctg_auto_s$seed" "$run" "${common[@]}" guidance=autoguidance 'guidance_scales=[2,3]' \
      guidance.guide_ckpt="$LOG/ct_eps_weak_s$seed/latest"
    run_eval "ctg_classifier_s$seed" "$run" "${common[@]}" guidance=classifier 'guidance_scales=[1,3]' \
      guidance.classifier_ckpt="$LOG/ct_noisy_classifier/latest"
  fi
done
