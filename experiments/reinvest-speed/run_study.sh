#!/usr/bin/env bash
# Before / after reinvesting the latent cache's speed into more default stage-2 steps, on the same
# autoencoder (logs/train_ae/latest) and scored like the demo's sweep (same domain classifier).
#   before: the previous default, 2000 steps of 64, every batch encoded (module.latent_cache=null)
#   after:  the current default, 3000 steps of 64 with the latent cache
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
OUT=experiments/reinvest-speed
CLASSIFIER=${CLASSIFIER:-logs/train_classifier/latest/checkpoints/last.ckpt}
SWEEP="guidance_scales=[1,2,3,5] num_samples=300 num_reference=1000 sampler=dpmpp metrics.classifier_ckpt=$CLASSIFIER"

run() {  # name, train overrides...
  local name=$1; shift
  /usr/bin/time -f "%e" -o "$OUT/$name.train_seconds" $PY -m ldmlab.commands.train --config-name train_ldm "$@" \
    > "$OUT/$name.train.log" 2>&1
  local run_dir; run_dir=$(readlink -f logs/train_ldm/latest)
  cp "$run_dir/summary.json" "$OUT/$name.summary.json"
  $PY -m ldmlab.commands.evaluate ckpt="$run_dir" $SWEEP > "$OUT/$name.evaluate.log" 2>&1
  cp "$(readlink -f logs/evaluate/latest)/guidance_sweep.csv" "$OUT/$name.guidance_sweep.csv"
}

run before module.latent_cache=null trainer.limit_train_batches=500
run after
