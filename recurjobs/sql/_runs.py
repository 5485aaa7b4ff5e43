"""One claimed run of a distributed job: its lease bookkeeping and the thread body that runs it.

The poller thread renews the claim (heartbeat) and a watchdog cancels the run when the claim
could expire unrenewed; this module only knows how to run the job once, publish what happened
and hand the row back with a fenced finish.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from recurjobs._clock import Clock
from recurjobs._jobs import job_name
from recurjobs._notifications import (
    DistributedJobClaimed,
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    Publisher,
)
from recurjobs._token import CancellationToken, JobCancelled
from recurjobs.sql._rows import Claim
from recurjobs.sql._store import JobStore

__all__ = ["Run", "RunStats", "execute_run"]

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

    ``deadline`` (cancel the run if not renewed by then) and ``next_beat`` (renew then) are on
    the host clock's monotonic scale; ``_leases`` keeps them.
    """

    job: object
    claim: Claim
    token: CancellationToken
    stats: RunStats
    deadline: float = 0.0
    next_beat: float = 0.0
    lost: bool = False
    finishing: bool = False
    """Set before the finish is sent: a heartbeat that finds the claim gone after that is our
    own finish, not a takeover."""
    thread: threading.Thread | None = field(default=None, repr=False)


def execute_run(run: Run, *, store: JobStore, clock: Clock, publisher: Publisher) -> None:
    """Run the job once and publish the outcome; always hand the row back (fenced finish).

    Sequence: ``DistributedJobClaimed``, ``JobExecuting``, then ``JobExecuted``, ``JobFailed``
    or ``JobCanceled`` (the job raised ``JobCancelled`` after its token was cancelled).
    """
    job, claim, token, stats = run.job, run.claim, run.token, run.stats
    try:
        publisher.publish(DistributedJobClaimed(job=job, at=clock.now(), claim_id=claim.claim_id))
        stats.runs += 1
        stats.last_start = clock.now()
        publisher.publish(JobExecuting(job=job, at=stats.last_start))
        started = clock.monotonic()
        try:
            job.execute(token)  # type: ignore[attr-defined]
        except JobCancelled as exc:
            stats.last_duration = timedelta(seconds=clock.monotonic() - started)
            if token.is_cancelled():
                stats.last_outcome = "canceled"
                publisher.publish(JobCanceled(job=job, at=clock.now()))
            else:
                _failed(job, exc, clock, publisher, stats)
        except Exception as exc:
            stats.last_duration = timedelta(seconds=clock.monotonic() - started)
            _failed(job, exc, clock, publisher, stats)
        else:
            stats.last_duration = timedelta(seconds=clock.monotonic() - started)
            stats.last_outcome = "executed"
            publisher.publish(JobExecuted(job=job, at=clock.now(), duration=stats.last_duration))
    finally:
        run.finishing = True
        _finish(store, claim)


def _failed(
    job: object, exc: BaseException, clock: Clock, publisher: Publisher, stats: RunStats
) -> None:
    stats.failures += 1
    stats.last_outcome = "failed"
    logger.exception("distributed job %s failed", job_name(job), exc_info=exc)
    publisher.publish(JobFailed(job=job, at=clock.now(), exception=exc))


def _finish(store: JobStore, claim: Claim) -> None:
    """Stamp last_run and free the row if the claim is still ours; never raise."""
    try:
        if not store.finish(claim):
            logger.info(
                "distributed job %s: the claim was taken over before the run ended; the row "
                "was left to its new owner",
                claim.name,
            )
    except Exception as exc:
        logger.warning(
            "distributed job %s: could not hand the row back on %s (%s); it becomes claimable "
            "again when its lease expires",
            claim.name,
            store.url,
            exc,
        )
