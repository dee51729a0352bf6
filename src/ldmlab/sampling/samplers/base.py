"""Base class of the samplers: a walk down a grid of noise levels, noisy to clean.

Samplers know nothing about networks, conditioning or guidance: they see a ``DenoiseFn``
that maps (x_t, t, level) to the predicted (x0, ε), and a ``NoiseProcess`` for α and σ. On a
discrete schedule the grid is a subsequence of the training timesteps; on a continuous process
it is the process's own ``grid``. The steps here (DDIM, DDPM, DPM-Solver++) are written for the
VP process in ᾱ: on a process that is not variance preserving they walk y = x/sqrt(α² + σ²),
the VP process with ᾱ = α²/(α² + σ²), and the denoiser sees x (``Transition.scale``).
A sampler declares how a guidance gradient g = ∇ log p(y | x_t) enters its step
(``Sampler.gradient_form``); the caller's guided denoiser applies that form, so the step itself
never sees g.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ldmlab.diffusion.process import NoiseProcess, vp_alpha_bar
from ldmlab.diffusion.schedules.base import NoiseSchedule
from ldmlab.utils.errors import FieldError
from ldmlab.utils.noise import Generator, gaussian

DenoiseFn = Callable[[Tensor, Tensor, float], tuple[Tensor, Tensor]]
"""(x_t (B, C, H, W), t (B,) levels, the same level as a host number) → (x0_hat, eps_hat), both
shaped like x_t. Every sample of a call is at the one level; the host copy lets guidance decide
per step without reading t back from the device."""

StepCallback = Callable[[int, Tensor, Tensor, Tensor], None]
"""Called after each step with (step index, t (B,), x after the step, x0_hat of the step)."""

GradientForm = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
"""(x_t, t (B,), x0, ε̂, g) → guided (x0, ε̂) consistent with x_t; all but t shaped like x_t."""

SPACINGS = ("trailing", "leading")


@dataclass(frozen=True)
class Transition:
    """One sampler step, from level t to the next cleaner level ("prev" as in x_{t−1}).

    alpha_bar: ᾱ_t. alpha_bar_prev: ᾱ of the next cleaner level, 1.0 after the last step
    (clean data). last_alpha_bar: ᾱ of the preceding, noisier level (None at the first step),
    for multistep solvers. On a process that is not variance preserving ᾱ is the VP-equivalent
    α²/(α² + σ²) and scale = sqrt(α² + σ²) at t (the walked y is x/scale); 1.0 on VP schedules.
    """

    index: int
    t: int | float
    alpha_bar: float
    alpha_bar_prev: float
    last_alpha_bar: float | None
    scale: float = 1.0

    @property
    def is_final(self) -> bool:
        return self.alpha_bar_prev == 1.0


class Sampler(ABC):
    """Base sampler: ``steps`` timesteps out of the schedule's T, walked from noisy to clean.

    spacing: "trailing" (default; t = round(T − i·T/steps) − 1, always starts at T − 1, which
    zero-terminal-SNR schedules need, Lin et al. 2024) or "leading" (t = i·⌊T/steps⌋, always
    ends at 0, as in the DDIM and LDM code bases). A continuous process has its own grid
    (``ContinuousProcess.grid``), which "trailing" stands for; "leading" is refused there.
    """

    def __init__(self, steps: int, spacing: str = "trailing") -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise FieldError("sampler", "steps", f"must be a positive int, got steps={steps!r}",
                             "e.g. {key}=50")
        if spacing not in SPACINGS:
            raise FieldError("sampler", "spacing", f"must be one of {SPACINGS}, got spacing={spacing!r}",
                             "{key}=trailing")
        self.steps = steps
        self.spacing = spacing

    def timesteps(self, num_train_timesteps: int, horizon: int | None = None) -> Tensor:
        """The visited training timesteps, (steps,) long, strictly descending, all below ``horizon``.

        horizon: T' ≤ T, one past the first visited level (default T). The grid is laid over
        {0, …, T' − 1} exactly as over {0, …, T − 1}, so a trailing walk starts at t = T' − 1
        (an ES-DDPM / SDEdit start x_{T'−1}).
        """
        levels = num_train_timesteps if horizon is None else horizon
        if not 1 <= levels <= num_train_timesteps:
            raise ValueError(f"horizon={horizon} must lie in [1, {num_train_timesteps}]")
        if self.steps > levels:
            what = "the schedule's num_timesteps" if levels == num_train_timesteps else \
                "the timesteps this model is trained on, T'"
            raise FieldError("sampler", "steps", f"steps={self.steps} exceeds {what}={levels}",
                             f"use at most {levels}, e.g. {{key}}={levels}")
        index = torch.arange(self.steps, dtype=torch.float64)
        if self.spacing == "trailing":
            stride = levels / self.steps
            return (levels - index * stride).round().long() - 1
        return (index * (levels // self.steps)).long().flip(0)

    def check(self, num_train_timesteps: int | None, horizon: int | None = None) -> None:
        """Refuse settings the model cannot walk: ``timesteps``' checks on a discrete schedule
        (T = ``num_train_timesteps``), the spacing on a continuous process (T = None)."""
        if num_train_timesteps is not None:
            self.timesteps(num_train_timesteps, horizon)
        elif self.spacing != "trailing":
            raise FieldError("sampler", "spacing", f"{self.spacing!r} picks discrete timesteps, but the "
                             "model's process is continuous and walks its own grid", "{key}=trailing")

    def transitions(self, schedule: NoiseProcess, horizon: int | None = None) -> list[Transition]:
        """The steps of one trajectory (below ``horizon``, see ``timesteps``), with ᾱ as float64
        Python floats."""
        self.check(schedule.num_timesteps, horizon)
        if schedule.continuous:
            grid = schedule.grid(self.steps)
            alpha, sigma = schedule.host_alpha_sigma(grid)
            alpha_bars = vp_alpha_bar(alpha, sigma).tolist()
            scales = (alpha.square() + sigma.square()).sqrt().tolist()
            return [
                Transition(i, t, alpha_bars[i], alpha_bars[i + 1], alpha_bars[i - 1] if i else None,
                           scales[i])
                for i, t in enumerate(grid[:-1].tolist())
            ]
        timesteps = self.timesteps(schedule.num_timesteps, horizon)
        alpha_bars = schedule.alphas_cumprod.detach().double().cpu()[timesteps].tolist()
        levels = [*alpha_bars, 1.0]
        return [
            Transition(i, int(t), levels[i], levels[i + 1], levels[i - 1] if i else None)
            for i, t in enumerate(timesteps.tolist())
        ]

    def gradient_form(self, schedule: NoiseSchedule, horizon: int | None = None) -> GradientForm:
        """How a guidance gradient g enters this sampler's steps (below ``horizon``): by default
        the score form (``ScoreForm``), right for any sampler that reads the step from (x0, ε̂)."""
        return ScoreForm(schedule)

    @torch.no_grad()
    def sample(
        self,
        denoise: DenoiseFn,
        noise: Tensor,
        schedule: NoiseProcess,
        generator: Generator | None = None,
        callback: StepCallback | None = None,
        horizon: int | None = None,
    ) -> Tensor:
        """Integrate from ``noise`` (x at the first visited level, (B, C, H, W)) to a sample x0.

        ``noise`` is standard normal on a continuous process (the VP convention for y; the
        first level's x is scale·noise). generator: drives the in-loop noise; it must live on
        ``noise``'s device. horizon: T' (default T): the walk starts at t = T' − 1 (trailing
        spacing), so ``noise`` is then x_{T'−1}, e.g. another generator's sample noised by
        q(x_{T'−1} | x̂).
        """
        x, last_x0 = noise, None
        dtype = noise.dtype if schedule.continuous else torch.long
        for transition in self.transitions(schedule, horizon):
            t = torch.full((noise.shape[0],), transition.t, dtype=dtype, device=noise.device)
            x0, eps = denoise(x if transition.scale == 1.0 else x * transition.scale, t, transition.t)
            x = self.step(x, x0, eps, transition, last_x0, generator)
            last_x0 = x0
            if callback is not None:
                callback(transition.index, t, x, x0)
        return x

    @abstractmethod
    def step(
        self,
        x_t: Tensor,
        x0: Tensor,
        eps: Tensor,
        transition: Transition,
        last_x0: Tensor | None,
        generator: Generator | None,
    ) -> Tensor:
        """One update x_t → x_prev given this step's (x0, ε) and the previous step's x0."""


def per_sample(table: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """``table[t]`` (a per-timestep table indexed by t (B,)) as (B, 1, …, 1) in ``like``'s dtype."""
    return table[t].to(like.dtype).view(-1, *[1] * (like.ndim - 1))


class ScoreForm:
    """g enters the score (Dhariwal & Nichol 2021, Alg. 2): ε̂ ← ε̂ − sqrt(1 − ᾱ_t)·g, and x0 is
    recomputed from it, x0 ← x0 + (1 − ᾱ_t)/sqrt(ᾱ_t)·g (x0 is kept where ᾱ_t = 0)."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        alpha_bar = schedule.alphas_cumprod.double()
        self.sigma = (1.0 - alpha_bar).sqrt()
        self.x0_gain = torch.where(alpha_bar > 0, (1.0 - alpha_bar) / alpha_bar.clamp_min(1e-300).sqrt(), 0.0)

    def __call__(self, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor, grad: Tensor
                 ) -> tuple[Tensor, Tensor]:
        return x0 + per_sample(self.x0_gain, t, x0) * grad, eps - per_sample(self.sigma, t, eps) * grad


def gaussian_like(x: Tensor, generator: Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x`` (``ldmlab.utils.noise.gaussian``: one stream, or one
    per image)."""
    return gaussian(x.shape, generator, x.device, x.dtype)


def half_log_snr(alpha_bar: float) -> float:
    """λ = log(sqrt(ᾱ)/sqrt(1 − ᾱ)), with λ(0) = −∞ and λ(1) = +∞."""
    if alpha_bar <= 0.0:
        return -math.inf
    if alpha_bar >= 1.0:
        return math.inf
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))
