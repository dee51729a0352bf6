"""Per-sample transforms that add conditioning inputs to a dict sample ``f(sample, seed) -> sample``."""

from __future__ import annotations

import random

import torch.nn.functional as F

from ldmlab.config.types import PositiveInt
from ldmlab.data.captions import FASHION_MNIST_CLASSES, caption_for


class AddCaption:
    """``sample["caption"]``: the class name in a randomly chosen template (fixed per index at
    validation, fresh each time in training). Reads only the label (``reads_image``)."""

    reads_image = False  # latent-cached training items skip the pixels (``latent_items.py``)

    def __init__(self, class_names: list[str] | None = None) -> None:
        self.class_names = tuple(class_names or FASHION_MNIST_CLASSES)

    def __call__(self, sample: dict, seed: int) -> dict:
        return sample | {"caption": caption_for(sample["label"], random.Random(seed), self.class_names)}


class AddLowRes:
    """``sample["lowres"]``: the image area-downsampled to ``size``×``size`` (a concat condition)."""

    def __init__(self, size: PositiveInt) -> None:
        self.size = size

    def __call__(self, sample: dict, seed: int) -> dict:
        lowres = F.interpolate(sample["image"][None], size=(self.size, self.size), mode="area")[0]
        return sample | {"lowres": lowres}
