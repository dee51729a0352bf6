#!/usr/bin/env bash
# Evaluation of the semantic-latents study (after run_train.sh and run_baseline.sh):
# reconstruction through DDIM inversion, interpolation smoothness, samples from each model's prior
# (domain-classifier FID / KID / IS / precision / recall against 2000 test images, 3 seeds), and the
# latent probes / manipulation (analyse.py).   bash experiments/semantic-latents/run_eval.sh
set -eux
PY=${PY:-.venv/bin/python}
DOMAIN=${DOMAIN:-logs/train_classifier/latest/checkpoints/last.ckpt}
INV="num_images=100 batch_size=100 sampler.steps=50"
for M in diffae vae infodiffusion infodiffusion_det lrdm pixel_uncond; do
  $PY -m ldmlab.commands.invert ckpt=logs/sem_$M/latest task_name=invert_$M $INV
done
$PY -m ldmlab.commands.invert ckpt=logs/sem_diffae/latest task_name=invert_diffae_fp5 $INV fixed_point_iters=5
for M in diffae lrdm pixel_uncond; do
  $PY -m ldmlab.commands.interpolate ckpt=logs/sem_$M/latest task_name=interpolate_$M sampler.steps=50
done
$PY -m ldmlab.commands.interpolate ckpt=logs/sem_diffae/latest task_name=interpolate_diffae_zonly sampler.steps=50 \
  semantic_only=true
EVAL="metrics.classifier_ckpt=$DOMAIN metrics.inception=false num_samples=300 num_reference=2000 batch_size=100 \
seeds=[0,1,2] guidance_scales=[1] sampler=ddim sampler.steps=50"
# z ~ N(0, I) for the Gaussian encoders; DiffAE: z_sem of test images with fresh x_T (its autoencoding
# ceiling) and the latent DDIM's samples (its unconditional model); the plain unconditional model
for M in vae infodiffusion infodiffusion_det lrdm diffae latent_ddim pixel_uncond; do
  $PY -m ldmlab.commands.evaluate ckpt=logs/sem_$M/latest task_name=evaluate_$M $EVAL
done
$PY experiments/semantic-latents/analyse.py --classifier $DOMAIN \
  --model diffae=logs/sem_diffae/latest --model vae=logs/sem_vae/latest \
  --model infodiffusion=logs/sem_infodiffusion/latest --model lrdm=logs/sem_lrdm/latest \
  --model infodiffusion_det=logs/sem_infodiffusion_det/latest
