"""Reconstruction through DDIM inversion and interpolation strips of a ``DiffusionAutoencoder``:
the numbers ``make invert`` / ``make interpolate`` and the semantic-latents study report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from ldmlab.metrics.reconstruction import ReconstructionMetrics
from ldmlab.models.restore import stored_datamodule
from ldmlab.semantic.autoencoding import DiffusionAutoencoder, mix, slerp
from ldmlab.utils.errors import FieldError

PART = "inversion"  # the study's settings (split, num_images, num_pairs, frames): the part "inversion"
SPLITS = ("val", "test")


def first_items(dataset: Dataset, count: int, field: str = "num_images", per: int = 1) -> dict:
    """Items 0 … count·per − 1 of ``dataset`` collated into one batch; ``per``: items per unit of
    ``count`` (2 for ``num_pairs``); ``field``: the setting that gave ``count``."""
    most = len(dataset) // per
    if not 0 < count <= most:
        fix = f"{{key}}={min(max(count, 1), most)}" if most else f"use a split with at least {per} images"
        raise FieldError(PART, field, f"must lie in [1, {most}] ({len(dataset)} images in the split), "
                         f"got {count}", fix)
    return default_collate([dataset[i] for i in range(count * per)])


@torch.no_grad()
def reconstruct(autoencoder: DiffusionAutoencoder, batch: dict, metrics: Callable[[], ReconstructionMetrics],
                batch_size: int, generator: torch.Generator) -> dict:
    """Encode each image to (condition, x_T) and decode (``inverted``), and decode the same condition
    from fresh noise x_T ~ N(0, I) (``random_noise``: what the condition alone keeps, e.g. DiffAE's
    z_sem). Returns {"inverted": {psnr, ssim, lpips}, "random_noise": {…}, "x_T": {mean, std},
    "images": {"original", "inverted", "random_noise"} (N, C, H, W) on the CPU}."""
    scores = {"inverted": metrics(), "random_noise": metrics()}
    images: dict[str, list[Tensor]] = {"original": [], "inverted": [], "random_noise": []}
    moments = []
    for start in range(0, len(batch["image"]), batch_size):
        chunk = {k: v[start:start + batch_size] for k, v in batch.items()}
        x = chunk["image"].to(autoencoder.module.device)
        condition = {k: v.to(x.device) if torch.is_tensor(v) else v for k, v in chunk.items()}
        x_T = autoencoder.encode(x, condition)
        cond_at = autoencoder.condition_at(condition)
        noise = torch.randn(x_T.shape, generator=generator).to(x_T)
        out = {"original": x, "inverted": autoencoder.decode(x_T, cond_at),
               "random_noise": autoencoder.decode(noise, cond_at)}
        for name in ("inverted", "random_noise"):
            scores[name].to(x.device).update(x, out[name])
        for name, value in out.items():
            images[name].append(value.cpu())
        moments.append(x_T.flatten().double().cpu())
    flat = torch.cat(moments)
    return {**{name: {k: float(v) for k, v in m.compute().items()} for name, m in scores.items()},
            "x_T": {"mean": float(flat.mean()), "std": float(flat.std())},
            "images": {name: torch.cat(value) for name, value in images.items()}}


@torch.no_grad()
def interpolate(autoencoder: DiffusionAutoencoder, a: dict, b: dict, frames: int, semantic_only: bool = False
                ) -> Tensor:
    """(P, frames, C, H, W) images between the pairs (a_i, b_i) (two batches of P items): x_T by slerp
    and the condition by lerp (``mix``); ``semantic_only`` keeps x_T of a and moves the condition only."""
    if frames < 2:
        raise FieldError(PART, "frames", f"must be ≥ 2, got {frames}", "e.g. {key}=9")
    device = autoencoder.module.device
    ends = []
    for batch in (a, b):
        condition = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        ends.append((autoencoder.encode(condition["image"], condition), autoencoder.condition_at(condition)))
    (x_a, c_a), (x_b, c_b) = ends
    strips = []
    for weight in torch.linspace(0.0, 1.0, frames).tolist():
        x_T = x_a if semantic_only else slerp(x_a, x_b, weight)
        strips.append(autoencoder.decode(x_T, mix(c_a, c_b, weight)).cpu())
    return torch.stack(strips, dim=1)


@torch.no_grad()
def smoothness(strips: Tensor, distance: Callable[[Tensor, Tensor], Tensor]) -> dict:
    """Per strip (P, F, C, H, W), the distances d_k between neighbouring frames k, k+1: their mean
    (the path length / (F − 1)), their std (low: even steps) and max / mean (1 for a perfectly even
    path; large when the strip jumps), each averaged over strips."""
    p, f = strips.shape[:2]
    d = distance(strips[:, :-1].flatten(0, 1), strips[:, 1:].flatten(0, 1)).view(p, f - 1).double()
    mean = d.mean(1)
    return {"neighbour_mean": float(mean.mean()), "neighbour_std": float(d.std(1).mean()),
            "max_over_mean": float((d.max(1).values / mean.clamp_min(1e-12)).mean())}


def check_split(split: str) -> None:
    """``split`` names a held-out split (val | test)."""
    if split not in SPLITS:
        raise FieldError(PART, "split", f"must be val or test, got {split!r}", "{key}=test")


def stored_split(path: Path, split: str) -> Dataset:
    """The ``split`` (val | test, see ``check_split``) of the datamodule stored in checkpoint ``path``."""
    datamodule = stored_datamodule(path)
    datamodule.setup()
    return getattr(datamodule, f"{split}_set")
