"""Captions for Fashion-MNIST built from class names and varied templates (text path data)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ldmlab.data.fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from ldmlab.utils.errors import part_key

# ``{a}`` is the indefinite article matching the name, ``{name}`` the lower-cased class name.
CAPTION_TEMPLATES = (
    "{name}",
    "a photo of {a} {name}",
    "a black and white picture of {a} {name}",
    "a small grayscale image of {a} {name}",
    "a low-resolution photo of {a} {name}",
    "{a} {name} on a black background",
    "a product shot of {a} {name}",
    "a centered picture of {a} {name}",
    "fashion item: {name}",
    "a tiny 28x28 photo of {a} {name}",
)


def caption_for(
    label: int, rng: random.Random, class_names: Sequence[str] = FASHION_MNIST_CLASSES
) -> str:
    """A caption for class ``label`` using a template drawn from ``rng``."""
    if not 0 <= label < len(class_names):
        raise ValueError(
            f"class_label {label} out of range for {len(class_names)} class_names; "
            f"check {part_key('data', 'num_classes')}"
        )
    name = class_names[label].lower()
    article = "an" if name[0] in "aeiou" else "a"
    return rng.choice(CAPTION_TEMPLATES).format(a=article, name=name)
