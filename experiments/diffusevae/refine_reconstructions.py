"""Diagnosis: the DiffuseVAE refiner on the x̂ it was trained on (VAE reconstructions of test images)
instead of VAE prior samples, scored like `make evaluate` (domain classifier, test references).

    python experiments/diffusevae/refine_reconstructions.py REFINER_CKPT CLASSIFIER_CKPT N NREF STEPS

Prints FID / IS / precision / recall for: the reconstructions x̂ themselves, and the refiner's
DDIM-STEPS samples conditioned on them (seed 0).
"""

from __future__ import annotations

import sys

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ldmlab.config.conf_dir import CONF_DIR
from ldmlab.evaluation.reference import load_reference
from ldmlab.models.restore import load_ldm
from ldmlab.sampling.samplers.ddim import DDIMSampler


def as_uint8_range(images: torch.Tensor) -> torch.Tensor:
    """The rounding every scored sample goes through (uint8 pixels back to [-1, 1])."""
    return ((images + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1


def main(refiner: str, classifier_ckpt: str, n: int, num_reference: int, steps: int) -> None:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"metrics.classifier_ckpt={classifier_ckpt}",
                                             "metrics.inception=false", "data=fashion_mnist"])
    datamodule = instantiate(cfg.data)
    reference, _ = load_reference(datamodule, "test", num_reference)
    evaluator = instantiate(cfg.metrics)(reference=reference)
    test = datamodule.test_set
    images = torch.stack([test[len(test) - 1 - i]["image"] for i in range(n)])  # not the reference images
    module = load_ldm(refiner)
    x_hat = module.ema.shadow["conditioner"].embedders["x_hat"].prior.reconstruct(images)
    refined = torch.cat([
        module.generate({"x_hat": chunk}, len(chunk), sampler=DDIMSampler(steps),
                        generator=torch.Generator().manual_seed(0))
        for chunk in x_hat.split(100)
    ])
    for name, batch in (("reconstructions x̂", x_hat), (f"refined (DDIM {steps})", refined)):
        metrics = evaluator(as_uint8_range(batch))
        print(name, {k: round(v, 4) for k, v in metrics.items() if k.endswith("classifier")}, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
