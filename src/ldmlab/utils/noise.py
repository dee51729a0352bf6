"""Standard normal noise from one generator, or from one generator per image.

Every draw on the sampling path (a walk's initial noise, the samplers' in-loop noise, a VAE
prior's z) goes through ``gaussian``. It takes a ``torch.Generator`` (the whole batch from one
stream, as ``torch.randn``) or a ``PerImageGenerator``: row b of every draw then comes from
generator b alone, so an image's noise is a function of its own seed, whatever batch it is drawn
in and in whatever order (the idea of EDM's stacked generator, Karras et al. 2022).

It lives in the foundation layer because the autoencoder's prior draws through it too, and the
autoencoder sits below ``sampling`` in the package graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class PerImageGenerator:
    """One ``torch.Generator`` on ``device`` per image of a batch, generator b seeded ``seeds[b]``
    in [0, 2³²): a CPU generator reads only its seed's low 32 bits, so larger seeds would share
    streams. A row's stream does not depend on the other rows."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str) -> None:
        seeds = [int(seed) for seed in seeds]
        if any(not 0 <= seed < 2**32 for seed in seeds):
            raise ValueError(f"per-image seeds must lie in [0, 2**32), got {min(seeds)} … {max(seeds)}")
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> Tensor:
        """(B, ...) standard normal with B = len(self); row b from generator b, on ``device``
        (default: the generators'; like ``torch.randn``, it must be theirs)."""
        if not shape or shape[0] != len(self):
            raise ValueError(f"a draw of shape {tuple(shape)} needs one generator per row, "
                             f"this PerImageGenerator has {len(self)}")
        device = self.device if device is None else device
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype)
                            for g in self.generators])


Generator = torch.Generator | PerImageGenerator
"""What drives sampling noise: one stream for the batch, or one stream per image."""


def gaussian(shape: Sequence[int], generator: Generator | None = None,
             device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal noise of ``shape`` on ``device`` from ``generator`` (None: torch's global
    generator of that device)."""
    if isinstance(generator, PerImageGenerator):
        return generator.randn(shape, device, dtype)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
