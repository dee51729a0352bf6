"""Tables and the plot of the semantic-latents study from the runs' summary.json files and latents.json.

  .venv/bin/python experiments/semantic-latents/make_tables.py   (after run_eval.sh)
Writes results.md, probe_vs_fid.png and copies the PNG strips next to this script.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
LOGS = Path("logs")
MODELS = ["diffae", "vae", "infodiffusion", "infodiffusion_det", "lrdm", "pixel_uncond"]
LABELS = {"diffae": "DiffAE", "vae": "VAE-regularised DiffAE (InfoVAE neutral: α=0, λ=1)",
          "infodiffusion": "InfoDiffusion (α=1, λ=1000: MMD only)", "lrdm": "LRDM (t-conditioned, KL)",
          "infodiffusion_det": "InfoDiffusion, deterministic encoder (MMD only)",
          "pixel_uncond": "plain unconditional DDIM", "latent_ddim": "DiffAE + latent DDIM",
          "diffae_fp5": "DiffAE, 5 fixed-point iterations"}


def summary(task: str) -> dict | None:
    path = LOGS / task / "latest" / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(row: dict, key: str, digits: int = 2) -> str:
    mean, std = row.get(key), row.get(f"{key}_seed_std")
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def main() -> None:
    lines = ["# Semantic latents: measured results", "",
             "Produced by `make_tables.py` from `logs/` after `run_train.sh`, `run_baseline.sh` and "
             "`run_eval.sh`.", ""]
    lines += ["## Reconstruction through DDIM inversion (100 test images, DDIM-50 both ways)", "",
              "| model | val loss | inverted PSNR (dB) | inverted LPIPS | fresh x_T PSNR (dB) "
              "| fresh x_T LPIPS | x_T mean / std |", "|---|---|---|---|---|---|---|"]
    for name in [*MODELS[:1], "diffae_fp5", *MODELS[1:]]:
        inv = summary(f"invert_{name}")
        train = summary(f"sem_{name.removesuffix('_fp5')}")
        if inv is None:
            continue
        a, b, x = inv["inverted"], inv["random_noise"], inv["x_T"]
        loss = f"{train['metrics']['val/loss']:.4f}" if train else "–"
        lines.append(f"| {LABELS[name]} | {loss} | {a['psnr']:.2f} | {a['lpips']:.4f} | {b['psnr']:.2f} | "
                     f"{b['lpips']:.4f} | {x['mean']:.3f} / {x['std']:.3f} |")
    lines += ["", "## Interpolation smoothness (8 pairs × 9 frames; LPIPS between neighbouring frames)", "",
              "| model | path | mean | std | max / mean |", "|---|---|---|---|---|"]
    for task, name, path in (("interpolate_diffae", "diffae", "slerp x_T + lerp z_sem"),
                             ("interpolate_diffae_zonly", "diffae", "lerp z_sem, x_T of the first image"),
                             ("interpolate_lrdm", "lrdm", "slerp x_T + lerp z (re-encoded per t)"),
                             ("interpolate_pixel_uncond", "pixel_uncond", "slerp x_T")):
        s = summary(task)
        if s is None:
            continue
        m = s["smoothness_lpips"]
        lines.append(f"| {LABELS[name]} | {path} | {m['neighbour_mean']:.4f} | {m['neighbour_std']:.4f} | "
                     f"{m['max_over_mean']:.2f} |")
        shutil.copy(LOGS / task / "latest" / s["files"]["strips"], HERE / f"{task}.png")  # run-relative
    lines += ["", "## Samples (300 per seed × 3 seeds, DDIM-50; domain-classifier features vs 2000 test "
              "images)", "", "| model | z from | FID | KID | IS | precision | recall |",
              "|---|---|---|---|---|---|---|"]
    fid_of = {}
    for name, source in (("vae", "N(0, I)"), ("infodiffusion", "N(0, I)"), ("infodiffusion_det", "N(0, I)"),
                         ("lrdm", "N(0, I)"),
                         ("diffae", "test images (fresh x_T)"), ("latent_ddim", "latent DDIM"),
                         ("pixel_uncond", "–")):
        s = summary(f"evaluate_{name}")
        if s is None:
            continue
        row = s["rows"][0]
        fid_key = next(k for k in row if k.startswith("fid_") and not k.endswith("_std"))
        kid_key = next(k for k in row if k.startswith("kid_") and not k.endswith("_std"))
        is_key, precision, recall = (
            next((k for k in row if k.startswith(prefix) and not k.endswith("_std")), None)
            for prefix in ("is_", "precision_", "recall_"))
        fid_of[name] = row[fid_key]
        kid = fmt(row, kid_key)
        lines.append(f"| {LABELS[name]} | {source} | {fmt(row, fid_key)} | {kid} | "
                     f"{fmt(row, is_key) if is_key else '–'} | {fmt(row, precision) if precision else '–'} | "
                     f"{fmt(row, recall) if recall else '–'} |")
    latents = HERE / "latents.json"
    if latents.is_file():
        probes = json.loads(latents.read_text())
        lines += ["", "## Semantics of z (linear probe of class: 10 000 train → 10 000 test encodings)", "",
                  "| model | t | probe accuracy | probe AUROC (macro) | active units (of 32) "
                  "| MMD² to N(0, I) | mean std of μ | KL / image |", "|---|---|---|---|---|---|---|---|"]
        for name, result in probes.items():
            for t, p in result["probe"].items():
                kl = f"{p['kl_per_image']:.4f}" if "kl_per_image" in p else "–"
                lines.append(f"| {LABELS[name]} | {t.removeprefix('t=')} | {p['accuracy']:.4f} "
                             f"| {p['auroc']:.4f} | {p['active_units']} | {p['mmd2_to_prior']:.4f} "
                             f"| {p['mean_std']:.3f} | {kl} |")
        lines += ["", "## Manipulation along a class direction (z + α·(mean z of target − mean z of source), "
                  "x_T from inversion kept; domain classifier's p(target))", "",
                  "| model | source → target | α = 0 | 0.5 | 1 | 1.5 |", "|---|---|---|---|---|---|"]
        for name, result in probes.items():
            for m in result.get("manipulation", []):
                p = m["p_target_by_alpha"]
                lines.append(f"| {LABELS[name]} | {m['source']} → {m['target']} | {p['0']:.3f} "
                             f"| {p['0.5']:.3f} | {p['1']:.3f} | {p['1.5']:.3f} |")
        figure, axis = plt.subplots(figsize=(7, 4.5))
        for name in ("diffae", "vae", "infodiffusion", "infodiffusion_det", "lrdm"):
            if name in probes and (name if name != "diffae" else "latent_ddim") in fid_of:
                acc = next(iter(probes[name]["probe"].values()))["accuracy"]
                fid = fid_of[name if name != "diffae" else "latent_ddim"]
                axis.scatter(fid, acc)
                label = LABELS[name].split(" (")[0].replace(", deterministic encoder", "-det")
                axis.annotate(label, (fid, acc), fontsize=8, ha="right" if fid > 35 else "left")
        axis.set_xlabel("prior-sample FID, classifier features (DiffAE: latent DDIM)")
        axis.set_ylabel("linear-probe accuracy of z")
        axis.set_title("Semantic latents, Fashion-MNIST, 1000 steps each")
        figure.tight_layout()
        figure.savefig(HERE / "probe_vs_fid.png", dpi=120)
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
