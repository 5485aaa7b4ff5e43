"""The per-job thread: wait for the plan, a trigger, a period change or shutdown; run; repeat.

A period plan is kept in the clock's monotonic seconds. A calendar plan (a :class:`Cron` period)
is a wall-clock instant read against the clock's ``now()``; the host's ``CalendarWatch``
makes sure a wall clock stepped by NTP or a suspend is noticed within ``RECHECK`` seconds.

This module is the thread: its start, its loop, the period job's wait and the run itself (with
gates, back-off and notifications), kept together and inline: that path is tuned per run. The
state the thread shares and the calls other threads make on it (trigger, close, stop, join,
status) are :class:`~recurjobs._runnerstate.RunnerState`; following a calendar (switching
between a period and a calendar, the calendar step) is ``_calendarloop.py``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from recurjobs._calendarloop import calendar_step, switch
from recurjobs._clock import MAX_WAIT, bounded
from recurjobs._cron import Cron
from recurjobs._guard import call_hook, call_user, log_quietly, run_method
from recurjobs._jobs import Signal
from recurjobs._notifications import (
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    JobIgnored,
    JobStopped,
    JobStopping,
)
from recurjobs._roles import IgnoreReason
from recurjobs._runnerstate import Outcome, RunnerState
from recurjobs._schedule import (
    after_run,
    after_trigger,
    first_fire,
    initial,
    seconds,
)
from recurjobs._token import JobCancelled

__all__ = ["JobRunner", "Outcome"]

logger = logging.getLogger("recurjobs")

# A gated job whose period and ignored_delay are both zero would otherwise re-check in a tight
# loop; this floor keeps it from spinning: a failing gate must never spin.
_MIN_BACKOFF = 1.0

_info_enabled = logger.isEnabledFor


class JobRunner(RunnerState):
    """Owns one recurring job's thread. ``trigger``, period changes and the stop calls only set
    state and wake the thread's event; the thread does everything else.

    Stopping has two steps, both called by the host's stop sequence: ``close()`` lets no new
    run begin and cancels the token; ``stop()`` publishes ``JobStopping`` and lets the thread
    end. No ``JobExecuting`` follows ``JobStopping``, and ``JobStopped`` follows both.
    """

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
            if type(signal) is Signal:  # recurjobs' own: nothing to guard (a job has two)
                signal.connect(receiver)
            else:  # the name formatted only for a log line
                what = lambda s=signal: f"{s!r}.connect"  # noqa: E731
                call_user(what, signal.connect, receiver, default=None)
        self._thread.start()

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
            held = self._held
            if held is not None:  # the host publishes JobStarted first
                held.wait()
            self._first_wait()
            while self._step():
                pass
        except BaseException:  # a bug in the loop or the clock: no user code runs unguarded
            log_quietly(
                logging.ERROR,
                "recurring loop of %s crashed; the job will not run again",
                self.name,
                exc_info=True,
                on=logger,
            )
        finally:
            with self._lock:
                self._exited = True
            for signal, receiver in self._connected:
                disconnect = getattr(signal, "disconnect", None)
                if callable(disconnect):
                    what = lambda s=signal: f"{s!r}.disconnect"  # noqa: E731
                    call_user(what, disconnect, receiver, default=None)
            self._publish(JobStopped)
            close = call_user(self._close_name, getattr, self.job, "close", None, default=None)
            if callable(close):
                call_user(self._close_name, close, default=None)

    def _close_name(self) -> str:
        return f"close() of {self.name}"

    def _first_wait(self) -> None:
        """Park until the first run is due, straight from the plan ``start()`` made.

        ``start()`` waits for this thread to begin; a first :meth:`_step` would read the
        schedule and work out the wait that ``start()`` has just worked out, while the host's
        thread waits for it (about an eighth of the start time of 10,000 jobs). Anything that
        sets the wake event meanwhile (a trigger, a period change, ``stop()``) ends this wait
        at once, and the normal step takes over. Calendar jobs go straight to the step.
        """
        if self.cron is None:
            left = self.plan.next - self._monotonic()
            if left > 0:  # waited without a Python call around it: start() waits meanwhile
                if left < MAX_WAIT:
                    self._wait_for(left)
                else:
                    self._clock.wait(self._wake, bounded(left))

    def _step(self) -> bool:
        """One iteration: wait, or run once. False when the thread should end."""
        with self._lock:
            if self._ending:
                return False
            if self._wake.is_set():  # Event.clear() takes its condition's lock: only if needed
                self._wake.clear()
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
            switch(self, schedule)
        if self.cron is not None:
            return calendar_step(self, self.cron, trigger)
        period = self._seconds(schedule)
        if changed:
            self.plan = self.plan.with_period(period)
        now = self._monotonic()
        if trigger is None:
            self._runs(now)
        else:
            end = self._run_once(now, late=now - trigger.at, manual=True)
            self.plan = after_trigger(
                self.plan,
                strategy=trigger.strategy,
                next_delay=trigger.next_delay,
                triggered_at=trigger.at,
                start=now,
                end=end,
                period=self._period_seconds(),
                period_before=period,
            )
        return True

    def _runs(self, now: float) -> None:
        """Wait for the plan and run, again and again while nothing calls for the checks of
        :meth:`_step`. Return when the thread is woken (a trigger, a period change, stop), when
        stop began, after a back-off that a trigger ended, and after every wait of a job whose
        period is not ``RecurringJob``'s own (a property of the job's, which may have become a
        calendar meanwhile: the step reads it again).

        A wait that ran out without a wake means that no trigger, period change or stop came
        meanwhile, and ``RecurringJob``'s own period cannot change unannounced: the next run is
        due as planned. Staying here spares every run of a steady job a second pass through
        the step's lock, flags and schedule reads.
        """
        own = self.view.own_period
        while True:
            due = self.plan.next
            if now < due:
                left = due - now
                if left >= MAX_WAIT:  # never, or further off than one wait goes
                    self._clock.wait(self._wake, bounded(left))
                    return
                if self._wait_for(left) or not own:
                    return
                now = self._monotonic()
                if now < due:  # woke early (a clock that does): the step looks again
                    return
            end = self._run_once(now, late=now - due, manual=False)
            self.plan = after_run(due, now, end, self._period_seconds())
            if not (own and self._open) or self._pending is not None or self._period_changed:
                # A back-off ends (clearing the wake) when a trigger comes or stop begins;
                # close() wakes nobody.
                return
            self._fresh = None  # read for this plan; a wake re-reads it
            now = self._monotonic()

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

    def _run_once(self, start: float, *, late: float, manual: bool) -> float:
        """Gate and run the job once from ``start``, ``late`` seconds after it was due (or
        triggered: ``manual``); return when the run (or back-off) ended."""
        publisher = self._publisher
        told = self._told
        if told[0] != publisher.generation:
            told = self._tell()
        announce = told[1]
        if announce:
            with self._lock:
                if not self._open:
                    return start
                self._announcing = True
        else:
            open_now = self._open  # (a local: stop() may close it before the run is admitted)
            if not open_now:
                return start
        self.outcome.last_start = start
        sink = publisher.sink  # the run history, told directly (no notification)
        started_ms = self._wall() * 1000.0 if sink is not None else 0.0
        if announce:
            now = self._clock.now()
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
            log_quietly(logging.DEBUG, "%s ignored: %s", self.name, reason.name, on=logger)
            self.outcome.last_outcome = "ignored"
            self._publish(JobIgnored, reason=reason)
            if sink is not None:
                call_hook(self._recording, sink.recurring, self.job, manual, started_ms,
                          self._wall() * 1000.0, "ignored", None)  # fmt: skip
            return self._paused_end(start) if paused else self._back_off(start)
        with self._lock:  # admitted unless stop began meanwhile (the run then never starts)
            admitted = self.outcome.running = self._open
        if not admitted:
            outcome, error = "canceled", None
        else:
            error = run_method(self.job, "run", self.token)
            self.outcome.running = False
            if error is None:
                outcome = "executed"
            elif isinstance(error, JobCancelled) and self.token.is_cancelled():
                outcome, error = "canceled", None
            else:
                outcome = "failed"
        end = self._monotonic()
        self._finish(max(0.0, end - start), outcome, error)
        if sink is not None:
            # Through the guard (a broken sink is logged, never fatal), called here with
            # positional values and a bound method for the log line's name: no closure and no
            # frame of ours between the loop and the recorder on this per-run path.
            call_hook(self._recording, sink.recurring, self.job, manual, started_ms,
                      self._wall() * 1000.0, outcome, error)  # fmt: skip
        return end

    def _recording(self) -> str:
        return f"recording a run of {self.name} in the history"

    def _tell(self) -> tuple[int, bool, bool]:
        """Ask the publisher again whether a run's ``JobExecuting`` and ``JobExecuted`` reach
        anyone (after a subscription came or went); kept until the next one."""
        publisher = self._publisher
        generation = publisher.generation  # read first: a change meanwhile asks again
        self._told = told = (
            generation,
            publisher.wants(JobExecuting),
            publisher.wants(JobExecuted),
        )
        return told

    def _finish(self, elapsed: float, outcome: str, error: BaseException | None) -> None:
        """Count, log (one INFO line per finished run) and publish a run's outcome."""
        counts = self.outcome
        counts.runs += 1
        counts.last_outcome = outcome
        if error is not None:
            counts.failures += 1
            log_quietly(logging.ERROR, "%s failed", self.name, exc_info=error)
        if _info_enabled(logging.INFO):  # no call into logging for a line nobody takes
            log_quietly(logging.INFO, "%s %s in %.3f s", self.name, outcome, elapsed)
        if outcome == "executed":
            told = self._told
            if told[0] != self._publisher.generation:
                told = self._tell()
            if told[2]:  # no timedelta is built for nobody
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
        """Sleep ``ignored_delay`` from ``start``; a change re-plans it, shutdown ends it, and
        so does a trigger (accepted only when the gates let it run: it runs at once).
        ``status()`` shows the end of the back-off meanwhile."""
        try:
            return self._backing_off(start)
        finally:
            self.backoff_end = None

    def _backing_off(self, start: float) -> float:
        while True:
            with self._lock:
                self._wake.clear()
                if not self._open or self._pending is not None:
                    return self._clock.monotonic()
            delay = seconds(self.view.ignored_delay())
            if delay == 0 and self._period_seconds() == 0:
                delay = _MIN_BACKOFF
            self.backoff_end = start + delay
            left = start + delay - self._clock.monotonic()
            if left <= 0:
                return start + delay
            self._clock.wait(self._wake, bounded(left))
