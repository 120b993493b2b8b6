"""The hardware probes: sane values, and no crash where a probe is missing."""

from __future__ import annotations

import pytest
import torch

from slmbench.lm import hardware
from slmbench.records import Hardware


def test_hardware_info_is_the_typed_record_of_sane_values():
    info = hardware.hardware_info()
    assert isinstance(info, Hardware)
    assert isinstance(info.cpu_model, str) and info.cpu_model
    assert info.cpu_features is not None
    assert isinstance(info.cpu_features.amx, bool) and isinstance(info.cpu_features.avx512_bf16, bool)
    assert info.torch_threads is not None and info.torch_threads >= 1
    assert set(info.matmul_peak_gflops) == {"float32", "bfloat16"}
    assert all(gflops > 0 for gflops in info.matmul_peak_gflops.values())
    assert hardware.hardware_info(measure_peaks=False).matmul_peak_gflops == {}


class RecordMatmuls(torch.overrides.TorchFunctionMode):
    """Records (shape, dtype) of both operands of every matrix product run while it is active."""

    MATMULS = (torch.Tensor.__matmul__, torch.Tensor.matmul, torch.matmul, torch.mm)

    def __init__(self) -> None:
        super().__init__()
        self.operands: list[tuple[tuple[tuple[int, ...], torch.dtype], ...]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.MATMULS:
            self.operands.append(tuple((tuple(a.shape), a.dtype) for a in args[:2]))
        return func(*args, **(kwargs or {}))


def test_peak_is_measured_in_the_requested_dtype():
    for requested, expected in [(torch.bfloat16, torch.bfloat16), (torch.float32, torch.float32), (None, torch.float32)]:
        with RecordMatmuls() as recorder:
            peak = hardware.matmul_peak_gflops(requested, size=64, repeats=2)
        assert peak > 0
        # the probe then the measurement, each a warm-up and 2 timed products (64 is under the probe's size)
        assert recorder.operands == [(((64, 64), expected), ((64, 64), expected))] * 6, requested


def test_a_slow_dtype_is_measured_on_matrices_small_enough_to_take_about_a_second(monkeypatch):
    sizes = []

    def seconds(size, dtype, repeats):  # bf16 emulated without bf16 units: about 0.7 GFLOP/s
        sizes.append(size)
        return 0.05 * (size / hardware.PROBE_SIZE) ** 3

    monkeypatch.setattr(hardware, "_best_seconds", seconds)
    peak = hardware.matmul_peak_gflops(torch.bfloat16, size=1536, repeats=5)
    probe, measured = sizes
    assert probe == hardware.PROBE_SIZE and hardware.PROBE_SIZE < measured < 1536
    assert 6 * seconds(measured, None, 5) <= hardware.PEAK_SECONDS * 1.01  # a warm-up and 5 timed
    assert peak == pytest.approx(2 * measured**3 / seconds(measured, None, 5) / 1e9)


def test_features_fall_back_to_torch_then_to_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "_CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: 1 / 0, raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    features = hardware.cpu_features()
    assert features.amx is False and features.avx512_bf16 is False
    assert hardware.native_bfloat16_cpu() is False
    assert hardware.cpu_model()


def test_features_come_from_the_cpu_flags_when_listed(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU 9000\nflags\t\t: fpu avx512f amx_tile\n")
    monkeypatch.setattr(hardware, "_CPUINFO", cpuinfo)
    assert hardware.cpu_model() == "Test CPU 9000"
    features = hardware.cpu_features()
    assert features.amx and features.avx512 and not features.avx512_bf16
    assert hardware.native_bfloat16_cpu()
