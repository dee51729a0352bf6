"""No code runs from any file a user hands in (issue 10 §1), through the real CLI: the pickle cases
(one per entry point) as real subprocesses, the others in a fork of the test process that runs
the same entry point's ``main`` with the same argv (``run_forked``: no 6 s interpreter start).

Every entry point that reads a file gets (i) a pickle whose unpickling creates a marker file and
(ii) checkpoints that pass ``torch.load(weights_only=True)`` but whose stored config names code:
``builtins.open``, ``torch.load`` of (i) with ``weights_only: false``, ldmlab's own
``write_json_atomic``, an ``${oc.create:...}`` interpolation that would build an ``open`` node,
or an ``open`` node nested in an otherwise real config. Each run must leave the marker absent
and end with exactly one ``error:`` line naming the key, the file and the offending target;
exit 2, no traceback. ``test_payloads_are_live`` shows each payload does run when loaded
unsafely, so the refusals are what keeps the marker away.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file

from ldmlab.autoencoder.loading import load_autoencoder
from ldmlab.checkpoints import CONFIG_KEY, FIRST_STAGE_CONFIG, check_targets
from ldmlab.classifier.network import ClassifierNetwork
from ldmlab.commands.evaluate import stored_datamodule
from ldmlab.metrics.fidelity import FidelityEvaluator
from ldmlab.metrics.reference_stats import ReferenceSet
from ldmlab.models.restore import load_ldm
from ldmlab.utils.errors import ConfigError
from tests.conftest import CONF_DIR, REPO, TINY_AE, TINY_LDM, run_cli, run_forked

LDM = [*TINY_LDM, "logger=none"]
TINY_EVAL = ["guidance_scales=[1]", "num_samples=20", "num_reference=20", "batch_size=10",
             "sampler=ddim", "sampler.steps=2"]


class Payload:
    """Unpickling it calls ``Path.touch(marker)``: code, not weights."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def pickle_payload(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": Payload(marker)}, path)
    return path


