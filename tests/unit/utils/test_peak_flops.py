"""The dense peak table by CUDA device name, the order of the peak's sources, the CPU measurement."""

from __future__ import annotations

import math

import pytest
import torch

from ldmlab.utils import device_peak as peaks
from ldmlab.utils.device_peak import DevicePeak, device_peak, measured_cpu_flops
from ldmlab.utils.peak_flops import GPU_PEAKS, gpu_row, table_flops


@pytest.mark.parametrize(("name", "row"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 SXM5 80GB", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA GH200 480GB", "GH200"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"), ("NVIDIA A100-PCIE-40GB", "A100"),
    ("NVIDIA L40S", "L40S"), ("NVIDIA L40", "L40"), ("NVIDIA L4", "L4"),
    ("NVIDIA A10G", "A10"), ("NVIDIA A10", "A10"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA B200", "B200"),
    ("NVIDIA GeForce RTX 4090 D", None), ("Tesla V100-SXM2-16GB", None), ("NVIDIA A40", None),
])
def test_device_names_find_their_row(name, row):
    assert gpu_row(name) == row


def test_lookup_picks_the_column_of_the_dtype():
    assert table_flops("NVIDIA H100 80GB HBM3", torch.bfloat16) == 989.5e12
    assert table_flops("NVIDIA H100 80GB HBM3", torch.float16) == 989.5e12
    assert table_flops("NVIDIA H100 80GB HBM3", torch.float32, tf32=True) == 494.5e12
    assert table_flops("NVIDIA H100 80GB HBM3", torch.float32) == 67e12
    assert table_flops("NVIDIA A100-SXM4-80GB", torch.bfloat16) == 312e12
    assert table_flops("NVIDIA H200", torch.float64) is None  # no column
    assert table_flops("Tesla V100-SXM2-16GB", torch.float32) is None  # no row


def test_every_row_is_dense_and_ordered():
    """bf16 ≥ tf32 > 0 in every row; sparse figures would put the H200's bf16 near 2 PF."""
    for row, peak in GPU_PEAKS.items():
        assert peak.bf16 >= peak.tf32 > 0 and peak.fp32 > 0, row
    assert GPU_PEAKS["H200"].bf16 < 1000 and GPU_PEAKS["B200"].bf16 == 2250


def test_cpu_peak_is_measured_positive_finite_and_cached(monkeypatch):
    peak = device_peak(torch.device("cpu"), torch.float32)
    assert peak.source == "measured" and 0 < peak.flops < math.inf
    assert peak.device == f"cpu ({torch.get_num_threads()} threads, float32 matmul)"
    monkeypatch.setattr(peaks.torch, "mm", lambda *a: pytest.fail("measured again"))
    assert measured_cpu_flops(torch.float32, torch.get_num_threads()) == peak.flops


def _fake_cuda(monkeypatch, name: str, lightning: int | None):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(peaks, "get_available_flops", lambda device, dtype: lightning)


def test_cuda_peak_prefers_the_table_then_lightning(monkeypatch):
    cuda = torch.device("cuda", 0)
    _fake_cuda(monkeypatch, "NVIDIA H200", lightning=2 * 10**15)
    assert device_peak(cuda, torch.bfloat16) == DevicePeak(989.5e12, "table", "NVIDIA H200")
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert device_peak(cuda, torch.float32).flops == 494.5e12  # tf32
    _fake_cuda(monkeypatch, "Tesla V100-SXM2-16GB", lightning=125 * 10**12)
    assert device_peak(cuda, torch.float16) == DevicePeak(125e12, "lightning", "Tesla V100-SXM2-16GB")
    _fake_cuda(monkeypatch, "Some GPU", lightning=None)
    assert device_peak(cuda, torch.float16) == DevicePeak(None, None, "Some GPU")
