"""CFG with a class-vector model (conditioner=class_vector, DiT's own class conditioning): the
unconditional branch is exactly the label table's last row (the learned null, row num_classes),
the guided output is ε_u + s·(ε_c − ε_u), and training drops labels to that same row."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from ldmlab.guidance.base import GuidanceContext
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.sampling.denoiser import GuidedDenoiser
from ldmlab.sampling.generate import generate_latents
from tests.conftest import compose_config

TINY = {"small": ["backbone.model_channels=16"],
        "dit": ["backbone=dit", "backbone.hidden_size=32", "backbone.depth=2", "backbone.num_heads=2"],
        "uvit": ["backbone=uvit", "backbone.hidden_size=32", "backbone.depth=3", "backbone.num_heads=2"]}
LABELS = torch.tensor([0, 3, 9])
SCALE = 3.0


def _model(backbone: str, *overrides: str):
    """(config, backbone with random weights, class_vector conditioner) of the composed config;
    random weights so that the zero-initialised outputs (adaLN-Zero) let the label reach ε̂."""
    cfg = compose_config("train_ldm", [*TINY[backbone], "conditioner=class_vector", *overrides])
    net, conditioner = instantiate(cfg.backbone), instantiate(cfg.conditioner)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.2)
    return cfg, net.eval(), conditioner.eval()


def _record_conds(net: nn.Module) -> list[dict[str, torch.Tensor]]:
    """The cond dict of every forward call of ``net`` (called as net(x, t, cond))."""
    calls: list[dict[str, torch.Tensor]] = []
    net.register_forward_pre_hook(lambda module, args: calls.append(args[2]))
    return calls


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_cfg_mixes_the_label_rows_with_the_null_row(backbone):
    cfg, net, conditioner = _model(backbone)
    table = conditioner.embedders.label.table.weight
    null = table[conditioner.embedders.label.num_classes]
    assert table.shape[0] == 11 and torch.equal(null, table[-1])
    condition, n = {"label": LABELS}, len(LABELS)
    cond, uncond = conditioner(condition), conditioner.unconditional(condition, batch_size=n)
    assert torch.equal(cond["vector"], table[LABELS]) and torch.equal(uncond["vector"], null.expand(n, -1))

    schedule, objective = instantiate(cfg.module.schedule), instantiate(cfg.module.objective)
    side = cfg.data.resolution // cfg.first_stage_downsample_factor
    shape = (cfg.first_stage_embed_dim, side, side)
    context = GuidanceContext(None, schedule, shape, conditioner)
    guidance = ClassifierFreeGuidance(scale=SCALE).prepare(context)
    x, t = torch.randn(n, *shape), torch.tensor([999, 500, 20])
    with torch.no_grad():
        eps_c = net(x, t, {"vector": table[LABELS]})
        eps_u = net(x, t, {"vector": null.expand(n, -1)})
        denoise = GuidedDenoiser(net, objective.parameterization, schedule, cond, uncond, guidance)
        _, eps = denoise.predict(x, t)
    assert (eps_c - eps_u).abs().max() > 1e-2 * eps_u.abs().max()  # the label matters: a real check
    torch.testing.assert_close(eps, eps_u + SCALE * (eps_c - eps_u), rtol=1e-4, atol=1e-4)  # B vs 2B batch

    calls = _record_conds(net)  # the sampling path: every step's batched pass is [labels; null]
    sampler = instantiate(cfg.module.sampler, steps=3)
    generate_latents(net, conditioner, schedule, objective.parameterization, sampler, condition, shape, n,
                     guidance=guidance)
    assert len(calls) == 3
    for call in calls:
        assert torch.equal(call["vector"], torch.cat([table[LABELS], null.expand(n, -1)]))


def test_training_drops_labels_to_the_null_row_with_p_uncond():
    """In training each sample's vector is its label's row or, with probability p_uncond, the null
    row; the loss reaches the null row (its gradient is nonzero)."""
    cfg, net, conditioner = _model("dit", "conditioner.p_uncond=0.5")
    model = nn.ModuleDict({"backbone": net, "conditioner": conditioner}).train()
    calls = _record_conds(net)
    labels = torch.arange(64) % 10
    side = cfg.data.resolution // cfg.first_stage_downsample_factor
    x0 = torch.randn(64, cfg.first_stage_embed_dim, side, side)
    loss = instantiate(cfg.module.objective)(model, x0, {"label": labels}, instantiate(cfg.module.schedule))
    loss.backward()
    table = conditioner.embedders.label.table.weight
    (vector,) = (call["vector"] for call in calls)
    dropped = (vector == table[10]).all(dim=1)
    assert torch.equal(vector[~dropped], table[labels][~dropped])
    assert 16 < int(dropped.sum()) < 48  # Binomial(64, 0.5): outside with probability < 1e-4
    assert table.grad[10].abs().sum() > 0
