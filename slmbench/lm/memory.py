"""Peak memory of one trial: host resident memory sampled while it runs, and on CUDA the GPU's own counter."""

from __future__ import annotations

import contextlib
import gc
import threading


def current_rss_bytes() -> int:
    """Resident set size of this process now (psutil: Linux, macOS and Windows alike)."""
    import psutil

    return psutil.Process().memory_info().rss


def release_freed_memory() -> None:
    """Hand memory freed by the allocator back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Tensors of ever-changing shapes leave free holes in the heap that stay resident: without this,
    resident memory creeps up over a run, far above what is in use.
    """
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):  # no glibc: nothing to hand back
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class PeakMemory:
    """Context manager measuring the peak memory a block adds on top of what was in use before.

    Host memory is resident memory sampled while the block runs; garbage and freed heap memory are
    released first, otherwise a block could reuse memory an earlier one freed but left resident, and
    look as if it needed almost none. On CUDA the accelerator's own figure is measured too, on the
    block's device: the peak memory reserved by torch's caching allocator (what the GPU cannot give
    to anything else), beside the host's.

    ``peak_added_bytes`` is the figure of the device the models run on (the GPU's on CUDA, else the
    host's); ``host_added_bytes`` and ``accelerator_added_bytes`` (None off CUDA) are both.
    """

    def __init__(self, device: str = "cpu", interval_seconds: float = 0.05) -> None:
        self.device = device
        self.interval = interval_seconds
        self.host_added_bytes = 0
        self.accelerator_added_bytes: int | None = None
        self._peak = 0
        self._stop = threading.Event()

    @property
    def peak_added_bytes(self) -> int:
        return self.host_added_bytes if self.accelerator_added_bytes is None else self.accelerator_added_bytes

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, current_rss_bytes())

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self._accelerator_baseline = torch.cuda.memory_reserved(self.device)
        gc.collect()
        release_freed_memory()
        self._baseline = self._peak = current_rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.host_added_bytes = max(0, max(self._peak, current_rss_bytes()) - self._baseline)
        if self.device.startswith("cuda"):
            import torch

            self.accelerator_added_bytes = max(0, torch.cuda.max_memory_reserved(self.device) - self._accelerator_baseline)


def free_accelerator_memory() -> None:
    """Collect garbage and hand the CUDA caching allocator's unused blocks back (after every trial)."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
