"""Guidance: the ``guidance`` config group (cfg, autoguidance, interval, classifier, image, none,
and compositions).

Samplers never see guidance: ``GuidedDenoiser`` applies the configured terms inside the
``DenoiseFn``. Output terms mix the conditional output with a second one: CFG with the same
network's unconditional output, autoguidance with a weaker model's conditional output; interval
guidance applies either only at noise levels σ̃ in (sigma_low, sigma_high]. Gradient terms
(classifier, image) add s·∇ log p(y | x_t) to the score, through ``gradient_form``.
"""
