"""Guidance: the ``guidance`` config group (cfg, classifier, image, none, and compositions).

Samplers never see guidance: ``GuidedDenoiser`` applies the configured terms inside the
``DenoiseFn``. Output terms (CFG) mix the conditional and unconditional outputs; gradient terms
(classifier, image) add s·∇ log p(y | x_t) to the score, through ``gradient_form``.
"""