def open_node(marker: Path) -> dict:
    return {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


def tamper(kind: str, node: dict, marker: Path, tmp_path: Path) -> tuple[dict, str]:
    """``node`` with a payload of ``kind``, and the text the refusal must name."""
    if kind == "open":
        return open_node(marker), "builtins.open"
    if kind == "torch_load":
        inner = pickle_payload(tmp_path / "inner.pt", marker)
        return {"_target_": "torch.load", "f": str(inner), "weights_only": False}, "torch.load"
    if kind == "write_json":
        target = "ldmlab.runs.layout.write_json_atomic"
        path = {"_target_": "pathlib.Path", "_args_": [str(marker)]}
        return {"_target_": target, "path": path, "payload": {}}, target
    tampered = copy.deepcopy(node)
    if kind == "interpolation":
        tampered["encoder"] = f"${{oc.create:{{_target_: builtins.open, file: '{marker}', mode: w}}}}"
        return tampered, "${oc.create"
    assert kind == "nested"
    tampered["encoder"] = open_node(marker)
    return tampered, "builtins.open"


CONFIG_PAYLOADS = ["open", "torch_load", "write_json", "interpolation", "nested"]


def resolved(config_name: str, overrides: list[str], tmp_path: Path):
    """A config composed as the CLI would, resolved as StoreConfig stores it."""
    paths = [f"paths.log_dir={tmp_path}", f"paths.data_dir={REPO / 'data'}", f"paths.output_dir={tmp_path}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=[*overrides, *paths])
    return cfg, OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def legit(tmp_path_factory, fmnist_dir) -> dict:
    """Real (untrained) tiny stage-1 and stage-2 checkpoints with the keys training writes."""
    tmp = tmp_path_factory.mktemp("legit")
    cfg, config = resolved("train_ae", TINY_AE, tmp)
    autoencoder = instantiate(cfg.autoencoder)
    ae = tmp / "ae.ckpt"
    torch.save({CONFIG_KEY: config, "state_dict": {f"autoencoder.{k}": v for k, v in
                                                    autoencoder.state_dict().items()}}, ae)
    cfg, config = resolved("train_ldm", [*LDM, f"first_stage.ckpt={ae}"], tmp)
    module = instantiate(cfg.module)
    ldm = {CONFIG_KEY: config, FIRST_STAGE_CONFIG: module.first_stage.autoencoder_config,
           "state_dict": module.state_dict()}
    torch.save(ldm, tmp / "ldm.ckpt")
    load_ldm(tmp / "ldm.ckpt")  # control: the untampered file loads
    return {"ae": ae, "ae_checkpoint": torch.load(ae, weights_only=True), "ldm": tmp / "ldm.ckpt",
            "ldm_checkpoint": ldm}


def assert_refused(out, marker: Path, *names: str) -> None:
    """Exit 2, the marker never created, one ``error:`` line (the last), naming ``names``."""
    lines = out.stderr.strip().splitlines()
    print(f"exit {out.returncode}: {lines[-1] if lines else ''}")
    assert not marker.exists(), "the payload ran"
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert sum(line.startswith("error:") for line in lines) == 1, out.stderr[-3000:]
    assert lines[-1].startswith("error:"), out.stderr[-3000:]
    for name in names:
        assert name in lines[-1], f"{name!r} not in {lines[-1]!r}"


# --- pickles: every file-taking key ------------------------------------------------------------

PICKLE_CASES = {  # id: (module, config name, key, extra overrides)
    "train_ae.ckpt_path": ("ldmlab.commands.train", "train_ae", "ckpt_path", TINY_AE),
    "train_ldm.ckpt_path": ("ldmlab.commands.train", "train_ldm", "ckpt_path", LDM),
    "train_classifier.ckpt_path": ("ldmlab.commands.train", "train_classifier", "ckpt_path", ["logger=none"]),
    "train_noisy_classifier.ckpt_path": ("ldmlab.commands.train", "train_noisy_classifier", "ckpt_path",
                                         ["logger=none"]),
    "train_ldm.first_stage.ckpt": ("ldmlab.commands.train", "train_ldm", "first_stage.ckpt", LDM),
    "train_ae.loss.lpips.weights_path": ("ldmlab.commands.train", "train_ae", "loss.lpips.weights_path",
                                         TINY_AE),
    "sample.ckpt": ("ldmlab.commands.sample", None, "ckpt", []),
    "evaluate.ckpt": ("ldmlab.commands.evaluate", None, "ckpt", TINY_EVAL),
}


@pytest.mark.parametrize("case", PICKLE_CASES)
def test_pickle_payload_is_refused(case, tmp_path, fmnist_dir):
    module, config_name, key, extra = PICKLE_CASES[case]
    marker = tmp_path / "marker"
    payload = pickle_payload(tmp_path / "payload.ckpt", marker)
    out = run_cli(module, [*extra, f"{key}={payload}"], tmp_path, config_name=config_name)
    assert_refused(out, marker, f"error: {key}:", str(payload), "pathlib")


@pytest.mark.parametrize("key", ["metrics.classifier_ckpt", "metrics.inception_weights"])
def test_pickle_payload_is_refused_as_metric_weights(key, legit, tmp_path):
    marker = tmp_path / "marker"
    payload = pickle_payload(tmp_path / "payload.pt", marker)
    network = ["metrics.inception=false"] if key == "metrics.classifier_ckpt" else []
    args = [f"ckpt={legit['ldm']}", *TINY_EVAL, *network, f"metrics.cache_root={tmp_path}",
            f"{key}={payload}"]
    out = run_forked("ldmlab.commands.evaluate", args, tmp_path)
    assert_refused(out, marker, f"error: {key}:", str(payload), "pathlib")


def test_pickle_payload_is_refused_by_the_in_run_guidance_sweep(legit, tmp_path):
    marker = tmp_path / "marker"
    payload = pickle_payload(tmp_path / "payload.ckpt", marker)
    sweep = [f"callbacks.guidance_sweep.{k}" for k in ("num_samples=20", "num_reference=20", "batch_size=10")]
    args = [*LDM, f"first_stage.ckpt={legit['ae']}", "callbacks=ldm_sweep", *sweep,
            "metrics.inception=false", f"metrics.classifier_ckpt={payload}"]
    out = run_forked("ldmlab.commands.train", args, tmp_path, config_name="train_ldm")
    assert_refused(out, marker, "error: metrics.classifier_ckpt:", str(payload), "pathlib")


# --- stored configs that pass weights_only=True -----------------------------------------------

PLACES = {  # where a payload is planted: which legit checkpoint, the keys down to the node
    "stage1.autoencoder": ("ae_checkpoint", (CONFIG_KEY, "autoencoder")),
    "stage2.module.backbone": ("ldm_checkpoint", (CONFIG_KEY, "module", "backbone")),
    "stage2.module.first_stage": ("ldm_checkpoint", (CONFIG_KEY, "module", "first_stage")),
    "stage2.first_stage_config": ("ldm_checkpoint", (FIRST_STAGE_CONFIG,)),
    "stage2.data": ("ldm_checkpoint", (CONFIG_KEY, "data")),
}


def planted(legit: dict, place: str, kind: str, marker: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of a legit checkpoint with a ``kind`` payload at ``place``; its path and the target."""
    source, keys = PLACES[place]
    checkpoint = copy.deepcopy(legit[source])
    holder = checkpoint
    for name in keys[:-1]:
        holder = holder[name]
    holder[keys[-1]], target = tamper(kind, holder[keys[-1]], marker, tmp_path)
    path = tmp_path / f"{place}-{kind}.ckpt"
    torch.save(checkpoint, path)
    return path, target


LOADERS = {  # place → the loader the CLI runs on such a file (and the key it reports)
    "stage1.autoencoder": (load_autoencoder, "first_stage.ckpt"),
    "stage2.module.backbone": (load_ldm, "ckpt"),
    "stage2.module.first_stage": (load_ldm, "ckpt"),
    "stage2.first_stage_config": (load_ldm, "ckpt"),
    "stage2.data": (stored_datamodule, "ckpt"),
}


@pytest.mark.parametrize("kind", CONFIG_PAYLOADS)
@pytest.mark.parametrize("place", PLACES)
def test_every_config_payload_is_refused_wherever_it_is_stored(place, kind, legit, tmp_path):
    """The loaders behind first_stage.ckpt, sample/evaluate ckpt and evaluate's stored data."""
    marker = tmp_path / "marker"
    path, target = planted(legit, place, kind, marker, tmp_path)
    loader, key = LOADERS[place]
    with pytest.raises(ConfigError) as refused:
        loader(path)
    assert not marker.exists()
    assert str(refused.value).startswith(f"{key}: {path}") and target in str(refused.value)


CLI_CONFIG_CASES = {  # id: (module, config name, key, place, payload kind, extra overrides)
    "train_ldm.first_stage.ckpt-nested": ("ldmlab.commands.train", "train_ldm", "first_stage.ckpt",
                                          "stage1.autoencoder", "nested", LDM),
    "train_ldm.first_stage.ckpt-interpolation": ("ldmlab.commands.train", "train_ldm", "first_stage.ckpt",
                                                 "stage1.autoencoder", "interpolation", LDM),
    "sample.ckpt-torch_load": ("ldmlab.commands.sample", None, "ckpt", "stage2.first_stage_config",
                               "torch_load", []),
    "sample.ckpt-write_json": ("ldmlab.commands.sample", None, "ckpt", "stage2.module.first_stage",
                               "write_json", []),
    "sample.ckpt-open": ("ldmlab.commands.sample", None, "ckpt", "stage2.module.backbone", "open", []),
    "evaluate.ckpt-data-nested": ("ldmlab.commands.evaluate", None, "ckpt", "stage2.data", "nested",
                                  [*TINY_EVAL, "metrics.inception=false"]),
}


@pytest.mark.parametrize("case", CLI_CONFIG_CASES)
def test_config_payload_is_refused_by_the_cli(case, legit, tmp_path):
    module, config_name, key, place, kind, extra = CLI_CONFIG_CASES[case]
    marker = tmp_path / "marker"
    path, target = planted(legit, place, kind, marker, tmp_path)
    out = run_forked(module, [*extra, f"{key}={path}"], tmp_path, config_name=config_name)
    assert_refused(out, marker, f"error: {key}:", str(path), target)


def test_classifier_network_payload_is_refused(legit, tmp_path):
    """The classifier's stored ``network`` hyperparameter is numbers, never a node to build."""
    marker = tmp_path / "marker"
    path = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"network": open_node(marker)}}, path)
    args = [f"ckpt={legit['ldm']}", *TINY_EVAL, "metrics.inception=false", f"metrics.classifier_ckpt={path}"]
    out = run_forked("ldmlab.commands.evaluate", args, tmp_path)
    assert_refused(out, marker, "error: metrics.classifier_ckpt:", str(path), "builtins.open")


