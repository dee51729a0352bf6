"""Training and sampling throughput per compression factor f, one process, the real code path.

    python experiments/ldm-f-sweep/throughput.py AE2 AE4 AE8 [--threads 2] [--repeats 5]

For each f ∈ {1, 2, 4, 8}: the `train_ldm` module of the f-sweep preset (the same configs the study
trains), timing one training step from a batch of 64 images (first-stage encode + UNet forward /
backward + AdamW) and DDIM-50 sampling of 64 images without guidance (incl. decode), median of
`--repeats` after one warm-up. Prints one line per f and the ratios to f = 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ldmlab.config.conf_dir import CONF_DIR
from ldmlab.sampling.samplers.ddim import DDIMSampler

PRESETS = {1: ["experiment=ldm_pixel"], 2: ["experiment=ldm_f2"], 4: [], 8: ["experiment=ldm_f8"]}


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(module, batch: dict):
    """One optimiser step of ``module`` on ``batch`` (AdamW, as training uses)."""
    optimizer = torch.optim.AdamW(module.model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module.diffusion_loss(batch, module.model).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ae2"), parser.add_argument("ae4"), parser.add_argument("ae8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ckpts = {2: args.ae2, 4: args.ae4, 8: args.ae8}
    batch = {"image": torch.rand(64, 1, 32, 32) * 2 - 1, "label": torch.arange(64) % 10}
    results = {}
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        for f, preset in PRESETS.items():
            overrides = [*preset, *([f"first_stage.ckpt={ckpts[f]}"] if f in ckpts else [])]
            module = instantiate(compose("train_ldm", overrides=overrides).module)
            if f in ckpts:
                module.first_stage.fit_scale(batch["image"])
            params = sum(p.numel() for p in module.model["backbone"].parameters())
            step = timed(train_step(module, batch), args.repeats)
            draw = timed(lambda m=module: m.generate({"label": batch["label"]}, 64, sampler=DDIMSampler(50),
                                                     use_ema=False), max(1, args.repeats // 2))
            results[f] = (64 / step, 64 / draw)
            print(f"f={f}: UNet {params / 1e6:.2f}M params, train {64 / step:.1f} img/s ({step:.3f} s/step), "
                  f"DDIM-50 sampling {64 / draw:.1f} img/s ({draw:.2f} s per 64)", flush=True)
    for f, (train, draw) in results.items():
        ratios = f"train ×{train / results[1][0]:.2f}, sampling ×{draw / results[1][1]:.2f}"
        print(f"f={f}: {ratios} vs pixel space")


if __name__ == "__main__":
    main()
