"""The training-time random horizontal flip, decided per sample from its seed.

``ResumableSampler`` pairs every training position with a seed (a function of shuffle seed,
epoch and position), so the flip of each sample is fixed by where it stands in the training
order: a resumed run flips exactly as the uninterrupted one, and the latent cache (which stores
both views) picks the same view the pixel path would have drawn. The decision draws from its own
stream (the seed mixed with a constant), independent of the sample transforms' ``Random(seed)``.
"""

from __future__ import annotations

import random

_STREAM = 0x5EED_F11B


def flips(seed: int) -> bool:
    """Whether the training sample with per-sample seed ``seed`` is mirrored (probability 1/2)."""
    return random.Random(int(seed) ^ _STREAM).random() < 0.5
