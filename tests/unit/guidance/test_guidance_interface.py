"""The guidance/sampler interface: guidance never knows a sampler, it is split into output and
gradient terms once, and ``prepare`` returns a bound guidance without changing the configured one."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from ldmlab.diffusion.schedules.linear import LinearSchedule
from ldmlab.guidance.base import BoundGuidance, GradientGuidance, GradientTerm, GuidanceContext
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.guidance.composite import CompositeGuidance
from ldmlab.guidance.none import NoGuidance

GUIDANCE = Path(__file__).resolve().parents[3] / "src" / "ldmlab" / "guidance"


class Toward(GradientGuidance):
    """log p = −‖x_t − target‖²; ``bind`` moves the target to the schedule's device."""

    name = "toward"

    def __init__(self, scale: float, target: float = 0.0) -> None:
        self.scale, self.target = scale, torch.tensor(target)

    def bind(self, context):
        target = self.target.to(context.schedule.alphas_cumprod.device)
        return lambda x_t, t, x0, condition: -(x_t - target).square().flatten(1).sum(1)


class Labelled:
    embedders = {"label": object()}


CONTEXT = GuidanceContext(None, LinearSchedule(), (1, 2, 2), Labelled())


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def test_guidance_imports_no_sampler():
    """Samplers declare how a gradient enters their step; guidance must not know them (nor
    ``ldmlab.sampling`` at all: sampling imports guidance, the reverse would be a cycle)."""
    files = sorted(GUIDANCE.glob("*.py"))
    assert files
    for path in files:
        sampling = sorted(m for m in imported_modules(path) if m.startswith("ldmlab.sampling"))
        assert not sampling, f"{path.name} imports {sampling}"


def test_terms_are_split_once_by_kind():
    cfg, a, b = ClassifierFreeGuidance(3.0), Toward(1.0), Toward(2.0)
    composite = CompositeGuidance({"a": a, "cfg": cfg, "b": b}, sweep="a")
    assert composite.output_terms == (cfg,) and composite.gradient_terms == (a, b)
    assert cfg.output_terms == (cfg,) and cfg.gradient_terms == ()
    assert a.output_terms == () and a.gradient_terms == (a,)
    assert NoGuidance().output_terms == () == NoGuidance().gradient_terms


def test_prepare_returns_a_bound_guidance_and_leaves_the_guidance_as_it_was():
    a, cfg = Toward(1.5, 2.0), ClassifierFreeGuidance(3.0)
    composite = CompositeGuidance({"a": a, "cfg": cfg, "off": Toward(0.0)}, sweep="cfg")
    before = {id(term): dict(vars(term)) for term in (a, cfg, composite)}
    bound = composite.prepare(CONTEXT)
    assert {id(term): dict(vars(term)) for term in (a, cfg, composite)} == before
    assert isinstance(bound, BoundGuidance) and bound.mixing is cfg
    assert [term.scale for term in bound.gradients] == [1.5, 0.0]
    assert [term.scale for term in bound.active_gradients] == [1.5]
    (term, _) = bound.gradients
    assert isinstance(term, GradientTerm) and not term.needs_model_grad
    x = torch.full((1, 1, 2, 2), 2.0)
    assert torch.equal(term.log_prob(x, torch.zeros(1), x, {}), torch.zeros(1))
    assert ClassifierFreeGuidance(1.0).prepare(CONTEXT).mixing is None  # s = 1: no unconditional pass
    assert NoGuidance().prepare(CONTEXT) == BoundGuidance()
