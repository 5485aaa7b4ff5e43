"""Cooperative cancellation handed to every run."""

from __future__ import annotations

import threading
from datetime import timedelta

from recurjobs._clock import MAX_WAIT, Clock, SystemClock, is_clock
from recurjobs._validate import seconds_or_none

__all__ = ["CancellationToken", "JobCancelled"]


class JobCancelled(Exception):
    """Raised by :meth:`CancellationToken.raise_if_cancelled` once the token is cancelled."""


class CancellationToken:
    """A flag a job polls (``is_cancelled``) or sleeps on (``wait``) to stop early.

    The host cancels the token when it stops, and a distributed job's token when its claim is
    lost. Waiting goes through the host's clock, so jobs under test follow a ManualClock.
    """

    __slots__ = ("_clock", "_event")

    def __init__(self, clock: Clock | None = None) -> None:
        if clock is not None and not is_clock(clock):
            raise TypeError(f"clock must provide now(), monotonic() and wait(), got {clock!r}")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._event = threading.Event()

    def is_cancelled(self) -> bool:
        """Return True once cancellation was requested."""
        return self._event.is_set()

    def cancel(self) -> None:
        """Request cancellation and wake every ``wait``; calling it again does nothing."""
        self._event.set()

    def wait(self, timeout: float | timedelta | None = None) -> bool:
        """Sleep up to ``timeout`` (seconds or timedelta; None: until cancelled).

        Returns True when the token is cancelled, False when the timeout passed first.
        """
        seconds = seconds_or_none(timeout, "timeout")
        if self._event.is_set() or seconds is None:
            return self._event.is_set() or self._clock.wait(self._event, None)
        # Waited in chunks of at most MAX_WAIT, so a huge timeout never overflows the clock.
        end = self._clock.monotonic() + seconds
        while not self._event.is_set():
            left = end - self._clock.monotonic()
            if left <= 0:
                return False
            self._clock.wait(self._event, min(left, MAX_WAIT))
        return True

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when cancellation was requested."""
        if self._event.is_set():
            raise JobCancelled("the run was cancelled")

    def __repr__(self) -> str:
        return f"CancellationToken(cancelled={self.is_cancelled()})"
