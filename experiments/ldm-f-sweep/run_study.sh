#!/usr/bin/env bash
# LDM's f-sweep on Fashion-MNIST: f ∈ {8, 4, 2, 1} (1 = pixel space), class-conditional, ~1.2M-parameter
# UNets with attention on the 8×8/4×4 feature maps (f ≤ 2) or the default's (f ≥ 4), 1000 training
# steps of 64 each; the in-run sweep scores 300 DDIM-50 samples (s = 1, no guidance) after 500 and
# 1000 steps with the domain classifier. Training and sampling img/s come from the run logs.
#   AE2=... AE4=... AE8=... DOMAIN=... bash experiments/ldm-f-sweep/run_study.sh
set -eux
PY=${PY:-.venv/bin/python}
COMMON="logger=csv trainer.max_epochs=2 trainer.limit_train_batches=500 callbacks=ldm_sweep \
metrics.classifier_ckpt=$DOMAIN metrics.inception=false callbacks.guidance_sweep.every_n_epochs=1 \
callbacks.guidance_sweep.guidance_scales=[1] callbacks.guidance_sweep.num_samples=${N:-300} \
callbacks.guidance_sweep.num_reference=${NREF:-2000}"
for F in ${FS:-8 4 2 1}; do
  case $F in
    1) ARGS="experiment=ldm_pixel" ;;
    2) ARGS="experiment=ldm_f2 first_stage.ckpt=$AE2" ;;
    4) ARGS="first_stage.ckpt=$AE4" ;;
    8) ARGS="experiment=ldm_f8 first_stage.ckpt=$AE8" ;;
  esac
  $PY -m ldmlab.commands.train --config-name train_ldm $ARGS task_name=fsweep_f$F $COMMON
done
