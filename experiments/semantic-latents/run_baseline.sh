#!/usr/bin/env bash
# The plain-DDIM baseline of the study: an unconditional pixel-space model with the same UNet and
# budget as the semantic models (experiment=ldm_pixel conditioner=none, 1000 steps of 64).
#   bash experiments/semantic-latents/run_baseline.sh
set -eux
PY=${PY:-.venv/bin/python}
$PY -m ldmlab.commands.train --config-name train_ldm experiment=ldm_pixel conditioner=none task_name=sem_pixel_uncond \
  logger=csv trainer.max_epochs=2 trainer.limit_train_batches=500
