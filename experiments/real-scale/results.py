"""Tables of the real-scale study from its work folder: wall times, sizes, the stage-1 resume's
agreement with the uninterrupted run, and stage 2's latent cache and throughput (``summary.json``).

    .venv/bin/python experiments/real-scale/results.py <D>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def summary(folder: Path, task: str) -> dict:
    return json.loads(next(folder.glob(f"{task}/runs/*/summary.json")).read_text())


def weights(folder: Path) -> dict:
    ckpt = next(folder.glob("train_ae/runs/*/checkpoints/last.ckpt"))
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def max_abs_diff(a: dict, b: dict) -> tuple[float, int]:
    assert a.keys() == b.keys()
    diffs = [(x.double() - y.double()).abs().max().item() if x.is_floating_point() else float((x != y).any())
             for x, y in ((a[k], b[k]) for k in a) if x.numel()]
    return max(diffs), len(diffs)


def main(d: Path) -> None:
    times = dict(line.split()[0:3:2] for line in (d / "times.txt").read_text().splitlines())
    print("| step | wall s |\n|---|---|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds} |")
    n_images = sum(1 for _ in (d / "images").rglob("*.jpg"))
    print(f"\n{n_images} JPEGs, {size_mb(d / 'images'):.1f} MiB; "
          f"shards (256² PNG) {size_mb(d / 'shards'):.1f} MiB")
    straight, resumed = weights(d / "ae_straight"), weights(d / "ae_killed")
    diff, count = max_abs_diff(straight["state_dict"], resumed["state_dict"])
    print(f"\nstage 1 killed + resumed vs uninterrupted (step {resumed['global_step']} / "
          f"{straight['global_step']}): max |Δ| over {count} tensors = {diff}")
    ae = summary(d / "ae_straight", "train_ae")
    print("stage-1 validation:", {k: round(v, 4) for k, v in ae.get("metrics", {}).items()
                                   if isinstance(v, float) and k.startswith("val/")})
    print("\n| stage 2 | cache | build s | cache MiB | img/s | data wait ms/step | compute ms/step | MFU "
          "| val/loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in ("ldm_build", "ldm_reuse", "ldm_nocache"):
        s = summary(d / run, "train_ldm")
        cache, rate = s.get("latent_cache"), s["denoiser"]
        mib = f"{cache['bytes'] / 2**20:.1f}" if cache else "—"
        print(f"| {run} | {'views ' + str(cache['views']) if cache else 'off'} | "
              f"{cache['build_seconds'] if cache else '—'} | {mib} | {rate['img_per_s']:.1f} | "
              f"{rate['data_wait_ms']:.1f} | {rate['compute_ms']:.1f} | "
              f"{rate['mfu'] if rate['mfu'] is None else round(rate['mfu'], 4)} | "
              f"{s['metrics'].get('val/loss', float('nan')):.4f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
