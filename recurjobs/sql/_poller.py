"""DistributedPoller: claims due distributed jobs for this host and runs them.

Threads (all daemons): ``recurjobs-poller`` writes the rows of this host's jobs at its first
poll (after the initial ``delay``; which rows need it: ``_rowwriter``) and then, every
``poll_period``, claims due jobs up to the free slots (which rows, in what order, and how a
claim won starts its run: ``_launch``). ``recurjobs-run-<name>``: the thread of a claimed run
(``_runs``), reused for later runs while it is no more than two minutes idle (``_workers``).
``recurjobs-heartbeat`` renews the claims held and retries finishes that failed, on its own
connection (``_heartbeat``). ``recurjobs-lease``: the lease watchdog, while runs exist
(``_leases``).

The poller thread is an APScheduler-style loop: one iteration (:meth:`DistributedPoller.step`),
then a wait on the host clock until the next poll; ``trigger``, ``add`` and ``stop_claiming``
only set state and wake it. Nothing a database, a job or a handler raises ends it. Besides the
``poll_period`` cadence it polls just after the next fire time of any free Cron row (as the
last poll read it, on the database clock), so a calendar run starts within the usual poll
latency of its fire time, not up to a whole ``poll_period`` late. What the last reads of the
rows said (paused flags, the calendar) is kept in ``_rowview``.

Stopping is three calls, made in this order by the host (each bounded by a deadline on
``time.monotonic()``): :meth:`~DistributedPoller.stop_claiming` (no new claims, every token
cancelled; never blocks), :meth:`~DistributedPoller.wait_runs` (runs end while their claims
keep being renewed), :meth:`~DistributedPoller.hand_back` (pending finishes flushed, threads
ended; a run still going keeps its claim, unrenewed, until it goes stale).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from recurjobs._clock import Clock
from recurjobs._cron import Cron
from recurjobs._guard import log_quietly
from recurjobs._jobs import check_distributed
from recurjobs._notifications import Publisher
from recurjobs._settings import DistributedJobSettings
from recurjobs._status import JobStatus
from recurjobs.sql._heartbeat import Heartbeat
from recurjobs.sql._launch import Launcher
from recurjobs.sql._leases import Leases
from recurjobs.sql._rows import Poll
from recurjobs.sql._rowview import RowView
from recurjobs.sql._rowwriter import RowWriter
from recurjobs.sql._runs import RunStats, first_line
from recurjobs.sql._store import JobStore
from recurjobs.sql._wake import next_boundary
from recurjobs.sql._workers import RunThreads

__all__ = ["HOUSEKEEPING", "DistributedPoller"]

logger = logging.getLogger("recurjobs.sql")

_LEAST_HEARTBEAT = 0.05  # seconds: a tiny poll period never renews claims in a busy loop

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"

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
        # Check the rows at the next iteration, not only at the next poll: a job was added, or
        # writing rows failed. (Checking every job's spec at every wake-up, as each ended run
        # wakes the poller, cost O(jobs) per run.)
        self._recheck = True
        self._polling = False  # the initial delay is over
        self._poll_asked = False
        self._next_poll = math.inf
        self._next_fire = math.inf  # monotonic: just after the next fire time of a free Cron row
        self._aligned: set[float] = set()  # periods (s) of jobs aligned to the clock
        self._boundary_poll = math.inf  # monotonic: just after the next aligned boundary
        self._thread: threading.Thread | None = None
        self._rows = RowWriter(store=store, lock=self._lock, jobs=self._jobs)
        self._view = RowView(store=store, clock=clock, lock=self._lock, poll_s=self._poll_s)
        self._launcher = Launcher(
            store=store,
            settings=settings,
            clock=clock,
            publisher=publisher,
            owner=owner,
            leases=self.leases,
            threads=self._threads,
            view=self._view,
            lock=self._lock,
            claiming=self._claiming,
            jobs=self._jobs,
            stats=self._stats,
            wake=self._wake,
        )
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

    def run_threads(self) -> list[threading.Thread]:
        """The threads of the runs going on now (a thread kept for reuse is not one)."""
        return [
            run.thread
            for run in self.leases.all()
            if run.thread is not None and not run.done.is_set()
        ]

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
            # On the caller's thread (JobHost.trigger_distributed): an app's raising filter loses
            # the line, never raises into the caller.
            why = self._why(exc)
            log_quietly(
                logging.WARNING,
                "triggering %s on %s failed: %s",
                name,
                self.store.url,
                why,
                on=logger,
            )
            return False
        if accepted:
            with self._lock:
                self._poll_asked = True
            self._wake.set()
        return accepted

    def note_paused(self, name: str, paused: bool) -> None:
        """Show a pause or resume made through this host at once (the next poll reads it)."""
        self._view.note_paused(name, paused)

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
            next_run=self._view.next_fire_of(name, period) if isinstance(period, Cron) else None,
            last_start=stats.last_start,
            last_outcome=stats.last_outcome,
            runs=stats.runs,
            failures=stats.failures,
            running=run is not None and not run.ended,
            paused=self._view.paused(name),
        )

    def stats(self, name: str) -> RunStats:
        """This host's counters for job ``name`` (lease losses included)."""
        with self._lock:
            return self._stats[name]

    def _claiming(self) -> bool:
        """Whether claims may be made and runs launched (called with the lock held)."""
        return self._state == _RUNNING

    # ----------------------------------------------------------- poller thread
    def _main(self) -> None:
        while True:
            try:
                self.step()
            except BaseException as exc:  # a bug or a job's SystemExit: keep polling
                log_quietly(
                    logging.ERROR, "distributed poller iteration failed", exc_info=exc, on=logger
                )
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
            pending = self._polling and (poll or self._recheck) and self._rows.pending()
            self._recheck = self._recheck and not self._polling
        if pending and not self._rows.ensure():
            with self._lock:
                self._recheck = True  # try again after a poll period, poll or not
        if poll and self._rows.schema_ready:  # jobs whose rows are not written yet are not due
            self._poll()

    def _poll(self) -> None:
        """Claim due jobs up to the free slots: one SELECT, then the claims (``_launch``:
        batches of period rows and one guarded UPDATE per row left)."""
        try:
            ready = bool(self._ready())
        except BaseException as exc:  # user code: even SystemExit must not end polling
            log_quietly(
                logging.ERROR,
                "the runtime_ready callable raised; not claiming this time",
                exc_info=exc,
                on=logger,
            )
            return
        held = {r.claim.name for r in self.leases.all()}  # running, or finish pending
        with self._lock:
            names = list(self._jobs)
            candidates = [n for n in names if n not in held]
            crons = dict(self._rows.crons)
            chores = set(self._chores)
        busy = sum(1 for r in self.leases.running() if r.claim.name not in chores)
        free = self.settings.max_concurrent_jobs - busy
        self._view.read_paused(names)
        if free <= 0:  # housekeeping needs no slot
            candidates = [n for n in candidates if n in chores]
        if not ready or not candidates:
            return
        try:
            polled = self.store.poll(candidates, crons)
            self._plan_fires(polled)
            self._launcher.claim_due(polled.due, free, crons, chores)
        except Exception as exc:
            url, why = self.store.url, self._why(exc)
            # The line is lost under an app's raising logging filter, not the poll's plans.
            log_quietly(
                logging.WARNING,
                "polling %s failed, trying again next poll: %s",
                url,
                why,
                on=logger,
            )

    def _plan_fires(self, polled: Poll) -> None:
        """Remember the calendar the poll read, and wake just after its next future fire time.

        The fire times are on the database clock; the wait is on the host's monotonic clock,
        counted from when the poll's answer arrived (the database read its now no later, so
        the wake-up is never early by the round trip).
        """
        read_at = self.clock.monotonic()
        with self._lock:
            self._next_fire = min(self._next_fire, self._view.plan_fires(polled, read_at))

    def _why(self, exc: BaseException) -> str:
        """What went wrong, in one line, password masked."""
        return first_line(exc, self.store.engine)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def heartbeat_interval(settings: DistributedJobSettings) -> float:
    """Seconds between two renewals of a claim: the poll period, at most a quarter of
    ``max_execution_time`` (a lease is ``period + max_execution_time``, so >= 4 intervals)."""
    quarter = settings.max_execution_time.total_seconds() / 4
    return max(min(settings.poll_period.total_seconds(), quarter), _LEAST_HEARTBEAT)
