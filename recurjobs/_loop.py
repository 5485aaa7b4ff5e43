"""The per-job thread: wait for the plan, a trigger, a period change or shutdown; run; repeat."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recurjobs._clock import Clock
from recurjobs._gates import Gates
from recurjobs._jobs import job_name
from recurjobs._notifications import (
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    JobIgnored,
    JobStopped,
    Publisher,
)
from recurjobs._schedule import (
    INFINITE,
    NextExecution,
    Plan,
    after_run,
    after_trigger,
    initial,
    seconds,
)
from recurjobs._status import JobStatus
from recurjobs._token import CancellationToken, JobCancelled

__all__ = ["JobRunner", "Outcome"]

logger = logging.getLogger("recurjobs")

# A gated job whose period and ignored_delay are both zero would otherwise re-check in a tight
# loop; this floor keeps it from spinning (SPEC 4 asks that a failing gate never spins).
_MIN_BACKOFF = 1.0


@dataclass(frozen=True, slots=True)
class _Trigger:
    strategy: NextExecution
    next_delay: float | None
    at: float


@dataclass(slots=True)
class Outcome:
    """Counters and last result of one job, read by ``JobHost.status()``."""

    runs: int = 0
    failures: int = 0
    last_start: float | None = None
    last_outcome: str | None = None
    running: bool = False


class JobRunner:
    """Owns one recurring job's thread. ``trigger``, period changes and ``stop`` only set state
    and wake the thread's event; the thread does everything else."""

    def __init__(self, job: object, *, clock: Clock, gates: Gates, publisher: Publisher) -> None:
        self.job = job
        self.name = job_name(job)
        self._clock = clock
        self._gates = gates
        self._publisher = publisher
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pending: _Trigger | None = None
        self._period_changed = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.token = CancellationToken(clock)
        self.outcome = Outcome()
        self.plan = Plan(math.inf, None, True)

    # ----------------------------------------------------------- called from other threads
    def start(self) -> None:
        """Plan the first run and start the daemon thread."""
        self.plan = initial(self._clock.monotonic(), seconds(_delay(self.job)))
        for signal, receiver in self._signals():
            signal.connect(receiver)
        self._thread = threading.Thread(
            target=self._main, name=f"recurjobs:{self.name}", daemon=True
        )
        self._thread.start()

    def trigger(self, strategy: NextExecution, next_delay: timedelta | None) -> bool:
        """Ask for one extra run as soon as the thread is free; the latest trigger wins."""
        with self._lock:
            if self._stopping or self._thread is None:
                return False
            delay = None if next_delay is None else seconds(next_delay)
            self._pending = _Trigger(strategy, delay, self._clock.monotonic())
        self._wake.set()
        return True

    def stop(self) -> None:
        """Cancel the token and wake the thread; it leaves its loop at the next check."""
        self.cancel()
        self.wake()

    def cancel(self) -> None:
        """Mark the runner stopping and cancel the token, without waking an idle thread yet."""
        with self._lock:
            self._stopping = True
        self.token.cancel()

    def wake(self) -> None:
        """Wake the thread from its wait (after ``cancel()``: so that it ends)."""
        self._wake.set()

    def join(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` real seconds for the thread; True when it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def status(self, *, planned: bool) -> JobStatus:
        """This job's record for ``JobHost.status()``; ``planned``: show the next run."""
        now_wall, now_mono = self._clock.now(), self._clock.monotonic()

        def wall(mono: float | None) -> datetime | None:
            if mono is None or math.isinf(mono):
                return None
            return now_wall + timedelta(seconds=mono - now_mono)

        out = self.outcome
        return JobStatus(
            name=self.name,
            kind="recurring",
            period=_period(self.job),
            next_run=wall(self.plan.next) if planned else None,
            last_start=wall(out.last_start),
            last_outcome=out.last_outcome,
            runs=out.runs,
            failures=out.failures,
            running=out.running,
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
            signal = getattr(self.job, attr, None)
            if callable(getattr(signal, "connect", None)):
                pairs.append((signal, receiver))
        return pairs

    # ------------------------------------------------------------------- the job's thread
    def _main(self) -> None:
        try:
            while self._step():
                pass
        except BaseException:  # pragma: no cover - a bug in the loop itself; keep it visible
            logger.exception("recurring loop of %s crashed", self.name)
        finally:
            for signal, receiver in self._signals():
                disconnect = getattr(signal, "disconnect", None)
                if callable(disconnect):
                    disconnect(receiver)
            self._publish(JobStopped)
            close = getattr(self.job, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    logger.exception("close() of %s failed", self.name)

    def _step(self) -> bool:
        """One iteration: wait, or run once. False when the thread should end."""
        with self._lock:
            self._wake.clear()
            if self._stopping:
                return False
            trigger, self._pending = self._pending, None
            period = seconds(_period(self.job))
            if self._period_changed:
                self._period_changed = False
                self.plan = self.plan.with_period(period)
        now = self._clock.monotonic()
        if trigger is None:
            if now < self.plan.next:
                left = self.plan.next - now
                self._clock.wait(self._wake, None if math.isinf(left) else left)
                return True
            end = self._run_once(now)
            self.plan = after_run(self.plan.next, now, end, seconds(_period(self.job)))
        else:
            end = self._run_once(now)
            self.plan = after_trigger(
                self.plan,
                strategy=trigger.strategy,
                next_delay=trigger.next_delay,
                triggered_at=trigger.at,
                end=end,
                period=seconds(_period(self.job)),
            )
        return True

    def _run_once(self, start: float) -> float:
        """Gate and run the job once from ``start``; return when the run (or back-off) ended."""
        self.outcome.last_start = start
        self._publish(JobExecuting)
        reason = self._gates.check(self.job)
        if reason is not None:
            logger.debug("%s ignored: %s", self.name, reason.name)
            self.outcome.last_outcome = "ignored"
            self._publish(JobIgnored, reason=reason)
            return self._back_off(start)
        self.outcome.running = True
        try:
            run = getattr(self.job, "run")  # noqa: B009 - duck-typed jobs
            run(self.token)
        except JobCancelled as exc:
            self._finish_failed(exc, cancelled=self.token.is_cancelled())
        except Exception as exc:
            self._finish_failed(exc, cancelled=False)
        else:
            self.outcome.runs += 1
            self.outcome.last_outcome = "executed"
            elapsed = max(0.0, self._clock.monotonic() - start)
            self._publish(JobExecuted, duration=timedelta(seconds=elapsed))
        finally:
            self.outcome.running = False
        return self._clock.monotonic()

    def _finish_failed(self, exc: BaseException, *, cancelled: bool) -> None:
        self.outcome.runs += 1
        if cancelled:
            self.outcome.last_outcome = "canceled"
            self._publish(JobCanceled)
            return
        self.outcome.failures += 1
        self.outcome.last_outcome = "failed"
        logger.exception("%s failed", self.name, exc_info=exc)
        self._publish(JobFailed, exception=exc)

    def _back_off(self, start: float) -> float:
        """Sleep ``ignored_delay`` from ``start``; a change re-plans it, shutdown ends it."""
        while True:
            with self._lock:
                self._wake.clear()
                if self._stopping:
                    return self._clock.monotonic()
            delay = seconds(_ignored_delay(self.job))
            if delay == 0 and seconds(_period(self.job)) == 0:
                delay = _MIN_BACKOFF
            left = start + delay - self._clock.monotonic()
            if left <= 0:
                return start + delay
            self._clock.wait(self._wake, None if math.isinf(left) else left)

    def _publish(self, kind: type, **fields: object) -> None:
        self._publisher.publish(kind(job=self.job, at=self._clock.now(), **fields))


def _period(job: object) -> timedelta:
    return _attr(job, "period", INFINITE)


def _delay(job: object) -> timedelta:
    return _attr(job, "delay", timedelta(minutes=3))


def _ignored_delay(job: object) -> timedelta:
    return _attr(job, "ignored_delay", timedelta(minutes=1))


def _attr(job: object, name: str, default: timedelta) -> timedelta:
    """Read a duration a job exposes; junk is logged and the default used (never a dead thread)."""
    value = getattr(job, name, default)
    if isinstance(value, timedelta) and (value == INFINITE or value >= timedelta(0)):
        return value
    logger.error(
        "%s.%s is %r, not a valid duration; using %r", type(job).__name__, name, value, default
    )
    return default
