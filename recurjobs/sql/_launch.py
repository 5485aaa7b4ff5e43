"""Launcher: which of the due rows a poll found this host claims, and how a claim won runs.

The poller (``_poller``) decides when to poll and reads the due rows; the launcher takes them
from there: housekeeping rows beside the ``max_concurrent_jobs`` slots, the due period rows in
batches of up to 20 (one guarded ``UPDATE`` each), then one guarded ``UPDATE`` per row left
(calendar rows, rows known to be locked), giving up after a few claims lost in a row. A claim
won becomes a :class:`~recurjobs.sql._runs.Run` registered with the leases and handed to a
``recurjobs-run-<name>`` thread (``_workers``); a claim that cannot run is given back.

It works under the poller's lock: a run is registered under it while the poller is still
claiming, so ``stop_claiming()`` cannot miss its token.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Literal

from recurjobs._clock import Clock
from recurjobs._cron import Cron
from recurjobs._guard import log_quietly
from recurjobs._notifications import Publisher
from recurjobs._settings import DistributedJobSettings
from recurjobs._token import CancellationToken
from recurjobs.sql._fires import nominal_period_ms
from recurjobs.sql._leases import Leases
from recurjobs.sql._rows import Claim, Due, utc
from recurjobs.sql._rowview import RowView
from recurjobs.sql._runs import Run, RunStats, execute_run, first_line
from recurjobs.sql._store import JobStore
from recurjobs.sql._workers import RunThreads

__all__ = ["Launcher"]

logger = logging.getLogger("recurjobs.sql")

# Consecutive lost claims after which a poll stops: other hosts are working the same list.
_GIVE_UP_AFTER = 3
# Rows claimed per batch: small enough that hosts polling together share the due rows (and
# the work of starting and finishing their runs), large enough to save most round trips.
_BATCH = 20
# A batch chooses among at most this many due rows per row it may claim: choosing among all of
# a host's due rows made the database sort them all at every batch (15-20 ms a batch with
# 1,000 due rows, against 5 with 100).
_WINDOW = 4


class Launcher:
    """Claims due rows for a :class:`~recurjobs.sql._poller.DistributedPoller` and starts
    their runs.

    ``lock`` is the poller's lock; ``claiming`` (called with it held) tells whether the poller
    still claims; ``jobs`` (read with it held) and ``stats`` are the poller's, by job name.
    ``view`` holds the fire times a claim forgets and a Cron lease reads. ``wake`` (the
    poller's) is set whenever a run ends, so the poller can claim again.
    """

    def __init__(
        self,
        *,
        store: JobStore,
        settings: DistributedJobSettings,
        clock: Clock,
        publisher: Publisher,
        owner: str,
        leases: Leases,
        threads: RunThreads,
        view: RowView,
        lock: threading.Lock,
        claiming: Callable[[], bool],
        jobs: Mapping[str, object],
        stats: Mapping[str, RunStats],
        wake: threading.Event,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.publisher = publisher
        self.owner = owner
        self.leases = leases
        self._threads = threads
        self._view = view
        self._lock = lock
        self._claiming = claiming
        self._jobs = jobs
        self._stats = stats
        self._wake = wake

    def claim_due(
        self, due_rows: list[Due], free: int, crons: Collection[str], chores: Collection[str]
    ) -> None:
        """Claim and launch the due rows a poll found (``due_rows``, in its order) up to the
        ``free`` slots: the housekeeping jobs' rows (``chores``) beside the slots, then batches
        of period rows (``_claim_batches``) and one guarded UPDATE per row left (calendar rows,
        named in ``crons``; rows known to be locked). A failed claim is logged here; anything
        else raised propagates to the poll."""
        due = [d for d in due_rows if d.name not in chores]
        for found in due_rows:
            if found.name in chores:
                self._claim(found)  # beside the slots
        if len(due) <= free:
            # All of them fit, so the order only decides collisions: every host read the
            # same order and would otherwise race for the same row at every step.
            random.shuffle(due)
        # A row whose last claim waited out a lock held by another session goes last, so
        # that lock delays only that row, not the due jobs behind it.
        locked = self._locked_rows()
        due.sort(key=lambda d: d.name in locked)
        # The due period rows, claimed in batches of up to _BATCH of whichever are still
        # claimable (``_batch``); rows known to be locked, calendar (Cron) rows (their due
        # rule binds their own fire time) and, when a batch waited out a lock, the rest,
        # one by one after.
        rest = [d for d in due if d.name not in locked and d.name not in crons]
        if len(rest) > 1:
            launched, left = self._claim_batches(rest, free)
            free -= launched
            due = [d for d in due if d.name in left or d.name in crons]
        lost = 0
        for found in due:
            if free <= 0 or lost >= _GIVE_UP_AFTER:
                break  # the rest is being claimed by other hosts; next poll looks again
            won = self._claim(found)
            if won:
                free -= 1
                lost = 0
            elif won is False:
                lost += 1

    def _locked_rows(self) -> Collection[str]:
        """The rows whose last claim timed out on a lock (as the store reports them)."""
        return self.store.locked_rows()

    def _claim(self, found: Due) -> bool | None:
        """Claim and launch ``found``: True when won, False when another host was quicker,
        None when the statement failed (a locked row, a lost connection: only this row waits).
        """
        name = found.name
        with self._lock:
            job = self._jobs[name]
            if not self._claiming():
                return False
            self._view.forget_fire(name)  # claimed or lost: the next poll reads the row again
        lease = self._lease(job, found)
        sent = self.clock.monotonic()
        try:
            claim = self.store.try_claim(name, owner=self.owner, lease=lease, fire_ms=found.fire_ms)
        except Exception as exc:
            why = first_line(exc, self.store.engine)
            log_quietly(
                logging.WARNING,
                "claiming %s on %s failed: %s",
                name,
                self.store.url,
                why,
                on=logger,
            )
            return None
        if claim is None:
            return False  # another host was quicker
        return self._launch(job, claim, sent, manual=found.triggered)

    def _claim_batches(self, rows: list[Due], free: int) -> tuple[int, set[str]]:
        """Claim up to ``free`` of the period rows ``rows``, _BATCH at a time, and launch the
        runs won; return how many were launched and the names left to claim one by one (all
        those not claimed when a batch waited out a lock; else none).

        Each batch chooses among the next ``_WINDOW`` rows per row it may claim, in the order
        of ``rows`` with triggered rows first. A batch that won fewer than it asked for found
        the other rows of its window taken by another host, or locked: the next batch chooses
        among the rows after that window."""
        with self._lock:
            if not self._claiming():
                return 0, set()
            jobs = {d.name: self._jobs[d.name] for d in rows}
        manual = {d.name: d.triggered for d in rows}
        extra = self.settings.max_execution_time
        leases: dict[str, timedelta] = {}
        for name, job in jobs.items():
            period = _period(job)
            if isinstance(period, timedelta):  # else switched to a calendar since the poll
                leases[name] = period + extra
        order = [d.name for d in sorted(rows, key=lambda d: not d.triggered) if d.name in leases]
        launched = 0
        while order and free > launched:
            want = min(free - launched, _BATCH)
            window = order[: want * _WINDOW]
            result = self._claim_many(jobs, {n: leases[n] for n in window}, manual, want)
            if result is None:
                return launched, set(order)
            if result is False:
                break  # logged; the next poll tries again
            won, started = result
            launched += started
            if len(won) < want:
                order = order[len(window) :]
            else:
                taken = set(won)
                order = [n for n in order if n not in taken]
        return launched, set()

    def _claim_many(
        self,
        jobs: dict[str, object],
        leases: dict[str, timedelta],
        manual: dict[str, bool],
        limit: int,
    ) -> tuple[list[str], int] | Literal[False] | None:
        """Claim up to ``limit`` of the period rows of ``leases`` (name -> lease) in one
        statement and launch the runs won; the names won and how many runs were launched,
        False when the batch failed or the poller is stopping (logged; the next poll tries
        again), or None when it waited out a lock and the rows should be claimed one by one."""
        with self._lock:
            if not self._claiming():
                return False
        sent = self.clock.monotonic()
        try:
            claims = self.store.try_claim_many(leases, owner=self.owner, limit=limit)
        except Exception as exc:
            why = first_line(exc, self.store.engine)
            log_quietly(
                logging.WARNING,
                "claiming on %s failed: %s",
                self.store.url,
                why,
                on=logger,
            )
            return False
        if claims is None:
            return None
        started = sum(self._launch(jobs[c.name], c, sent, manual=manual[c.name]) for c in claims)
        return [c.name for c in claims], started

    def _launch(self, job: object, claim: Claim, sent: float, *, manual: bool) -> bool:
        """Start the run of a claim won (sent at ``sent``); False when it must not run."""
        name = claim.name
        if self.clock.monotonic() >= sent + claim.lease.total_seconds() - self.leases.interval:
            # The claim's acknowledgement came so late (a commit held up by a lock or a stall)
            # that its lease may already have lapsed and another host may own the row: never
            # start a run that could overlap a takeover. The row is taken again once stale.
            log_quietly(
                logging.WARNING,
                "the claim of %s on %s was confirmed too late to be safe; not running it",
                name,
                self.store.url,
                on=logger,
            )
            return False
        run = Run(
            job=job,
            claim=claim,
            token=CancellationToken(self.clock),
            stats=self._stats[name],
            owner=self.owner,
            manual=manual,
        )
        with self._lock:
            launch = self._claiming()
            if launch:  # registered under the lock, so stop_claiming() cannot miss its token
                self.leases.add(run, sent)
                try:
                    self._threads.submit(f"recurjobs-run-{name}", lambda: self._run(run))
                except RuntimeError as exc:  # the process is out of threads
                    self.leases.ended(run, True)  # forgotten: no heartbeat keeps it alive
                    run.done.set()
                    launch = False
                    log_quietly(
                        logging.ERROR,
                        "could not start the run of %s (%s); giving it back",
                        name,
                        exc,
                        on=logger,
                    )
        if not launch:
            try:
                self.store.release(claim)
            except Exception as exc:
                log_quietly(
                    logging.WARNING,
                    "releasing %s on %s failed (%s); it becomes claimable when its lease expires",
                    name,
                    self.store.url,
                    exc,
                    on=logger,
                )
            return False
        return True

    def _lease(self, job: object, found: Due) -> timedelta:
        """How long a claim lives unrenewed: the period (for a Cron row, the gap after the
        claimed fire time) plus ``max_execution_time``."""
        period = _period(job)
        if found.gap_ms is not None:
            gap = timedelta(milliseconds=found.gap_ms)
        elif isinstance(period, Cron):  # a Cron job whose row another host made a period row
            now = _ms(self._view.next_fire_of(found.name, period))
            gap = timedelta(milliseconds=nominal_period_ms(period, now))
        else:
            gap = period
        return gap + self.settings.max_execution_time

    def _run(self, run: Run) -> None:
        # Known before any user code runs: a stop() from the run itself must not wait for
        # its own thread (wait_runs).
        run.thread = threading.current_thread()
        settled = False
        try:
            settled = execute_run(run, store=self.store, clock=self.clock, publisher=self.publisher)
        finally:
            self.leases.ended(run, settled)
            run.done.set()
            self._wake.set()


def _period(job: object) -> timedelta | Cron:
    period: timedelta | Cron = getattr(job, "period")  # noqa: B009
    return period


def _ms(t: datetime) -> int:
    return (t - utc(0)) // timedelta(milliseconds=1)
