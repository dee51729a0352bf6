"""Is the unconditional branch an unconditional model? ε-prediction MSE of each train_ldm job of a
p_uncond multirun on test images, with the true class, with the null embedding (what CFG uses
as ε_u) and with a wrong class, at the same t and noise (EMA weights).

    python experiments/cfg-fashion-mnist/null_branch_loss.py <multirun dir> [num_images]

Prints one Markdown row per job: p_uncond, seed, the three MSEs, and ‖null‖ / mean ‖class row‖ of
the class-embedding table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ldmlab.commands.evaluate import stored_datamodule
from ldmlab.evaluation.reference import load_reference
from ldmlab.models.restore import load_ldm


@torch.no_grad()
def branch_losses(ckpt: Path, num_images: int) -> dict[str, float]:
    module = load_ldm(ckpt)
    model = module.ema.shadow
    _, dataset = load_reference(stored_datamodule(ckpt), "test", num_images)
    loader = torch.utils.data.DataLoader(dataset, batch_size=250)
    generator = torch.Generator().manual_seed(0)
    sums, count = {"true class": 0.0, "null": 0.0, "wrong class": 0.0}, 0
    for batch in loader:
        if count >= num_images:
            break
        z = module.first_stage.encode(batch["image"])
        t = torch.randint(0, module.schedule.num_timesteps, (len(z),), generator=generator)
        noise = torch.randn(z.shape, generator=generator)
        z_t = module.schedule.q_sample(z, t, noise)
        shift = 1 + torch.randint(0, 9, (len(z),), generator=generator)
        wrong = dict(batch, label=(batch["label"] + shift) % 10)
        contexts = {"true class": model["conditioner"](batch), "wrong class": model["conditioner"](wrong),
                    "null": model["conditioner"].unconditional(batch, batch_size=len(z))}
        for name, context in contexts.items():
            sums[name] += float(((model["backbone"](z_t, t, context) - noise) ** 2).mean()) * len(z)
        count += len(z)
    table = next(m for m in model["conditioner"].modules() if isinstance(m, torch.nn.Embedding)).weight
    ratio = float(table[-1].norm() / table[:-1].norm(dim=1).mean())
    return {**{k: v / count for k, v in sums.items()}, "null/class norm": ratio}


def main(sweep_dir: Path, num_images: int = 1000) -> None:
    print("| p_uncond | seed | MSE true class | MSE null | MSE wrong class | ‖null‖ / ‖class‖ |")
    print("|---|---|---|---|---|---|")
    for job in sorted(p for p in sweep_dir.iterdir() if (p / "checkpoints" / "last.ckpt").exists()):
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        losses = branch_losses(job / "checkpoints" / "last.ckpt", num_images)
        cells = " | ".join(f"{v:.4f}" for v in losses.values())
        print(f"| {config.conditioner.p_uncond:g} | {config.seed} | {cells} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:3]))
