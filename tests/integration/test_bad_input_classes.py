"""Bad input by class (issue 23 §6), each class refused by one mechanism before any work, on one
line naming the key, exit 2 — with listed cases and unlisted ones of each class:

- a value of the wrong type for any key (the code's annotations / the command's settings table),
- a Lightning Trainer knob Lightning refuses (the knob whose reset cures it is named), and a value
  any other node's class refuses (a callback's Lightning knob, ``module.ema_decay``),
- counts and sizes ≤ 0 or non-integers (``PositiveInt`` / ``NonNegativeInt`` annotations),
- ``device`` values torch does not know or this machine does not have,
- settings once checked only after the work (``select_by``, ``kid_subset_size``),
- suggested fixes that failed again (a one-image folder, ``num_pairs``),
- Hydra's ``--experimental-rerun`` (it unpickles a file).

Every suggested fix is applied: the fixed config passes the same check in-process (type and
Trainer cases), or the fixed command runs past the error (fix cases).
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from ldmlab.checkpoints import read_checkpoint
from ldmlab.config import settings
from ldmlab.config.trainer_knobs import check_trainer
from ldmlab.config.types import check_config
from ldmlab.utils.errors import ConfigError
from tests.conftest import ENTRY_CONFIG, TINY_AE, TINY_LDM, compose_config, run_forked
from tests.integration.test_bad_inputs import suggested_override, with_fix

AE = [*TINY_AE, "trainer.max_epochs=1"]
LDM = ["first_stage.ckpt={ae}", "logger=none", *TINY_LDM]
TABLES = {"train_ae": settings.TrainSettings, "train_ldm": settings.TrainSettings,
          "sample": settings.SampleSettings, "evaluate": settings.EvaluateSettings,
          "invert": settings.InvertSettings, "interpolate": settings.InterpolateSettings,
          "export": settings.ExportSettings, "report": settings.ReportSettings}
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
ENTRIES = ("ldmlab.commands.train", "ldmlab.commands.sample", "ldmlab.commands.evaluate",
           "ldmlab.commands.invert", "ldmlab.commands.interpolate", "ldmlab.commands.export",
           "ldmlab.commands.report")


@dataclass(frozen=True)
class Case:
    name: str
    entry: str
    args: tuple[str, ...]
    key: str
    kind: str                  # type | trainer | node | count | device | order
    config: str | None = None
    slow: bool = False         # only in `make test-all`: a path another case already covers


CASES = [
    # wrong type (listed, then unlisted)
    Case("batch_size_abc", "ldmlab.commands.train", (*AE, "data.batch_size=abc"), "data.batch_size", "type"),
    Case("max_epochs_abc", "ldmlab.commands.train", (*AE, "trainer.max_epochs=abc"), "trainer.max_epochs",
         "type"),
    Case("seed_abc", "ldmlab.commands.train", (*AE, "seed=abc"), "seed", "type", slow=True),
    Case("num_samples_abc", "ldmlab.commands.sample", ("num_samples=abc",), "num_samples", "type"),
    Case("frames_abc", "ldmlab.commands.interpolate", ("frames=abc",), "frames", "type"),
    Case("batch_size_1_5", "ldmlab.commands.train", (*AE, "data.batch_size=1.5"), "data.batch_size", "type"),
    Case("max_steps_abc", "ldmlab.commands.train", (*AE, "trainer.max_steps=abc"),
         "trainer.max_steps", "type", slow=True),
    Case("ema_decay_abc", "ldmlab.commands.train", (*LDM, "module.ema_decay=abc"), "module.ema_decay", "type",
         config="train_ldm"),
    Case("lr_abc", "ldmlab.commands.train", (*AE, "module.optimizer.lr=abc"),
         "module.optimizer.lr", "type", slow=True),
    Case("interpolated_variable_abc", "ldmlab.commands.train", (*LDM, "conditioner_context_dim=abc"),
         "conditioner_context_dim", "type", config="train_ldm"),
    Case("kid_subset_size_abc", "ldmlab.commands.evaluate", ("metrics.kid_subset_size=abc",),
         "metrics.kid_subset_size", "type", slow=True),
    Case("use_ema_abc", "ldmlab.commands.export", ("use_ema=maybe",), "use_ema", "type"),
    Case("guidance_scales_abc", "ldmlab.commands.evaluate", ("guidance_scales=[1,abc]",), "guidance_scales",
         "type"),
    Case("lr_scaling_unknown", "ldmlab.commands.train", (*AE, "lr_scaling=cubic"), "lr_scaling", "type",
         slow=True),
    Case("deterministic_foo", "ldmlab.commands.train", (*AE, "trainer.deterministic=foo"),
         "trainer.deterministic", "type"),
    # Lightning Trainer knobs (listed, then unlisted)
    Case("devices_0", "ldmlab.commands.train", (*AE, "trainer.devices=0"), "trainer.devices", "trainer"),
    Case("precision_17", "ldmlab.commands.train", (*AE, "trainer.precision=17"), "trainer.precision",
         "trainer"),
    Case("strategy_foo", "ldmlab.commands.train", (*AE, "trainer.strategy=foo"), "trainer.strategy",
         "trainer"),
    pytest.param(Case("accelerator_gpu", "ldmlab.commands.train", (*AE, "trainer.accelerator=gpu"),
                      "trainer.accelerator", "trainer"), marks=NO_GPU),
    Case("accumulate_0", "ldmlab.commands.train", (*AE, "trainer.accumulate_grad_batches=0"),
         "trainer.accumulate_grad_batches", "type"),
    Case("devices_minus_3", "ldmlab.commands.train", (*AE, "trainer.devices=-3"),
         "trainer.devices", "trainer", slow=True),
    Case("max_time_abc", "ldmlab.commands.train", (*AE, "trainer.max_time=abc"),
         "trainer.max_time", "trainer", slow=True),
    Case("clip_algorithm_foo", "ldmlab.commands.train", (*AE, "trainer.gradient_clip_algorithm=foo"),
         "trainer.gradient_clip_algorithm", "trainer"),
    Case("limit_train_batches_negative", "ldmlab.commands.train", (*AE, "trainer.limit_train_batches=-1"),
         "trainer.limit_train_batches", "trainer", slow=True),
    Case("check_val_every_0", "ldmlab.commands.train", (*AE, "trainer.check_val_every_n_epoch=0"),
         "trainer.check_val_every_n_epoch", "type", slow=True),
    Case("max_steps_minus_5", "ldmlab.commands.train", (*AE, "trainer.max_steps=-5"), "trainer.max_steps",
         "trainer", slow=True),
    Case("val_check_interval_0", "ldmlab.commands.train", (*AE, "trainer.val_check_interval=0"),
         "trainer.val_check_interval", "type"),
    Case("val_check_interval_above_batches", "ldmlab.commands.train", (*AE, "trainer.val_check_interval=100"),
         "trainer.val_check_interval", "trainer"),  # judged by Lightning once the data are known
    # a value any other node's class refuses (Lightning's MisconfigurationException, a ValueError)
    Case("save_top_k_minus_5", "ldmlab.commands.train", (*AE, "callbacks.model_checkpoint.save_top_k=-5"),
         "callbacks.model_checkpoint.save_top_k", "node"),
    Case("every_n_epochs_added_minus_1", "ldmlab.commands.train",
         (*AE, "+callbacks.model_checkpoint.every_n_epochs=-1"),
         "callbacks.model_checkpoint.every_n_epochs", "node"),
    Case("lr_monitor_interval_foo", "ldmlab.commands.train",
         (*AE, "callbacks.lr_monitor.logging_interval=foo"),
         "callbacks.lr_monitor.logging_interval", "type", slow=True),
    Case("ema_decay_1_5", "ldmlab.commands.train", (*LDM, "module.ema_decay=1.5"), "module.ema_decay", "node",
         config="train_ldm"),
    Case("min_snr_gamma_negative", "ldmlab.commands.train", (*LDM, "diffusion/loss_weighting=min_snr",
         "diffusion.loss_weighting.gamma=-1"), "diffusion.loss_weighting.gamma", "node", config="train_ldm"),
    Case("ae_own_clip_negative", "ldmlab.commands.train", (*AE, "module.gradient_clip_val=-1"),
         "module.gradient_clip_val", "count"),  # was accepted: a negative max norm flips every gradient
    # not finite where a number is meant
    Case("lr_inf", "ldmlab.commands.train", (*AE, "module.optimizer.lr=inf"), "module.optimizer.lr", "type"),
    Case("guidance_scale_nan", "ldmlab.commands.sample", ("guidance.scale=nan",), "guidance.scale", "type",
         slow=True),
    # counts ≤ 0 or non-integers (listed, then unlisted)
    Case("batch_size_0", "ldmlab.commands.train", (*AE, "data.batch_size=0"), "data.batch_size", "count"),
    Case("nrow_0", "ldmlab.commands.sample", ("nrow=0",), "nrow", "count"),
    Case("num_show_0", "ldmlab.commands.invert", ("num_show=0",), "num_show", "count"),
    Case("every_n_train_steps_negative", "ldmlab.commands.train",
         (*AE, "callbacks.last_checkpoint.every_n_train_steps=-1"),
         "callbacks.last_checkpoint.every_n_train_steps", "count"),
    Case("class_label_1_5", "ldmlab.commands.sample", ("class_label=1.5",), "class_label", "count"),
    Case("val_size_negative", "ldmlab.commands.train", (*AE, "data.val_size=-5"), "data.val_size", "count"),
    Case("num_images_0", "ldmlab.commands.train", (*LDM, "callbacks.image_logger.num_images=0"),
         "callbacks.image_logger.num_images", "count", config="train_ldm"),
    Case("num_workers_negative", "ldmlab.commands.train", (*AE, "data.num_workers=-1"),
         "data.num_workers", "count", slow=True),
    Case("warmup_negative", "ldmlab.commands.train", (*AE, "module.warmup_steps=-10"),
         "module.warmup_steps", "count", slow=True),
    Case("sampler_steps_0", "ldmlab.commands.sample", ("sampler.steps=0",), "sampler.steps", "count"),
    Case("num_reference_0", "ldmlab.commands.evaluate", ("num_reference=0",), "num_reference", "count",
         slow=True),
    Case("model_channels_0", "ldmlab.commands.train", (*LDM, "backbone.model_channels=0"),
         "backbone.model_channels", "count", config="train_ldm", slow=True),
    Case("num_pairs_0", "ldmlab.commands.interpolate", ("num_pairs=0",), "num_pairs", "count", slow=True),
    # device
    Case("device_foo", "ldmlab.commands.sample", ("ckpt={ldm}", "device=foo"), "device", "device"),
    pytest.param(Case("device_cuda", "ldmlab.commands.sample", ("ckpt={ldm}", "device=cuda"), "device",
                      "device"),
                 marks=NO_GPU),
    Case("device_foo_invert", "ldmlab.commands.invert", ("ckpt={ldm}", "device=gpu0"), "device", "device"),
    pytest.param(Case("device_cuda_1_evaluate", "ldmlab.commands.evaluate", ("ckpt={ldm}", "device=cuda:1"),
                      "device", "device", slow=True), marks=NO_GPU),
    # once checked only after the work
    Case("select_by_unknown", "ldmlab.commands.evaluate", ("ckpt={ldm}", "sampler=ddim", "num_samples=80",
         "num_reference=80", "batch_size=40", "guidance_scales=[1]", "sampler.steps=2",
         "metrics.kid_subset_size=50", "select_by=fid_foo"), "select_by", "order",
         config=None),
    Case("kid_subset_size_above_samples", "ldmlab.commands.evaluate", ("ckpt={ldm}", "num_samples=80",
         "num_reference=80", "sampler=ddim", "sampler.steps=2", "metrics.kid_subset_size=100"),
         "metrics.kid_subset_size", "order"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_ae_ckpt, tiny_ldm_run) -> dict[str, str]:
    ldm = (tiny_ldm_run / "train_ldm" / "latest" / "checkpoints" / "last.ckpt").resolve()
    return {"ae": str(tiny_ae_ckpt), "ldm": str(ldm)}


def _config_name(case: Case) -> str:
    return case.config or ENTRY_CONFIG[case.entry]


def refused(out, key: str) -> str:
    """The one ``error: <key>: ...`` line of a refused run."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}:"), out.stderr[-3000:]
    return lines[0]


