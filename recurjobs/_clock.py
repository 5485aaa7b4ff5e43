"""The one seam for time and waiting: every stamp and every wait of a host goes through it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, runtime_checkable

__all__ = [
    "MAX_WAIT",
    "Clock",
    "SystemClock",
    "bounded",
    "is_clock",
    "monotonic_of",
    "waiter_of",
    "wall_seconds",
]

MAX_WAIT = 86400.0
"""The longest single wait recurjobs asks of a clock (a day). Longer waits (a period of a
million days) are waited in chunks, so no duration is too large for ``Event.wait``."""


def bounded(left: float) -> float | None:
    """A wait of ``left`` seconds as one clock wait: None for never, at most ``MAX_WAIT`` (the
    loop then simply waits again)."""
    return None if math.isinf(left) else min(left, MAX_WAIT)


@runtime_checkable
class Clock(Protocol):
    """What the host needs of time: wall time for stamps, monotonic time and waiting for plans."""

    def now(self) -> datetime:
        """Return the current wall time as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes backwards."""
        ...

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set (True) or ``timeout`` seconds pass (False)."""
        ...


_CLOCK_CLASSES: set[type] = set()
_METHODS = ("now", "monotonic", "wait")


def is_clock(value: object) -> bool:
    """``isinstance(value, Clock)``, remembered per class whose own methods satisfy it.

    A protocol check walks the protocol's members (tens of microseconds on Python 3.11), and a
    token is made for every distributed run: a class that defines all three methods itself
    is checked once.
    """
    cls = type(value)
    if cls in _CLOCK_CLASSES:
        return True
    if not isinstance(value, Clock):
        return False
    if all(callable(getattr(cls, m, None)) for m in _METHODS):
        _CLOCK_CLASSES.add(cls)
    return True


class SystemClock:
    """The real clocks: ``time.monotonic`` for plans, ``Event.wait`` for waiting."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait on ``event`` for at most ``timeout`` seconds (``None``: forever)."""
        if timeout is not None and timeout <= 0:
            return event.is_set()
        return event.wait(timeout)

    def __repr__(self) -> str:
        return "SystemClock()"


def monotonic_of(clock: Clock) -> Callable[[], float]:
    """``clock.monotonic``, or ``time.monotonic`` itself for the real clock (what
    ``SystemClock.monotonic()`` returns, without a Python call around it: a run reads it twice).
    """
    if type(clock) is SystemClock:
        return time.monotonic
    return clock.monotonic


def waiter_of(clock: Clock, event: threading.Event) -> Callable[[float], bool]:
    """``clock.wait`` on ``event`` for a positive timeout: ``event.wait`` itself for the real
    clock (what ``SystemClock.wait()`` calls, without a Python call around it: the loop waits
    once per run)."""
    if type(clock) is SystemClock:
        return event.wait
    return partial(clock.wait, event)


def wall_seconds(clock: Clock) -> Callable[[], float]:
    """A reader of ``clock``'s wall time in epoch seconds (the run history's stamps).

    For the real clock that is ``time.time`` itself, which ``SystemClock.now()`` also reads:
    no datetime and no Python frame (the history stamps every run twice); any other clock is
    asked ``now()``.
    """
    if type(clock) is SystemClock:
        return time.time
    return lambda: clock.now().timestamp()
