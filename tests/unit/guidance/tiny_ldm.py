"""Tiny real class-conditional LDMs on pixels (2-block DiT, 1×8×8, class_vector) for the guidance
tests, and a deterministic DDIM draw of their latents with a bound guidance."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch
from hydra.utils import instantiate
from torch import nn

from ldmlab.guidance.base import BoundGuidance
from ldmlab.models.ldm import LatentDiffusionModule
from ldmlab.sampling.generate import generate_latents
from ldmlab.sampling.samplers.ddim import DDIMSampler
from tests.conftest import compose_config

TINY = ["first_stage=identity", "data.resolution=8", "backbone=dit", "conditioner=class_vector",
        "backbone.hidden_size=32", "backbone.depth=2", "backbone.num_heads=2"]
FLOW = ["diffusion/objective=flow"]
LABELS = torch.tensor([0, 3, 9])


@cache
def _config(overrides: tuple[str, ...]):
    return compose_config("train_ldm", [*TINY, *overrides])


def tiny_ldm(*overrides: str, seed: int = 0) -> LatentDiffusionModule:
    """A module with random EMA weights drawn from ``seed`` (random, so that adaLN-Zero's zeros let
    the label and the weights reach the output), in eval mode."""
    torch.manual_seed(seed)
    module = instantiate(_config(overrides).module)
    with torch.no_grad():
        for p in module.ema.shadow.parameters():
            p.normal_(0.0, 0.2)
    return module.eval()


def latent_shape(module: LatentDiffusionModule) -> tuple[int, int, int]:
    side = module.resolution // module.first_stage.downsample_factor
    return module.first_stage.embed_dim, side, side


def draw(module: LatentDiffusionModule, guidance: BoundGuidance | None, steps: int = 8) -> torch.Tensor:
    """(3, 1, 8, 8) latents of DDIM (η = 0) from one fixed noise, for ``LABELS``."""
    net = module.ema.shadow
    return generate_latents(net["backbone"], net["conditioner"], module.schedule, module.parameterization,
                            DDIMSampler(steps), {"label": LABELS}, latent_shape(module), len(LABELS),
                            guidance=guidance, generator=torch.Generator().manual_seed(0))


@contextmanager
def batch_sizes(*nets: nn.Module) -> Iterator[list[list[int]]]:
    """Per net, the batch size of every forward call within the block."""
    sizes: list[list[int]] = [[] for _ in nets]
    hooks = [net.register_forward_pre_hook(lambda module, args, seen=seen: seen.append(args[0].shape[0]))
             for net, seen in zip(nets, sizes, strict=True)]
    try:
        yield sizes
    finally:
        for hook in hooks:
            hook.remove()
