"""`make train-ldm` with the latent cache: the first run builds it, an identical second run reuses
it and ends at the same val/loss, as does a run that encodes every batch (module.latent_cache=null)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_LDM, run_forked


def test_second_run_reuses_the_cache_and_all_runs_agree(tiny_ae_ckpt, tmp_path):
    args = [f"first_stage.ckpt={tiny_ae_ckpt}", *TINY_LDM, "logger=none", "callbacks.image_logger=null"]
    summaries, outputs = {}, {}
    for name, extra in (("built", []), ("reused", []), ("off", ["module.latent_cache=null"])):
        out = run_forked("ldmlab.train", [*args, *extra], tmp_path, config_name="train_ldm")
        assert out.returncode == 0, out.stderr[-3000:]
        summaries[name] = json.loads((tmp_path / "train_ldm" / "latest" / "summary.json").read_text())
        outputs[name] = out.stdout
    built, reused = summaries["built"]["latent_cache"], summaries["reused"]["latent_cache"]
    assert isinstance(built["build_seconds"], float) and reused["build_seconds"] == "reused"
    expected = tmp_path / "cache" / "latents" / f"latents-{built['key'][:16]}.safetensors"
    assert built["path"] == reused["path"] == str(expected)
    assert summaries["off"]["latent_cache"] is None
    assert "latent cache: built" in outputs["built"] and "latent cache: reused" in outputs["reused"]
    loss = summaries["built"]["metrics"]["val/loss"]
    assert summaries["reused"]["metrics"]["val/loss"] == loss
    assert summaries["off"]["metrics"]["val/loss"] == pytest.approx(loss, rel=1e-5)
