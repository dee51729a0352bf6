"""`make train-ldm` with the latent cache: the first run builds it, an identical second run reuses
it and ends at the same val/loss, as does a run that encodes every batch (module.latent_cache=null);
new pixels under the same file names rebuild it, and training then sees the new images."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_LDM, run_forked
from tests.unit.data.test_content_fingerprint import overwrite_pixels, write_images


def test_second_run_reuses_the_cache_and_all_runs_agree(tiny_ae_ckpt, tmp_path):
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", *TINY_LDM, "logger=none", "callbacks.image_logger=null"]
    summaries, outputs = {}, {}
    for name, extra in (("built", []), ("reused", []), ("off", ["module.latent_cache=null"])):
        out = run_forked("ldmlab.commands.train", [*args, *extra], tmp_path, config_name="train_ldm")
        assert out.returncode == 0, out.stderr[-3000:]
        summaries[name] = json.loads((tmp_path / "train_ldm" / "latest" / "summary.json").read_text())
        outputs[name] = out.stdout
    built, reused = summaries["built"]["latent_cache"], summaries["reused"]["latent_cache"]
    assert isinstance(built["build_seconds"], float) and reused["build_seconds"] == "reused"
    expected = tmp_path / "cache" / "latents" / f"latents-{built['key'][:16]}"
    assert built["path"] == reused["path"] == str(expected)
    assert summaries["off"]["latent_cache"] is None
    assert "latent cache: built" in outputs["built"] and "latent cache: reused" in outputs["reused"]
    loss = summaries["built"]["metrics"]["val/loss"]
    assert summaries["reused"]["metrics"]["val/loss"] == loss
    assert summaries["off"]["metrics"]["val/loss"] == pytest.approx(loss, rel=1e-5)


def test_new_pixels_under_the_same_names_rebuild_the_cache_and_change_training(tiny_ae_ckpt, tmp_path):
    """Every image of an image folder overwritten, same names and sizes, old mtimes forced back:
    the next run rebuilds the cache and ends where a run that encodes every batch ends."""
    images = tmp_path / "images"
    write_images(images, 80, seed=0)
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", *TINY_LDM, "logger=none", "callbacks.image_logger=null",
            "data=image_folder", f"data.root={images}", "data.resolution=32", "data.channels=1",
            "data.num_workers=0"]

    def train(*extra: str) -> dict:
        out = run_forked("ldmlab.commands.train", [*args, *extra], tmp_path, config_name="train_ldm")
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads((tmp_path / "train_ldm" / "latest" / "summary.json").read_text())

    old = train()
    overwrite_pixels(images, seed=1, keep_mtime=True)
    new, encoded = train(), train("module.latent_cache=null")
    assert isinstance(new["latent_cache"]["build_seconds"], float), "stale latents reused"
    assert new["latent_cache"]["key"] != old["latent_cache"]["key"]
    assert new["metrics"]["val/loss"] == pytest.approx(encoded["metrics"]["val/loss"], rel=1e-5)
    assert new["metrics"]["val/loss"] != pytest.approx(old["metrics"]["val/loss"], rel=1e-5)
