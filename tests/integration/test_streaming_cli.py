"""``make shards`` then ``train_ldm data=streaming`` (pixel space, 2 loader workers, random flips):
a run stopped mid-epoch and resumed with ``ckpt_path=last`` ends bit for bit where the
uninterrupted run ends (weights, optimiser state and data position: max abs difference 0.0), on
one process and (slow) on 2 DDP ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli, run_forked
from tests.integration.test_resume_exact import _load, _max_abs_diff

TINY = ["data=streaming", "data.resolution=16", "data.batch_size=4", "data.num_workers=2",
        "first_stage=identity", "backbone.model_channels=16", "backbone.num_res_blocks=1",
        "backbone.num_heads=2", "backbone.channel_mult=[1,2]", "backbone.attention_resolutions=[2]",
        "conditioner_context_dim=32", "conditioner.embedders.label.num_classes=2", "module.warmup_steps=0",
        "callbacks.image_logger=null", "logger=none", "trainer.max_epochs=10"]
DATA_KEY = "StreamingDataModule"


@pytest.fixture
def shards(tmp_path) -> Path:
    """24 random 16×16 RGB images in class folders a/ and b/, converted: 23 train, 1 val."""
    rng = np.random.default_rng(0)
    for i in range(24):
        (tmp_path / "images" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        image.save(tmp_path / "images" / "ab"[i % 2] / f"{i}.png")
    out = run_forked("ldmlab.commands.shards", [f"input={tmp_path / 'images'}", f"out={tmp_path / 'shards'}",
                                                "resolution=16", "class_folders=true", "num_workers=0"],
                     tmp_path / "logs")
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp_path / "shards"


def _trainer(args: list[str], ranks: int):
    """``train(log_dir, *extra, status=0)``: the last.ckpt of a train_ldm run (its output if it
    failed as expected); DDP runs start their own interpreter (``run_cli``), others are forked."""
    run = run_cli if ranks > 1 else run_forked

    def train(log_dir: Path, *extra: str, status: int = 0):
        out = run("ldmlab.commands.train", [*args, *extra], log_dir, config_name="train_ldm")
        assert out.returncode == status, out.stderr[-3000:]
        return out if status else _load(log_dir / "train_ldm" / "latest" / "checkpoints" / "last.ckpt")
    return train


def _assert_same_end(final: dict, again: dict, stopped: dict, steps: int) -> None:
    assert final["global_step"] == again["global_step"] == steps
    parts = {part: _max_abs_diff(final[part], again[part], part)
             for part in ("state_dict", "optimizer_states", DATA_KEY)}
    assert parts == dict.fromkeys(parts, 0.0), parts
    assert _max_abs_diff(stopped["state_dict"], final["state_dict"]) > 0  # the equality is not vacuous


def test_a_stopped_streaming_run_resumes_exactly_and_only_in_the_same_order(shards, tmp_path):
    """5 batches of 4 an epoch: max_steps=7 stops 2 batches into epoch 1; resumed with other loader
    workers it refuses (one line), resumed as it was to 9 steps it ends where an uninterrupted
    9-step run does."""
    train = _trainer([*TINY, f"data.root={shards}"], ranks=1)
    final = train(tmp_path / "straight", "trainer.max_steps=9")
    stopped = train(tmp_path / "extended", "trainer.max_steps=7")
    assert {k: stopped[DATA_KEY][k] for k in ("epoch", "samples", "world_size")} == \
        {"epoch": 1, "samples": 2 * 4, "world_size": 1}
    resume = ("trainer.max_steps=9", "ckpt_path=last")
    refused = train(tmp_path / "extended", *resume, "data.num_workers=1", status=2)
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith(
        "error: data.num_workers: is 1, the run that wrote the checkpoint had 2; it stopped 8 samples into "
        "epoch 1"), refused.stderr
    _assert_same_end(final, train(tmp_path / "extended", *resume), stopped, 9)


@pytest.mark.slow
def test_a_stopped_two_rank_ddp_streaming_run_resumes_exactly(shards, tmp_path):
    """2 gloo ranks, 2 batches of 4 each an epoch: max_steps=5 stops 1 batch into epoch 2 (8 samples
    of both ranks); resumed to 7 steps it ends where the uninterrupted run does (~80 s)."""
    train = _trainer(["trainer=ddp_cpu", *TINY, f"data.root={shards}"], ranks=2)
    final = train(tmp_path / "straight", "trainer.max_steps=7")
    stopped = train(tmp_path / "extended", "trainer.max_steps=5")
    assert {k: stopped[DATA_KEY][k] for k in ("epoch", "samples", "world_size")} == \
        {"epoch": 2, "samples": 4 * 2, "world_size": 2}
    _assert_same_end(final, train(tmp_path / "extended", "trainer.max_steps=7", "ckpt_path=last"), stopped, 7)
