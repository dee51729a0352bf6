#!/usr/bin/env bash
# The ImageNet-shaped path end to end on CPU: a synthetic RGB folder (synthetic.py) → make shards
# (256², ADM centre crop) → stage 1 at f = 8 on the streaming loader, with a kill -9 + resume
# checked against an uninterrupted run → stage 2 on the image folder at 256² with the latent cache
# (both flips): built, reused, and switched off for comparison. Every command's wall time goes to
# $D/times.txt; results.py turns the logs into the tables of README.md.
#   D=/path/to/workdir bash experiments/real-scale/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${D:?set D to a work folder}
N=${N:-2000}              # synthetic images
AE_STEPS=${AE_STEPS:-60}  # stage-1 steps (batch AE_BATCH at 256²)
AE_BATCH=${AE_BATCH:-4}
LDM_STEPS=${LDM_STEPS:-150}
PY=${PY:-.venv/bin/python}
export WANDB_MODE=offline PYTHONWARNINGS=ignore OMP_NUM_THREADS=${THREADS:-2}
mkdir -p "$D"

stage() {  # name, command...: run it, append "name rc seconds" to times.txt
  local name=$1; shift
  local t0=$EPOCHREALTIME rc=0
  "$@" > "$D/$name.log" 2>&1 || rc=$?
  awk -v n="$name" -v r=$rc -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%s %d %.1f\n", n, r, b-a}' | tee -a "$D/times.txt"
  return $rc
}

stage synthetic $PY experiments/real-scale/synthetic.py --out "$D/images" --num-images "$N"
stage shards $PY -m ldmlab.commands.shards input="$D/images" out="$D/shards" resolution=256 class_folders=true \
  num_workers=2 paths.log_dir="$D/logs"

# stage 1 without LPIPS in the loss (VGG16 at 256² is ~20 s a step on one core; the point here is the
# data path, not the autoencoder's quality; validation still reports LPIPS)
AE=(--config-name train_ae data=streaming data.root="$D/shards" data.batch_size="$AE_BATCH" data.num_workers=2
    autoencoder=f8 autoencoder.embed_dim=4 autoencoder.encoder.z_channels=4 autoencoder.encoder.ch=32
    loss.perceptual_weight=0 loss.discriminator.base_channels=32 callbacks.reconstruction_fid=null logger=csv
    trainer.max_steps="$AE_STEPS" trainer.limit_val_batches=2
    callbacks.last_checkpoint.every_n_train_steps=$((AE_STEPS / 6)))
stage ae_straight $PY -m ldmlab.commands.train "${AE[@]}" paths.log_dir="$D/ae_straight"

# the same run, killed (SIGKILL) once a checkpoint past half the steps exists, then resumed
$PY -m ldmlab.commands.train "${AE[@]}" paths.log_dir="$D/ae_killed" > "$D/ae_killed.log" 2>&1 &
pid=$!
half=$((AE_STEPS / 2))  # checkpoints every AE_STEPS/6 steps: killed between 1/2 and 2/3
until $PY - "$D/ae_killed" "$half" <<'PY'
import sys, torch, glob
ckpts = glob.glob(f"{sys.argv[1]}/train_ae/runs/*/checkpoints/last.ckpt")
sys.exit(0 if ckpts and torch.load(ckpts[0], map_location="cpu", weights_only=True, mmap=True)["global_step"] >= int(sys.argv[2]) else 1)
PY
do kill -0 $pid 2>/dev/null || { echo "the run ended before step $half" >&2; exit 1; }; sleep 1; done
kill -9 $pid && { wait $pid || true; }
echo "ae_killed 137 at-step>=$half" | tee -a "$D/times.txt"
stage ae_resumed $PY -m ldmlab.commands.train "${AE[@]}" paths.log_dir="$D/ae_killed" ckpt_path=last

AE_CKPT=$(ls "$D"/ae_straight/train_ae/runs/*/checkpoints/last.ckpt)
LDM=(--config-name train_ldm data=image_folder data.root="$D/images" data.class_folders=true data.resolution=256
     data.channels=3 data.resize_mode=adm data.random_flip=true data.num_workers=2 data.batch_size=32
     data.val_subset=64 first_stage.ckpt="$AE_CKPT" first_stage_embed_dim=4 first_stage_downsample_factor=8
     trainer.max_steps="$LDM_STEPS" trainer.limit_val_batches=2 callbacks.image_logger=null logger=csv
     paths.cache_dir="$D/cache" ${LDM_EXTRA:-})
stage ldm_build $PY -m ldmlab.commands.train "${LDM[@]}" paths.log_dir="$D/ldm_build"
stage ldm_reuse $PY -m ldmlab.commands.train "${LDM[@]}" paths.log_dir="$D/ldm_reuse"
stage ldm_nocache $PY -m ldmlab.commands.train "${LDM[@]}" paths.log_dir="$D/ldm_nocache" module.latent_cache=null
$PY experiments/real-scale/results.py "$D" | tee "$D/results.md"
