"""Real DDP: 2 gloo ranks on CPU, through the CLI and for the collective maths."""

from __future__ import annotations

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ldmlab.diffusion.first_stage import FirstStage
from tests.conftest import TINY_AE, TINY_LDM, run_cli


def _fit_scale_on_shard(rank: int, world: int, tmp: str, ckpt: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    stage = FirstStage(ckpt, "/nonexistent", 4, 4, 1)
    images = torch.load(f"{tmp}/images.pt")
    stage.fit_scale(images[rank::world])
    torch.save(stage.scale_factor, f"{tmp}/scale{rank}.pt")
    dist.destroy_process_group()


def test_scale_by_std_is_all_reduced_over_ranks(tmp_path, tiny_ae_ckpt):
    torch.manual_seed(0)
    images = torch.rand(12, 1, 32, 32) * 2 - 1
    images[::2] = -1.0  # rank 0 sees blank images: its local latent std differs from rank 1's
    torch.save(images, tmp_path / "images.pt")
    mp.start_processes(_fit_scale_on_shard, args=(2, str(tmp_path), str(tiny_ae_ckpt)),
                       nprocs=2, start_method="fork")
    scales = [float(torch.load(tmp_path / f"scale{r}.pt")) for r in range(2)]
    pooled = FirstStage(str(tiny_ae_ckpt), "/nonexistent", 4, 4, 1)
    expected = pooled.fit_scale(images)
    local = FirstStage(str(tiny_ae_ckpt), "/nonexistent", 4, 4, 1).fit_scale(images[::2])
    assert scales[0] == scales[1]
    assert abs(scales[0] - expected) < 1e-4 * expected
    assert abs(local - expected) > 1e-2 * expected


def test_two_rank_ddp_trains_both_stages_through_the_cli(tmp_path, tiny_ae_ckpt):
    rfid = ["data.val_subset=100", "callbacks.reconstruction_fid.num_images=100",
            "metrics.kid_subset_size=50"]
    tiny = [arg for arg in TINY_AE if not arg.startswith("callbacks.reconstruction_fid")]
    ae_args = ["trainer=ddp_cpu", "trainer.max_epochs=1", *tiny, *rfid]
    ae = run_cli("ldmlab.train", ae_args, tmp_path)
    assert ae.returncode == 0, ae.stderr[-3000:]
    summary = json.loads((tmp_path / "train_ae/latest/summary.json").read_text())
    assert summary["global_step"] > 0 and "val/psnr" in summary["metrics"]
    assert summary["metrics"]["val/rfid_inception"] > 0, "ranks' reconstructions gathered and scored"
    ldm_args = ["trainer=ddp_cpu", f"first_stage.ckpt={tiny_ae_ckpt}", "logger=none", *TINY_LDM,
                "callbacks.image_logger=null", "module.scale_fit_batches=2"]  # 2 batches per rank
    ldm = run_cli("ldmlab.train", ldm_args, tmp_path, config_name="train_ldm")
    assert ldm.returncode == 0, ldm.stderr[-3000:]
    summary = json.loads((tmp_path / "train_ldm/latest/summary.json").read_text())
    # 64 training images, batch 16, 2 ranks → 2 optimiser steps per epoch on each rank
    assert summary["global_step"] == 2 and summary["scale_factor"] > 0
