"""Validate stage-1 checkpoints exactly as `make train-ae` validates: PSNR / SSIM / LPIPS on the
run's validation images and rFID / rKID on the first `num_images` of them, under the run's precision.

    .venv/bin/python experiments/ae-fashion-mnist/validate_ckpt.py A.ckpt [B.ckpt ...] [overrides] > out.jsonl

One JSON line per checkpoint: {"ckpt", "step", "val/psnr", "val/ssim", "val/lpips",
"val/rfid_inception", "val/rkid_inception"}. Used for the checkpoints a run saves at the GAN start
(a step where the run itself does not validate). The modules are built from this project's
`train_ae` config with the given overrides (nothing is instantiated from the file, which is read
as weights and data only); the checkpoint's stored data and module settings must agree with it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ldmlab.checkpoints import read_checkpoint, stored_config
from ldmlab.metrics.reference_stats import ReferenceSet, to_uint8
from ldmlab.utils.precision import resolve_precision

KEY = "ckpt"
CONF = str(Path(__file__).resolve().parents[2] / "conf")


def _differences(stored: object, composed: object, where: str = "") -> list[str]:
    """Keys whose stored value differs from the composed one (keys only one side has are skipped)."""
    if isinstance(stored, dict) and isinstance(composed, dict):
        return [d for k in stored.keys() & composed.keys()
                for d in _differences(stored[k], composed[k], f"{where}.{k}")]
    return [] if stored == composed else [where]


def validate(path: str, overrides: list[str]) -> dict:
    checkpoint = read_checkpoint(path, KEY, "give a train_ae checkpoint")
    stored = stored_config(checkpoint, path, KEY, "give a train_ae checkpoint")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train_ae", overrides=[f"seed={stored['seed']}", *overrides], return_hydra_config=True)
    composed = {"data": OmegaConf.to_container(cfg.data, resolve=True), "seed": cfg.seed,
                "module": OmegaConf.to_container(cfg.module, resolve=True)}
    differ = _differences({part: stored[part] for part in composed}, composed)
    if differ:
        raise SystemExit(f"{path}: the stored config differs from train_ae + {overrides} at {differ[:5]}")
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module)
    module.load_state_dict(checkpoint["state_dict"])
    precision = resolve_precision(cfg.trainer.precision, "cpu")
    trainer = pl.Trainer(accelerator="cpu", precision=precision, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    (metrics,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    callback = cfg.callbacks.reconstruction_fid
    reference = ReferenceSet.from_datamodule(datamodule, callback.split, callback.num_images)
    evaluator = instantiate(cfg.metrics)(reference=reference, compute_precision_recall=False)
    module.eval()
    with torch.no_grad():  # float32, as the callback reconstructs outside the autocast of the steps
        chunks = [to_uint8(module.reconstruct(chunk.float() / 127.5 - 1))
                  for chunk in reference.images.split(callback.batch_size)]
    scores = evaluator(torch.cat(chunks).float() / 127.5 - 1)
    out = {"ckpt": path, "step": checkpoint["global_step"]}
    out |= {k: float(v) for k, v in metrics.items() if k in ("val/psnr", "val/ssim", "val/lpips")}
    out |= {f"val/r{k}": float(v) for k, v in scores.items() if k.startswith(("fid_", "kid_"))
            and not k.endswith("_std")}
    return out


if __name__ == "__main__":
    given = [a for a in sys.argv[1:] if "=" in a]
    for ckpt in (a for a in sys.argv[1:] if "=" not in a):
        print(json.dumps(validate(ckpt, given)), flush=True)
