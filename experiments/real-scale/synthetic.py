"""A procedurally generated, ImageNet-shaped image folder: RGB JPEGs of assorted sizes (the short
side 256–480, aspect 3:4 to 4:3) in class subfolders, so the ADM centre crop, the random flip and
JPEG decoding all do real work. Class k fixes a shape family and a palette; position, scale,
rotation, background gradient and noise texture are drawn per image from (seed, index). Runs
offline in seconds; the same arguments always write the same bytes.

    python experiments/real-scale/synthetic.py --out data/synthetic-rgb --num-images 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("disc", "square", "triangle", "ring", "stripes", "checker", "cross", "blobs", "star", "waves")


def _palette(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hue = (k / len(SHAPES) + rng.normal(0, 0.03)) % 1.0
    base = np.array([np.cos(2 * np.pi * (hue + o)) for o in (0, 1 / 3, 2 / 3)]) * 0.5 + 0.5
    return (base * 255).clip(0, 255), ((1 - base) * 200 + rng.uniform(0, 55, 3)).clip(0, 255)


def draw(k: int, rng: np.random.Generator) -> Image.Image:
    """One image of class ``k``."""
    short = int(rng.integers(256, 481))
    aspect = rng.uniform(0.75, 4 / 3)
    w, h = (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))
    fg, bg = _palette(k, rng)
    ramp = np.linspace(0, 1, w)[None, :, None] * rng.uniform(-60, 60, 3)
    noise = rng.normal(0, 12, (h, w, 3))
    canvas = Image.fromarray((bg + ramp + noise).clip(0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(canvas)
    cx, cy, r = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7), short * rng.uniform(0.15, 0.35)
    color = tuple(int(c) for c in fg)
    shape = SHAPES[k % len(SHAPES)]
    if shape in ("disc", "ring"):
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=None if shape == "ring" else color,
                    outline=color, width=max(4, int(r / 5)))
    elif shape in ("square", "triangle", "star"):
        n = {"square": 4, "triangle": 3, "star": 10}[shape]
        angles = rng.uniform(0, 2 * np.pi) + np.arange(n) * 2 * np.pi / n
        radii = np.where(np.arange(n) % 2, r * 0.45, r) if shape == "star" else np.full(n, r)
        pen.polygon([(cx + q * np.cos(a), cy + q * np.sin(a)) for q, a in zip(radii, angles, strict=True)],
                    fill=color)
    elif shape in ("stripes", "waves"):
        period = int(rng.integers(12, 40))
        for x in range(0, w, 2 * period):
            if shape == "stripes":
                pen.rectangle((x, 0, x + period, h), fill=color)
            else:
                pts = [(x + period * np.sin(y / period), y) for y in range(0, h, 4)]
                pen.line(pts, fill=color, width=period // 2)
    elif shape == "checker":
        cell = int(rng.integers(16, 48))
        for y in range(0, h, cell):
            for x in range((y // cell % 2) * cell, w, 2 * cell):
                pen.rectangle((x, y, x + cell, y + cell), fill=color)
    elif shape == "cross":
        t = r / 3
        pen.rectangle((cx - r, cy - t, cx + r, cy + t), fill=color)
        pen.rectangle((cx - t, cy - r, cx + t, cy + r), fill=color)
    else:  # blobs
        for _ in range(int(rng.integers(3, 8))):
            bx, by, br = rng.uniform(0, w), rng.uniform(0, h), short * rng.uniform(0.05, 0.15)
            pen.ellipse((bx - br, by - br, bx + br, by + br), fill=color)
    return canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for i in range(args.num_images):
        rng = np.random.default_rng([args.seed, i])
        k = i % len(SHAPES)
        folder = args.out / f"{k:02d}_{SHAPES[k]}"
        folder.mkdir(parents=True, exist_ok=True)
        draw(k, rng).save(folder / f"{i:06d}.jpg", quality=90)


if __name__ == "__main__":
    main()
