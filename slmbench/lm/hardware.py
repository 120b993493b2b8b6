"""What the hardware can do: CPU model, its bf16 matrix units, and the matmul peak measured in-process.

Speed figures are only meaningful against what the machine offers at the time of the run, so the
peak is measured, not looked up: a large square matmul, best of a few, about a second in all. The
feature probes never raise: on another OS or torch version a probe that fails reads as "absent".
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from slmbench.records import CpuFeatures, Hardware

_CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(name: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo (Linux), else None."""
    try:
        lines = _CPUINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_model() -> str:
    """The CPU's marketing name (``AMD EPYC ...``) where the OS tells it, else the architecture."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def _torch_probe(name: str) -> bool | None:
    """``torch.cpu.<name>()`` (a private probe), or None when this torch has no such function or it fails."""
    try:
        import torch

        return bool(getattr(torch.cpu, name)())
    except Exception:
        return None


def cpu_features() -> CpuFeatures:
    """``amx`` and ``avx512_bf16`` (native bf16 matrix units) and ``avx512``, plus torch's own capability name.

    The CPU flags of /proc/cpuinfo decide where they exist; elsewhere torch's probes do.
    """
    flags = set((_cpuinfo_field("flags") or "").split())
    probes = {
        "amx": ("amx_tile", "_is_amx_tile_supported"),
        "avx512_bf16": ("avx512_bf16", "_is_avx512_bf16_supported"),
        "avx512": ("avx512f", "_is_avx512_supported"),
    }
    features = {name: (flag in flags) if flags else bool(_torch_probe(probe)) for name, (flag, probe) in probes.items()}
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:
        capability = None
    return CpuFeatures(**features, torch_capability=capability)


PEAK_SECONDS = 1.0
"""About how long one dtype's peak measurement may take. Without bf16 units (AVX2 only) torch emulates
a bf16 matmul at about 1 GFLOP/s: six 1536 x 1536 products took a minute, paid by every run."""
PROBE_SIZE = 256
"""The side of the timed product that sizes the measurement (and the smallest size it shrinks to)."""


def matmul_peak_gflops(dtype: Any = None, size: int = 1536, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size`` x ``size`` matmul in ``dtype`` (default fp32) on the
    CPU; on smaller matrices where a timed ``PROBE_SIZE`` product says these would take over ``PEAK_SECONDS``."""
    import torch

    dtype = dtype or torch.float32
    probe = _best_seconds(min(size, PROBE_SIZE), dtype, repeats=2)
    affordable = PROBE_SIZE * (PEAK_SECONDS / (repeats + 1) / max(probe, 1e-9)) ** (1 / 3)
    size = min(size, max(PROBE_SIZE, int(affordable)))
    return 2 * size**3 / _best_seconds(size, dtype, repeats) / 1e9


def _best_seconds(size: int, dtype: Any, repeats: int) -> float:
    """The fastest of ``repeats`` timed ``size`` x ``size`` products, after one untimed (warm-up)."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return best


def hardware_info(measure_peaks: bool = True) -> Hardware:
    """CPU model, features, thread count and (unless ``measure_peaks`` is false) the fp32 and bf16 matmul peaks."""
    import torch

    peaks = (
        {"float32": round(matmul_peak_gflops(torch.float32), 1), "bfloat16": round(matmul_peak_gflops(torch.bfloat16), 1)}
        if measure_peaks
        else {}
    )
    return Hardware(cpu_model=cpu_model(), cpu_features=cpu_features(), torch_threads=torch.get_num_threads(), matmul_peak_gflops=peaks)


def gpu_properties(device: str) -> Any:
    """torch's properties of the CUDA device ``device`` names (``cuda:1``; plain ``cuda``: the current one)."""
    import torch

    index = torch.device(device).index
    return torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index)


def native_bfloat16_cpu() -> bool:
    """Whether this CPU has bf16 matrix units (AVX512-BF16 or AMX): bf16 compute is then faster than fp32."""
    features = cpu_features()
    return bool(features.avx512_bf16 or features.amx)
