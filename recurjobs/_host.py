"""JobHost: registers jobs, starts one thread per recurring job, triggers, stops. The facade;
its parts live beside it: ``_registry``, ``_shutdown``, ``_trigger``, ``_pause``, ``_process``."""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from recurjobs._clock import Clock, SystemClock
from recurjobs._gates import Gates, host_gates, role_service, role_source
from recurjobs._history import HistorySettings, RunRecord
from recurjobs._history import attach as attach_history
from recurjobs._jobs import TriggerableJob, is_distributed
from recurjobs._listener import Attachment, attach
from recurjobs._loop import JobRunner
from recurjobs._maindom import MainDom
from recurjobs._notifications import (
    JobNotification,
    JobStarted,
    JobStarting,
    Publisher,
    Subscription,
)
from recurjobs._pause import set_host_row_paused
from recurjobs._process import started
from recurjobs._registry import Registry
from recurjobs._roles import ServerRole
from recurjobs._schedule import NextExecution
from recurjobs._settings import DistributedJobSettings
from recurjobs._shutdown import HostParts, Shutdown
from recurjobs._status import JobStatus
from recurjobs._trigger import (
    TJ,
    JobTrigger,
    check_trigger,
    deliver,
    forward_unstarted,
    refusal,
    runner_of,
)
from recurjobs._validate import database as check_database
from recurjobs._validate import instance, job_name_text, seconds, seconds_or_none
from recurjobs._watch import CalendarWatch

__all__ = ["JobHost", "JobTrigger"]

N = TypeVar("N", bound=JobNotification)

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"
_is_distributed = is_distributed  # recurjobs.prometheus and recurjobs.django import it from here


