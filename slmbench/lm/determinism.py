"""Settings that make a seed reproduce on an accelerator, applied before a trial and recorded with it.

On the CPU torch is deterministic already. On CUDA, cuDNN's autotuner and some cuBLAS and atomic
kernels are not: torch's documented recipe (docs "Reproducibility") is applied, with ``warn_only`` so
an operation that has no deterministic kernel warns instead of failing the trial. TF32 matmuls stay
allowed: they are deterministic, just less precise than fp32, and the record says they are on.
"""

from __future__ import annotations

import os

from slmbench.records import Determinism

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
"""cuBLAS's deterministic workspace (read when the first cuBLAS handle is created: set before any GPU work)."""


def apply_determinism(device: str) -> Determinism:
    """Make ``device``'s kernels deterministic where torch can (CUDA), and say what is in force."""
    import torch

    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return Determinism(
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        tf32_matmul=torch.get_float32_matmul_precision() != "highest",
        cublas_workspace_config=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
