"""trainer.precision=auto resolution and float32 reconstruction metrics under bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from ldmlab.metrics.reconstruction import ReconstructionMetrics
from ldmlab.nn.lpips import LPIPS
from ldmlab.utils import precision as precision_module
from ldmlab.utils.precision import resolve_precision


@pytest.mark.parametrize("explicit", ["32-true", "bf16-mixed", "16-mixed", 32])
def test_explicit_precision_is_unchanged(explicit) -> None:
    assert resolve_precision(explicit, "cpu") == explicit


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", "auto") == expected
    assert resolve_precision("auto", "cpu") == expected


@pytest.mark.parametrize("bf16, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_gpu_follows_cuda_bf16_support(monkeypatch, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: not bf16)
    assert resolve_precision("auto", "gpu") == expected
    assert resolve_precision("auto", "auto") == expected


def test_auto_on_cpu_ignores_an_available_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"


def test_reconstruction_metrics_stay_float32_under_bf16_autocast() -> None:
    lpips = LPIPS(pretrained=False).eval()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    x_rec = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)

    reference = ReconstructionMetrics(lpips)
    reference.update(x, x_rec)
    expected = reference.compute()

    under_autocast = ReconstructionMetrics(lpips)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast.update(x, x_rec.bfloat16())
    got = under_autocast.compute()
    # the bf16 input itself is rounded (≈ 0.4 % relative); the metric arithmetic must not add to it
    x_rounded = ReconstructionMetrics(lpips)
    x_rounded.update(x, x_rec.bfloat16().float())
    rounded = x_rounded.compute()
    for key in expected:
        assert got[key].dtype == torch.float32
        assert torch.allclose(got[key], rounded[key], rtol=1e-6, atol=1e-7), key
    assert torch.allclose(got["psnr"], expected["psnr"], atol=0.05)
