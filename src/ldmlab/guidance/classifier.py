"""Classifier guidance (Dhariwal & Nichol 2021) with a classifier trained on noisy latents."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ldmlab.classifier.noisy_loading import (
    NoisyClassifierCheckpoint,
    load_noisy_classifier,
    resolve_noisy_classifier,
)
from ldmlab.guidance.base import GradientGuidance, GuidanceContext, LogProb, check_scale
from ldmlab.utils.errors import FieldError

RETRAIN = "train one on this model's first stage and schedule: make train-noisy-classifier"
SCALE_TOLERANCE = 0.05
"""Largest relative difference of the classifier's and the LDM's latent scale factors."""


class ClassifierGuidance(GradientGuidance):
    """log p_φ(y | z_t) of a ``train_noisy_classifier`` network, y = ``condition["label"]`` (B,).

    The step uses s·∇ log p_φ as the sampler declares (``Sampler.gradient_form``):
    ε̂ − s·sqrt(1 − ᾱ_t)·∇ for DDIM / DPM-Solver++, a mean shift s·Σ·∇ for ancestral DDPM.
    s = ``scale`` ≥ 0 (0: no guidance; Dhariwal & Nichol use 1–10). The classifier sees the LDM's
    z_t as is, so it must have been trained on the same first stage (weights fingerprint), latent
    shape, latent scale (±5 %) and schedule (ᾱ_t): ``bind`` (``prepare``) refuses anything else.
    classifier_ckpt: a .ckpt or run dir, None → the newest ``train_noisy_classifier`` run under
    ``log_dir``.
    """

    name = "classifier"

    def __init__(self, scale: float = 1.0, classifier_ckpt: str | None = None, log_dir: str = "logs",
                 classifier: NoisyClassifierCheckpoint | None = None) -> None:
        """``classifier``: an already loaded classifier (programmatic use) instead of a file."""
        self.scale = check_scale(scale)
        if classifier is None:
            self.path = resolve_noisy_classifier(classifier_ckpt, log_dir)
            classifier = load_noisy_classifier(self.path)
        else:
            self.path = "<in memory>"
        self.classifier = classifier
        self.num_classes = self.classifier.num_classes

    def bind(self, context: GuidanceContext) -> LogProb:
        """Refuse a classifier trained for another model; its log p_φ(y | z_t) on the model's device."""
        trained = self.classifier
        if context.schedule.continuous:
            raise FieldError("guidance", "classifier_ckpt", f"{self.path} classifies a discrete schedule's "
                             f"z_t, but this LDM's process is continuous ({type(context.schedule).__name__})",
                             "guide it with {part}=cfg, {part}=interval or {part}=autoguidance")
        if tuple(context.latent_shape) != trained.latent_shape:
            self._refuse(f"classifies latents {trained.latent_shape}, the LDM samples "
                         f"{tuple(context.latent_shape)}")
        if context.first_stage.fingerprint() != trained.first_stage_fingerprint:
            self._refuse("was trained on another first stage (autoencoder weights differ)")
        ratio = float(context.first_stage.scale_factor) / trained.scale_factor
        if abs(ratio - 1.0) > SCALE_TOLERANCE:
            self._refuse(f"was trained on latents scaled by {trained.scale_factor:.4g}, the LDM's scale is "
                         f"{float(context.first_stage.scale_factor):.4g}")
        alphas = context.schedule.alphas_cumprod.detach().double().cpu()
        if alphas.shape != trained.alphas_cumprod.shape or \
                not torch.allclose(alphas, trained.alphas_cumprod, rtol=1e-5, atol=1e-7):
            self._refuse(f"was trained with another noise schedule (T={len(trained.alphas_cumprod)} vs "
                         f"{len(alphas)}, or different ᾱ_t)")
        for name, embedder in context.conditioner.embedders.items():
            classes = getattr(embedder, "num_classes", None)
            if classes is not None and classes != self.num_classes:
                self._refuse(f"has {self.num_classes} classes, the LDM's embedder {name} {classes}")
        return partial(label_log_prob, trained.network.to(context.schedule.alphas_cumprod.device))

    def _refuse(self, problem: str) -> None:
        raise FieldError("guidance", "classifier_ckpt", f"{self.path} {problem}", RETRAIN)


def label_log_prob(network: nn.Module, x_t: Tensor, t: Tensor, x0: Tensor,
                   condition: dict[str, Any]) -> Tensor:
    """log p_φ(y | x_t) (B,) of ``network`` (x_t, t) → logits, y = ``condition["label"]`` (B,)."""
    if "label" not in condition:
        raise ValueError("classifier guidance needs condition['label'] (B,): the classes to steer toward")
    log_probs = network(x_t, t).float().log_softmax(dim=-1)
    return log_probs.gather(1, condition["label"].long().view(-1, 1)).squeeze(1)