def test_config_payload_in_a_resume_file_is_refused(legit, tmp_path):
    """Resuming never instantiates the stored config; a file that is no resumable checkpoint of
    the task is refused before anything is built."""
    marker = tmp_path / "marker"
    checkpoint = copy.deepcopy(legit["ae_checkpoint"])
    checkpoint[CONFIG_KEY]["autoencoder"] = open_node(marker)
    path = tmp_path / "resume.ckpt"
    torch.save(checkpoint, path)
    out = run_forked("ldmlab.commands.train", [*TINY_AE, f"ckpt_path={path}"], tmp_path)
    assert_refused(out, marker, "error: ckpt_path:", str(path))


# --- the payloads are real, and the checks do not refuse real files ---------------------------

def test_payloads_are_live(tmp_path):
    """Loaded unsafely, each payload creates its marker: the refusals above are what stop them."""
    marker = tmp_path / "pickle"
    torch.load(pickle_payload(tmp_path / "p.pt", marker), weights_only=False)
    assert marker.exists()
    node = {"encoder": {"_target_": "builtins.dict"}}
    for kind in ("open", "torch_load", "write_json", "interpolation", "nested"):
        marker = tmp_path / kind
        tampered, _ = tamper(kind, node, marker, tmp_path)
        with contextlib.suppress(Exception):  # building what follows the payload may fail: it ran
            instantiate(tampered)
        assert marker.exists(), kind