def _params(cases: list) -> list:
    return [pytest.param(c, marks=pytest.mark.slow) if isinstance(c, Case) and c.slow else c for c in cases]


@pytest.mark.parametrize("case", _params(CASES), ids=lambda c: c.name)
def test_bad_input_class_is_refused_before_any_work(case: Case, inputs, tmp_path):
    args = [a.format(**inputs) for a in case.args]
    started = time.monotonic()
    line = refused(run_forked(case.entry, args, tmp_path, case.config), case.key)
    seconds = time.monotonic() - started
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.png"))
    assert not list(tmp_path.rglob("summary.json")), "refused before any output"
    assert seconds < 60, f"refused after {seconds:.0f} s: not before the work"
    print(f"{case.name} | {line} | 2")

    override = suggested_override(line)
    assert override is not None, line
    fixed = with_fix(args, case.key, override)
    cfg = compose_config(_config_name(case), fixed)
    if case.kind in ("type", "count"):
        check_config(cfg, TABLES[_config_name(case)])  # the fix gets past the same check
    elif case.kind in ("trainer", "node"):
        HydraConfig.instance().set_config(cfg)  # resolves ${hydra:...} as in the app
        try:
            if case.kind == "trainer":
                check_trainer(cfg.trainer)
            else:  # the node builds now
                instantiate(OmegaConf.select(cfg, case.key.rsplit(".", 1)[0]))
        finally:
            HydraConfig.instance().cfg = None


