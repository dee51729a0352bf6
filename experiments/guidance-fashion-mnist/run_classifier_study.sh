#!/usr/bin/env bash
# Classifier guidance on an unconditional LDM vs CFG on the conditional LDM, scored by one evaluator
# (domain-classifier FID / IS / accuracy + Inception 64-d FID), then one table and one frontier.
# Needs, under $LDMLAB_ROOT/logs: the two train_ldm runs (COND, UNCOND: run dirs), a train_classifier
# run (domain classifier, metrics) and a train_noisy_classifier run (guidance), all on one first stage.
#   COND=... UNCOND=... DOMAIN=.../checkpoints/last.ckpt NOISY=... bash run_classifier_study.sh
set -eu
PY=${PY:-.venv/bin/python}
COMMON="sampler=ddim sampler.steps=25 num_samples=${N:-500} num_reference=2000 batch_size=100 metrics=cpu \
metrics.classifier_ckpt=$DOMAIN"
$PY -m ldmlab.commands.evaluate ckpt=$COND guidance=cfg 'guidance_scales=[1,1.5,2,3,4,6]' $COMMON
CFG_RUN=$(readlink -f $LDMLAB_ROOT/logs/evaluate/latest)
$PY -m ldmlab.commands.evaluate ckpt=$UNCOND guidance=classifier guidance.classifier_ckpt=$NOISY \
  'guidance_scales=[0,1,2,4,8,16]' $COMMON
CLF_RUN=$(readlink -f $LDMLAB_ROOT/logs/evaluate/latest)
$PY -m ldmlab.commands.evaluate ckpt=$COND guidance=cfg_classifier guidance.terms.cfg.scale=1 \
  guidance.terms.classifier.classifier_ckpt=$NOISY 'guidance_scales=[0,1,2,4,8]' $COMMON
CC_RUN=$(readlink -f $LDMLAB_ROOT/logs/evaluate/latest)
$PY -m ldmlab.commands.report "evaluate_runs=[$CFG_RUN,$CLF_RUN,$CC_RUN]" \
  "labels=['CFG, conditional LDM','classifier, unconditional LDM','classifier, conditional LDM at CFG s=1']"
