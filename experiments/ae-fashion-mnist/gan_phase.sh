#!/bin/bash
# The GAN-phase study (issue 29): runs of the default with a checkpoint at the GAN start, and
# variants resumed from that checkpoint (bit-exact resume: their first 1400 steps are that run's).
#   LOG=/tmp/gan bash experiments/ae-fashion-mnist/gan_phase.sh start 0 loss.disc_weight=0.5 loss.gen_ramp_steps=0
#   LOG=/tmp/gan CHANGES=loss.disc_start bash experiments/ae-fashion-mnist/gan_phase.sh branch nogan 0 loss.disc_start=100000 loss.disc_weight=0.5 loss.gen_ramp_steps=0
# `start SEED [overrides]` trains $LOG/start_s<SEED>; `branch NAME SEED [overrides]` resumes its
# pregan-1400.ckpt into $LOG/<NAME>_s<SEED> with resume_changes=$CHANGES (default: the override
# keys; the resume contract wants exactly the keys that differ from the checkpoint's config).
# Then: validate_ckpt.py on the pregan checkpoints, seed_table.py over the run dirs.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${LOG:?set LOG to a directory for the runs}"
PRE_GAN=(+callbacks.pre_gan._target_=ldmlab.callbacks.atomic_checkpoint.AtomicModelCheckpoint
         "+callbacks.pre_gan.dirpath=\${paths.output_dir}/checkpoints" +callbacks.pre_gan.every_n_train_steps=1400
         +callbacks.pre_gan.save_top_k=-1 "+callbacks.pre_gan.filename='pregan-{step}'"
         +callbacks.pre_gan.monitor=null +callbacks.pre_gan.auto_insert_metric_name=false)
train() { OMP_NUM_THREADS=${THREADS:-1} .venv/bin/python -m ldmlab.commands.train --config-name train_ae "$@"; }
case "$1" in
  start) seed=$2; shift 2
         train seed="$seed" paths.log_dir="$LOG/start_s$seed" "${PRE_GAN[@]}" "$@" ;;
  branch) name=$2; seed=$3; shift 3
          keys=""; for o in "$@"; do keys="${keys:+$keys,}${o%%=*}"; done
          ckpt=$(ls "$LOG"/start_s"$seed"/train_ae/runs/*/checkpoints/pregan-1400.ckpt)
          train seed="$seed" paths.log_dir="$LOG/${name}_s$seed" "${PRE_GAN[@]}" ckpt_path="$ckpt" \
                "resume_changes=[${CHANGES:-$keys}]" "$@" ;;
  *) echo "usage: $0 start SEED [overrides] | branch NAME SEED [overrides]" >&2; exit 2 ;;
esac
