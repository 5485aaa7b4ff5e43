"""Small building blocks shared by the loop and host tests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from recurjobs import CancellationToken, JobHost, JobNotification, RecurringJob, TriggerableJob
from recurjobs.testing import ManualClock

MIN = 60.0


class Recorder:
    """Collects every notification a host publishes, in order, thread-safely."""

    def __init__(self, host: JobHost) -> None:
        self._lock = threading.Lock()
        self.items: list[JobNotification] = []
        host.subscribe(JobNotification, self._add)

    def _add(self, notification: JobNotification) -> None:
        with self._lock:
            self.items.append(notification)

    def kinds(self) -> list[str]:
        """Class names of the notifications so far, Starting/Started/Stopping/Stopped left out."""
        with self._lock:
            names = [type(n).__name__ for n in self.items]
        return [n for n in names if not n.startswith(("JobStart", "JobStop"))]


class TimedJob(RecurringJob, TriggerableJob):
    """Records the simulated minute of every run start; may run for a while or raise."""

    def __init__(
        self,
        clock: ManualClock,
        period: timedelta,
        *,
        delay: timedelta = timedelta(0),
        body: Callable[[CancellationToken], None] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(period, delay=delay, **kwargs)  # type: ignore[arg-type]
        self.clock = clock
        self.body = body
        self.starts: list[float] = []

    def run(self, token: CancellationToken) -> None:
        self.starts.append(round(self.clock.monotonic() / MIN, 6))
        if self.body is not None:
            self.body(token)


def minutes(value: float) -> timedelta:
    """A timedelta of ``value`` minutes."""
    return timedelta(minutes=value)


def step_to(clock: ManualClock, minute: float, waiters: int = 1) -> None:
    """Advance the clock to ``minute`` in one step and wait until the threads are parked."""
    clock.wait_for_waiters(waiters)
    clock.advance(max(0.0, minute * MIN - clock.monotonic()))
    clock.wait_for_waiters(waiters)


def walk_to(clock: ManualClock, minute: float, step: float = 1.0, waiters: int = 1) -> None:
    """Advance the clock minute by minute (``step``) up to ``minute``, settling each time."""
    clock.wait_for_waiters(waiters)
    while clock.monotonic() < minute * MIN - 1e-9:
        clock.advance(min(step * MIN, minute * MIN - clock.monotonic()))
        clock.wait_for_waiters(waiters)


class RaisingFilter(logging.Filter):
    """An application's logging filter with a bug: it raises on every record. ``seen`` holds
    the messages it was asked about, so a test can wait for the line it means to break."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.seen.append(record.getMessage())
        raise RuntimeError("broken filter")