class JobHost:
    """Owns jobs and runs them: one daemon thread per recurring job, plus a poller thread when
    there are distributed jobs.

    ``JobHost(jobs).start()`` in an app, or ``with JobHost(jobs) as host:``. ``stop()`` (also
    run at interpreter exit) cancels every token and waits for the threads.
    """

    def __init__(
        self,
        jobs: Iterable[object] = (),
        *,
        clock: Clock | None = None,
        server_role: ServerRole | Callable[[], ServerRole] = ServerRole.SINGLE,
        runtime_ready: Callable[[], bool] | None = None,
        main_dom: bool | str | MainDom | None = None,
        database: Any = None,
        distributed: DistributedJobSettings | None = None,
        elect_server_role: bool = False,
        start_timeout: float = 10.0,
        exit_timeout: float = 5.0,
        history: bool | HistorySettings = False,
    ) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must provide now(), monotonic() and wait(), got {clock!r}")
        if isinstance(jobs, (str, bytes)) or not isinstance(jobs, Iterable):
            raise TypeError(f"jobs must be an iterable of jobs, got {jobs!r}")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._role_source = role_source(server_role)
        self._role_service = role_service(server_role)  # started and stopped with the host
        self._gates = host_gates(
            runtime_ready, server_role, main_dom, elect=elect_server_role, role=self._current_role
        )
        self.settings = instance(
            distributed if distributed is not None else DistributedJobSettings(),
            DistributedJobSettings,
            "distributed",
        )
        check_database(database)
        if not isinstance(elect_server_role, bool):
            raise TypeError(f"elect_server_role must be a bool, got {elect_server_role!r}")
        if elect_server_role and database is None:
            raise ValueError("elect_server_role=True needs database=...")
        self.database = database
        self._elect = elect_server_role
        self.start_timeout: float = seconds(start_timeout, "start_timeout")
        """How long ``start()`` waits for an unreachable database (seconds)."""
        self.exit_timeout: float = seconds(exit_timeout, "exit_timeout", infinite=True)
        """How long the stop at interpreter exit waits for the threads (seconds)."""
        self._publisher = Publisher()
        self._watch = CalendarWatch()  # the wall clock, for every calendar job of this host
        self._lock = threading.RLock()
        self._state = _NEW
        self._registry = Registry()  # the jobs and their pause marks
        self._runners: list[JobRunner] = []
        self._sql: Any = None  # the distributed side (poller, election), made at start()
        self._forwarding: Attachment | None = None  # receives triggers while this process is main
        self._shutdown: Shutdown | None = None  # made by the first stop()
        self._starter: threading.Thread | None = None  # the thread inside _start_runner()
        for job in jobs:
            self._registry.add(job, database=self.database)
        self._history: Any = attach_history(self, history)  # run history (None when off)

    # ---------------------------------------------------------------- registration
    def add(self, job: object) -> None:
        """Register another job; after ``start()`` it starts at once. When starting it fails
        (the database cannot be used for the first distributed job), it is not registered and
        the error is raised; it may be added again."""
        with self._lock:
            self._registry.add(job, database=self.database)
            if self._state != _RUNNING:
                return
            started = False
            try:
                if not _is_distributed(job):
                    self._start_runner(job)
                elif self._sql is None:
                    self._start_sql()  # starts every registered distributed job, this one too
                else:
                    self._sql.add(job)
                started = True
            finally:
                if not started:  # the error goes on to the caller; the job is not registered
                    self._registry.remove(job)
                    self._runners = [r for r in self._runners if r.job is not job]

    @property
    def jobs(self) -> tuple[object, ...]:
        """Every registered job, recurring first."""
        return self._registry.jobs

    # ------------------------------------------------------------------ life cycle
    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._state == _RUNNING

    def start(self) -> Self:
        """Start every job's thread (and the distributed poller); returns the host.

        Starting a running host does nothing; a stopped host cannot be started again.
        """
        with self._lock:
            if self._state == _RUNNING:
                return self
            if self._state == _STOPPED:
                raise RuntimeError("this JobHost was stopped; create a new one to start again")
            if self._gates.main_dom is not None:
                self._gates.main_dom.check()
            if self._registry.distributed or self._elect:
                self._start_sql()  # undoes itself if it fails: the host may start again
            begun = False
            try:
                self._start_rest()
                begun = True
            finally:
                if not begun:  # a part could not start (a thread, say): stop the others
                    self._state = _RUNNING
                    self.stop(5.0)
        atexit.register(self._stop_at_exit)
        return self

    def _start_rest(self) -> None:
        """start() after the database side: history, role service, listener, job threads."""
        if self._history is not None:
            self._history.start(self._sql)
        if self._role_service is not None:
            if getattr(self._role_service, "_eligible", False) is None:  # DatabaseServerRoles
                self._role_service._eligible = self._may_publish
            self._role_service.start(clock=self.clock, publisher=self._publisher)
        self._state = _RUNNING
        if self._gates.main_dom is not None:
            # Listen for forwarded triggers, and take the lock now if it is free, so that
            # other processes can reach a main instance from the start (not after `delay`).
            self._forwarding = attach(self._gates.main_dom, self)
            self._gates.main_dom.try_acquire()
        self._runners = []
        started(self)  # warns when another host of this process runs the same jobs
        for job in self._registry.recurring:
            self._start_runner(job)

    def _start_sql(self) -> None:
        from recurjobs.sql._integration import HostSql

        sql = HostSql(self)
        if self._history is not None:  # its tables are created (and checked) with the jobs table
            self._history.add_tables(sql.store)
        sql.start(self._registry.distributed)  # disposes of its engines if it raises
        self._sql = sql

    def _start_runner(self, job: object) -> None:
        """Start one job's thread; called with the host lock held, so the stop sequence (which
        takes the lock first) never sees a half-started job."""
        runner = JobRunner(
            job, clock=self.clock, gates=self._gates, publisher=self._publisher, watch=self._watch
        )
        runner.paused = self._registry.is_paused(job)
        self._runners.append(runner)
        self._starter = threading.current_thread()
        try:
            if self._publisher.wants(JobStarting):
                self._publisher.publish(JobStarting(job=job, at=self.clock.now()))
            if self._shutdown is not None:  # a JobStarting handler called stop(): run nothing
                runner.close()
            announce = self._publisher.wants(JobStarted)
            if announce:  # no notification of the job's may come before its JobStarted
                runner.hold()
            runner.start()
            if announce:
                self._publisher.publish(JobStarted(job=job, at=self.clock.now()))
                if self._shutdown is not None:  # ...or a JobStarted handler did
                    runner.close()
        finally:
            runner.release()
            self._starter = None

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every job and wait up to ``timeout`` seconds; True when every thread ended.

        Never hangs: job threads are daemons, so one that ignores its token is left behind
        (and logged). May be called from a job or a handler (it never joins the calling
        thread). A concurrent or repeated call waits on the first call's deadline.
        """
        limit = seconds_or_none(timeout, "timeout")
        with self._lock:
            if self._state != _RUNNING and self._shutdown is None:
                self._state = _STOPPED
                return True
            shutdown, first = self._shutdown, self._shutdown is None
            if shutdown is None:
                self._state = _STOPPED
                shutdown = self._shutdown = Shutdown(limit)
        if first:
            atexit.unregister(self._stop_at_exit)
        return shutdown.join(
            first, self._parts, lambda: self._starter is threading.current_thread()
        )

    def _parts(self) -> HostParts:
        """What the stop handles; the runners and the SQL side are read under the lock."""
        with self._lock:
            runners, sql = list(self._runners), self._sql
        return HostParts(
            runners, sql, self._role_service, self._forwarding, self._gates.main_dom, self._history
        )

    def _stop_at_exit(self) -> None:
        self.stop(self.exit_timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _after_fork_in_child(self) -> None:
        # The parent's threads do not exist in a child: forget them so start() works here.
        self._lock = threading.RLock()
        if self._state == _RUNNING:
            self._state = _NEW
            self._runners = []
            self._sql = None
            self._forwarding = None
            self._shutdown = None
            self._starter = None

    # -------------------------------------------------------------------- triggers
    def trigger(
        self,
        job: type[TJ] | TJ,
        strategy: NextExecution = NextExecution.NONE,
        *,
        next_delay: timedelta | None = None,
    ) -> bool:
        """Run a triggerable job now (or right after its current run).

        ``job`` is a registered job class or instance. ``strategy`` or ``next_delay`` say when
        the automatic run after it comes. Returns True when the trigger was accepted; False
        when the host is not running, the job is not registered, or the run cannot happen
        here now (the runtime is not ready or this server's role is not one of the job's).

        With ``main_dom``, a process that is not the machine's main instance (a web worker)
        hands the trigger to the main instance and returns whether it accepted; so does a host
        that was never started (a web process whose jobs run in a worker process of their own).
        """
        check_trigger(job, strategy, next_delay)
        with self._lock:
            unstarted = self._state == _NEW
        if unstarted and self._gates.main_dom is not None:
            return forward_unstarted(self, job, strategy, next_delay)
        return deliver(self, self._runner_for(job), strategy, next_delay)

    def _may_publish(self) -> bool:
        """Whether this host may hold the elected publisher role: without ``main_dom``,
        always; with it, only as the machine's main instance (taking the lock if it is free),
        since only the main instance runs role-gated recurring jobs."""
        main_dom = self._gates.main_dom
        return main_dom is None or main_dom.try_acquire()

    def _main_elsewhere(self) -> MainDom | None:
        """The main instance lock when this host's recurring jobs run in another process of
        the machine: a host never started, or started but not the main instance. Reads the
        lock's state only (it never tries to take the lock)."""
        main_dom = self._gates.main_dom
        with self._lock:
            state = self._state
        if main_dom is None or state == _STOPPED:
            return None
        return main_dom if state == _NEW or not main_dom.is_main else None

    @contextlib.contextmanager
    def _locked_before(self, expires: float) -> Iterator[bool]:
        """For a forwarded request: hold the host's lock if it can be had before ``expires``
        (``time.time()``, when the sender gives up); yields whether it was, in time."""
        left = expires - time.time()
        if left <= 0 or not self._lock.acquire(timeout=left):
            yield False
            return
        try:
            yield time.time() <= expires
        finally:
            self._lock.release()

    def _runner_until(self, job: object, expires: float) -> tuple[bool, JobRunner | None]:
        """For a forwarded trigger: ``job``'s runner (None: not running), found before
        ``expires``; ``(False, None)`` when the host's lock was held until then (the sender
        has given up: the trigger must not be delivered). The lock is not held afterwards:
        delivering runs the gates, which are user code."""
        with self._locked_before(expires) as in_time:
            if not in_time:
                return False, None
            return True, runner_of(job, self._runners) if self._state == _RUNNING else None

    def _refusal(self, job: object) -> str:
        """Why a trigger of ``job`` was refused here (for a forwarded trigger's sender)."""
        return refusal(self, self._runner_for(job))

    def _runner_for(self, job: object) -> JobRunner | None:
        """The runner of a registered job (class or instance), None when not running."""
        with self._lock:
            if self._state != _RUNNING:
                return None
            return runner_of(job, self._runners)

    def trigger_for(self, job_class: type[TJ]) -> JobTrigger[TJ]:
        """A typed handle that triggers ``job_class`` on this host."""
        if not (isinstance(job_class, type) and issubclass(job_class, TriggerableJob)):
            raise TypeError(f"job_class must be a TriggerableJob subclass, got {job_class!r}")
        return JobTrigger(self, job_class)

    def trigger_distributed(self, name: str) -> bool:
        """Mark the distributed job ``name`` due now, for whichever server polls next.

        True when the job's row took the mark. False when this host is not running or has no
        distributed job of that name, when the job is paused, when its row is not in the
        database yet (a new job's row is written at a host's first poll, ``delay`` after its
        start: see ``DistributedJobSettings``), or when the database could not be reached
        (logged as a warning).
        """
        job_name_text(name)
        with self._lock:
            sql = self._sql if self._state == _RUNNING else None
        return sql is not None and bool(sql.trigger(name))

    # ------------------------------------------------------------------ pause, resume
    def pause(self, job: object) -> bool:
        """Pause ``job`` (a registered class or instance, or a name as ``status()`` shows it).

        A recurring job is paused in this process: its due runs are ignored (``JobIgnored``
        with ``IgnoreReason.PAUSED``, no ignored back-off: the schedule keeps its cadence) and
        triggers of it are refused. A distributed job is paused for the whole cluster through
        its row: no server claims it until it is resumed; a run going on finishes. A name that
        no registered job has pauses the row of that name, if the table has one.

        Returns True when the job is known and paused, False for an unknown job. Works before
        ``start()`` and after ``stop()`` too (the database side then connects for the call);
        a database that cannot be reached raises the driver's error after a short retry.
        """
        return self._set_paused(job, True)

    def resume(self, job: object) -> bool:
        """Undo :meth:`pause` (same arguments and result). Resuming does not trigger a run:
        the job runs when its schedule says it is due next."""
        return self._set_paused(job, False)

    def _set_paused(self, job: object, paused: bool) -> bool:
        with self._lock:
            target = self._registry.mark_paused(job, paused, database=self.database is not None)
            runners = [r for r in self._runners if id(r.job) in {id(j) for j in target.recurring}]
            sql = self._sql if self._state == _RUNNING else None
        for runner in runners:
            runner.paused = paused
        known = bool(target.recurring)
        if target.row is None:
            return known
        done = set_host_row_paused(
            target.row,
            target.distributed,
            paused,
            sql=sql,
            database=self.database,
            settings=self.settings,
        )
        if done and target.distributed is not None:
            with self._lock:
                self._registry.mark_row_paused(target.row, paused)
        return done or known

    # ---------------------------------------------------------------- notifications
    def subscribe(self, kind: type[N], handler: Callable[[N], object]) -> Subscription:
        """Call ``handler`` synchronously for every notification of ``kind`` or a subclass."""
        return self._publisher.subscribe(kind, handler)

    @property
    def publisher(self) -> Publisher:
        """Where the host's notifications are published (for integrations)."""
        return self._publisher

    @property
    def gates(self) -> Gates:
        """The runtime, role and main-instance checks every run passes (for integrations)."""
        return self._gates

    # ------------------------------------------------------------------------ roles
    @property
    def elects_server_role(self) -> bool:
        """True when the role comes from a database election (``elect_server_role=True``)."""
        return self._elect

    def _current_role(self) -> ServerRole:
        sql = self._sql
        if self._elect and sql is not None:
            return sql.server_role()  # type: ignore[no-any-return]
        return self._role_source()

    @property
    def server_role(self) -> ServerRole:
        """This server's role as the gates see it now."""
        return self._gates.role()

    # ---------------------------------------------------------------------- history
    def history(self, job: object = None, *, limit: int = 100) -> list[RunRecord]:
        """The newest runs (up to ``limit``), newest first, from the shared history table.

        Every host's runs, of ``job`` (a job class, instance or name as ``status()`` shows
        it) or of every job. Reads the database directly, so it works before ``start()`` and
        after ``stop()``; needs ``database`` (RuntimeError otherwise).
        """
        if self.database is None:
            raise RuntimeError("history() needs JobHost(database=...)")
        from recurjobs.sql._historyhost import host_history

        return host_history(self, job, limit)

    # ----------------------------------------------------------------------- status
    def status(self) -> tuple[JobStatus, ...]:
        """One immutable record per registered job."""
        with self._lock:
            runners = {id(r.job): r for r in self._runners}
            sql = self._sql
            running = self._state == _RUNNING
        return self._registry.status(runners, running, sql)

    def __repr__(self) -> str:
        return f"JobHost(jobs={len(self.jobs)}, state={self._state})"
