"""A trial's time limit: ``time_limit`` raises ``TrialTimeout`` in the main thread once it is spent."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TrialTimeout(BaseException):
    """Raised inside a trial that ran past its time limit (a BaseException, so strategies can't swallow it)."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TrialTimeout in the main thread after ``seconds`` (no limit when None or off the main thread).

    The alarm interrupts Python code; a call stuck inside native code is interrupted when it returns.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        # Raised wherever the main thread is, it can be swallowed (a finaliser or a callback whose errors
        # are printed and ignored): so it is raised again every second until the trial is left.
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        raise TrialTimeout(f"stopped after the {seconds:g} s trial time limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
