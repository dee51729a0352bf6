"""The pieces behind the one-line errors: DataError across DataLoader workers, the non-finite
scan and whom it blames, and torch.optim's refusals mapped to config keys."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ldmlab.optim.optimizers import build_optimizer
from ldmlab.utils.errors import ConfigError, DataError, DivergedError
from ldmlab.utils.finite import LossWatch, diverged, ensure_finite, nonfinite, nonfinite_state


class _Corrupt(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise DataError("data.root", f"cannot read image /x/{index}.png\n(truncated)", "remove it")


def test_data_error_survives_a_worker_process():
    with pytest.raises(DataError) as caught:
        next(iter(DataLoader(_Corrupt(), num_workers=1)))
    assert str(caught.value) == "data.root: cannot read image /x/0.png (truncated). Fix: remove it"
    assert caught.value.key == "data.root" and isinstance(caught.value, ConfigError)


def test_nonfinite_flags_nan_and_inf_but_not_large_values():
    tensors = [torch.ones(3), torch.tensor([1.0, float("nan")]), torch.tensor([float("inf")]).bfloat16(),
               torch.tensor(3e38)]
    assert nonfinite(tensors) == [False, True, True, False]
    assert nonfinite([]) == []


class _GAN(nn.Module):
    optimizer_fields = ("optimizer", "disc_optimizer")

    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Linear(2, 2)
        self.disc = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, affine=False), nn.Linear(2, 1))


def _gan():
    module = _GAN()
    optimizers = (torch.optim.Adam(module.generator.parameters(), lr=1e-3),
                  torch.optim.Adam(module.disc.parameters(), lr=4e-4))
    return module, optimizers


def test_a_non_finite_buffer_blames_the_optimiser_of_its_submodule():
    module, optimizers = _gan()
    assert nonfinite_state(module, optimizers) is None
    module.disc[1].running_var.fill_(float("inf"))  # a parameter-less submodule: its parent decides
    index, names = nonfinite_state(module, optimizers)
    assert index == 1 and names == ["disc.1.running_var"]
    error = diverged(module, optimizers, index, "boom")
    assert isinstance(error, DivergedError)
    assert str(error) == "module.disc_optimizer.lr: boom. Fix: lower it, e.g. module.disc_optimizer.lr=4e-05"


def test_optimiser_state_and_metrics_are_scanned_and_the_first_bad_tensor_decides():
    module, optimizers = _gan()
    module.generator(torch.ones(1, 2)).sum().backward()
    optimizers[0].step()
    optimizers[0].state[module.generator.weight]["exp_avg"][0, 0] = float("nan")
    module.disc[0].weight.data[0, 0] = float("nan")
    index, names = nonfinite_state(module, optimizers, {"val/loss": torch.tensor(float("nan"))})
    assert index == 1 and names[0] == "disc.0.weight"
    assert any("exp_avg" in name for name in names) and names[-1] == "val/loss"


def test_a_nan_loss_names_the_learning_rate():
    module, optimizers = _gan()
    ensure_finite(torch.tensor(1.0), "train/loss", 0, module, optimizers)
    with pytest.raises(DivergedError, match=r"^module\.optimizer\.lr: training diverged: train/loss is nan"):
        ensure_finite(torch.tensor(float("nan")), "train/loss", 3, module, optimizers)


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"lr": -1e-3}, "module.optimizer.lr=0.001"),
    ({"lr": 1e-3, "eps": -1.0}, "module.optimizer.eps=1e-08"),
    ({"lr": 1e-3, "betas": (1.5, 0.9)}, "module.optimizer.betas=[0.9,0.999]"),
    ({"lr": 1e-3, "weight_decay": -1.0}, "module.optimizer.weight_decay=0"),
])
def test_torch_optim_refusals_name_the_key(kwargs, key):
    params = nn.Linear(1, 1).parameters()
    with pytest.raises(ConfigError) as caught:
        build_optimizer(partial(torch.optim.AdamW, **kwargs), params, "module.optimizer")
    assert str(caught.value).startswith(key.split("=")[0] + ":") and str(caught.value).endswith(f"e.g. {key}")


def test_other_optimiser_errors_keep_their_traceback():
    with pytest.raises(TypeError):
        build_optimizer(partial(torch.optim.SGD, lr=0.1, betas=(0.9, 0.9)), nn.Linear(1, 1).parameters(), "m")


class _Trainer:
    log_every_n_steps = 4

    def __init__(self, optimizers):
        self.optimizers = optimizers


def test_loss_watch_reports_the_first_nan_step_at_the_next_check():
    module, optimizers = _gan()
    module.trainer, watch = _Trainer(optimizers), LossWatch("train/loss")
    for step, value in enumerate([1.0, float("nan"), float("inf")]):  # steps 0-2: no check yet
        module.global_step = step
        watch.observe(torch.tensor(value), module)
    module.global_step = 3
    with pytest.raises(DivergedError, match=r"^module\.optimizer\.lr: training diverged: train/loss is nan "
                                            r"at step 1"):
        watch.observe(torch.tensor(2.0), module)


def test_loss_watch_stays_quiet_on_finite_losses():
    module, optimizers = _gan()
    module.trainer, watch = _Trainer(optimizers), LossWatch("train/loss")
    for step in range(9):
        module.global_step = step
        watch.observe(torch.tensor(float(step)), module)
    watch.check(module, optimizers)


def test_fused_optimisers_stay_fused_unless_lightning_mixes_precision():
    params = list(nn.Linear(2, 2).parameters())
    factory = partial(torch.optim.AdamW, lr=1e-3, fused=True)
    assert build_optimizer(factory, params, "module.optimizer").defaults["fused"] is True
    mixed = build_optimizer(factory, params, "module.optimizer", "bf16-mixed").defaults
    assert not mixed["fused"] and mixed["foreach"] is None  # Lightning refuses to clip fused ones there
