#!/usr/bin/env bash
# UNet vs DiT on Fashion-MNIST (f = 4 KL latents, 8×8×4) at matched training FLOPs, not steps.
# Models: unet (backbone=small, conditioner=class), dit_p2 (backbone=dit, DiT's own label-table
# conditioning conditioner=class_vector), dit_p1 (the same DiT with backbone.patch_size=1); the
# control unet_vec (MODELS=unet_vec): the UNet with the labels added to its time embedding, as
# the DiT gets them (its attention is then self-attention only: 0.79M parameters).
# The UNet trains BASE_STEPS steps of 64; each other model round(BASE_STEPS · F_unet / F_model) steps,
# rounded to even (2 epochs of steps / 2 batches: one epoch holds only 859), F = the denoiser's
# forward FLOPs per image counted by ldmlab.backbones.flops on the composed config, so every model
# spends the same training FLOPs (3 × forward × 64 × steps). The warmup keeps the default recipe's
# share (200 of 1000 steps = 20 %) of each run's steps; lr, EMA, batch
# and everything else are the default train_ldm recipe. Each checkpoint is then scored by
# `evaluate` as the demo sweep does: s ∈ {1, 2, 3, 5}, 300 DPM-Solver++ (20) samples per scale,
# 1000 test references, Inception 64-d + the short domain classifier.
# Seed-major order (every model of seed 0, then seed 1, ...) so a cut-short study still has every
# model; a finished run or evaluation is skipped on a rerun.
# One thread by default: on cores shared with other jobs, 2 OpenMP threads ran the UNet's training
# step ~10× slower than 1 (0.46 vs 4.4 it/s), the threads spin-waiting on each other.
#   AE=.../train_ae/latest/checkpoints/last.ckpt LOG=/work/study/logs bash experiments/dit-vs-unet/run.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
LOG=${LOG:-logs}
AE=${AE:-$LOG/train_ae/latest/checkpoints/last.ckpt}
SEEDS=${SEEDS:-0 1 2}
MODELS=${MODELS:-unet dit_p2 dit_p1}
BASE_STEPS=${BASE_STEPS:-1000}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONWARNINGS=ignore

model_args() {
  case $1 in
    unet) echo "backbone=small" ;;
    unet_vec) echo "backbone=small conditioner=class_vector" ;;   # control: labels as DiT gets them
    dit_p2) echo "backbone=dit conditioner=class_vector" ;;
    dit_p1) echo "backbone=dit backbone.patch_size=1 conditioner=class_vector" ;;
    *) echo "unknown model $1" >&2; return 1 ;;
  esac
}

# "<model> <forward FLOPs/img> <steps>" per model, from the composed configs.
flops_and_steps() {
  local specs=()
  for m in $MODELS; do specs+=("$m:$(model_args "$m")"); done
  $PY - "$BASE_STEPS" "$(model_args unet)" "${specs[@]}" <<'EOF'
import sys

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import ldmlab.config  # noqa: F401 - registers the config resolvers
from ldmlab.backbones.flops import forward_flops_per_image
from ldmlab.commands.cli import CONF_DIR


def flops(overrides: str) -> int:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train_ldm", overrides=overrides.split())
    with torch.device("meta"):
        net = instantiate(cfg.backbone)
    return forward_flops_per_image(net, cfg.data.resolution // cfg.first_stage_downsample_factor)


base, reference = int(sys.argv[1]), flops(sys.argv[2])
for spec in sys.argv[3:]:
    name, overrides = spec.split(":", 1)
    f = flops(overrides)
    print(name, f, 2 * round(base * reference / f / 2))
EOF
}

CLS=$LOG/train_classifier/latest/checkpoints/last.ckpt
if [ ! -f "$CLS" ]; then
  $PY -m ldmlab.commands.train --config-name train_classifier paths.log_dir="$LOG" logger=csv \
    trainer.max_epochs=1 trainer.limit_train_batches=200
fi

declare -A STEPS
while read -r name f steps; do
  STEPS[$name]=$steps
  echo "$name: $f forward FLOPs/img -> $steps steps"
done < <(flops_and_steps)

for seed in $SEEDS; do
  for m in $MODELS; do
    steps=${STEPS[$m]}
    run=$LOG/dvu_${m}_s$seed/latest
    if [ ! -f "$run/summary.json" ]; then
      # shellcheck disable=SC2046 - model_args is a list of overrides
      $PY -m ldmlab.commands.train --config-name train_ldm $(model_args "$m") task_name=dvu_${m}_s$seed \
        paths.log_dir="$LOG" logger=csv first_stage.ckpt="$AE" seed="$seed" \
        trainer.max_epochs=2 trainer.limit_train_batches=$(( steps / 2 )) \
        module.warmup_steps=$(( (steps + 2) / 5 ))
    fi
    ev=$LOG/dvu_eval_${m}_s$seed/latest
    if [ ! -f "$ev/guidance_sweep.csv" ]; then
      $PY -m ldmlab.commands.evaluate ckpt="$run" task_name=dvu_eval_${m}_s$seed paths.log_dir="$LOG" \
        metrics.classifier_ckpt="$CLS" guidance_scales=[1,2,3,5] num_samples=300 num_reference=1000 \
        sampler=dpmpp
    fi
  done
done
