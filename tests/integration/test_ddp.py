"""Real DDP: 2 gloo ranks on CPU, through the CLI and for the collective maths."""

from __future__ import annotations

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.utils import instantiate

from ldmlab.data.resumable_sampler import ResumableSampler
from ldmlab.first_stage.autoencoder import FirstStage
from tests.conftest import REPO, TINY_AE, TINY_LDM, compose_config, run_cli


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
    ae = run_cli("ldmlab.commands.train", ae_args, tmp_path)
    assert ae.returncode == 0, ae.stderr[-3000:]
    summary = json.loads((tmp_path / "train_ae/latest/summary.json").read_text())
    assert summary["global_step"] > 0 and "val/psnr" in summary["metrics"]
    assert summary["metrics"]["val/rfid_inception"] > 0, "ranks' reconstructions gathered and scored"


def rank_images(cfg, rank: int, world: int, batches: int) -> torch.Tensor:
    """The first ``batches`` training batches of ``rank`` as the data module orders them."""
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    sampler = ResumableSampler(len(datamodule.train_set), cfg.seed)
    sampler.rank, sampler.world = rank, world
    pairs = sampler.pairs(0)[: batches * cfg.data.batch_size]
    return torch.stack([datamodule.train_set[pair]["image"] for pair in pairs])


def test_multirun_of_two_rank_ddp_jobs(tmp_path, tiny_ae_ckpt):
    """-m over 2 jobs × 2 gloo ranks: one sweep dir, one run dir, wandb run and summary per job;
    stage 2 without find_unused_parameters; scale_by_std pools the ranks' different images;
    lr_scaling=linear doubles the lr for 2 ranks."""
    args = ["-m", "trainer=ddp_cpu", f"first_stage.ckpt={tiny_ae_ckpt}", "logger=wandb", *TINY_LDM,
            "callbacks.image_logger=null", "module.scale_fit_batches=2", "conditioner.p_uncond=0.1,0.2",
            "lr_scaling=linear"]
    out = run_cli("ldmlab.commands.train", args, tmp_path, config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = (tmp_path / "train_ldm" / "multiruns").iterdir()
    assert not (tmp_path / "train_ldm" / "runs").exists()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    summaries = [json.loads((sweep / job / "summary.json").read_text()) for job in ("0", "1")]
    for job, summary in zip(("0", "1"), summaries, strict=True):
        assert len(list((sweep / job / "wandb").glob("offline-run-*"))) == 1
        # 64 training images, batch 16, 2 ranks → 2 optimiser steps per epoch on each rank
        assert summary["status"] == "completed" and summary["global_step"] == 2
        assert summary["effective_batch_size"] == 32 and summary["lr_scale"] == 2.0
    assert "find_unused_parameters=True was specified" not in out.stdout + out.stderr
    cfg = compose_config("train_ldm", [*TINY_LDM, f"paths.data_dir={REPO / 'data'}"])
    shards = [rank_images(cfg, rank, 2, batches=2) for rank in range(2)]
    pooled = FirstStage(str(tiny_ae_ckpt), "/nonexistent", 4, 4, 1).fit_scale(torch.cat(shards))
    alone = FirstStage(str(tiny_ae_ckpt), "/nonexistent", 4, 4, 1).fit_scale(shards[0])
    for summary in summaries:
        assert abs(summary["scale_factor"] - pooled) < 1e-5 * pooled
    assert abs(alone - pooled) > 1e-4 * pooled, "the ranks' shards differ, so pooling matters"
