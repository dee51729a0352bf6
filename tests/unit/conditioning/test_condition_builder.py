"""One condition builder for sample, evaluate, sweeps and image logs: its rules, exactly."""

from __future__ import annotations

import pytest
import torch

from ldmlab.conditioning.class_embedder import ClassEmbedder
from ldmlab.conditioning.condition_builder import build_condition, chunk_of
from ldmlab.conditioning.conditioner import Conditioner
from ldmlab.utils.errors import ConfigError
from tests.unit.conditioning.test_conditioning import full_batch, full_conditioner


class _Items(torch.utils.data.Dataset):
    def __init__(self, batch: dict) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["label"])

    def __getitem__(self, i: int) -> dict:
        return {key: value[i] for key, value in self.batch.items()}


def test_classes_in_turn_other_inputs_from_the_source_cycled():
    batch = full_batch()
    condition = build_condition(full_conditioner(), 5, source=batch)
    assert condition["label"].tolist() == [0, 1, 2, 3, 4]  # never the source's labels
    assert condition["caption"] == ["a coat", "a photo of a sandal"] * 2 + ["a coat"]
    assert torch.equal(condition["lowres"], batch["lowres"][[0, 1, 0, 1, 0]])
    from_dataset = build_condition(full_conditioner(), 5, source=_Items(batch))
    assert from_dataset["caption"] == condition["caption"]
    assert torch.equal(from_dataset["lowres"], condition["lowres"])
    assert torch.equal(from_dataset["label"], condition["label"])


def test_labels_cycle_over_all_classes():
    conditioner = Conditioner({"class": ClassEmbedder(3, 8)})
    assert build_condition(conditioner, 7)["label"].tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_fixed_label_and_prompt_override_and_missing_inputs_use_their_nulls():
    condition = build_condition(full_conditioner(), 3, class_label=7, prompt="a boot")
    assert condition["label"].tolist() == [7, 7, 7]
    assert condition["caption"] == ["a boot"] * 3
    assert "lowres" not in condition  # no source: sampled from its learned null


@pytest.mark.parametrize(("kwargs", "key"), [({"class_label": 10}, "class_label"),
                                             ({"class_label": -1}, "class_label")])
def test_out_of_range_label_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"^{key}: .*Fix: e.g. class_label=0"):
        build_condition(full_conditioner(), 2, **kwargs)


def test_inputs_the_model_cannot_read_are_refused_with_a_runnable_fix():
    labels_only = Conditioner({"class": ClassEmbedder(3, 8)})
    with pytest.raises(ConfigError, match=r"^prompt: .*Fix: prompt=null"):
        build_condition(labels_only, 2, prompt="a coat")
    text_free = Conditioner({"lowres": full_conditioner().embedders["lowres"]})
    with pytest.raises(ConfigError, match=r"^class_label: .*Fix: class_label=null"):
        build_condition(text_free, 2, class_label=1)


def test_chunk_of_slices_every_input():
    condition = build_condition(full_conditioner(), 5, source=full_batch())
    chunk = chunk_of(condition, 1, 3, "cpu")
    assert chunk["label"].tolist() == [1, 2] and chunk["caption"] == condition["caption"][1:3]
    assert chunk["lowres"].shape == (2, 1, 28, 28)
