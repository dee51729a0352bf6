"""Case 2b: the DiT alone, the SAME weights in both: one training step and one CFG forward (2B batch).

ours: ``conf/backbone/dit.yaml`` composed with ``conditioner=class_vector`` (the label table as wide as
hidden_size, added to the time embedding), fed ``table[labels]``; theirs: ``DiTTransformer2DModel``
from ``ldmlab.interop.dit.to_diffusers_dit`` (it embeds the labels itself, in every block). Zero-
initialised weights (adaLN-Zero, final layer) are re-drawn first and the outputs must agree (else the
run stops), so both sides time the same maths. Both tables train (theirs drops 10 % of the labels in
training mode, as its embedder does; ours is fed the labels as given); the CFG null is row ``num_classes``.
"""

from __future__ import annotations

from functools import partial

import torch
from hydra.utils import instantiate
from torch import nn

from ldmlab.interop.dit import assert_same_dit_outputs, label_table, to_diffusers_dit
from ldmlab.optim.optimizers import build_optimizer
from sbs.case_ddim import redraw_zero_weights
from sbs.case_unet import cfg_forward, train_step
from sbs.common import Row, Settings, compare
from sbs.models import compose_config, params

TRAIN_TARGET, CFG_TARGET = 1.0, 1.0  # the same maths: parity at least
BATCH = 64


def _inputs(batch: int, channels: int, side: int, num_classes: int, device: str):
    """x (B, C, s, s), t (B,), labels (B,), the null index (B,), ε like x."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=g).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    labels = torch.randint(0, num_classes, (batch,), generator=g).to(device)
    null = torch.full((batch,), num_classes).to(device)
    return x, t, labels, null, torch.randn_like(x)


def ours_forward(net: nn.ModuleDict, x, t, labels):
    return net["dit"](x, t, {"vector": net["labels"].table(labels)})


def theirs_forward(net, x, t, labels):
    return net(x, timestep=t, class_labels=labels, return_dict=False)[0]


def run(s: Settings) -> list[Row]:
    cfg = compose_config("train_ldm", ["backbone=dit", "conditioner=class_vector"])
    torch.manual_seed(0)
    dit, labels = instantiate(cfg.backbone).eval(), label_table(instantiate(cfg.conditioner))
    redraw_zero_weights(dit)
    theirs = to_diffusers_dit(dit, labels).to(s.device)
    ours = nn.ModuleDict({"dit": dit, "labels": labels}).to(s.device).eval()
    batch = 2 if s.quick else BATCH
    x, t, classes, null, noise = _inputs(batch, dit.in_channels, dit.input_size, labels.num_classes, s.device)
    # fp32 eval, labels and the null row: a conversion bug stops the run here
    diff = assert_same_dit_outputs(dit, labels, theirs, torch.cat([x, x]), torch.cat([t, t]),
                                   torch.cat([classes, null]))
    check = {"agreement": "PASS", "max_abs_diff": f"{diff:.2e}"}
    # ours: the configured optimiser as the modules build it; theirs: AdamW as diffusers' examples
    precision = "bf16-mixed" if s.dtype == "bf16" else "32-true"
    ours_optimizer = partial(build_optimizer, instantiate(cfg.module.optimizer), key="module.optimizer",
                             precision=precision)
    opt = cfg.module.optimizer
    theirs_optimizer = partial(torch.optim.AdamW, lr=opt.lr, weight_decay=opt.weight_decay)
    counts = (params(ours), params(theirs))  # theirs: + (depth − 1) copies of the time MLP and table
    rows = []
    ours.train(), theirs.train()
    rows.append(compare(
        "dit_train", "DiT backbone=dit training step (fwd+MSE+bwd+AdamW)", batch,
        train_step(ours, ours_forward, x, t, classes, noise, s, ours_optimizer),
        train_step(theirs, theirs_forward, x, t, classes, noise, s, theirs_optimizer), counts,
        TRAIN_TARGET, s, **check))
    ours.eval(), theirs.eval()
    rows.append(compare(
        "dit_cfg", f"DiT backbone=dit CFG forward (2B={2 * batch}, no grad)", batch,
        cfg_forward(ours, ours_forward, x, t, classes, null, s),
        cfg_forward(theirs, theirs_forward, x, t, classes, null, s), counts, CFG_TARGET, s, **check))
    return rows
