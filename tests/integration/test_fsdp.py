"""Stage 2 under FSDP (trainer=fsdp's strategy) on 2 gloo CPU ranks through the CLI: it trains
with EMA, gradient clipping and gradient checkpointing to the weights 2-rank DDP reaches,
checkpoints in the single-device layout, and a run stopped mid-epoch and resumed with
``ckpt_path=last`` ends exactly where the uninterrupted run ends. Lightning's FSDPStrategy
refuses CPUs: ``fsdp_on_cpu`` says what its subclass changes to run here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_LDM, run_cli
from tests.integration.test_resume_exact import DATA_KEY, _load, _max_abs_diff

# 128 images, batch 16, 2 ranks: 4 steps per epoch, 8 in all; images logged after the last epoch only
ARGS = [*TINY_LDM, "data.train_subset=128", "trainer.max_epochs=2", "module.scale_fit_batches=2",
        "logger=none"]
FSDP_ON_CPU = ["trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
               "trainer.strategy._target_=tests.integration.fsdp_on_cpu.CPUFSDPStrategy",
               "backbone.gradient_checkpointing=true"]  # the same maths: compared with DDP without it


def _train(log_dir: Path, ckpt: Path, *extra: str) -> dict:
    out = run_cli("ldmlab.commands.train", [f"first_stage.ckpt={ckpt}", *ARGS, *extra], log_dir,
                  config_name="train_ldm")
    assert out.returncode == 0, out.stderr[-3000:]
    return _load(log_dir / "train_ldm" / "latest" / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_fsdp_trains_like_ddp_and_resumes_exactly(tmp_path, tiny_ae_ckpt):
    ddp = _train(tmp_path / "ddp", tiny_ae_ckpt, "trainer=ddp_cpu")
    straight = _train(tmp_path / "fsdp", tiny_ae_ckpt, *FSDP_ON_CPU)
    stopped = _train(tmp_path / "resumed", tiny_ae_ckpt, *FSDP_ON_CPU, "trainer.max_steps=6")
    resumed = _train(tmp_path / "resumed", tiny_ae_ckpt, *FSDP_ON_CPU, "ckpt_path=last")

    weights = straight["state_dict"]
    assert not any("_fsdp_wrapped_module" in k for k in weights)
    assert weights.keys() == ddp["state_dict"].keys()  # the layout every ldmlab command reads
    assert straight["global_step"] == ddp["global_step"] == 8
    assert _max_abs_diff(ddp["state_dict"], weights) < 1e-6  # model and EMA: sharded = replicated maths

    ema = {k: v for k, v in weights.items() if k.startswith("ema.shadow.")}
    assert ema and all(torch.isfinite(v).all() for v in ema.values() if v.is_floating_point())
    trained = {k.removeprefix("ema.shadow."): v for k, v in ema.items()}
    assert _max_abs_diff(trained, {k: weights[f"model.{k}"] for k in trained}) > 0  # an average, not a copy

    assert stopped["global_step"] == 6 and stopped[DATA_KEY]["epoch"] == 1
    assert resumed["global_step"] == 8 and resumed[DATA_KEY] == straight[DATA_KEY]
    parts = {part: _max_abs_diff(straight[part], resumed[part], part)
             for part in ("state_dict", "optimizer_states", "lr_schedulers")}
    assert parts == dict.fromkeys(parts, 0.0), parts
    assert _max_abs_diff(stopped["state_dict"], weights) > 0  # the 2 steps after the stop moved it
    summary = json.loads((tmp_path / "fsdp" / "train_ldm" / "latest" / "summary.json").read_text())
    assert summary["denoiser"]["forward_flops_per_image"] > 0  # counted before FSDP wrapped the net
    images = list((tmp_path / "fsdp" / "train_ldm" / "latest" / "images").glob("*.png"))
    assert images, "both ranks sampled, rank 0 wrote the grids"
