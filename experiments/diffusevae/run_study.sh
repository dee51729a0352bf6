#!/usr/bin/env bash
# DiffuseVAE on Fashion-MNIST f=4 latents: the VAE's prior samples, the refiner conditioned on them,
# and a plain unconditional model of the same UNet and training steps (1000), at DDIM {10, 20, 50}
# steps × 3 sampling seeds (the refiner refines the same VAE samples, seed 0, for every seed).
#   VAE=<train_vae last.ckpt> DOMAIN=<train_classifier last.ckpt> bash experiments/diffusevae/run_study.sh
set -eux
PY=${PY:-.venv/bin/python}
TRAIN="logger=csv trainer.max_epochs=2 trainer.limit_train_batches=500"
EVAL="metrics.classifier_ckpt=$DOMAIN metrics.inception=false num_samples=${N:-300} num_reference=${NREF:-2000} \
batch_size=100 seeds=[0,1,2] guidance_scales=[1] grid.steps=[10,20,50]"
$PY experiments/diffusevae/score_vae.py "$VAE" "$DOMAIN" ${N:-300} ${NREF:-2000} 0 1 2
$PY -m ldmlab.commands.train --config-name train_ldm experiment=diffusevae generator_ckpt=$VAE task_name=diffusevae $TRAIN
$PY -m ldmlab.commands.evaluate ckpt=${LDMLAB_ROOT:-.}/logs/diffusevae/latest task_name=evaluate_diffusevae $EVAL
$PY -m ldmlab.commands.train --config-name train_ldm conditioner=none task_name=plain_uncond $TRAIN
$PY -m ldmlab.commands.evaluate ckpt=${LDMLAB_ROOT:-.}/logs/plain_uncond/latest task_name=evaluate_plain_uncond $EVAL