def test_real_checkpoints_pass_the_allow_list(tiny_ae_ckpt, tiny_ldm_run):
    """Not too tight: what training stores is accepted node by node, as the loaders use it."""
    ae = torch.load(tiny_ae_ckpt, weights_only=True)
    check_targets(ae[CONFIG_KEY]["autoencoder"], tiny_ae_ckpt, "first_stage.ckpt")
    ldm_path = next(tiny_ldm_run.glob("train_ldm/runs/*/checkpoints/last.ckpt"))
    ldm = torch.load(ldm_path, weights_only=True)
    module = {k: v for k, v in ldm[CONFIG_KEY]["module"].items() if k != "optimizer"}
    for node in (module, ldm[FIRST_STAGE_CONFIG], ldm[CONFIG_KEY]["data"]):
        check_targets(node, ldm_path, "ckpt")
    load_ldm(ldm_path)


def test_reference_feature_cache_is_never_unpickled(tmp_path):
    """Reference features are cached as safetensors (``metrics.cache_root``): a pickle planted
    under a cache file's name is not unpickled but recomputed and overwritten, same metrics."""
    network = ClassifierNetwork(widths=[8, 16, 16], groups=4)
    ckpt = tmp_path / "classifier.ckpt"
    torch.save({"hyper_parameters": {"network": network.config},
                "state_dict": {f"network.{k}": v for k, v in network.state_dict().items()}}, ckpt)
    images = torch.rand(40, 1, 32, 32) * 2 - 1
    reference = ReferenceSet.from_images("noise", "test", images)
    settings = {"inception": False, "classifier_ckpt": str(ckpt), "kid_subset_size": 10, "kid_subsets": 5,
                "compute_precision_recall": False, "cache_root": str(tmp_path / "cache")}
    labels = torch.arange(40) % 10
    first = FidelityEvaluator(reference, **settings)(images.flip(0), labels)
    cached = sorted((tmp_path / "cache").iterdir())
    assert cached and all(path.suffix == ".safetensors" for path in cached)
    marker = tmp_path / "marker"
    for path in cached:
        pickle_payload(path, marker)
    assert FidelityEvaluator(reference, **settings)(images.flip(0), labels) == first
    assert not marker.exists()
    assert all(len(load_file(path)) == 1 for path in cached)  # rewritten as safetensors
