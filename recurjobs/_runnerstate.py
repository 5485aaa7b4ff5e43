"""What a job's thread shares with the rest of the host, and the calls other threads make on it.

A :class:`~recurjobs._loop.JobRunner` is one recurring job's thread. Everything the host and
the job's signals do to it (trigger a run, change the period, close, stop, join, read its
status) only sets this state under the runner's lock and wakes the thread's event; the thread
(``_loop.py``) does everything else. Keeping these calls here lets ``_loop.py`` read as the
thread alone: wait, gate, run, publish.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recurjobs._clock import Clock, monotonic_of, waiter_of, wall_seconds
from recurjobs._cron import Cron
from recurjobs._gates import Gates
from recurjobs._jobview import JobView
from recurjobs._notifications import JobNotification, JobStopping, Publisher
from recurjobs._schedule import NextExecution, Plan, seconds
from recurjobs._status import JobStatus
from recurjobs._token import CancellationToken
from recurjobs._watch import CalendarWatch

__all__ = ["Outcome", "RunnerState"]


# ``_seconds_of`` before the first schedule was turned into seconds.
_NO_SCHEDULE: tuple[object, float] = (None, math.inf)


@dataclass(frozen=True, slots=True)
class _Trigger:
    strategy: NextExecution
    next_delay: float | None
    at: float
    wall: datetime


@dataclass(slots=True)
class Outcome:
    """Counters and last result of one job, read by ``JobHost.status()``."""

    runs: int = 0
    failures: int = 0
    last_start: float | None = None
    last_outcome: str | None = None
    running: bool = False


class RunnerState:
    """The state of one recurring job's runner and the calls other threads make on it; the
    thread itself is :class:`~recurjobs._loop.JobRunner`, which adds ``start()``."""

    def __init__(
        self,
        job: object,
        *,
        clock: Clock,
        gates: Gates,
        publisher: Publisher,
        watch: CalendarWatch | None = None,
    ) -> None:
        self.job = job
        # Shared by the host's calendar jobs; a runner of its own otherwise (it then always
        # leads: its waits last at most RECHECK seconds).
        self._watch = watch if watch is not None else CalendarWatch()
        self.view = JobView(job)
        self.name = self.view.name
        self._clock = clock
        self._monotonic = monotonic_of(clock)  # the loop's readings at every run
        self._wall = wall_seconds(clock)  # the history's stamps (epoch seconds)
        self._gates = gates
        self._publisher = publisher
        self._wake = threading.Event()
        self._wait_for = waiter_of(clock, self._wake)  # the loop's wait for a plan (> 0 s)
        self._lock = threading.Lock()
        self._pending: _Trigger | None = None
        self._period_changed = False
        self._open = True  # a run may begin; False from close() on
        self._ending = False  # the thread may leave its loop; True from stop() on
        self._announcing = False  # the thread is publishing JobExecuting
        self._stopping_owed = False  # stop() came meanwhile: the thread publishes JobStopping
        self._exited = False
        self.paused = False  # JobHost.pause(): due runs are ignored with IgnoreReason.PAUSED
        self._thread: threading.Thread | None = None
        self._held: threading.Event | None = None  # see hold()
        self.backoff_end: float | None = None  # an ignored run's back-off lasts until then
        # The job's change signals start() connected to; the thread disconnects these at its end.
        self._connected: list[tuple[Any, Callable[[object], None]]] = []
        self.token = CancellationToken(clock)
        self.outcome = Outcome()
        self.plan = Plan(math.inf, None, True)
        # The calendar in force (None: a period) and its plan: the wall instant of the next
        # automatic run, None for none.
        self.cron: Cron | None = None
        self.fire: datetime | None = None
        # The loop's own: the schedule read at the end of the last run (the next step uses it
        # instead of reading again microseconds later), and the last schedule turned into
        # seconds with its value.
        self._fresh: timedelta | Cron | None = None
        self._seconds_of: tuple[object, float] = _NO_SCHEDULE
        # The publisher's generation and whether JobExecuting and JobExecuted reach anyone.
        self._told: tuple[int, bool, bool] = (-1, False, False)

    # ----------------------------------------------------------- called from other threads
    def trigger(self, strategy: NextExecution, next_delay: timedelta | None) -> bool:
        """Ask for one extra run as soon as the thread is free; the latest trigger wins."""
        with self._lock:
            if not (self._open and self.alive()):
                return False
            delay = None if next_delay is None else seconds(next_delay)
            self._pending = _Trigger(strategy, delay, self._clock.monotonic(), self._clock.now())
        self._wake.set()
        return True

    def hold(self) -> None:
        """Before ``start()``: the thread waits for :meth:`release` before its first step, so
        the host can publish ``JobStarted`` before the job's first notification."""
        self._held = threading.Event()

    def release(self) -> None:
        """End :meth:`hold` (also done by ``close()`` and ``stop()``)."""
        held = self._held
        if held is not None:
            held.set()

    def close(self) -> None:
        """Let no new run begin and cancel the token (a running job sees it); never blocks."""
        with self._lock:
            self._open = False
        self.token.cancel()
        self.release()

    def stop(self) -> None:
        """Publish ``JobStopping``, then let the thread leave its loop and wake it.

        If the thread is publishing ``JobExecuting`` right now, it publishes ``JobStopping``
        itself right after, so the order per job holds without waiting for its handlers.
        """
        with self._lock:
            self._open = False
            owed = self._stopping_owed = self._announcing
        self.token.cancel()
        if not owed and self._thread is not None:
            self._publish(JobStopping)
        with self._lock:
            self._ending = True
        self._wake.set()
        self.release()

    def join(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` real seconds for the thread; True when it has ended.

        Never joins the calling thread (False when asked to: it has not ended).
        """
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        """The job's thread (None before ``start()``)."""
        return self._thread

    def owns(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is this runner's thread."""
        return self._thread is thread

    def alive(self) -> bool:
        """Whether the thread runs its loop (False before start, after it ended, or if it died)."""
        return self._thread is not None and self._thread.is_alive() and not self._exited

    def status(self, *, planned: bool) -> JobStatus:
        """This job's record for ``JobHost.status()``; ``planned``: show the next run."""
        now_wall, now_mono = self._clock.now(), self._clock.monotonic()

        def wall(mono: float | None) -> datetime | None:
            if mono is None or math.isinf(mono):
                return None
            try:
                return now_wall + timedelta(seconds=mono - now_mono)
            except OverflowError:  # further away than datetime reaches: practically never
                return None

        out = self.outcome
        alive = self.alive()
        with self._lock:
            cron, fire, plan = self.cron, self.fire, self.plan
        next_run = fire if cron is not None else wall(plan.next)
        backoff_end = self.backoff_end
        if backoff_end is not None and cron is None:
            # An ignored run backs off: the next run comes at the end of the back-off, or one
            # period after the ignored run's plan if that is later (``after_run``).
            next_run = wall(max(backoff_end, plan.next + self._seconds_of[1]))
        return JobStatus(
            name=self.name,
            kind="recurring",
            period=self.view.period(),
            next_run=next_run if planned and alive else None,
            last_start=wall(out.last_start),
            last_outcome=out.last_outcome,
            runs=out.runs,
            failures=out.failures,
            running=out.running,
            alive=alive,
            paused=self.paused,
        )

    def _on_period_changed(self, _sender: object) -> None:
        with self._lock:
            self._period_changed = True
        self._wake.set()

    def _on_ignored_delay_changed(self, _sender: object) -> None:
        self._wake.set()

    def _publish(self, kind: type[JobNotification], **fields: object) -> None:
        if self._publisher.wants(kind):  # nothing is built for nobody
            self._publisher.publish(kind(job=self.job, at=self._clock.now(), **fields))
