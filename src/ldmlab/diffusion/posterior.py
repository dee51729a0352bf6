"""The DDPM forward-process posterior q(x_prev | x_t, x_0) between any two noise levels."""

from __future__ import annotations

from typing import TypeVar

from torch import Tensor

Scalar = TypeVar("Scalar", float, Tensor)


def posterior_coefficients(
    alpha_bar: Scalar, alpha_bar_prev: Scalar
) -> tuple[Scalar, Scalar, Scalar]:
    """Coefficients of q(x_prev | x_t, x_0) = N(c_x0·x_0 + c_xt·x_t, var).

    ``alpha_bar`` is ᾱ at the noisier level t, ``alpha_bar_prev`` ᾱ at the cleaner level
    (1.0 for "clean data"). The step's beta is β = 1 − ᾱ_t/ᾱ_prev, so consecutive training
    steps give the usual DDPM posterior and a strided subsequence its recomputed betas.
    Requires ᾱ_t < 1 and ᾱ_prev > 0; ᾱ_t = 0 (zero terminal SNR) is fine.
    Returns (c_x0, c_xt, var) with the type (float or tensor) of the inputs.
    """
    beta = 1.0 - alpha_bar / alpha_bar_prev
    coef_x0 = alpha_bar_prev**0.5 * beta / (1.0 - alpha_bar)
    coef_xt = (1.0 - beta) ** 0.5 * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    variance = beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    return coef_x0, coef_xt, variance
