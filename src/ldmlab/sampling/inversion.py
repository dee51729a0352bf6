"""Deterministic DDIM inversion (Song et al. 2021; as used by DiffAE, Preechakul et al. 2022).

Maps clean data x_0 to the x at a ``DDIMSampler``'s first (noisiest) visited level, so that
the eta = 0 sampler brings it back to ≈ x_0. The walk is the sampler's own transitions in
reverse, so any spacing ("trailing" or "leading") and any ``horizon`` T' are handled the same
way as in ``Sampler.sample``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess
from ldmlab.sampling.samplers.base import DenoiseFn, StepCallback
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.utils.errors import ConfigError, FieldError, part_key


@torch.no_grad()
def ddim_invert(
    sampler: DDIMSampler,
    denoise: DenoiseFn,
    x0: Tensor,
    schedule: NoiseProcess,
    *,
    horizon: int | None = None,
    fixed_point_iters: int = 0,
    callback: StepCallback | None = None,
) -> Tensor:
    """Invert deterministic DDIM sampling: x0 (B, C, H, W) → x at the first visited level.

    The result has x0's shape, dtype and device, and is the ``noise`` argument for which
    ``sampler.sample(denoise, noise, schedule, horizon=horizon)`` returns ≈ x0.

    The sampler's transitions are walked in reverse, from the clean level (ᾱ_p = 1, x_p = x0)
    up to t_0 (t_0 = T' − 1 with trailing spacing; horizon T' as in ``Sampler.sample``).
    Each step from the cleaner level (x_p, ᾱ_p) to level t (ᾱ_t) evaluates the network at
    the target level on the cleaner point, ε̂ = denoise(x_p, t)[1], reads x_p at its own
    level, x0̂ = (x_p − sqrt(1 − ᾱ_p)·ε̂)/sqrt(ᾱ_p) (= x0 at the first step, ᾱ_p = 1), and
    sets x_t = sqrt(ᾱ_t)·x0̂ + sqrt(1 − ᾱ_t)·ε̂. This assumes ε̂(x_t) ≈ ε̂(x_p), so the round
    trip is only first-order accurate in the step size. (The network's own x0̂ at level t
    would give x_t = x_p: no step at all.)

    fixed_point_iters: k ≥ 0 refinements per step, each
    x_t ← x_t + sqrt(ᾱ_t/ᾱ_p)·(x_p − sampler.step(x_t, *denoise(x_t, t))), which drives the
    sampling step's image of x_t to x_p (sqrt(ᾱ_t/ᾱ_p) inverts the step's identity part; at ᾱ_t = 0,
    where that part vanishes, 1/sqrt(1 − ᾱ_p) inverts the step's ε̂ part);
    each costs one more network evaluation.

    callback: called after each step with (step index in inversion order, 0 for the cleanest
    level, t (B,), x_t, the x0̂ of the step's last update).

    Raises ConfigError (``FieldError`` for a field) unless ``sampler`` is a ``DDIMSampler`` with eta = 0 and
    ``fixed_point_iters`` is an int ≥ 0.
    """
    if not isinstance(sampler, DDIMSampler):
        raise ConfigError(part_key("sampler"), f"DDIM inversion needs a DDIM sampler, got "
                          f"{type(sampler).__name__}", f"{part_key('sampler')}=ddim")
    if sampler.eta != 0.0:
        raise FieldError("sampler", "eta",
                         f"DDIM inversion needs the deterministic sampler, got eta={sampler.eta}", "{key}=0")
    if (isinstance(fixed_point_iters, bool) or not isinstance(fixed_point_iters, int)
            or fixed_point_iters < 0):
        raise FieldError("inversion", "fixed_point_iters", f"must be an int >= 0, got {fixed_point_iters!r}",
                         "e.g. {key}=0 (plain inversion) or 10")

    x = x0
    dtype = x0.dtype if schedule.continuous else torch.long
    for index, transition in enumerate(reversed(sampler.transitions(schedule, horizon))):
        alpha_bar, alpha_bar_prev = transition.alpha_bar, transition.alpha_bar_prev
        t = torch.full((x0.shape[0],), transition.t, dtype=dtype, device=x0.device)
        x_prev, scale = x, transition.scale  # x is the walked y = x/scale (``Sampler.sample``)
        eps_hat = denoise(x_prev * scale, t, transition.t)[1]
        x0_hat = (x_prev - (1.0 - alpha_bar_prev) ** 0.5 * eps_hat) / alpha_bar_prev**0.5
        x = alpha_bar**0.5 * x0_hat + (1.0 - alpha_bar) ** 0.5 * eps_hat
        # the step's slope in x_t: sqrt(ᾱ_p/ᾱ_t) through x0̂; at ᾱ_t = 0 (pure noise: flow's t = 1, zero
        # terminal SNR) x0̂ no longer depends on x_t and the slope is sqrt(1 − ᾱ_p), through ε̂
        gain = (alpha_bar / alpha_bar_prev) ** 0.5 if alpha_bar > 0 else (1.0 - alpha_bar_prev) ** -0.5
        for _ in range(fixed_point_iters):
            x0_hat, eps_hat = denoise(x * scale, t, transition.t)
            x = x + gain * (x_prev - sampler.step(x, x0_hat, eps_hat, transition, None, None))
        if callback is not None:
            callback(index, t, x, x0_hat)
    return x
