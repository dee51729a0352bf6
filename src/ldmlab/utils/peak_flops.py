"""Peak dense matmul FLOP/s of common GPUs, from the vendors' datasheets, by device name.

Dense, not sparse: NVIDIA's datasheets print Tensor Core rates "with sparsity" (2:4 structured
sparsity, marked *), which dense training never reaches; the table holds half of each starred
figure. Columns: ``bf16`` (bf16 and fp16 Tensor Core matmuls with float32 accumulation, the same
rate on every GPU listed), ``tf32`` (float32 matmuls on Tensor Cores, which torch uses unless
``torch.get_float32_matmul_precision()`` is "highest") and ``fp32`` (float32 on the CUDA cores).
Lightning's own table (``get_available_flops``) holds sparse figures for the H200 and H100 NVL,
misses "NVIDIA H200" as CUDA names it, and gives the RTX 4090 its non-Tensor-Core bf16 rate.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import torch


class Peak(NamedTuple):
    """Dense TFLOP/s of one device."""

    bf16: float
    tf32: float
    fp32: float


# name: Peak, with the datasheet's figures (TFLOP/s; * = with sparsity, halved here)
GPU_PEAKS: dict[str, Peak] = {
    # NVIDIA HGX B200 datasheet, per GPU: FP16/BF16 4.5 PF*, TF32 2.2 PF*, FP32 75 TF
    "B200": Peak(2250.0, 1100.0, 75.0),
    # NVIDIA GH200 Grace Hopper datasheet (GPU): BF16 1979*, TF32 989*, FP32 67
    "GH200": Peak(989.5, 494.5, 67.0),
    # NVIDIA H200 datasheet, H200 NVL column: BF16 1671*, TF32 835*, FP32 60
    "H200 NVL": Peak(835.5, 417.5, 60.0),
    # NVIDIA H200 datasheet, H200 SXM column: BF16 1979*, TF32 989*, FP32 67
    "H200": Peak(989.5, 494.5, 67.0),
    # NVIDIA H100 datasheet, H100 NVL column (per GPU): BF16 1671*, TF32 835*, FP32 60
    "H100 NVL": Peak(835.5, 417.5, 60.0),
    # NVIDIA H100 datasheet, H100 PCIe column: BF16 1513*, TF32 756*, FP32 51
    "H100 PCIe": Peak(756.5, 378.0, 51.0),
    # NVIDIA H100 datasheet, H100 SXM column: BF16 1979*, TF32 989*, FP32 67
    "H100 SXM": Peak(989.5, 494.5, 67.0),
    # NVIDIA A100 datasheet (SXM and PCIe alike): BF16 312 (624*), TF32 156 (312*), FP32 19.5
    "A100": Peak(312.0, 156.0, 19.5),
    # NVIDIA L40S datasheet: BF16 362.05 | 733*, TF32 183 | 366*, FP32 91.6
    "L40S": Peak(362.05, 183.0, 91.6),
    # NVIDIA L40 datasheet: BF16 181.05 | 362.1*, TF32 90.5 | 181*, FP32 90.5
    "L40": Peak(181.05, 90.5, 90.5),
    # NVIDIA L4 datasheet: BF16 242*, TF32 120*, FP32 30.3
    "L4": Peak(121.0, 60.0, 30.3),
    # NVIDIA A10 datasheet: BF16 125 | 250*, TF32 62.5 | 125*, FP32 31.2. The A10G (AWS) has no
    # datasheet of its own; it gets the A10's figures, as Lightning's table does.
    "A10": Peak(125.0, 62.5, 31.2),
    # NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090: BF16 with FP32 accumulate
    # 165.2 | 330.4*, TF32 82.6 | 165.2*, FP32 82.6
    "RTX 4090": Peak(165.2, 82.6, 82.6),
}

# (pattern on the lower-cased CUDA device name, table row); the first match wins
_NAMES: tuple[tuple[str, str], ...] = (
    (r"\bb200\b", "B200"),
    (r"\bgh200\b", "GH200"),
    (r"\bh200\b.*\bnvl\b", "H200 NVL"),
    (r"\bh200\b", "H200"),
    (r"\bh100\b.*\bnvl\b", "H100 NVL"),
    (r"\bh100\b.*\b(pcie|hbm2e)\b", "H100 PCIe"),
    (r"\bh100\b", "H100 SXM"),  # "NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB"
    (r"\ba100\b", "A100"),  # "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"
    (r"\bl40s\b", "L40S"),
    (r"\bl40\b", "L40"),
    (r"\bl4\b", "L4"),
    (r"\ba10g?\b", "A10"),
    (r"\brtx 4090$", "RTX 4090"),  # not the 4090 D or the laptop part
)


def gpu_row(device_name: str) -> str | None:
    """The table row of a CUDA device name (``torch.cuda.get_device_name``), or None."""
    name = device_name.lower().strip()
    return next((row for pattern, row in _NAMES if re.search(pattern, name)), None)


def column(dtype: torch.dtype, tf32: bool) -> str | None:
    """The table column of a compute dtype; ``tf32``: float32 matmuls run on Tensor Cores."""
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16"
    if dtype == torch.float32:
        return "tf32" if tf32 else "fp32"
    return None


def table_flops(device_name: str, dtype: torch.dtype, tf32: bool = False) -> float | None:
    """Dense peak FLOP/s of the named GPU for ``dtype``, or None where the table has no row."""
    row, col = gpu_row(device_name), column(dtype, tf32)
    return getattr(GPU_PEAKS[row], col) * 1e12 if row and col else None
