"""Linear probes of a representation: how much of a label a latent carries linearly (DiffAE's and
InfoDiffusion's latent-quality measure), and posterior-collapse diagnostics."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_auroc


def linear_probe(train_z: Tensor, train_y: Tensor, test_z: Tensor, test_y: Tensor, num_classes: int,
                 weight_decay: float = 1e-4, max_iter: int = 500) -> dict[str, float]:
    """Multinomial logistic regression on standardised features (statistics of the train split),
    fitted by full-batch L-BFGS with an L2 penalty; returns test ``accuracy`` and macro one-vs-rest
    ``auroc``. z: (N, d) float, y: (N,) long in [0, num_classes)."""
    mean, std = train_z.mean(0), train_z.std(0).clamp_min(1e-8)
    x_train, x_test = ((train_z - mean) / std).double(), ((test_z - mean) / std).double()
    weight = torch.zeros(x_train.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_train @ weight + bias, train_y) \
            + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        logits = x_test @ weight + bias
    return {"accuracy": float(multiclass_accuracy(logits, test_y, num_classes, average="micro")),
            "auroc": float(multiclass_auroc(logits.softmax(1), test_y, num_classes, average="macro"))}


def active_units(means: Tensor, threshold: float = 0.01) -> int:
    """Dimensions whose posterior mean varies over the data, Var_x(E[z | x]) > threshold (Burda
    et al.); means (N, d) of a posterior whose prior is N(0, I)."""
    return int((means.double().var(0) > threshold).sum())
