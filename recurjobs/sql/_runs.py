"""One claimed run of a distributed job: its lease bookkeeping and the thread body that runs it.

The heartbeat thread renews the claim and a watchdog cancels the run when the claim could
expire unrenewed (``_leases``); this module only knows how to run the job once, publish what
happened, log one INFO line, and hand the row back with a fenced finish. A finish that fails
is not dropped: the run is marked ``pending`` and the heartbeat thread retries it.

Everything user-supplied that runs here (``execute``, notification handlers) goes through
:func:`recurjobs._guard.run_method` (handlers through the publisher's own guard): any
``BaseException`` is caught and reported, so neither ``SystemExit`` nor
``KeyboardInterrupt`` from a job can end the run thread before it hands the row back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from recurjobs._clock import Clock
from recurjobs._guard import call_user, log_quietly, run_method
from recurjobs._jobs import job_name
from recurjobs._notifications import (
    DistributedJobClaimed,
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    Publisher,
)
from recurjobs._runsink import RunSink
from recurjobs._token import CancellationToken, JobCancelled
from recurjobs.sql._rows import Claim
from recurjobs.sql._store import JobStore
from recurjobs.sql._urls import scrub

__all__ = ["Run", "RunStats", "execute_run", "finish_once", "first_line"]

logger = logging.getLogger("recurjobs.sql")


@dataclass
class RunStats:
    """What this host saw of one job's runs (for ``status()``)."""

    runs: int = 0
    failures: int = 0
    lease_losses: int = 0
    last_start: datetime | None = None
    last_duration: timedelta | None = None
    last_outcome: str | None = None


@dataclass(eq=False)
class Run:
    """A claimed run: the job, its claim and token, and its lease's renewal state.

    ``deadline`` (cancel the run if not renewed by then), ``next_beat`` (renew then) and
    ``next_finish`` (retry a pending finish then) are on the host clock's monotonic scale;
    ``_leases`` keeps them.
    """

    job: object
    claim: Claim
    token: CancellationToken
    stats: RunStats
    owner: str = ""
    deadline: float = 0.0
    next_beat: float = 0.0
    lost: bool = False
    ended: bool = False
    """``execute`` has returned (or raised): the thread is about to finish the row."""
    pending: bool = False
    """The finish failed; the claim is kept (and renewed) and the finish retried."""
    next_finish: float = 0.0
    finish_failures: int = 0
    thread: threading.Thread | None = field(default=None, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    """Set when the run's task has ended (its thread is reused: ``_workers``)."""
    manual: bool = False
    """Claimed because of a trigger (``due_now``), not the schedule (for the run history)."""


def execute_run(
    run: Run, *, store: JobStore, clock: Clock, publisher: Publisher
) -> bool:
    """Run the job once, publish and log the outcome, then try the fenced finish once.

    Sequence: ``DistributedJobClaimed``, ``JobExecuting``, then ``JobExecuted``, ``JobFailed``
    (anything raised, ``SystemExit`` included) or ``JobCanceled`` (the job raised
    ``JobCancelled`` after its token was cancelled). Returns whether the row was handed back
    (or the fence refused it); False leaves the finish pending for the heartbeat thread.
    """
    job, claim, token, stats = run.job, run.claim, run.token, run.stats
    outcome = "failed"
    raised: BaseException | None = None
    started = clock.monotonic()
    sink = publisher.sink  # the run history, told directly
    record = None if sink is None else _record_claim(sink, run)
    try:
        if publisher.wants(DistributedJobClaimed):
            publisher.publish(
                DistributedJobClaimed(job=job, at=clock.now(), claim_id=claim.claim_id)
            )
        stats.runs += 1
        stats.last_start = clock.now()
        if publisher.wants(JobExecuting):
            publisher.publish(JobExecuting(job=job, at=stats.last_start))
        started = clock.monotonic()
        raised = _call_execute(job, token)
        stats.last_duration = timedelta(seconds=clock.monotonic() - started)
        if raised is None:
            outcome = "executed"
            if publisher.wants(JobExecuted):
                publisher.publish(
                    JobExecuted(job=job, at=clock.now(), duration=stats.last_duration)
                )
        elif isinstance(raised, JobCancelled) and token.is_cancelled():
            outcome = "canceled"
            if publisher.wants(JobCanceled):
                publisher.publish(JobCanceled(job=job, at=clock.now()))
        else:
            stats.failures += 1
            if publisher.wants(JobFailed):
                publisher.publish(JobFailed(job=job, at=clock.now(), exception=raised))
    finally:
        stats.last_outcome = outcome
        run.ended = True
        if run.lost:
            outcome = "lease_lost" if outcome == "canceled" else outcome
        if sink is not None and record is not None:
            _record_end(sink, record, outcome, raised if outcome == "failed" else None)
        # Quietly: a raising logging filter must not keep the run from handing its row back.
        log_quietly(
            logging.INFO,
            "distributed job %s %s in %.3f s (claim %s, owner %s)",
            claim.name,
            outcome,
            clock.monotonic() - started,
            claim.claim_id,
            run.owner or "?",
            on=logger,
        )
    return finish_once(store, run)


def _record_claim(sink: RunSink, run: Run) -> object:
    claim = run.claim
    return call_user(
        lambda: f"recording a run of {claim.name} in the history",
        lambda: sink.claimed(run.job, claim_id=claim.claim_id, manual=run.manual),
        default=None,
    )


def _record_end(sink: RunSink, record: object, outcome: str, error: BaseException | None) -> None:
    call_user(
        "recording the end of a run in the history",
        lambda: sink.ended(record, outcome=outcome, error=error),
        default=None,
    )


def _call_execute(job: object, token: CancellationToken) -> BaseException | None:
    """Run the job through the one guard around user code; log what it raised."""
    raised = run_method(job, "execute", token)
    if raised is not None and not (isinstance(raised, JobCancelled) and token.is_cancelled()):
        log_quietly(
            logging.ERROR, "distributed job %s failed", job_name(job), exc_info=raised, on=logger
        )
    return raised


def finish_once(store: JobStore, run: Run) -> bool:
    """Stamp last_run and free the row if the claim is still ours; never raise.

    True when the finish is settled (landed, or the fence refused it: the row has a new
    owner); False when the database could not be reached, so the finish must be retried.
    """
    claim = run.claim
    try:
        landed = store.finish(claim)
    except Exception as exc:
        run.finish_failures += 1
        log_quietly(
            logging.WARNING,
            "distributed job %s: could not hand the row back on %s (%s); keeping the claim and "
            "retrying",
            claim.name,
            store.url,
            first_line(exc, store.engine),
            on=logger,
        )
        return False
    if not landed:
        # Either another server took the claim over (the run outlived its lease), or an
        # earlier attempt at this finish landed and only its answer was lost (the step's retry
        # then finds the row free): the fenced UPDATE cannot tell the two apart.
        log_quietly(
            logging.INFO,
            "distributed job %s: the row no longer carried this run's claim when the run "
            "ended (taken over by another server, or handed back by an earlier attempt whose "
            "answer was lost); the row was left as it is",
            claim.name,
            on=logger,
        )
    elif run.finish_failures:
        log_quietly(
            logging.INFO,
            "distributed job %s: the row was handed back after %d failed attempts",
            claim.name,
            run.finish_failures,
            on=logger,
        )
    return True


def first_line(exc: BaseException, engine: Engine | None = None) -> str:
    """The exception's type and the first line of its message (no SQL), for log lines; with
    ``engine``, any spelling of its password is masked."""
    line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return line if engine is None else scrub(line, engine)
