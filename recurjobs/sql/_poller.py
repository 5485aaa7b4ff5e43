"""DistributedPoller: claims due distributed jobs for this host and runs them.

Threads (all daemons): ``recurjobs-poller`` writes the rows of this host's jobs at its first
poll (after the initial ``delay``) and then, every ``poll_period``, claims due jobs up to the
free slots. ``recurjobs-run-<name>``: the thread of a claimed run (``_runs``), reused for later
runs while it is no more than two minutes idle (``_workers``).
``recurjobs-heartbeat`` renews the claims held and retries finishes that failed, on its own
connection (``_heartbeat``). ``recurjobs-lease``: the lease watchdog, while runs exist
(``_leases``).

The poller thread is an APScheduler-style loop: one iteration (:meth:`DistributedPoller.step`),
then a wait on the host clock until the next poll; ``trigger``, ``add`` and ``stop_claiming``
only set state and wake it. Nothing a database, a job or a handler raises ends it. Besides the
``poll_period`` cadence it polls just after the next fire time of any free Cron row (as the
last poll read it, on the database clock), so a calendar run starts within the usual poll
latency of its fire time, not up to a whole ``poll_period`` late.

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
from datetime import datetime, timedelta
from typing import Literal

from recurjobs._clock import Clock
from recurjobs._cron import Cron
from recurjobs._jobs import check_distributed
from recurjobs._notifications import Publisher
from recurjobs._settings import DistributedJobSettings
from recurjobs._status import JobStatus
from recurjobs._token import CancellationToken
from recurjobs.sql._fires import nominal_period_ms
from recurjobs.sql._heartbeat import Heartbeat
from recurjobs.sql._leases import Leases
from recurjobs.sql._rows import Claim, Due, Poll, utc
from recurjobs.sql._runs import Run, RunStats, execute_run, first_line
from recurjobs.sql._store import JobStore
from recurjobs.sql._wake import next_boundary
from recurjobs.sql._workers import RunThreads

__all__ = ["HOUSEKEEPING", "DistributedPoller"]

logger = logging.getLogger("recurjobs.sql")

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"
# Consecutive lost claims after which a poll stops: other hosts are working the same list.
_GIVE_UP_AFTER = 3
# Seconds past a fire time at which the poller wakes for it: the database's now must have
# reached the fire time when the claim's UPDATE runs.
_FIRE_MARGIN = 0.005
# Seconds between two reads of the paused flags for status() (the default poll period).
_PAUSED_READ_INTERVAL = 5.0
# Rows claimed per batch: small enough that hosts polling together share the due rows (and
# the work of starting and finishing their runs), large enough to save most round trips.
_BATCH = 20
# A batch chooses among at most this many due rows per row it may claim: choosing among all of
# a host's due rows made the database sort them all at every batch (15-20 ms a batch with
# 1,000 due rows, against 5 with 100).
_WINDOW = 4

HOUSEKEEPING = "_recurjobs_housekeeping"
"""A class attribute (True) marking a job as the library's own housekeeping (the history pruning
job): its runs take no ``max_concurrent_jobs`` slot, and it is claimed even when every slot is
taken, so a host never delays its user's jobs for its own chores, nor skips them when busy."""


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
        self._threads = RunThreads()
        self._state = _NEW
        self._jobs: dict[str, object] = {}
        self._chores: set[str] = set()  # the housekeeping jobs' names (HOUSEKEEPING)
        self._stats: dict[str, RunStats] = {}
        self._ensured: dict[str, tuple[timedelta | Cron, bool]] = {}
        self._paused: set[str] = set()  # as last read from the rows (_read_paused)
        self._paused_read_at = -math.inf
        self._paused_notes = 0  # pauses/resumes noted by this host (see _read_paused)
        self._schema_ready = False
        # Check the rows at the next iteration, not only at the next poll: a job was added, or
        # writing rows failed. (Checking every job's spec at every wake-up, as each ended run
        # wakes the poller, cost O(jobs) per run.)
        self._recheck = True
        self._crons: dict[str, Cron] = {}  # the calendar jobs, as the last _pending() found
        self._polling = False  # the initial delay is over
        self._poll_asked = False
        self._next_poll = math.inf
        self._next_fire = math.inf  # monotonic: just after the next fire time of a free Cron row
        self._fires: dict[str, int] = {}  # name -> next fire time (ms) at the last poll
        self._db_clock: tuple[int, float] | None = None  # (database now ms, monotonic) then
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
            if getattr(type(job), HOUSEKEEPING, False) is True:
                self._chores.add(name)
            self._stats.setdefault(name, RunStats())
            if getattr(job, "align_to_clock", False):
                self._aligned.add(getattr(job, "period").total_seconds())  # noqa: B009
            self._recheck = True
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
        # (A run whose thread could not start, the system being out of threads, is done.)
        runs, me = self.leases.all(), threading.current_thread()
        for run in runs:
            if run.thread is not me:  # stop() from a run's own thread does not wait for it
                run.done.wait(_left(deadline))
        return all(run.done.is_set() for run in runs)

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
        parked = self._threads.close(_left(deadline))  # busy ones end after their run
        return polled and flushed and parked and not self.leases.running()

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

    def note_paused(self, name: str, paused: bool) -> None:
        """Show a pause or resume made through this host at once (the next poll reads it)."""
        with self._lock:
            self._paused_notes += 1  # a read begun before this note must not undo it
            if paused:
                self._paused.add(name)
            else:
                self._paused.discard(name)

    def _read_paused(self, names: list[str]) -> None:
        """Refresh which of this host's jobs are paused, for ``status()`` (claims do not need
        it: the claim guard itself skips paused rows). At most every 5 s, so a fast poll
        does not double its queries. A failure keeps the last view."""
        now = self.clock.monotonic()
        if now - self._paused_read_at < max(self._poll_s, _PAUSED_READ_INTERVAL):
            return
        self._paused_read_at = now
        with self._lock:
            notes = self._paused_notes
        try:
            paused = self.store.paused_names(names)
        except Exception as exc:
            logger.debug("reading paused jobs on %s failed: %s", self.store.url, self._why(exc))
            return
        with self._lock:
            if notes == self._paused_notes:  # else a pause/resume landed meanwhile: keep it
                self._paused = paused

    def status(self) -> list[JobStatus]:
        """One record per job this host knows, as this host saw its runs."""
        with self._lock:
            jobs = list(self._jobs.items())
        return [self._status_of(name, job) for name, job in jobs]

    def _status_of(self, name: str, job: object) -> JobStatus:
        stats = self._stats[name]
        run = self.leases.get(name)
        period = getattr(job, "period")  # noqa: B009
        return JobStatus(
            name=name,
            kind="distributed",
            period=period,
            # A period job: the database decides (see JobStore.rows() for next_due).
            next_run=self._next_fire_of(name, period) if isinstance(period, Cron) else None,
            last_start=stats.last_start,
            last_outcome=stats.last_outcome,
            runs=stats.runs,
            failures=stats.failures,
            running=run is not None and not run.ended,
            paused=name in self._paused,
        )

    def _next_fire_of(self, name: str, cron: Cron) -> datetime:
        """A Cron job's next fire time: as the last poll found its free row (a past time: due,
        claimed at the next chance); else the first one after the database's now, estimated
        from the last poll (the host's clock before any poll)."""
        with self._lock:
            fire = self._fires.get(name)
            db_clock = self._db_clock
        if fire is not None:
            return utc(fire)
        if db_clock is None:
            return cron.next_after(self.clock.now())
        now_ms, read_at = db_clock
        elapsed = timedelta(seconds=max(0.0, self.clock.monotonic() - read_at))
        return cron.next_after(utc(now_ms) + elapsed)

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
            wake = min(self._next_poll, self._next_fire, self._boundary_poll)
            if self._polling and self._recheck:
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
            poll = poll or now >= self._next_fire
            if now >= self._next_poll:
                self._polling = True
                # Drift-free cadence; after a long stall, skip the missed polls.
                self._next_poll += self._poll_s
                if self._next_poll <= now:
                    self._next_poll = now + self._poll_s
            if poll:
                self._poll_asked = False
                self._next_fire = math.inf  # the poll plans the next one
            if self._polling and (poll or math.isinf(self._boundary_poll)) and self._aligned:
                wall = self.clock.now().timestamp()
                self._boundary_poll = now + next_boundary(wall, self._aligned) - wall
            # Rows are written at the first poll, not at start: a new job's last_run is then
            # the database's now at start + delay, so it first runs at start + delay + period.
            # A period changed on a job object is noticed at the next poll.
            pending = self._polling and (poll or self._recheck) and self._pending()
            self._recheck = self._recheck and not self._polling
        if pending:
            self._ensure()
        if poll and self._schema_ready:  # jobs whose rows are not written yet are not due
            self._poll()

    def _pending(self) -> bool:
        """Whether some row must be written: new job, changed period/alignment, or no table.

        One pass over the jobs (called under the lock, at most once per poll), which also
        notes the calendar (Cron) jobs for the poll.
        """
        ensured = self._ensured
        crons: dict[str, Cron] = {}
        pending = not self._schema_ready
        for name, job in self._jobs.items():
            spec = _spec(job)
            if isinstance(spec[0], Cron):
                crons[name] = spec[0]
            if not pending and ensured.get(name) != spec:
                pending = True
        self._crons = crons
        return pending

    def _ensure(self) -> bool:
        """Create the table and write the rows that need it; False (logged) on failure."""
        with self._lock:
            todo = [j for n, j in self._jobs.items() if self._ensured.get(n) != _spec(j)]
        try:
            if not self._schema_ready:
                self.store.create_schema()
                self._schema_ready = True
                self._warm_up()
            self.store.ensure(todo)
        except Exception as exc:
            url = self.store.url
            logger.warning("preparing distributed jobs on %s failed: %s", url, self._why(exc))
            with self._lock:
                self._recheck = True  # try again after a poll period, poll or not
            return False
        with self._lock:
            for job in todo:
                self._ensured[getattr(job, "name")] = _spec(job)  # noqa: B009
        return True

    def _warm_up(self) -> None:
        """Have the claim and finish statements compiled now rather than at the first
        boundary, where every host would compile them at once (best effort)."""
        try:
            self.store.warm_up()
        except Exception as exc:
            logger.debug("warming up on %s failed: %s", self.store.url, self._why(exc))

    def _poll(self) -> None:
        """Claim due jobs up to the free slots: one SELECT, then batches of period rows
        (``_claim_batches``) and one guarded UPDATE per row left (calendar rows, rows known to
        be locked)."""
        try:
            ready = bool(self._ready())
        except BaseException:  # user code: even SystemExit must not end polling
            logger.exception("the runtime_ready callable raised; not claiming this time")
            return
        held = {r.claim.name for r in self.leases.all()}  # running, or finish pending
        with self._lock:
            names = list(self._jobs)
            candidates = [n for n in names if n not in held]
            crons = dict(self._crons)
            chores = set(self._chores)
        busy = sum(1 for r in self.leases.running() if r.claim.name not in chores)
        free = self.settings.max_concurrent_jobs - busy
        self._read_paused(names)
        if free <= 0:  # housekeeping needs no slot
            candidates = [n for n in candidates if n in chores]
        if not ready or not candidates:
            return
        try:
            polled = self.store.poll(candidates, crons)
            self._plan_fires(polled)
            due = [d for d in polled.due if d.name not in chores]
            for found in polled.due:
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
        except Exception as exc:
            url = self.store.url
            logger.warning("polling %s failed, trying again next poll: %s", url, self._why(exc))

    def _plan_fires(self, polled: Poll) -> None:
        """Remember the calendar the poll read, and wake just after its next future fire time.

        The fire times are on the database clock; the wait is on the host's monotonic clock,
        counted from when the poll's answer arrived (the database read its now no later, so
        the wake-up is never early by the round trip).
        """
        read_at = self.clock.monotonic()
        with self._lock:
            self._fires = dict(polled.fires_ms)
            if polled.now_ms is None:
                return
            self._db_clock = (polled.now_ms, read_at)
            ahead = [f for f in polled.fires_ms.values() if f > polled.now_ms]
            if ahead:
                wake = read_at + (min(ahead) - polled.now_ms) / 1000 + _FIRE_MARGIN
                self._next_fire = min(self._next_fire, wake)

    def _why(self, exc: BaseException) -> str:
        """What went wrong, in one line, password masked."""
        return first_line(exc, self.store.engine)

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
            if self._state != _RUNNING:
                return False
            self._fires.pop(name, None)  # claimed or lost: the next poll reads the row again
        lease = self._lease(job, found)
        sent = self.clock.monotonic()
        try:
            claim = self.store.try_claim(name, owner=self.owner, lease=lease, fire_ms=found.fire_ms)
        except Exception as exc:
            logger.warning("claiming %s on %s failed: %s", name, self.store.url, self._why(exc))
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
            if self._state != _RUNNING:
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
            if self._state != _RUNNING:
                return False
        sent = self.clock.monotonic()
        try:
            claims = self.store.try_claim_many(leases, owner=self.owner, limit=limit)
        except Exception as exc:
            logger.warning("claiming on %s failed: %s", self.store.url, self._why(exc))
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
            manual=manual,
        )
        with self._lock:
            launch = self._state == _RUNNING
            if launch:  # registered under the lock, so stop_claiming() cannot miss its token
                self.leases.add(run, sent)
                try:
                    self._threads.submit(f"recurjobs-run-{name}", lambda: self._run(run))
                except RuntimeError as exc:  # the process is out of threads
                    self.leases.ended(run, True)  # forgotten: no heartbeat keeps it alive
                    run.done.set()
                    launch = False
                    logger.error("could not start the run of %s (%s); giving it back", name, exc)
        if not launch:
            try:
                self.store.release(claim)
            except Exception as exc:
                logger.warning(
                    "releasing %s on %s failed (%s); it becomes claimable when its lease expires",
                    name,
                    self.store.url,
                    exc,
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
            now = _ms(self._next_fire_of(found.name, period))
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


def _spec(job: object) -> tuple[timedelta | Cron, bool]:
    return _period(job), bool(getattr(job, "align_to_clock", False))


def _period(job: object) -> timedelta | Cron:
    period: timedelta | Cron = getattr(job, "period")  # noqa: B009
    return period


def _ms(t: datetime) -> int:
    return (t - utc(0)) // timedelta(milliseconds=1)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def heartbeat_interval(settings: DistributedJobSettings) -> float:
    """Seconds between two renewals of a claim: the poll period, at most a quarter of
    ``max_execution_time`` (a lease is ``period + max_execution_time``, so >= 4 intervals)."""
    quarter = settings.max_execution_time.total_seconds() / 4
    return min(settings.poll_period.total_seconds(), quarter)
