"""Progress bars for long loops (encoding, training, predicting), shared by the runner and strategies."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def _bars(own_display: bool) -> Any:
    """A rich ``Progress`` with slmbench's columns, refreshing its own display or shown inside another (``live``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}", markup=False),  # descriptions name strategies: text, not markup
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, transient=True, auto_refresh=own_display)


class ProgressReporter:
    """Thin wrapper over rich.progress; ``enabled=False`` makes every call a no-op (tests, CI logs).

    Inside ``live(top)`` one display shows ``top()`` (the run's leaderboard) above every bar, as rich
    allows one live display at a time; outside it each loop gets a bar of its own.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._shared: Any = None

    @contextmanager
    def live(self, top: Callable[[], Any], console: Any = None) -> Iterator[None]:
        """One live display for the block, on ``console`` (rich's default: stdout): ``top()`` (any rich renderable,
        asked again at each refresh, from rich's refresh thread) above the bars."""
        if not self.enabled:
            yield
            return
        from rich.console import Group
        from rich.live import Live

        bars = _bars(own_display=False)

        class View:
            def __rich__(self) -> Any:
                return Group(top(), bars)

        with Live(View(), console=console, refresh_per_second=2, transient=True):
            self._shared = bars
            try:
                yield
            finally:
                self._shared = None

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """Yield an ``advance(n)`` function for a loop of ``total`` units."""
        if not self.enabled:

            def skip(n: int = 1) -> None:
                pass

            yield skip
            return
        if self._shared is not None:
            shared = self._shared
            task_id = shared.add_task(description, total=total)

            def advance_shared(n: int = 1) -> None:
                shared.advance(task_id, n)

            try:
                yield advance_shared
            finally:
                shared.remove_task(task_id)
            return
        with _bars(own_display=True) as progress:
            task_id = progress.add_task(description, total=total)

            def advance(n: int = 1) -> None:
                progress.advance(task_id, n)

            yield advance

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate over ``items`` with a progress bar."""
        if total is None and isinstance(items, Sized):
            total = len(items)
        with self.task(description, total) as advance:
            for item in items:
                yield item
                advance(1)


LIBRARY_DEPRECATIONS = (
    (r"`past_key_values` is deprecated", FutureWarning),  # transformers 5.2x, for calls inside trl and peft too
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning),  # raised inside trl's trainer
    (r"QMCSampler is experimental", Warning),  # optuna: chosen on purpose for the option search
)
"""Warnings about libraries' internals that a user cannot act on (regexes of their messages)."""


def quiet_libraries(progress_bars: bool) -> None:
    """Keep a run's output to what the run causes.

    Without ``progress_bars`` the libraries' own bars go too (transformers' "Loading weights",
    datasets', the hub's), through the switches they read when first imported. bitsandbytes warns at
    import about an optional CPU kernel package even in runs that use no 4-bit model, and torchao
    (imported by peft) about its CUDA kernels on a CPU build and, through torch's pytree, about its
    own enum registrations: their warnings are dropped, their errors kept.
    """
    for name in ("bitsandbytes", "torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message, category in LIBRARY_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=category)
    if not progress_bars:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub, datasets and transformers
        os.environ["TQDM_DISABLE"] = "1"
        import sys

        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
