"""Score a VAE's own prior samples with the metrics `make evaluate` uses (the "VAE samples" row).

    python experiments/diffusevae/score_vae.py VAE_CKPT CLASSIFIER_CKPT N NREF SEEDS...

Samples n images D(z), z ~ N(0, I) per seed (seed s: torch.Generator().manual_seed(s)), scores
them against NREF test images with the domain classifier's FID / KID / IS (no Inception), and
prints one CSV row per seed plus the mean ± std over seeds.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ldmlab.autoencoder.prior import VAEPrior
from ldmlab.config.conf_dir import CONF_DIR
from ldmlab.evaluation.reference import load_reference


def main(vae_ckpt: str, classifier_ckpt: str, n: int, num_reference: int, seeds: list[int]) -> None:
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"metrics.classifier_ckpt={classifier_ckpt}",
                                             "metrics.inception=false", "data=fashion_mnist"])
    reference, _ = load_reference(instantiate(cfg.data), "test", num_reference)
    evaluator = instantiate(cfg.metrics)(reference=reference)
    prior = VAEPrior(vae_ckpt, cfg.data.resolution, cfg.data.channels)
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        images = prior.sample(n, torch.Generator().manual_seed(seed))
        seconds = time.perf_counter() - start
        # the same uint8 rounding as sampled images get before scoring
        images = ((images + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1
        rows.append(evaluator(images) | {"seed": seed, "seconds_per_image": seconds / n})
        print(",".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()))
    for key in rows[0]:
        if key != "seed" and isinstance(rows[0][key], float):
            values = [row[key] for row in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"{key}: {statistics.mean(values):.4g} ± {spread:.2g} (n={len(values)})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [int(s) for s in sys.argv[5:]])
