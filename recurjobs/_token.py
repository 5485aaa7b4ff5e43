"""Cooperative cancellation handed to every run."""

from __future__ import annotations

import threading
from datetime import timedelta

from recurjobs._clock import MAX_WAIT, Clock, SystemClock, is_clock
from recurjobs._validate import seconds_or_none

__all__ = ["CancellationToken", "JobCancelled"]

# Guards the creation of a token's event against a concurrent cancel(). One lock for every
# token: both sides hold it only for a few attribute reads and writes.
_MAKING = threading.Lock()


class JobCancelled(Exception):
    """Raised by :meth:`CancellationToken.raise_if_cancelled` once the token is cancelled."""


class CancellationToken:
    """A flag a job polls (``is_cancelled``) or sleeps on (``wait``) to stop early.

    The host cancels the token when it stops, and a distributed job's token when its claim is
    lost. Waiting goes through the host's clock, so jobs under test follow a ManualClock.
    """

    # The event exists only once somebody waits: most tokens are only polled, and a host
    # makes one per job (an Event is a Condition, a lock and a deque: ten objects for the
    # garbage collector to walk, which made up much of starting 10,000 jobs).
    __slots__ = ("_cancelled", "_clock", "_event")

    def __init__(self, clock: Clock | None = None) -> None:
        if clock is not None and not is_clock(clock):
            raise TypeError(f"clock must provide now(), monotonic() and wait(), got {clock!r}")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._cancelled = False
        self._event: threading.Event | None = None

    def is_cancelled(self) -> bool:
        """Return True once cancellation was requested."""
        return self._cancelled

    def cancel(self) -> None:
        """Request cancellation and wake every ``wait``; calling it again does nothing."""
        with _MAKING:
            self._cancelled = True
            event = self._event
        if event is not None:
            event.set()

    def _waitable(self) -> threading.Event:
        """The event ``wait`` sleeps on, made on first use (set if already cancelled)."""
        event = self._event
        if event is None:
            with _MAKING:
                event = self._event
                if event is None:
                    event = self._event = threading.Event()
                    if self._cancelled:
                        event.set()
        return event

    def wait(self, timeout: float | timedelta | None = None) -> bool:
        """Sleep up to ``timeout`` (seconds or timedelta; None: until cancelled).

        Returns True when the token is cancelled, False when the timeout passed first.
        """
        seconds = seconds_or_none(timeout, "timeout")
        if self._cancelled:
            return True
        event = self._waitable()
        if seconds is None:
            return event.is_set() or self._clock.wait(event, None)
        # Waited in chunks of at most MAX_WAIT, so a huge timeout never overflows the clock.
        end = self._clock.monotonic() + seconds
        while not event.is_set():
            left = end - self._clock.monotonic()
            if left <= 0:
                return False
            self._clock.wait(event, min(left, MAX_WAIT))
        return True

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when cancellation was requested."""
        if self._cancelled:
            raise JobCancelled("the run was cancelled")

    def __repr__(self) -> str:
        return f"CancellationToken(cancelled={self.is_cancelled()})"
