#!/usr/bin/env bash
# ES-DDPM on Fashion-MNIST f=4 latents: one unconditional model per truncation T' ∈ {1000, 500, 300, 100}
# (same UNet, same 1000 training steps), each sampled from the VAE's prior samples encoded and
# noised to T' − 1, swept over NFE = DDIM steps {10, 20, 50, 100} × 3 sampling seeds.
#   VAE=<train_vae last.ckpt> DOMAIN=<train_classifier last.ckpt> bash experiments/es-ddpm/run_study.sh
set -eux
PY=${PY:-.venv/bin/python}
TRAIN="logger=csv trainer.max_epochs=2 trainer.limit_train_batches=500 generator_ckpt=$VAE"
EVAL="metrics.classifier_ckpt=$DOMAIN metrics.inception=false num_samples=${N:-300} num_reference=${NREF:-2000} \
batch_size=100 seeds=[0,1,2] guidance_scales=[1] grid.steps=[10,20,50,100]"
for T in ${TPRIMES:-1000 500 300 100}; do
  $PY -m ldmlab.commands.train --config-name train_ldm experiment=es_ddpm diffusion.timestep_sampler.t_max=$T \
    task_name=es_ddpm_t$T $TRAIN
  $PY -m ldmlab.commands.evaluate ckpt=${LDMLAB_ROOT:-.}/logs/es_ddpm_t$T/latest task_name=evaluate_es_ddpm_t$T $EVAL
done
