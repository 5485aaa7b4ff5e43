"""One wall-clock watch for all the calendar jobs of a host.

A calendar job waits on the clock's monotonic time for a fire time read on the wall clock; if
the wall clock steps (NTP, a resumed virtual machine or laptop), that wait is wrong. Instead of
every calendar job waking each minute to look (1,000 jobs: 1,000 wake-ups a minute), one of the
waiting jobs, the *leader*, bounds its wait to ``RECHECK`` seconds; when it wakes it wakes every
calendar job whose fire time has passed on the wall clock, and hands the lead to another waiting
job (the first to wait again takes it). The others wait for their own fire time in one go. So a
step is noticed within ``RECHECK`` seconds at the cost of about two wake-ups a minute per host.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

__all__ = ["RECHECK", "CalendarWatch"]

RECHECK = 60.0
"""How long a wall-clock step may go unnoticed, in seconds of the clock's monotonic time."""


class CalendarWatch:
    """The waiting calendar jobs of one host, and which of them leads (checks the wall clock).

    Each job registers, while it waits, its planned fire time and a ``wake`` callable.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[object, tuple[datetime | None, Callable[[], None]]] = {}
        self._leader: object | None = None

    def before_wait(self, key: object, fire: datetime | None, wake: Callable[[], None]) -> bool:
        """Register a job that is about to wait; True when it leads (bound its wait)."""
        with self._lock:
            self._waiting[key] = (fire, wake)
            if self._leader is None or self._leader not in self._waiting:
                self._leader = key
            return self._leader is key

    def after_wait(self, key: object, now: datetime) -> None:
        """Unregister a job that stopped waiting. If it led: wake every job whose fire time has
        passed at ``now`` (a wall-clock step), and one more to take the lead."""
        with self._lock:
            self._waiting.pop(key, None)
            if self._leader is not key:
                return
            self._leader = None
            waiting = list(self._waiting.values())
        due = [wake for fire, wake in waiting if fire is not None and fire <= now]
        if waiting and not due:
            due.append(waiting[0][1])  # someone must lead while this job runs
        for wake in due:
            wake()
