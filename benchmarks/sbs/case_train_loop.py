"""Case ``loop``: the framework's time per training step, the whole loop, against a bare PyTorch loop.

ours: ``ldmlab.commands.train`` (``--config-name train_ldm``) called in this process exactly as the
CLI runs it: Hydra, Lightning's loop, the latent cache (on, the default: the loader serves latent
rows from the memory-mapped shards), the default callbacks and logger (wandb, offline without a
key), logging at its defaults; ms/step from the run's own telemetry (``summary.json``:
``denoiser.img_per_s`` over the timed windows, which exclude the first batch and validation).
theirs: a bare loop doing the same maths with the same module (built from the same composed
config and first-stage checkpoint): latents indexed from an in-memory tensor by a seeded
permutation, the ``DiffusionObjective`` loss (t, ε, label dropout, backbone, MSE), backward,
clip, the module's own optimiser and warm-up schedule, EMA; timed with ``perf_counter`` after
warm-up steps. Both run on Fashion-MNIST at the given batch size with the same threads.

Sizes: ``micro`` (a 2-level UNet with 8 base channels, ~30k parameters: the step is almost all
overhead) at B = 8 and 64, and ``small`` (the default ``backbone=small``) at B = 64. The
framework's extra time per step is ours − theirs; targets: ≤ 1 ms and ≤ 10 % of the bare step
for ``small`` (ratio = theirs / ours ≥ 1 / 1.1).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from sbs.common import Row, Settings
from sbs.models import compose_config, params

REPO = Path(__file__).resolve().parents[2]
MICRO = ["backbone.model_channels=8", "backbone.channel_mult=[1,2]", "backbone.num_res_blocks=1",
         "backbone.attention_resolutions=[]", "backbone.num_heads=1", "conditioner_context_dim=8"]
TINY_AE = ["autoencoder.encoder.ch=16", "loss.discriminator.base_channels=16", "logger=none",
           "callbacks.reconstruction_fid=null", "data.train_subset=64", "data.val_subset=32",
           "data.batch_size=16", "trainer.max_steps=2"]
SMALL_TARGET = 1 / 1.1


def _call_cli(config: str, overrides: list[str], log_dir: Path) -> dict:
    """Run ``ldmlab.commands.train.main`` in this process; return the run's summary.json."""
    from ldmlab.commands import train

    argv, sys.argv = sys.argv, ["train", "--config-name", config, f"paths.log_dir={log_dir}",
                                f"paths.data_dir={REPO / 'data'}", *overrides]
    try:
        train.main()
    except SystemExit as stop:
        if stop.code:
            raise RuntimeError(f"ldmlab.train {config} exited {stop.code}") from None
    finally:
        sys.argv = argv
    return json.loads((log_dir / config / "latest" / "summary.json").read_text())


def tiny_autoencoder(root: Path) -> Path:
    """A stage-1 checkpoint to stand in for a trained one (2 steps: the per-step cost of stage 2
    does not depend on the first stage's quality)."""
    _call_cli("train_ae", TINY_AE, root)
    return next(root.glob("train_ae/runs/*/checkpoints/last.ckpt"))


def framework_ms(overrides: list[str], batch: int, root: Path, steps: int) -> tuple[float, dict]:
    """ms per step of the real CLI loop over ``steps`` steps, and its telemetry."""
    run = [*overrides, f"trainer.max_steps={steps}", f"trainer.log_every_n_steps={max(2, steps // 4)}",
           "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "callbacks.image_logger=null"]
    summary = _call_cli("train_ldm", run, root)
    denoiser = summary["denoiser"]
    return 1000 * batch / denoiser["img_per_s"], denoiser


def bare_loop(overrides: list[str], batch: int, ckpt: Path):
    """The same module's maths without Lightning: returns (step(), module)."""
    cfg = compose_config("train_ldm", [f"first_stage.ckpt={ckpt}", *overrides])
    torch.manual_seed(0)
    module = instantiate(cfg.module).train()
    module.trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    optim = module.configure_optimizers()
    optimizer, scheduler = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    side = cfg.data.resolution // module.first_stage.downsample_factor
    n = 2048
    latents = torch.randn(n, module.first_stage.embed_dim, side, side)
    labels = torch.randint(0, 10, (n,))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    clip, position = cfg.trainer.gradient_clip_val, [0]

    def step() -> float:
        start = position[0] % (n - batch)
        index = order[start:start + batch]
        position[0] += batch
        data = {"latent": latents[index], "label": labels[index], "index": index}
        loss = module.diffusion_loss(data, module.model)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        module.ema.update(module.model)
        return loss.detach()
    return step, module


def bare_ms(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - started) / steps


def run(s: Settings) -> list[Row]:
    if s.device != "cpu":
        raise SystemExit("case loop: CPU only here (the GPU check runs the loop on a GPU)")
    steps = 12 if s.quick else 200
    repeats = min(s.repeats, 3)  # each repeat is a whole CLI run
    cases = [("micro", 8, MICRO), ("micro", 64, MICRO), ("small", 64, [])]
    if s.quick:
        cases = cases[:1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        root = Path(tmp)
        ckpt = tiny_autoencoder(root / "ae")
        for size, batch, extra in cases:
            overrides = [f"first_stage.ckpt={ckpt}", f"data.batch_size={batch}", *extra,
                         f"paths.cache_dir={root / 'cache'}"]
            step, module = bare_loop([f"data.batch_size={batch}", *extra], batch, ckpt)
            ours, theirs, telemetry = [], [], {}
            for repeat in range(repeats):  # interleaved: CLI run, bare loop, CLI run, ...
                ms, telemetry = framework_ms(overrides, batch, root / f"{size}-{batch}-{repeat}", steps)
                ours.append(ms)
                theirs.append(bare_ms(step, steps, warmup=5))
            o, t = sorted(ours)[len(ours) // 2], sorted(theirs)[len(theirs) // 2]
            n_params = params(module.model["backbone"])
            extra_ms = o - t
            rows.append(Row(
                f"loop_{size}_b{batch}", "training step, whole loop: ldmlab.train (Lightning, cache, "
                f"logging) vs bare PyTorch, {size} UNet", batch, o / 1000, t / 1000, n_params, n_params,
                float("nan"), float("nan"), SMALL_TARGET if size == "small" else None,
                {"overhead_ms_per_step": round(extra_ms, 3), "overhead_frac": round(extra_ms / t, 4),
                 "data_wait_ms": telemetry.get("data_wait_ms"), "steps_timed": telemetry.get("timed_steps"),
                 "ours_ms_runs": [round(x, 3) for x in ours], "bare_ms_runs": [round(x, 3) for x in theirs]}))
    return rows
