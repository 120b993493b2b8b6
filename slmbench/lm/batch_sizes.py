"""Inference batch sizes that scale with the device.

The profiles' sizes (scoring ``batch_size``, validation 32, encoding 64) are set for a CPU, where a
larger batch gains nothing. A GPU is only busy with many rows at once, so on CUDA the inference
batches are multiplied by the GPU's memory over 10 GiB, rounded down to a power of two, from 1 to 8:
x1 on a 16 GB T4, x2 on a 24 GB A10 or L4, x4 on a 40 GB A100, x8 on an 80 GB A100 or H100.
Training batches are not scaled: the profile's batch size is part of the protocol, the same on every
device (an update with 16 examples is not one with 128).
"""

from __future__ import annotations

GIB_PER_STEP = 10
MAX_SCALE = 8


def device_scale(device: str) -> int:
    """How many times the CPU-sized inference batches fit ``device`` (1 off CUDA)."""
    if not device.startswith("cuda"):
        return 1
    from slmbench.lm.hardware import gpu_properties

    memory = gpu_properties(device).total_memory
    scale = 1
    while scale * 2 <= min(MAX_SCALE, memory / 2**30 / GIB_PER_STEP):
        scale *= 2
    return scale


def inference_batch_size(base: int, device: str) -> int:
    """``base`` (a CPU-sized batch of texts to score or encode) scaled to ``device``."""
    return base * device_scale(device)
