"""`python -m ldmlab.commands.train` (what `make train-ae` runs) end to end on real Fashion-MNIST.

The runs that check a summary, wandb or a multirun go through ``python -m``; the error and resume
tests fork the test process into the same entry point's ``main`` (``run_forked``: no 6 s start)."""

from __future__ import annotations

import json

import pytest
import torch

from ldmlab.utils.precision import resolve_precision
from tests.conftest import run_cli, run_forked

TINY = [
    "data.train_subset=64", "data.val_subset=32", "data.batch_size=16",
    "autoencoder.encoder.ch=16", "loss.discriminator.base_channels=16",
    "trainer.log_every_n_steps=1",
]
NO_RFID = "callbacks.reconstruction_fid=null"
# rFID on 65 validation images (Inception's 64-d layer needs more than 64), once: after the last epoch
SMALL_RFID = ["data.val_subset=65", "callbacks.reconstruction_fid.num_images=65",
              "callbacks.reconstruction_fid.every_n_epochs=2", "metrics.kid_subset_size=50"]


@pytest.mark.parametrize("experiment", ["fmnist_kl_f4", "fmnist_vq_f4"])
def test_fast_dev_run(experiment, tmp_path, fmnist_dir):
    out = run_cli("ldmlab.commands.train", [f"experiment={experiment}", "debug=fast_dev_run", *TINY],
                  tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "train_ae" / "latest" / "summary.json").read_text())
    assert {"val/psnr", "val/ssim", "val/lpips"} <= set(summary["metrics"])
    if experiment == "fmnist_vq_f4":
        assert {"val/perplexity", "val/codebook_usage"} <= set(summary["metrics"])


def test_train_writes_summary_checkpoints_images_and_offline_wandb(tmp_path, fmnist_dir):
    args = ["trainer.max_epochs=2", "loss.disc_start=4", "logger=default", *TINY, *SMALL_RFID]
    out = run_cli("ldmlab.commands.train", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = (tmp_path / "train_ae" / "latest").resolve()
    assert run.parent.name == "runs"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["checkpoints"]["monitor"] == "val/lpips"
    assert summary["precision"] == resolve_precision("auto", "auto"), "trainer.precision=auto resolved"
    metrics = summary["metrics"]
    assert metrics["val/rfid_inception"] > 0 and "val/rkid_inception" in metrics
    assert all((run / summary["checkpoints"][name]).is_file() for name in ("last", "best"))
    assert (run / summary["config"]).is_file()
    assert list((run / "images").glob("inputs_reconstructions_epoch*.png"))
    assert list((run / "images").glob("prior_samples_epoch*.png"))
    assert list(run.glob("wandb/offline-run-*")), "wandb should run offline without a key"
    assert (run / "csv" / "metrics.csv").is_file()
    assert not list(run.glob("checkpoints/.*tmp")), "no temp checkpoint left behind"


def test_resume_restores_optimizers_discriminator_and_counters(tmp_path, fmnist_dir):
    common = ["logger=csv", "loss.disc_start=2", NO_RFID, *TINY]
    first = run_forked("ldmlab.commands.train", ["trainer.max_epochs=1", *common], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt1 = torch.load(tmp_path / "train_ae/latest/checkpoints/last.ckpt", weights_only=True)
    second = run_forked("ldmlab.commands.train", ["trainer.max_epochs=2", "ckpt_path=last", *common],
                        tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads((tmp_path / "train_ae/latest/summary.json").read_text())
    assert summary["resumed_from"].endswith("last.ckpt") and summary["epochs"] == 2
    ckpt2 = torch.load(tmp_path / "train_ae/latest" / summary["checkpoints"]["last"], weights_only=True)
    steps_per_epoch = 64 // 16
    assert int(ckpt1["state_dict"]["train_step"]) == steps_per_epoch
    assert int(ckpt2["state_dict"]["train_step"]) == 2 * steps_per_epoch
    adam_ae, adam_d = ckpt2["optimizer_states"]
    assert int(next(iter(adam_ae["state"].values()))["step"]) == 2 * steps_per_epoch
    # the discriminator starts at step 2: 2 steps in epoch 1, 4 more after the resume
    assert int(next(iter(adam_d["state"].values()))["step"]) == 2 * steps_per_epoch - 2


def test_checkpoints_store_no_frozen_pretrained_weights(tiny_ae_ckpt):
    """LPIPS's VGG16 (~59 MB) is resolved at construction, never stored: the tiny stage-1
    checkpoint has no LPIPS key and stays small (62.1 MB with it, 3.3 MB without)."""
    checkpoint = torch.load(tiny_ae_ckpt, weights_only=True)
    assert not [key for key in checkpoint["state_dict"] if "lpips" in key]
    assert tiny_ae_ckpt.stat().st_size < 10_000_000


def test_missing_data_is_one_clear_error(tmp_path):
    out = run_forked("ldmlab.commands.train", ["data.data_dir=/nonexistent", "logger=none"], tmp_path)
    assert out.returncode == 2
    assert "data.data_dir" in out.stderr and "make data" in out.stderr
    assert "Traceback" not in out.stderr


def test_indivisible_resolution_names_the_key(tmp_path, fmnist_dir):
    out = run_forked("ldmlab.commands.train", ["data.resolution=30", "logger=none"], tmp_path)
    assert out.returncode == 2 and "data.resolution" in out.stderr and "f=4" in out.stderr


def test_channel_mismatch_names_the_key(tmp_path, fmnist_dir):
    args = ["data.channels=3", "autoencoder.encoder.in_channels=1", "logger=none"]
    out = run_forked("ldmlab.commands.train", args, tmp_path)
    assert out.returncode == 2 and "data.channels" in out.stderr


def test_nan_loss_stops_without_a_checkpoint(tmp_path, fmnist_dir):
    args = ["module.optimizer.lr=1e12", "module.warmup_steps=0", "module.gradient_clip_val=null",
            "trainer.max_epochs=3", "logger=none", NO_RFID, *TINY]
    out = run_forked("ldmlab.commands.train", args, tmp_path)
    stderr = out.stderr.lower()
    assert out.returncode == 2 and ("is nan" in stderr or "is inf" in stderr), out.stderr[-2000:]
    assert not list(tmp_path.rglob("*.ckpt"))


def test_resume_from_missing_checkpoint_is_clear(tmp_path):
    out = run_forked("ldmlab.commands.train", ["ckpt_path=last", "logger=none"], tmp_path)
    assert out.returncode == 2 and "ckpt_path" in out.stderr


def test_multirun_puts_each_job_under_multiruns(tmp_path, fmnist_dir):
    args = ["-m", "debug=fast_dev_run", "autoencoder/regularizer=kl,vq", *TINY]
    out = run_cli("ldmlab.commands.train", args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(tmp_path.glob("train_ae/multiruns/*/*/summary.json"))
    assert [p.parent.name for p in jobs] == ["0", "1"]
    targets = {json.loads(p.read_text())["metrics"].get("val/perplexity") is not None for p in jobs}
    assert targets == {True, False}, "one KL job and one VQ job"


def test_rfid_needs_more_images_than_feature_dims(tmp_path, fmnist_dir):
    args = [*TINY, "callbacks.reconstruction_fid.num_images=32", "logger=none"]
    out = run_forked("ldmlab.commands.train", args, tmp_path)
    assert out.returncode == 2 and "callbacks.reconstruction_fid.num_images" in out.stderr
    assert "Traceback" not in out.stderr