def test_one_image_folder_names_the_folder_not_val_size(tmp_path):
    """Was: ``data.val_size`` with the fix "lower data.val_size", which repeats the error."""
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(folder / "only.png")
    out = run_forked("ldmlab.commands.train",
                     [*AE, "data=image_folder", f"data.root={folder}", "data.resolution=32",
                      "data.num_workers=0"], tmp_path / "logs")
    line = refused(out, "data.root")
    assert "at least 2" in line and suggested_override(line) is None


def test_val_size_fix_runs(tmp_path):
    folder = tmp_path / "eight"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    args = [*AE, "data=image_folder", f"data.root={folder}", "data.resolution=32", "data.num_workers=0",
            "data.batch_size=2", "callbacks.reconstruction_fid=null", "data.val_size=8"]
    line = refused(run_forked("ldmlab.commands.train", args, tmp_path / "logs"), "data.val_size")
    fixed = with_fix(args, "data.val_size", suggested_override(line))
    again = run_forked("ldmlab.commands.train", [*fixed, "trainer.fast_dev_run=true"], tmp_path / "fixed")
    assert again.returncode == 0, again.stderr[-3000:]


def test_num_pairs_fix_counts_pairs_and_runs(inputs, tmp_path):
    """The stored data config has 32 validation images: 16 pairs at most (was: a fix of 32 pairs)."""
    args = [f"ckpt={inputs['ldm']}", "split=val", "num_pairs=100", "frames=2", "sampler.steps=2"]
    line = refused(run_forked("ldmlab.commands.interpolate", args, tmp_path / "logs"), "num_pairs")
    override = suggested_override(line)
    assert override == "num_pairs=16", line
    again = run_forked("ldmlab.commands.interpolate", with_fix(args, "num_pairs", override),
                       tmp_path / "fixed")
    assert again.returncode == 0, again.stderr[-3000:]


