"""DistributedPoller: claims due distributed jobs for this host and runs them.

Threads (all daemons): ``recurjobs-poller`` writes the rows of this host's jobs at its first
poll (after the initial ``delay``) and then, every ``poll_period``, claims due jobs up to the
free slots. ``recurjobs-run-<name>``: one short-lived thread per claimed run (``_runs``).
``recurjobs-heartbeat`` renews the claims held and retries finishes that failed, on its own
connection (``_heartbeat``). ``recurjobs-lease``: the lease watchdog, while runs exist
(``_leases``).

The poller thread is an APScheduler-style loop: one iteration (:meth:`DistributedPoller.step`),
then a wait on the host clock until the next poll; ``trigger``, ``add`` and ``stop_claiming``
only set state and wake it. Nothing a database, a job or a handler raises ends it.

Stopping is three calls, made in this order by the host (each bounded by a deadline on
``time.monotonic()``): :meth:`~DistributedPoller.stop_claiming` (no new claims, every token
cancelled; never blocks), :meth:`~DistributedPoller.wait_runs` (runs end while their claims
keep being renewed), :meth:`~DistributedPoller.hand_back` (pending finishes flushed, threads
ended; a run still going keeps its claim, unrenewed, until it goes stale).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta

from recurjobs._clock import Clock
from recurjobs._jobs import check_distributed
from recurjobs._notifications import Publisher
from recurjobs._settings import DistributedJobSettings
from recurjobs._status import JobStatus
from recurjobs._token import CancellationToken
from recurjobs.sql._heartbeat import Heartbeat
from recurjobs.sql._leases import Leases
from recurjobs.sql._rows import Claim
from recurjobs.sql._runs import Run, RunStats, execute_run, first_line
from recurjobs.sql._store import JobStore
from recurjobs.sql._wake import next_boundary

__all__ = ["DistributedPoller"]

logger = logging.getLogger("recurjobs.sql")

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"
# Consecutive lost claims after which a poll stops: other hosts are working the same list.
_GIVE_UP_AFTER = 3
# Rows claimed per batch: small enough that hosts polling together share the due rows (and
# the work of starting and finishing their runs), large enough to save most round trips.
_BATCH = 20


class DistributedPoller:
    """Runs this host's share of the distributed jobs.

    ``beat_store`` is the store the heartbeat thread uses (its own connection pool when the
    host made one); it defaults to ``store``.
    """

    def __init__(
        self,
        *,
        store: JobStore,
        jobs: Sequence[object],
        settings: DistributedJobSettings,
        clock: Clock,
        publisher: Publisher,
        owner: str,
        ready: Callable[[], bool],
        beat_store: JobStore | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.publisher = publisher
        self.owner = owner
        self._ready = ready
        self._poll_s = settings.poll_period.total_seconds()
        interval = heartbeat_interval(settings)
        self.leases = Leases(store=store, clock=clock, publisher=publisher, interval=interval)
        self.heartbeat = Heartbeat(
            leases=self.leases, store=beat_store if beat_store is not None else store, clock=clock
        )
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._state = _NEW
        self._jobs: dict[str, object] = {}
        self._stats: dict[str, RunStats] = {}
        self._ensured: dict[str, tuple[timedelta, bool]] = {}
        self._schema_ready = False
        self._polling = False  # the initial delay is over
        self._poll_asked = False
        self._next_poll = math.inf
        self._aligned: set[float] = set()  # periods (s) of jobs aligned to the clock
        self._boundary_poll = math.inf  # monotonic: just after the next aligned boundary
        self._thread: threading.Thread | None = None
        for job in jobs:
            self.add(job)

    # ------------------------------------------------------------------ control
    def add(self, job: object) -> None:
        """Take on another job; its row is written at the next poll (after the delay)."""
        check_distributed(job)
        name: str = getattr(job, "name")  # noqa: B009
        with self._lock:
            if self._jobs.get(name, job) is not job:
                raise ValueError(f"a distributed job named {name!r} is already registered")
            self._jobs[name] = job
            self._stats.setdefault(name, RunStats())
            if getattr(job, "align_to_clock", False):
                self._aligned.add(getattr(job, "period").total_seconds())  # noqa: B009
        self._wake.set()

    def start(self) -> None:
        """Start the poller and heartbeat threads; the first poll comes ``settings.delay``
        later."""
        with self._lock:
            if self._state == _RUNNING:
                return
            if self._state == _STOPPED:
                raise RuntimeError("this DistributedPoller was stopped; make a new one")
            self._state = _RUNNING
            self._next_poll = self.clock.monotonic() + self.settings.delay.total_seconds()
            thread = threading.Thread(target=self._main, name="recurjobs-poller", daemon=True)
            self._thread = thread
        self.heartbeat.start()
        thread.start()

    def stop_claiming(self) -> None:
        """No new claims; cancel every running job's token and wake the threads. Never blocks.

        The heartbeat thread keeps renewing the claims of runs that have not ended yet (a job
        that ignores its token must not be run twice meanwhile) until :meth:`hand_back`.
        """
        with self._lock:
            self._state = _STOPPED
        self.leases.cancel_all()
        self._wake.set()

    def wait_runs(self, deadline: float | None) -> bool:
        """Wait until every run's thread ended or ``deadline`` (``time.monotonic()``; None: no
        limit) passed; True when no run is left."""
        threads = [r.thread for r in self.leases.all() if r.thread is not None]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(_left(deadline))
        return not any(t.is_alive() for t in threads)

    def hand_back(self, deadline: float | None) -> bool:
        """End the poller and heartbeat threads, then flush pending finishes until ``deadline``.

        A run still going keeps its claim, unrenewed: it goes stale after its lease, so no other
        host runs the job meanwhile. True when every thread ended and no finish is pending.
        """
        if self._state == _NEW:
            return True  # never started: nothing to hand back
        if self._state == _RUNNING:
            self.stop_claiming()  # the caller skipped it
        thread = self._thread
        polled = thread is None or thread is threading.current_thread()
        if not polled and thread is not None:
            thread.join(_left(deadline))
            polled = not thread.is_alive()
        flushed = self.heartbeat.hand_back(deadline)
        return polled and flushed and not self.leases.running()

    def stop(self) -> None:
        """Same as :meth:`stop_claiming` (kept for callers of the earlier two-step API)."""
        self.stop_claiming()

    def join(self, timeout: float | None) -> bool:
        """:meth:`wait_runs`, then :meth:`hand_back`, within ``timeout`` real seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ran_out = self.wait_runs(deadline)
        return self.hand_back(deadline) and ran_out

    def trigger(self, name: str) -> bool:
        """Mark job ``name`` due now in the database and poll at once (after the delay).

        A job that is running now stays marked, so it runs once more right after this run.
        False when this host does not know the job, is not started or already stopped, or
        the database refused (no row yet, or unreachable: logged).
        """
        with self._lock:
            if self._state != _RUNNING or name not in self._jobs:
                return False
        try:
            accepted = self.store.trigger(name)
        except Exception as exc:
            logger.warning("triggering %s on %s failed: %s", name, self.store.url, self._why(exc))
            return False
        if accepted:
            with self._lock:
                self._poll_asked = True
            self._wake.set()
        return accepted

    def status(self) -> list[JobStatus]:
        """One record per job this host knows, as this host saw its runs."""
        with self._lock:
            jobs = list(self._jobs.items())
        return [self._status_of(name, job) for name, job in jobs]

    def _status_of(self, name: str, job: object) -> JobStatus:
        stats = self._stats[name]
        run = self.leases.get(name)
        return JobStatus(
            name=name,
            kind="distributed",
            period=getattr(job, "period"),  # noqa: B009
            next_run=None,  # the database decides; see JobStore.rows() for next_due
            last_start=stats.last_start,
            last_outcome=stats.last_outcome,
            runs=stats.runs,
            failures=stats.failures,
            running=run is not None and not run.ended,
        )

    def stats(self, name: str) -> RunStats:
        """This host's counters for job ``name`` (lease losses included)."""
        with self._lock:
            return self._stats[name]

    # ----------------------------------------------------------- poller thread
    def _main(self) -> None:
        while True:
            try:
                self.step()
            except BaseException:  # a bug or a job's SystemExit: keep polling
                logger.exception("distributed poller iteration failed")
            with self._lock:
                if self._state == _STOPPED:
                    return
            self.clock.wait(self._wake, self._wait_seconds())
            self._wake.clear()

    def _wait_seconds(self) -> float | None:
        now = self.clock.monotonic()
        with self._lock:
            if self._state != _RUNNING:
                return 0.0
            wake = min(self._next_poll, self._boundary_poll)
            if self._polling and self._pending():
                wake = min(wake, now + self._poll_s)  # retry a failed ensure
        return None if math.isinf(wake) else max(0.0, wake - now)

    def step(self) -> None:
        """One iteration: after the delay, write the rows that need it and poll when it is
        time."""
        now = self.clock.monotonic()
        with self._lock:
            if self._state != _RUNNING:
                return
            boundary = self._polling and now >= self._boundary_poll
            poll = now >= self._next_poll or (self._polling and self._poll_asked) or boundary
            if now >= self._next_poll:
                self._polling = True
                # Drift-free cadence; after a long stall, skip the missed polls.
                self._next_poll += self._poll_s
                if self._next_poll <= now:
                    self._next_poll = now + self._poll_s
            if poll:
                self._poll_asked = False
            if self._polling and (poll or math.isinf(self._boundary_poll)) and self._aligned:
                wall = self.clock.now().timestamp()
                self._boundary_poll = now + next_boundary(wall, self._aligned) - wall
            # Rows are written at the first poll, not at start: a new job's last_run is then
            # the database's now at start + delay, so it first runs at start + delay + period.
            pending = self._polling and self._pending()
        if pending:
            self._ensure()
        if poll and self._schema_ready:  # jobs whose rows are not written yet are not due
            self._poll()

    def _pending(self) -> bool:
        """Whether some row must be written: new job, changed period/alignment, or no table."""
        return not self._schema_ready or any(
            self._ensured.get(name) != _spec(job) for name, job in self._jobs.items()
        )

    def _ensure(self) -> bool:
        """Create the table and write the rows that need it; False (logged) on failure."""
        with self._lock:
            todo = [j for n, j in self._jobs.items() if self._ensured.get(n) != _spec(j)]
        try:
            if not self._schema_ready:
                self.store.create_schema()
                self._schema_ready = True
            self.store.ensure(todo)
        except Exception as exc:
            url = self.store.url
            logger.warning("preparing distributed jobs on %s failed: %s", url, self._why(exc))
            return False
        with self._lock:
            for job in todo:
                self._ensured[getattr(job, "name")] = _spec(job)  # noqa: B009
        return True

    def _poll(self) -> None:
        """Claim due jobs up to the free slots: one SELECT, then one guarded UPDATE per job."""
        try:
            ready = bool(self._ready())
        except BaseException:  # user code: even SystemExit must not end polling
            logger.exception("the runtime_ready callable raised; not claiming this time")
            return
        held = {r.claim.name for r in self.leases.all()}  # running, or finish pending
        free = self.settings.max_concurrent_jobs - len(self.leases.running())
        with self._lock:
            candidates = [n for n in self._jobs if n not in held]
        if not ready or free <= 0 or not candidates:
            return
        try:
            names = self.store.due_names(candidates)
            if len(names) <= free:
                # All of them fit, so the order only decides collisions: every host read the
                # same order and would otherwise race for the same row at every step.
                random.shuffle(names)
            # A row whose last claim waited out a lock held by another session goes last, so
            # that lock delays only that row, not the due jobs behind it.
            locked = self._locked_rows()
            names.sort(key=lambda n: n in locked)
            # The due rows there are slots for, claimed in batches (``_batch``); rows known
            # to be locked, and all of them when a batch waited out a lock, one by one after.
            # Only rows with a period (a timedelta) are batched: a calendar (Cron) row's due
            # rule binds its own fire time, so it is claimed on its own.
            with self._lock:
                plain = {
                    n
                    for n in names
                    if isinstance(getattr(self._jobs[n], "period", None), timedelta)
                }
            rest = [n for n in names if n not in locked and n in plain]
            while len(rest) > 1 and free > 0:
                batch, rest = rest[: min(free, _BATCH)], rest[min(free, _BATCH) :]
                won = self._claim_many(batch)
                if won is None:
                    break
                free -= won
                names = [n for n in names if n not in batch]
                if won == 0:
                    break  # other hosts are claiming these rows; the next poll looks again
            lost = 0
            for name in names:
                if free <= 0 or lost >= _GIVE_UP_AFTER:
                    break  # the rest is being claimed by other hosts; next poll looks again
                won = self._claim(name)
                if won:
                    free -= 1
                    lost = 0
                elif won is False:
                    lost += 1
        except Exception as exc:
            url = self.store.url
            logger.warning("polling %s failed, trying again next poll: %s", url, self._why(exc))

    def _why(self, exc: BaseException) -> str:
        """What went wrong, in one line, password masked."""
        return first_line(exc, self.store.engine)

    def _locked_rows(self) -> Collection[str]:
        """The rows whose last claim timed out on a lock (as the store reports them)."""
        return self.store.locked_rows()

    def _claim_many(self, names: list[str]) -> int | None:
        """Claim ``names`` in one batch and launch the runs won; how many were won (0 when the
        batch failed: logged, the next poll tries again), or None when it waited out a lock
        and the rows should be claimed one by one."""
        with self._lock:
            if self._state != _RUNNING:
                return 0
            jobs = {name: self._jobs[name] for name in names}
        extra = self.settings.max_execution_time
        leases = {name: getattr(job, "period") + extra for name, job in jobs.items()}  # noqa: B009
        sent = self.clock.monotonic()
        try:
            claims = self.store.try_claim_many(leases, owner=self.owner)
        except Exception as exc:
            logger.warning("claiming on %s failed: %s", self.store.url, self._why(exc))
            return 0
        if claims is None:
            return None
        return sum(self._launch(jobs[claim.name], claim, sent) for claim in claims)

    def _claim(self, name: str) -> bool | None:
        """Claim and launch ``name``: True when won, False when another host was quicker,
        None when the statement failed (a locked row, a lost connection: only this row waits).
        """
        with self._lock:
            job = self._jobs[name]
            if self._state != _RUNNING:
                return False
        lease = getattr(job, "period") + self.settings.max_execution_time  # noqa: B009
        sent = self.clock.monotonic()
        try:
            claim = self.store.try_claim(name, owner=self.owner, lease=lease)
        except Exception as exc:
            logger.warning("claiming %s on %s failed: %s", name, self.store.url, self._why(exc))
            return None
        if claim is None:
            return False  # another host was quicker
        return self._launch(job, claim, sent)

    def _launch(self, job: object, claim: Claim, sent: float) -> bool:
        """Start the run of a claim won (sent at ``sent``); False when it must not run."""
        name = claim.name
        if self.clock.monotonic() >= sent + claim.lease.total_seconds() - self.leases.interval:
            # The claim's acknowledgement came so late (a commit held up by a lock or a stall)
            # that its lease may already have lapsed and another host may own the row: never
            # start a run that could overlap a takeover. The row is taken again once stale.
            logger.warning(
                "the claim of %s on %s was confirmed too late to be safe; not running it",
                name,
                self.store.url,
            )
            return False
        run = Run(
            job=job,
            claim=claim,
            token=CancellationToken(self.clock),
            stats=self._stats[name],
            owner=self.owner,
        )
        run.thread = threading.Thread(
            target=self._run, args=(run,), name=f"recurjobs-run-{name}", daemon=True
        )
        with self._lock:
            launch = self._state == _RUNNING
            if launch:  # registered under the lock, so stop_claiming() cannot miss its token
                self.leases.add(run, sent)
        if not launch:
            try:
                self.store.release(claim)
            except Exception as exc:
                logger.warning(
                    "releasing %s on %s failed (%s); it becomes claimable when its lease "
                    "expires",
                    name,
                    self.store.url,
                    exc,
                )
            return False
        run.thread.start()
        return True

    def _run(self, run: Run) -> None:
        settled = False
        try:
            settled = execute_run(run, store=self.store, clock=self.clock, publisher=self.publisher)
        finally:
            self.leases.ended(run, settled)
            self._wake.set()


def _spec(job: object) -> tuple[timedelta, bool]:
    return getattr(job, "period"), bool(getattr(job, "align_to_clock", False))  # noqa: B009


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def heartbeat_interval(settings: DistributedJobSettings) -> float:
    """Seconds between two renewals of a claim: the poll period, at most a quarter of
    ``max_execution_time`` (a lease is ``period + max_execution_time``, so >= 4 intervals)."""
    quarter = settings.max_execution_time.total_seconds() / 4
    return min(settings.poll_period.total_seconds(), quarter)
