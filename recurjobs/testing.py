"""Helpers for testing code that uses recurjobs: a clock you move by hand.

``ManualClock`` stands in for :class:`recurjobs.SystemClock`. Time only moves when a test calls
:meth:`ManualClock.advance`, so schedules of minutes or hours are tested in milliseconds and
never depend on how fast the machine is::

    clock = ManualClock()
    with JobHost([job], clock=clock) as host:
        clock.wait_for_waiters(1)          # the job thread is parked, waiting for its delay
        clock.advance(timedelta(minutes=5))
        clock.wait_for_waiters(1)          # it ran and is parked again
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

__all__ = ["ManualClock"]


class _Waiter:
    __slots__ = ("deadline", "event", "expired")

    def __init__(self, event: threading.Event, deadline: float) -> None:
        self.event = event
        self.deadline = deadline
        self.expired = False


class ManualClock:
    """A deterministic :class:`recurjobs.Clock`: time stands still until :meth:`advance`.

    ``now()`` starts at ``start`` (default 2026-01-01 00:00 UTC) and ``monotonic()`` at 0;
    :meth:`advance` moves both, so calendar (:class:`recurjobs.Cron`) jobs follow it too.
    :meth:`step_wall_clock` moves only ``now()``, as NTP or a suspend moves a real wall clock.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 1, tzinfo=UTC)
        if not isinstance(start, datetime):
            raise TypeError(f"start must be a datetime, got {start!r}")
        if start.tzinfo is None:
            raise ValueError(f"start must be timezone-aware, got {start!r}")
        self._start = start.astimezone(UTC)
        self._elapsed = 0.0
        self._wall_shift = timedelta(0)
        self._lock = threading.Condition()
        self._parked: list[_Waiter] = []

    def now(self) -> datetime:
        """The simulated wall time (aware UTC)."""
        return self._start + self._wall_shift + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        """The simulated seconds since the clock was made."""
        return self._elapsed

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Park until ``event`` is set or simulated time passes the deadline."""
        if event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            return False
        with self._lock:
            deadline = self._elapsed + timeout if timeout is not None else float("inf")
            waiter = _Waiter(event, deadline)
            self._parked.append(waiter)
            self._lock.notify_all()
        try:
            cond = getattr(event, "_cond", None)
            if isinstance(cond, threading.Condition):
                # Event.set() notifies this condition, and so does advance(): one wait covers both.
                with cond:
                    cond.wait_for(lambda: event.is_set() or waiter.expired)
            else:  # pragma: no cover - an Event implementation without _cond
                while not (event.wait(0.001) or waiter.expired):
                    pass
        finally:
            with self._lock:
                if waiter in self._parked:
                    self._parked.remove(waiter)
                self._lock.notify_all()
        return event.is_set()

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta`` and wake every waiter whose deadline has passed."""
        if isinstance(delta, timedelta):
            step = delta.total_seconds()
        elif isinstance(delta, (int, float)) and not isinstance(delta, bool):
            step = float(delta)
        else:
            raise TypeError(f"delta must be a timedelta or a number of seconds, got {delta!r}")
        if not 0 <= step < float("inf"):
            raise ValueError(f"delta must be a finite duration >= 0, got {delta!r}")
        with self._lock:
            self._check_wall(self._wall_shift, self._elapsed + step, "delta", delta)
            self._elapsed += step
            due = [w for w in self._parked if w.deadline <= self._elapsed]
            for waiter in due:
                self._parked.remove(waiter)
                waiter.expired = True
            self._lock.notify_all()
        for waiter in due:
            cond = getattr(waiter.event, "_cond", None)
            if isinstance(cond, threading.Condition):
                with cond:
                    cond.notify_all()

    def step_wall_clock(self, delta: timedelta) -> None:
        """Step ``now()`` by ``delta`` (forward or back) without moving ``monotonic()`` or
        waking anyone: what an NTP correction or a resumed laptop does to a real wall clock.

        Calendar jobs notice within a minute of monotonic time (their waits are re-checked).
        """
        if not isinstance(delta, timedelta):
            raise TypeError(f"delta must be a timedelta, got {delta!r}")
        with self._lock:
            try:
                shift = self._wall_shift + delta
            except OverflowError:
                shift = timedelta.max  # refused just below
            self._check_wall(shift, self._elapsed, "delta", delta)
            self._wall_shift = shift

    def _check_wall(self, shift: timedelta, elapsed: float, name: str, value: object) -> None:
        """Refuse a move after which ``now()`` would be past what a datetime can hold."""
        try:
            self._start + shift + timedelta(seconds=elapsed)
        except OverflowError:
            raise ValueError(
                f"{name} {value!r} moves now() past what a datetime can hold (year 1 to 9999)"
            ) from None

    def waiters(self) -> int:
        """How many threads are parked now, not counting those whose event is already set."""
        with self._lock:
            return sum(1 for w in self._parked if not w.event.is_set())

    def wait_for_waiters(self, count: int, timeout: float = 5.0) -> None:
        """Block (in real time) until at least ``count`` threads are parked in :meth:`wait`.

        Raises ``TimeoutError`` after ``timeout`` real seconds.
        """
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"count must be an int, got {count!r}")
        if count < 0:
            raise ValueError(f"count must not be negative, got {count!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
        if not 0 <= timeout < float("inf"):
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                parked = sum(1 for w in self._parked if not w.event.is_set())
                if parked >= count:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"expected {count} parked waiters, {parked} after {timeout} s"
                    )
                # An Event.set() does not notify this condition, so re-check now and then.
                self._lock.wait(min(left, 0.005))

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now().isoformat()})"
