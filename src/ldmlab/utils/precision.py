"""``trainer.precision: auto``: bf16 mixed precision where the hardware runs it natively."""

from __future__ import annotations

import torch

AUTO = "auto"
BF16_MIXED, FP32 = "bf16-mixed", "32-true"


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 convolutions/matmuls natively (AVX512-BF16 or AMX).

    Without them bf16 is emulated and slower than float32.
    """
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None),
              getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe() for probe in probes if probe is not None)


def resolve_precision(precision: str | int, accelerator: str) -> str | int:
    """Map ``"auto"`` to ``"bf16-mixed"`` on a bf16-capable GPU or CPU, else ``"32-true"``.

    Any other value (``"32-true"``, ``"bf16-mixed"``, ``16``, …) is returned unchanged.
    accelerator: the trainer's ``accelerator`` (``auto``, ``cpu``, ``gpu``, ``cuda``, …).
    """
    if precision != AUTO:
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        return BF16_MIXED if torch.cuda.is_bf16_supported() else FP32
    if accelerator in ("auto", "cpu"):
        return BF16_MIXED if cpu_has_native_bf16() else FP32
    return FP32
