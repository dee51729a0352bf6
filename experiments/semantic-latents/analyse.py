"""Semantics of the learned latents: a linear probe of class from z (accuracy, macro AUROC), active
units and the aggregate posterior's distance to N(0, I), and attribute manipulation along a class
direction (DDIM-inverted x_T kept, z moved), scored by the domain classifier.

  .venv/bin/python experiments/semantic-latents/analyse.py \
      --model diffae=logs/sem_diffae/latest --model lrdm=logs/sem_lrdm/latest ... \
      --classifier logs/train_classifier/latest/checkpoints/last.ckpt --out experiments/semantic-latents
Updates <out>/latents.json (per model) and writes <out>/manipulation_<name>_<source>_to_<target>.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from ldmlab.classifier.loading import load_classifier
from ldmlab.evaluation.probe import active_units, linear_probe
from ldmlab.models.restore import load_ldm, resolve_ldm_checkpoint, stored_datamodule
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.semantic.autoencoding import DiffusionAutoencoder
from ldmlab.semantic.info_regularizer import gaussian_kl
from ldmlab.semantic.mmd import mmd2
from ldmlab.utils.images import to_unit

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]


@torch.no_grad()
def encode_split(encoder, dataset, count: int, t: int | None, batch: int = 500):
    """(μ (N, d), log σ² or None, labels (N,)) of the first ``count`` items."""
    means, logvars, labels = [], [], []
    for start in range(0, count, batch):
        items = [dataset[i] for i in range(start, min(count, start + batch))]
        images = torch.stack([item["image"] for item in items])
        steps = None if t is None else torch.full((len(images),), t)
        mean, logvar = encoder.posterior(images, steps)
        means.append(mean)
        logvars.append(logvar)
        labels.append(torch.tensor([int(item["label"]) for item in items]))
    logvar = None if logvars[0] is None else torch.cat(logvars)
    return torch.cat(means), logvar, torch.cat(labels)


@torch.no_grad()
def manipulate(module, encoder, dataset, train_z, train_y, source: int, target: int, classifier,
               steps: int, out: Path) -> dict:
    """Images of class ``source`` (test split): x_T by DDIM inversion, z moved along
    mean(z | target) − mean(z | source) with weights α; p(target) of the domain classifier per α."""
    direction = train_z[train_y == target].mean(0) - train_z[train_y == source].mean(0)
    picks = [i for i in range(2000) if int(dataset[i]["label"]) == source][:8]
    images = torch.stack([dataset[i]["image"] for i in picks])
    autoencoder = DiffusionAutoencoder(module, DDIMSampler(steps))
    condition = {"image": images}
    x_T = autoencoder.encode(images, condition)
    z = encoder.posterior(images)[0]
    rows, scores = [images], {}
    for alpha in (0.0, 0.5, 1.0, 1.5):
        moved = z + alpha * direction
        decoded = autoencoder.decode(x_T, autoencoder.condition_at({"z_sem": moved}))
        rows.append(decoded)
        scores[f"{alpha:g}"] = float(classifier(decoded).softmax(1)[:, target].mean())
    save_image(to_unit(torch.cat(rows)), out, nrow=len(picks), padding=1)
    return {"source": CLASSES[source], "target": CLASSES[target], "p_target_by_alpha": scores,
            "file": str(out)}


def analyse(name: str, run: str, classifier, out_dir: Path, num_train: int, num_test: int,
            steps: int) -> dict:
    path = resolve_ldm_checkpoint(run, "logs")
    module = load_ldm(path)
    encoder = module.ema.shadow["conditioner"].embedders["z_sem"]
    datamodule = stored_datamodule(path)
    datamodule.setup()
    t_values = [0, 250, 500, 750] if encoder.time_conditioned else [None]
    result: dict = {"checkpoint": str(path), "posterior": encoder.posterior_type,
                    "time_conditioned": encoder.time_conditioned, "probe": {}}
    for t in t_values:
        train_z, _, train_y = encode_split(encoder, datamodule.train_set, num_train, t)
        test_z, test_logvar, test_y = encode_split(encoder, datamodule.test_set, num_test, t)
        key = "t=none" if t is None else f"t={t}"
        stats = linear_probe(train_z, train_y, test_z, test_y, 10)
        stats["active_units"] = active_units(test_z)
        prior = torch.randn(2000, test_z.shape[1], generator=torch.Generator().manual_seed(0))
        stats["mmd2_to_prior"] = float(mmd2(test_z[:2000].double(), prior.double()))
        stats["mean_std"] = float(test_z.std(0).mean())
        if test_logvar is not None:
            stats["kl_per_image"] = float(gaussian_kl(test_z, test_logvar).mean())
            stats["posterior_std"] = float((0.5 * test_logvar).exp().mean())
        result["probe"][key] = stats
        print(name, key, json.dumps(stats))
    if not encoder.time_conditioned:  # LRDM's z changes with t, a fixed moved z is not its condition
        train_z, _, train_y = encode_split(encoder, datamodule.train_set, num_train, None)
        result["manipulation"] = [
            manipulate(module, encoder, datamodule.test_set, train_z, train_y, s, t, classifier, steps,
                       out_dir / f"manipulation_{name}_{CLASSES[s]}_to_{CLASSES[t]}.png")
            for s, t in ((7, 9), (0, 3))]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="name=run dir or .ckpt")
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--num-train", type=int, default=10000)
    parser.add_argument("--num-test", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    classifier = load_classifier(args.classifier)
    out = args.out / "latents.json"
    results = json.loads(out.read_text()) if out.is_file() else {}  # other models' earlier results stay
    for spec in args.model:
        name, run = spec.split("=", 1)
        results[name] = analyse(name, run, classifier, args.out, args.num_train, args.num_test, args.steps)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
