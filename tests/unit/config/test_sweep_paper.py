"""``sweep=paper``: the paper protocol's counts for evaluate and the in-run sweep, a required scale."""

from __future__ import annotations

import pytest

from ldmlab.commands.evaluate import evaluate
from ldmlab.data.fashion_mnist import FashionMNISTDataModule
from ldmlab.utils.errors import ConfigError
from tests.conftest import compose_config

PAPER = {"num_samples": 50000, "num_reference": 50000, "reference_split": "train", "seeds": [0]}
SHARED = ("grid", "batch_size", "select_by")  # as the default sweep


def test_paper_sweep_sets_the_paper_counts_for_evaluate_and_the_in_run_sweep():
    default = compose_config("evaluate")
    paper = compose_config("evaluate", ["sweep=paper", "metrics=paper", "guidance_scales=[1.5]"])
    assert {key: paper[key] for key in PAPER} == PAPER and list(paper.guidance_scales) == [1.5]
    assert all(paper[key] == default[key] for key in SHARED)
    assert (paper.metrics.fid_feature_layer, paper.metrics.sfid) == ("2048", True)

    trained = compose_config("train_ldm", ["callbacks=ldm_sweep", "sweep@callbacks.guidance_sweep=paper"])
    sweep = trained.callbacks.guidance_sweep
    assert {key: sweep[key] for key in PAPER} == PAPER and list(sweep.guidance_scales) == []
    assert all(sweep[key] == default[key] for key in SHARED) and "num_samples" not in trained


def test_paper_sweep_refuses_to_run_without_a_scale(tmp_path):
    cfg = compose_config("evaluate", ["sweep=paper", "metrics=paper", f"paths.log_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"^guidance_scales: is empty"):
        evaluate(cfg)


def test_fashion_mnist_train_split_holds_the_paper_reference_count(fmnist_dir):
    datamodule = FashionMNISTDataModule(str(fmnist_dir))  # val_size=5000 of the 60000 held out
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 55000 >= PAPER["num_reference"]
