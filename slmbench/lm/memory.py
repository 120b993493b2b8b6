"""Peak memory of one trial: resident memory sampled while it runs (or CUDA's own counter)."""

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
    """Context manager measuring the peak memory a block adds on top of what was resident before.

    On CUDA the accelerator's peak allocation is used instead, as that is what limits a GPU run.
    On CPU, garbage and freed heap memory are released first: otherwise a block could reuse memory
    an earlier one freed but left resident, and look as if it needed almost none.
    """

    def __init__(self, device: str = "cpu", interval_seconds: float = 0.05) -> None:
        self.device = device
        self.interval = interval_seconds
        self.peak_added_bytes = 0
        self._peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, current_rss_bytes())

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
            self._baseline = torch.cuda.memory_allocated()
        else:
            gc.collect()
            release_freed_memory()
            self._baseline = self._peak = current_rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, current_rss_bytes())
        self.peak_added_bytes = max(0, peak - self._baseline)


def free_accelerator_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
