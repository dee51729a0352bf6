"""OmegaConf resolvers that ldmlab's configs use (registered on ``import ldmlab``)."""

from __future__ import annotations

from omegaconf import OmegaConf


def divide_exactly(numerator: int, denominator: int) -> int:
    """``${div:a,b}``: a / b for integers b that divide a (a latent side from a resolution and a
    downsampling factor); anything else is an error naming both numbers."""
    a, b = int(numerator), int(denominator)
    if b < 1 or a % b:
        raise ValueError(f"${{div:{a},{b}}}: {b} does not divide {a}; pick a data.resolution that the "
                         "first stage's downsampling factor divides")
    return a // b


def register() -> None:
    """Make ``${div:a,b}`` available to configs (idempotent)."""
    OmegaConf.register_new_resolver("div", divide_exactly, replace=True)
