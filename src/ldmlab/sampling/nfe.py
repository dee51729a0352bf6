"""Network function evaluations (NFE) of a sampling call, counted rather than derived.

NFE per image = rows that entered a denoiser network (any ``Denoiser``: the sampled model's and a
guide's, as autoguidance's) during the call ÷ images drawn. So CFG's batched [cond; uncond] pass
counts 2 per step where it is active (interval guidance: only there), Heun / EDM 2 per step but
the last, a gradient guidance's pass through the denoiser 1; the first stage, a classifier and
the ES-DDPM start's VAE are not denoisers and are not counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from ldmlab.backbones.base import Denoiser


class Evaluations:
    """``rows``: how many inputs (batch rows) denoiser networks were called on."""

    def __init__(self) -> None:
        self.rows = 0

    def per_image(self, images: int) -> int | float:
        """NFE per image of ``images`` drawn: an int when it divides evenly."""
        count = self.rows / images
        return int(count) if count.is_integer() else count


@contextmanager
def counted_evaluations() -> Iterator[Evaluations]:
    """Inside: every denoiser network's forward call adds its batch size to the yielded counter
    (a global module hook, removed on exit)."""
    evaluations = Evaluations()

    def count(module: nn.Module, args: tuple) -> None:
        if isinstance(module, Denoiser):
            evaluations.rows += len(args[0])

    handle = register_module_forward_pre_hook(count)
    try:
        yield evaluations
    finally:
        handle.remove()
