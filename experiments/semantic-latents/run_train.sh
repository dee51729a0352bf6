#!/usr/bin/env bash
# Semantic latents on Fashion-MNIST (pixel space, 32×32): DiffAE, a VAE-regularised DiffAE (the
# InfoVAE regulariser at its neutral weights), InfoDiffusion (MMD prior, MI weight 1) and LRDM
# (t-conditioned Gaussian encoder), each the same 1.3M-parameter UNet + 32-d encoder for 1000 steps
# of 64 images; then DiffAE's latent DDIM (MLP) on the trained DiffAE's z_sem, and the domain
# classifier that scores samples.   bash experiments/semantic-latents/run_train.sh
set -eux
PY=${PY:-.venv/bin/python}
TRAIN="logger=csv trainer.max_epochs=2 trainer.limit_train_batches=500"
$PY -m ldmlab.commands.train --config-name train_classifier trainer.max_epochs=1 trainer.limit_train_batches=200 logger=csv
$PY -m ldmlab.commands.train --config-name train_ldm experiment=diffae task_name=sem_diffae $TRAIN
$PY -m ldmlab.commands.train --config-name train_ldm experiment=infodiffusion task_name=sem_infodiffusion $TRAIN
$PY -m ldmlab.commands.train --config-name train_ldm experiment=infodiffusion task_name=sem_vae $TRAIN \
  diffusion.objective.regularizer.mi_weight=0 diffusion.objective.regularizer.prior_weight=1
$PY -m ldmlab.commands.train --config-name train_ldm experiment=lrdm task_name=sem_lrdm $TRAIN
$PY -m ldmlab.commands.train --config-name train_ldm experiment=diffae_latent_ddim task_name=sem_latent_ddim \
  first_stage.ckpt=logs/sem_diffae/latest/checkpoints/last.ckpt logger=csv
# InfoDiffusion's regulariser on DiffAE's deterministic encoder (α = 1: MMD only, no KL to collapse it)
$PY -m ldmlab.commands.train --config-name train_ldm experiment=infodiffusion task_name=sem_infodiffusion_det $TRAIN \
  conditioner.embedders.z_sem.posterior=deterministic
