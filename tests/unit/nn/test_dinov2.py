"""DINOv2 ViT: the hub model's forward written out, its position resampling in closed form, and
the hub / timm weights layouts (loaded to identical outputs; anything else refused by key)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ldmlab.nn.dinov2 import DINOv2, load_dinov2, resample_positions
from ldmlab.utils.errors import FieldError

SMALL = {"depth": 2, "dim": 64, "num_heads": 4}


def randomised(model: DINOv2, seed: int = 0) -> DINOv2:
    """Every parameter drawn: LayerScale γ in [0.5, 1.5], LayerNorm scales around 1, the rest N(0, s²)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                std = 1.0 if name in ("cls_token", "pos_embed") else 0.05
                p.copy_(std * torch.randn(p.shape, generator=gen))
    return model.eval()


def save_hub(model: DINOv2, path: Path) -> Path:
    """torch hub's layout: the module's keys plus the (unused) mask token (1, dim)."""
    state = {**model.state_dict(), "mask_token": torch.randn(1, model.cls_token.shape[-1])}
    torch.save(state, path)
    return path


def save_timm(model: DINOv2, path: Path) -> Path:
    """timm's layout (vit_large_patch14_dinov2 without head), as safetensors."""
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def reference_cls(state: dict[str, torch.Tensor], images: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The hub model's forward for an input on the stored grid, in float64 from the state dict."""
    s = {k: v.double() for k, v in state.items()}
    dim, depth = s["cls_token"].shape[-1], 1 + max(int(k.split(".")[1]) for k in s if k.startswith("blocks."))

    def norm(x: torch.Tensor, prefix: str) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + 1e-6) * s[f"{prefix}.weight"] \
            + s[f"{prefix}.bias"]

    def linear(x: torch.Tensor, prefix: str) -> torch.Tensor:
        return x @ s[f"{prefix}.weight"].T + s[f"{prefix}.bias"]

    patches = F.conv2d(images.double(), s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=14)
    x = torch.cat([s["cls_token"].expand(len(images), -1, -1), patches.flatten(2).transpose(1, 2)], 1)
    x = x + s["pos_embed"]
    b, n, hd = len(x), x.shape[1], dim // num_heads
    for i in range(depth):
        q, k, v = linear(norm(x, f"blocks.{i}.norm1"), f"blocks.{i}.attn.qkv").view(b, n, 3, num_heads, hd) \
            .permute(2, 0, 3, 1, 4)
        attended = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1) @ v
        attended = attended.transpose(1, 2).reshape(b, n, dim)
        x = x + s[f"blocks.{i}.ls1.gamma"] * linear(attended, f"blocks.{i}.attn.proj")
        hidden = linear(norm(x, f"blocks.{i}.norm2"), f"blocks.{i}.mlp.fc1")
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
        x = x + s[f"blocks.{i}.ls2.gamma"] * linear(hidden, f"blocks.{i}.mlp.fc2")
    return norm(x, "norm")[:, 0]


def bicubic_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """(n_out, n_in) weights of torch's bicubic (a = −0.75, align_corners=False, edge-clamped)
    for the scale factor ``scale``: output i reads source coordinate (i + ½) / scale − ½."""
    def cubic(t: float, a: float = -0.75) -> float:
        t = abs(t)
        if t >= 2:
            return 0.0
        return ((a + 2) * t - (a + 3)) * t * t + 1 if t <= 1 else a * (t**3 - 5 * t**2 + 8 * t - 4)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) / scale - 0.5
        base = math.floor(src)
        for k in range(-1, 3):
            weights[i, min(max(base + k, 0), n_in - 1)] += cubic(src - (base + k))
    return weights


def test_forward_is_the_hub_models_normed_cls_token() -> None:
    model = randomised(DINOv2(**SMALL, grid=2))
    images = torch.randn(3, 3, 28, 28)
    out = model(images)
    assert out.shape == (3, 64) and out.dtype == torch.float32
    # In float64 the two agree to rounding: GELU's form, LayerNorm's ε, the attention scale all show.
    expected = reference_cls(model.state_dict(), images, 4)
    torch.testing.assert_close(model.double()(images.double()), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)


def test_positions_on_the_stored_grid_are_used_as_stored() -> None:
    model = randomised(DINOv2(**SMALL))
    assert resample_positions(model.pos_embed, 37, 37, 37) is model.pos_embed
    small = randomised(DINOv2(**SMALL, grid=2))
    assert resample_positions(small.pos_embed, 2, 2, 2) is small.pos_embed


