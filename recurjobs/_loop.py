"""The per-job thread: wait for the plan, a trigger, a period change or shutdown; run; repeat.

A period plan is kept in the clock's monotonic seconds. A calendar plan (a :class:`Cron` period)
is a wall-clock instant read against the clock's ``now()``; the host's ``CalendarWatch``
makes sure a wall clock stepped by NTP or a suspend is noticed within ``RECHECK`` seconds.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recurjobs._clock import MAX_WAIT, Clock
from recurjobs._cron import Cron
from recurjobs._gates import Gates
from recurjobs._guard import call_user, run_user
from recurjobs._jobview import JobView
from recurjobs._notifications import (
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    JobIgnored,
    JobNotification,
    JobStopped,
    JobStopping,
    Publisher,
)
from recurjobs._roles import IgnoreReason
from recurjobs._runsink import RunSink
from recurjobs._schedule import (
    NextExecution,
    Plan,
    after_run,
    after_trigger,
    fire_after_run,
    fire_after_trigger,
    first_fire,
    initial,
    next_fire,
    seconds,
)
from recurjobs._status import JobStatus
from recurjobs._token import CancellationToken, JobCancelled
from recurjobs._watch import RECHECK, CalendarWatch

__all__ = ["JobRunner", "Outcome"]

logger = logging.getLogger("recurjobs")

# A gated job whose period and ignored_delay are both zero would otherwise re-check in a tight
# loop; this floor keeps it from spinning: a failing gate must never spin.
_MIN_BACKOFF = 1.0


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


class JobRunner:
    """Owns one recurring job's thread. ``trigger``, period changes and the stop calls only set
    state and wake the thread's event; the thread does everything else.

    Stopping has two steps, both called by the host's stop sequence: ``close()`` lets no new
    run begin and cancels the token; ``stop()`` publishes ``JobStopping`` and lets the thread
    end. No ``JobExecuting`` follows ``JobStopping``, and ``JobStopped`` follows both.
    """

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
        self._gates = gates
        self._publisher = publisher
        self._wake = threading.Event()
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
        self._seconds_of: tuple[object, float] = (None, math.inf)

    # ----------------------------------------------------------- called from other threads
    def start(self) -> None:
        """Plan the first run and start the daemon thread (also when already closed: the
        thread then only waits for ``stop()``, so the notifications stay paired)."""
        with self._lock:
            delay = seconds(self.view.delay())
            self.plan = initial(self._clock.monotonic(), delay)
            schedule = self.view.period()
            if isinstance(schedule, Cron):
                self.cron = schedule
                self.fire = first_fire(schedule.next_after, self._clock.now(), delay)
            self._thread = threading.Thread(
                target=self._main, name=f"recurjobs:{self.name}", daemon=True
            )
        self._connected = self._signals()
        for signal, receiver in self._connected:
            call_user(f"{signal!r}.connect", signal.connect, receiver, default=None)
        self._thread.start()

    def trigger(self, strategy: NextExecution, next_delay: timedelta | None) -> bool:
        """Ask for one extra run as soon as the thread is free; the latest trigger wins."""
        with self._lock:
            if not (self._open and self.alive()):
                return False
            delay = None if next_delay is None else seconds(next_delay)
            self._pending = _Trigger(
                strategy, delay, self._clock.monotonic(), self._clock.now()
            )
        self._wake.set()
        return True

    def close(self) -> None:
        """Let no new run begin and cancel the token (a running job sees it); never blocks."""
        with self._lock:
            self._open = False
        self.token.cancel()

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

    def _signals(self) -> list[tuple[Any, Callable[[object], None]]]:
        pairs: list[tuple[Any, Callable[[object], None]]] = []
        for attr, receiver in (
            ("period_changed", self._on_period_changed),
            ("ignored_delay_changed", self._on_ignored_delay_changed),
        ):
            what = f"{attr} of {self.name}"
            signal = call_user(what, getattr, self.job, attr, None, default=None)
            if callable(getattr(signal, "connect", None)):
                pairs.append((signal, receiver))
        return pairs

    # ------------------------------------------------------------------- the job's thread
    def _main(self) -> None:
        try:
            self._first_wait()
            while self._step():
                pass
        except BaseException:  # a bug in the loop or the clock: no user code runs unguarded
            logger.exception("recurring loop of %s crashed; the job will not run again", self.name)
        finally:
            with self._lock:
                self._exited = True
            for signal, receiver in self._connected:
                disconnect = getattr(signal, "disconnect", None)
                if callable(disconnect):
                    call_user(f"{signal!r}.disconnect", disconnect, receiver, default=None)
            self._publish(JobStopped)
            what = f"close() of {self.name}"
            close = call_user(what, getattr, self.job, "close", None, default=None)
            if callable(close):
                call_user(what, close, default=None)

    def _first_wait(self) -> None:
        """Park until the first run is due, straight from the plan ``start()`` made.

        ``start()`` waits for this thread to begin; a first :meth:`_step` would read the
        schedule and work out the wait that ``start()`` has just worked out, while the host's
        thread waits for it (about an eighth of the start time of 10,000 jobs). Anything that
        sets the wake event meanwhile (a trigger, a period change, ``stop()``) ends this wait
        at once, and the normal step takes over. Calendar jobs go straight to the step.
        """
        if self.cron is None:
            left = self.plan.next - self._clock.monotonic()
            if left > 0:
                self._clock.wait(self._wake, _bounded(left))

    def _step(self) -> bool:
        """One iteration: wait, or run once. False when the thread should end."""
        with self._lock:
            if self._wake.is_set():  # Event.clear() takes its condition's lock: only if needed
                self._wake.clear()
            if self._ending:
                return False
            closed = not self._open
            trigger, self._pending = self._pending, None
            changed, self._period_changed = self._period_changed, False
        if closed:
            # Stopping: no run may begin; wait for stop() to let the thread end.
            self._clock.wait(self._wake, None)
            return True
        schedule = self._fresh if self._fresh is not None else self.view.period()
        self._fresh = None
        if isinstance(schedule, Cron) or self.cron is not None:
            self._switch(schedule)
        if self.cron is not None:
            return self._calendar_step(self.cron, trigger)
        period = self._seconds(schedule)
        if changed:
            self.plan = self.plan.with_period(period)
        now = self._clock.monotonic()
        if trigger is None:
            if now < self.plan.next:
                self._clock.wait(self._wake, _bounded(self.plan.next - now))
                return True
            end = self._run_once(now, late=now - self.plan.next, manual=False)
            self.plan = after_run(self.plan.next, now, end, self._period_seconds())
        else:
            end = self._run_once(now, late=now - trigger.at, manual=True)
            self.plan = after_trigger(
                self.plan,
                strategy=trigger.strategy,
                next_delay=trigger.next_delay,
                triggered_at=trigger.at,
                end=end,
                period=self._period_seconds(),
            )
        return True

    def _period_seconds(self) -> float:
        """The period in seconds (``inf`` if it just became a calendar: the next step follows)."""
        self._fresh = schedule = self.view.period()
        return self._seconds(schedule)

    def _seconds(self, schedule: timedelta | Cron) -> float:
        """``schedule`` in seconds (``inf`` for a calendar), worked out once per value."""
        last, value = self._seconds_of
        if schedule is not last:
            value = seconds(schedule) if isinstance(schedule, timedelta) else math.inf
            self._seconds_of = (schedule, value)
        return value

    def _switch(self, schedule: timedelta | Cron) -> None:
        """Follow a change between periods and calendars (or to another calendar).

        To a calendar: the next run is the first fire time after the change. Back to a period:
        the cadence counts from the last run's start (from the change if there was none). A
        schedule that has not begun (waiting for its first trigger) stays so.
        """
        if schedule == self.cron:
            return
        begun = self.fire is not None if self.cron is not None else not math.isinf(self.plan.next)
        if isinstance(schedule, Cron):
            fire = next_fire(schedule.next_after, self._clock.now()) if begun else None
            with self._lock:
                self.cron, self.fire = schedule, fire
            return
        now = self._clock.monotonic()
        last = self.outcome.last_start
        anchor = last if last is not None else now
        plan = Plan(math.inf, None, True)
        if begun:
            plan = Plan(anchor + seconds(schedule), anchor, False)
        with self._lock:
            self.cron, self.fire, self.plan = None, None, plan

    def _calendar_step(self, cron: Cron, trigger: _Trigger | None) -> bool:
        """One iteration of a calendar job: wait (the watch bounds it), or run once."""
        now = self._clock.now()
        if trigger is None:
            planned = self.fire
            if planned is None:
                self._clock.wait(self._wake, None)
                return True
            left = (planned - now).total_seconds()
            if left > 0:
                leads = self._watch.before_wait(self, planned, self._wake.set)
                self._clock.wait(self._wake, min(left, RECHECK) if leads else _bounded(left))
                self._watch.after_wait(self, self._clock.now())
                return True
            self._run_once(
                self._clock.monotonic(), late=(now - planned).total_seconds(), manual=False
            )
            fire = fire_after_run(cron.next_after, planned, now, self._clock.now())
        else:
            self._run_once(
                self._clock.monotonic(), late=(now - trigger.wall).total_seconds(), manual=True
            )
            fire = fire_after_trigger(
                cron.next_after,
                self.fire,
                strategy=trigger.strategy,
                next_delay=trigger.next_delay,
                triggered_at=trigger.wall,
                start=now,
                end=self._clock.now(),
            )
        with self._lock:
            self.fire = fire
        return True

    def _run_once(self, start: float, *, late: float, manual: bool) -> float:
        """Gate and run the job once from ``start``, ``late`` seconds after it was due (or
        triggered: ``manual``); return when the run (or back-off) ended."""
        publisher = self._publisher
        announce = publisher.wants(JobExecuting)
        with self._lock:
            if not self._open:
                return start
            self._announcing = announce
        self.outcome.last_start = start
        sink = publisher.sink  # the run history, told directly (no notification)
        now = self._clock.now() if sink is not None else None
        if announce:
            now = now if now is not None else self._clock.now()
            scheduled = now - timedelta(seconds=max(0.0, late))
            publisher.publish(JobExecuting(job=self.job, at=now, scheduled_at=scheduled))
            with self._lock:
                self._announcing = False
                owed, self._stopping_owed = self._stopping_owed, False
            if owed:
                self._publish(JobStopping)
        paused = self.paused
        reason = IgnoreReason.PAUSED if paused else self._gates.check(self.view.server_roles())
        if reason is not None:
            logger.debug("%s ignored: %s", self.name, reason.name)
            self.outcome.last_outcome = "ignored"
            self._publish(JobIgnored, reason=reason)
            if sink is not None and now is not None:
                self._record(sink, now, manual, "ignored", None)
            return self._paused_end(start) if paused else self._back_off(start)
        if not self._admit():  # stop began while the run was announced: it never starts
            self._finish(start, "canceled")
            outcome, error = "canceled", None
        else:
            error = run_user(self.job.run, self.token)  # type: ignore[attr-defined]
            self.outcome.running = False
            if error is None:
                outcome = "executed"
            elif isinstance(error, JobCancelled) and self.token.is_cancelled():
                outcome, error = "canceled", None
            else:
                outcome = "failed"
            self._finish(start, outcome, error)
        if sink is not None and now is not None:
            self._record(sink, now, manual, outcome, error)
        return self._clock.monotonic()

    def _record(
        self,
        sink: RunSink,
        started: datetime,
        manual: bool,
        outcome: str,
        error: BaseException | None,
    ) -> None:
        """Tell the run history (through the guard: a broken sink is logged, never fatal).
        Positional arguments and a bound method for the log line's name: no closures are
        built on this per-run path."""
        ended = self._clock.now()
        call_user(
            self._recording,
            sink.recurring,
            self.job,
            manual,
            started,
            ended,
            outcome,
            error,
            default=None,
        )

    def _recording(self) -> str:
        return f"recording a run of {self.name} in the history"

    def _admit(self) -> bool:
        """Whether the run may start now (no stop began); marks it running if so."""
        with self._lock:
            self.outcome.running = self._open
            return self._open

    def _finish(self, start: float, outcome: str, error: BaseException | None = None) -> None:
        """Count, log (one INFO line per finished run) and publish a run's outcome."""
        elapsed = max(0.0, self._clock.monotonic() - start)
        self.outcome.runs += 1
        self.outcome.last_outcome = outcome
        if error is not None:
            self.outcome.failures += 1
            logger.error("%s failed", self.name, exc_info=error)
        logger.info("%s %s in %.3f s", self.name, outcome, elapsed)
        if outcome == "executed":
            self._publish(JobExecuted, duration=timedelta(seconds=elapsed))
        elif outcome == "canceled":
            self._publish(JobCanceled)
        else:
            self._publish(JobFailed, exception=error)

    def _paused_end(self, start: float) -> float:
        """A paused job has no ignored back-off: its schedule keeps its own cadence, so after
        ``resume()`` the next run comes at its usual time. A period of zero waits a second
        between ticks instead, so a paused job never spins."""
        return start if self._period_seconds() > 0 else start + _MIN_BACKOFF

    def _back_off(self, start: float) -> float:
        """Sleep ``ignored_delay`` from ``start``; a change re-plans it, shutdown ends it."""
        while True:
            with self._lock:
                self._wake.clear()
                if not self._open:
                    return self._clock.monotonic()
            delay = seconds(self.view.ignored_delay())
            if delay == 0 and self._period_seconds() == 0:
                delay = _MIN_BACKOFF
            left = start + delay - self._clock.monotonic()
            if left <= 0:
                return start + delay
            self._clock.wait(self._wake, _bounded(left))

    def _publish(self, kind: type[JobNotification], **fields: object) -> None:
        if self._publisher.wants(kind):  # nothing is built for nobody
            self._publisher.publish(kind(job=self.job, at=self._clock.now(), **fields))


def _bounded(left: float) -> float | None:
    """A wait of ``left`` seconds as one clock wait: None for never, at most ``MAX_WAIT`` (the
    loop then simply waits again)."""
    return None if math.isinf(left) else min(left, MAX_WAIT)
