#!/usr/bin/env bash
# Sampling studies of one class-conditional LDM, each one `make evaluate` grid (one CSV + one plot):
#   A/B: steps {10,20,50,100,250} × s {1,3} for DDIM (η = 0) and DPM-Solver++(2M);
#   C:   ancestral DDPM at steps {100,250,1000}, s = 3;
#   D:   DDIM η {0,0.5,1} × steps {10,50,250} at s = 3;
#   E:   the same without guidance (s = 1), the control for D.
# CKPT: a train_ldm run dir; DOMAIN: a train_classifier last.ckpt (FID/IS/accuracy features).
# CPU size (this README): N=200 samples per grid point and seed, 3 sampling seeds (mean ± std),
# 2000 reference images, domain-classifier metrics only. GPU size: N=10000 NREF=10000 EXTRA="metrics=gpu" (adds Inception FID/IS).
#   CKPT=... DOMAIN=... bash experiments/sampling-fashion-mnist/run_study.sh
set -eu
PY=${PY:-.venv/bin/python}
COMMON="ckpt=$CKPT metrics.classifier_ckpt=$DOMAIN num_samples=${N:-200} num_reference=${NREF:-2000} \
batch_size=100 seeds=${SEEDS:-[0,1,2]} ${EXTRA:-metrics.inception=false}"
$PY -m ldmlab.commands.evaluate sampler=ddim 'grid.steps=[10,20,50,100,250]' 'guidance_scales=[1,3]' $COMMON
$PY -m ldmlab.commands.evaluate sampler=dpmpp 'grid.steps=[10,20,50,100,250]' 'guidance_scales=[1,3]' $COMMON
$PY -m ldmlab.commands.evaluate sampler=ddpm 'grid.steps=[100,250,1000]' 'guidance_scales=[3]' $COMMON
$PY -m ldmlab.commands.evaluate sampler=ddim 'grid.eta=[0,0.5,1]' 'grid.steps=[10,50,250]' 'guidance_scales=[3]' $COMMON
$PY -m ldmlab.commands.evaluate sampler=ddim 'grid.eta=[0,0.5,1]' 'grid.steps=[10,50,250]' 'guidance_scales=[1]' $COMMON
