"""The hardware probes: sane values, and no crash where a probe is missing."""

from __future__ import annotations

import torch

from slmbench.lm import hardware


def test_hardware_info_is_a_plain_dict_of_sane_values():
    info = hardware.hardware_info()
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert isinstance(info["cpu_features"]["amx"], bool)
    assert isinstance(info["cpu_features"]["avx512_bf16"], bool)
    assert info["torch_threads"] >= 1
    assert set(info["matmul_peak_gflops"]) == {"float32", "bfloat16"}
    assert all(gflops > 0 for gflops in info["matmul_peak_gflops"].values())


def test_peak_is_measured_in_the_requested_dtype():
    assert hardware.matmul_peak_gflops(torch.float32, size=64, repeats=1) > 0
    assert hardware.matmul_peak_gflops(torch.bfloat16, size=64, repeats=1) > 0


def test_features_fall_back_to_torch_then_to_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "_CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: 1 / 0, raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    features = hardware.cpu_features()
    assert features["amx"] is False and features["avx512_bf16"] is False
    assert hardware.native_bfloat16_cpu() is False
    assert hardware.cpu_model()


def test_features_come_from_the_cpu_flags_when_listed(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU 9000\nflags\t\t: fpu avx512f amx_tile\n")
    monkeypatch.setattr(hardware, "_CPUINFO", cpuinfo)
    assert hardware.cpu_model() == "Test CPU 9000"
    features = hardware.cpu_features()
    assert features["amx"] and features["avx512"] and not features["avx512_bf16"]
    assert hardware.native_bfloat16_cpu()