@pytest.mark.parametrize(("rows", "cols"), [(16, 16), (16, 12), (40, 37), (37, 16)])
def test_position_resampling_matches_the_hub_formula(rows: int, cols: int) -> None:
    grid, dim = 37, 8
    pos = torch.randn(1, 1 + grid * grid, dim)
    out = resample_positions(pos, grid, rows, cols)
    assert out.shape == (1, 1 + rows * cols, dim)
    assert torch.equal(out[:, 0], pos[:, 0])
    w_rows = bicubic_matrix(grid, rows, (rows + 0.1) / grid)
    w_cols = bicubic_matrix(grid, cols, (cols + 0.1) / grid)
    table = pos[0, 1:].double().numpy().reshape(grid, grid, dim)
    expected = np.einsum("ri,ijd,cj->rcd", w_rows, table, w_cols).reshape(rows * cols, dim)
    np.testing.assert_allclose(out[0, 1:].numpy(), expected, rtol=1e-5, atol=1e-5)
    # The +0.1 offset matters: resampling to the output size alone is measurably different.
    by_size = np.einsum("ri,ijd,cj->rcd", bicubic_matrix(grid, rows, rows / grid), table,
                        bicubic_matrix(grid, cols, cols / grid)).reshape(rows * cols, dim)
    assert np.abs(by_size - expected).max() > 1e-3


def test_forward_at_224_uses_the_resampled_positions() -> None:
    model = randomised(DINOv2(**SMALL))
    images = torch.randn(2, 3, 224, 224)
    state = {**model.state_dict(), "pos_embed": resample_positions(model.pos_embed.detach(), 37, 16, 16)}
    expected = reference_cls(state, images, 4)
    torch.testing.assert_close(model.double()(images.double()), expected, rtol=1e-10, atol=1e-10)


def test_sides_must_be_multiples_of_the_patch() -> None:
    with pytest.raises(ValueError, match="multiples of 14"):
        DINOv2(**SMALL, grid=2)(torch.randn(1, 3, 28, 30))


def test_hub_and_timm_layouts_load_to_identical_outputs(tmp_path: Path) -> None:
    model = randomised(DINOv2(**SMALL))
    hub = load_dinov2(save_hub(model, tmp_path / "dinov2_vitl14_pretrain.pth"), **SMALL)
    timm = load_dinov2(save_timm(model, tmp_path / "model.safetensors"), **SMALL)
    images = torch.randn(2, 3, 224, 224)
    expected = model(images)
    assert torch.equal(hub(images), expected) and torch.equal(timm(images), expected)
    assert not hub.training and not any(p.requires_grad for p in hub.parameters())


def _without(state: dict, key: str) -> dict:
    return {k: v for k, v in state.items() if k != key}


BAD_STATES = {
    "missing": (lambda s: _without(s, "blocks.1.ls2.gamma"), "blocks.1.ls2.gamma"),
    "extra head": (lambda s: {**s, "head.weight": torch.zeros(1000, 64)}, "head.weight"),
    "registers": (lambda s: {**s, "reg_token": torch.zeros(1, 4, 64)}, "reg_token"),
    "grid": (lambda s: {**s, "pos_embed": torch.zeros(1, 1 + 16 * 16, 64)}, r"pos_embed \(1, 257, 64\)"),
    "deeper": (lambda s: {**s, **{k.replace("blocks.1.", "blocks.2."): v for k, v in s.items()
                                  if k.startswith("blocks.1.")}}, "blocks.2."),
}


@pytest.mark.parametrize("case", BAD_STATES)
def test_other_layouts_are_refused_naming_the_key(tmp_path: Path, case: str) -> None:
    edit, named = BAD_STATES[case]
    path = tmp_path / "bad.pth"
    torch.save(edit(randomised(DINOv2(**SMALL)).state_dict()), path)
    message = rf"^metrics\.dinov2_weights: .*{named}.* Fix: point metrics\.dinov2_weights at"
    with pytest.raises(FieldError, match=message):
        load_dinov2(path, **SMALL)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "no weights file"),
    (b"not a checkpoint" * 8, "refused by the weights-only loader"),
    ([torch.zeros(1)], "holds a list"),
])
def test_unreadable_files_are_refused_naming_the_key(tmp_path: Path, content: object, problem: str) -> None:
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(FieldError, match=rf"^metrics\.dinov2_weights: .*{problem}"):
        load_dinov2(path, **SMALL)


@pytest.mark.slow
def test_vit_l14_builds_with_the_hub_models_size_and_width() -> None:
    model = DINOv2().eval()
    # patch conv 3·14²·1024 + 1024, CLS 1024, positions 1370·1024, 24 blocks of 12 598 272, final norm 2048
    # (the hub checkpoint's 304 368 640 less its 1024-wide mask token).
    assert sum(p.numel() for p in model.parameters()) == 304_367_616
    with torch.no_grad():
        out = model(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 1024) and torch.isfinite(out).all()
    # The final LayerNorm at its initial weight 1, bias 0: every row has mean 0.
    torch.testing.assert_close(out.mean(-1), torch.zeros(2), atol=1e-5, rtol=0)