class Payload:
    """Unpickling it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.mark.parametrize(("entry", "flag"), [(e, "--experimental-rerun") for e in ENTRIES]
                         + [("ldmlab.commands.sample", "--experimental-rerun="),
                            ("ldmlab.commands.sample", "--experimental")])
def test_experimental_rerun_is_refused_before_the_pickle_is_read(entry, flag, tmp_path):
    marker = tmp_path / "payload-ran"
    payload = tmp_path / "config.pickle"
    payload.write_bytes(pickle.dumps(Payload(marker)))
    pickle.loads(payload.read_bytes())  # the payload is live ...
    assert marker.exists()
    marker.unlink()
    argv = [flag + str(payload)] if flag.endswith("=") else [flag, str(payload)]
    out = run_forked(entry, argv, tmp_path / "logs")
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --experimental") and "pickle" in lines[0]
    assert not marker.exists(), "... and the CLI never unpickled it"


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_a_checkpoint_key_given_a_directory_says_so(tmp_path, kind):
    """Was: a directory handed to a checkpoint key (ckpt_path, first_stage.ckpt, ...) "does not exist"."""
    path = tmp_path if kind == "directory" else tmp_path / "nope.ckpt"
    with pytest.raises(ConfigError, match="is a directory, not a checkpoint file" if kind == "directory"
                       else "does not exist"):
        read_checkpoint(path, "ckpt_path", "ckpt_path=null")
