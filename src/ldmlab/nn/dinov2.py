"""DINOv2 ViT (Oquab et al., 2023) as torch hub's ``dinov2_vitl14``: images → normed CLS token.

Architecture (defaults = ViT-L/14): 14 × 14 patch conv, a CLS token, learned absolute positions
for a ``grid`` × ``grid`` patch grid (37 = 518 px) plus the CLS, ``depth`` pre-norm blocks
``x + γ₁·attn(LN(x))``, ``x + γ₂·mlp(LN(x))`` (LayerScale γ, exact GELU, LayerNorm ε = 1e-6),
a final LayerNorm. The hub model's head is the identity, so its output is the normed CLS token.

Positions for another patch grid (rows, cols) are resampled as the hub model does: bicubic
(a = −0.75, align_corners=False, no antialias) with ``scale_factor = ((rows + 0.1) / grid,
(cols + 0.1) / grid)``, i.e. source coordinate ``(i + 0.5) · grid / (rows + 0.1) − 0.5``; the
stored grid is used as is. The CLS position is never resampled.

Weights files (read weights-only): torch hub's ``dinov2_vitl14_pretrain.pth`` layout (this
module's keys plus the unused ``mask_token`` (1, dim)) or timm's ``vit_large_patch14_dinov2``
(this module's keys exactly: same names, ``ls*.gamma``, ``pos_embed`` including the CLS, no
registers, no head). Anything else is refused naming ``metrics.dinov2_weights``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from ldmlab.nn.patches import PatchEmbed
from ldmlab.nn.vit import Attention
from ldmlab.utils.errors import FieldError
from ldmlab.utils.pretrained import StateDict, load_state_dict_file
from ldmlab.utils.torch_files import refusal_reason

INTERPOLATE_OFFSET = 0.1  # the hub model's historical kludge, kept: it moves the sampling grid
HUB_ONLY_KEYS = ("mask_token",)  # masked-image-modelling token of the hub layout; unused here
_FIX = (
    "point {key} at torch hub's dinov2_vitl14_pretrain.pth or timm's vit_large_patch14_dinov2.lvd142m "
    "weights (.pth or .safetensors)"
)


class LayerScale(nn.Module):
    """x · γ per channel; (…, dim) → (…, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Linear → GELU (exact erf form, as DINOv2) → Linear; (B, N, dim) → (B, N, dim)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches; (B, N, dim)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def resample_positions(pos_embed: torch.Tensor, grid: int, rows: int, cols: int) -> torch.Tensor:
    """(1, 1 + grid², dim) → (1, 1 + rows · cols, dim), as the hub model resamples (module docstring)."""
    if (rows, cols) == (grid, grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    patches = pos_embed[:, 1:].float().reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
    scale = ((rows + INTERPOLATE_OFFSET) / grid, (cols + INTERPOLATE_OFFSET) / grid)
    patches = F.interpolate(patches, scale_factor=scale, mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, dim).to(pos_embed.dtype)
    return torch.cat([pos_embed[:, :1], patches], dim=1)


class DINOv2(nn.Module):
    """DINOv2 ViT: images (B, 3, H, W), H and W multiples of ``patch_size``, normalised as the
    model was trained (ImageNet mean/std) → normed CLS token (B, dim)."""

    def __init__(
        self, depth: int = 24, dim: int = 1024, num_heads: int = 16, patch_size: int = 14,
        grid: int = 37, mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.patch_size, self.grid = patch_size, grid
        self.patch_embed = PatchEmbed(3, dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"DINOv2 takes images whose sides are multiples of {p}, got {h}×{w}")
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), self.patch_embed(images)], dim=1)
        x = tokens + resample_positions(self.pos_embed, self.grid, h // p, w // p)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])  # LayerNorm is per token: the CLS row of norm(x)


def load_dinov2(path: str | Path, **architecture: int) -> DINOv2:
    """A ``DINOv2(**architecture)`` in eval mode, no gradients, from a hub- or timm-layout file at
    ``path``; ``FieldError`` on ``metrics.dinov2_weights`` when the file is absent, unreadable
    weights-only, or of another layout or size."""
    model = DINOv2(**architecture)
    model.load_state_dict(_module_layout(_read(path), model))
    return model.eval().requires_grad_(False)


def _read(path: str | Path) -> StateDict:
    try:
        return load_state_dict_file(path)
    except FileNotFoundError:
        problem = f"no weights file at {path}"
    except ValueError as err:  # a weights-only file holding something else
        problem = f"{path} {err}"
    except SafetensorError as err:
        problem = f"{path} is not a readable safetensors file ({err})"
    except Exception as err:  # noqa: BLE001 - whatever the weights-only loader refuses, the file is at fault
        problem = f"{path} is refused by the weights-only loader ({refusal_reason(path, err)})"
    raise FieldError("metrics", "dinov2_weights", problem, _FIX)


def _module_layout(state: StateDict, model: DINOv2) -> StateDict:
    """``state`` (hub or timm layout) under the module's keys; refuses any other layout."""
    dim = model.cls_token.shape[-1]
    hub_only = {k: state[k] for k in HUB_ONLY_KEYS if k in state and state[k].shape == (1, dim)}
    given = {k: v for k, v in state.items() if k not in hub_only}
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & given.keys() if given[k].shape != expected[k])
    if missing or unexpected or reshaped:
        shapes = "; ".join(f"{k} {tuple(given[k].shape)} ≠ {tuple(expected[k])}" for k in reshaped[:3])
        raise FieldError(
            "metrics", "dinov2_weights",
            f"not a DINOv2 ViT state dict of depth {len(model.blocks)}, width {dim}, patch "
            f"{model.patch_size}, {model.grid}×{model.grid} positions (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape [{shapes}]; "
            f"{len(missing)}/{len(unexpected)}/{len(reshaped)} in all)",
            _FIX,
        )
    return given
