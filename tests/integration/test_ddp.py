"""Real DDP: 2 gloo ranks on CPU, through the CLI and for the collective maths."""

from __future__ import annotations

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.utils import instantiate

from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.data.resumable_sampler import ResumableSampler
from ldmlab.first_stage import latent_cache
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


def _flipping_data(data_dir: str) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule(data_dir, batch_size=8, train_subset=50, val_subset=8, random_flip=True)
    dm.setup()
    return dm


def _build_cache_on_rank(rank: int, world: int, tmp: str, ckpt: str, data_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    stage = FirstStage(ckpt, "/nonexistent", 4, 4, 1)
    dm = _flipping_data(data_dir)
    written, write = [], latent_cache.write_shard
    latent_cache.write_shard = lambda where, shard, *rest: written.append(shard) or write(where, shard, *rest)
    cache = latent_cache.open_latent_cache(f"{tmp}/cache", stage, dm, torch.device("cpu"), shard_size=10)
    rows = torch.stack([cache.store.row(i, v) for i in range(50) for v in range(2)])
    torch.save({"rows": rows, "written": written}, f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_build_the_latent_cache_in_parallel(tmp_path, tiny_ae_ckpt, fmnist_dir):
    """Each rank encodes its shards (s mod 2), both then read all five: the same latents as one
    process building the whole cache."""
    mp.start_processes(_build_cache_on_rank, args=(2, str(tmp_path), str(tiny_ae_ckpt), str(fmnist_dir)),
                       nprocs=2, start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["written"] for r in ranks] == [[0, 2, 4], [1, 3]]
    folder = next((tmp_path / "cache").iterdir())
    sidecars = [json.loads(p.read_text()) for p in sorted(folder.glob("shard-*.json"))]
    assert [(s["start"], s["stop"]) for s in sidecars] == [(k, k + 10) for k in range(0, 50, 10)]
    assert torch.equal(ranks[0]["rows"], ranks[1]["rows"])
    stage = FirstStage(str(tiny_ae_ckpt), "/nonexistent", 4, 4, 1)
    dm = _flipping_data(str(fmnist_dir))
    alone = latent_cache.open_latent_cache(tmp_path / "alone", stage, dm, torch.device("cpu"), shard_size=10)
    assert alone.summary()["build_seconds"] != "reused"
    expected = torch.stack([alone.store.row(i, v) for i in range(50) for v in range(2)])
    torch.testing.assert_close(ranks[0]["rows"], expected, rtol=1e-5, atol=1e-6)


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
