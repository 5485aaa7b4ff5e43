"""JobHost: registers jobs, starts one thread per recurring job, triggers, stops."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from recurjobs._clock import Clock, SystemClock
from recurjobs._forward import forward_trigger
from recurjobs._gates import Gates, main_dom_source, role_source
from recurjobs._guard import call_user, in_user_code
from recurjobs._history import HistorySettings, RunRecord
from recurjobs._history import attach as attach_history
from recurjobs._jobs import DistributedJob, RecurringJob, TriggerableJob, check_distributed
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
from recurjobs._roles import ServerRole
from recurjobs._schedule import NextExecution
from recurjobs._settings import DistributedJobSettings
from recurjobs._shutdown import Shutdown
from recurjobs._status import JobStatus, not_started
from recurjobs._validate import callable_, duration, instance, schedule, seconds_or_none
from recurjobs._watch import CalendarWatch

__all__ = ["JobHost", "JobTrigger"]

logger = logging.getLogger("recurjobs")

TJ = TypeVar("TJ", bound=TriggerableJob)
N = TypeVar("N", bound=JobNotification)

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"
_WAKE_BATCH = 16  # stop(): threads woken together
_BATCH_WAIT = 0.05  # stop(): longest wait for a batch to end before waking the next
_started_hosts: weakref.WeakSet[JobHost] = weakref.WeakSet()


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
        # A role source with a life of its own (recurjobs.sql.DatabaseServerRoles) is started
        # and stopped with the host.
        self._role_service: Any = (
            server_role
            if all(callable(getattr(server_role, m, None)) for m in ("start", "stop", "join"))
            else None
        )
        ready = callable_(runtime_ready, "runtime_ready") if runtime_ready is not None else None
        # A fixed role without an election is handed to the gates as it is (no call per run).
        fixed = isinstance(server_role, ServerRole) and not elect_server_role
        self._gates = Gates(
            runtime_ready=ready,  # type: ignore[arg-type]
            server_role=server_role if fixed else self._current_role,
            main_dom=main_dom_source(main_dom),
        )
        self.settings = instance(
            distributed if distributed is not None else DistributedJobSettings(),
            DistributedJobSettings,
            "distributed",
        )
        if database is not None and not isinstance(database, str) and not _is_engine(database):
            raise TypeError(
                f"database must be a URL string or an SQLAlchemy Engine, got {database!r}"
            )
        if isinstance(database, str):
            # Imported here: an app without a database never loads SQLAlchemy.
            from recurjobs.sql._urls import check_url

            check_url(database)
        if not isinstance(elect_server_role, bool):
            raise TypeError(f"elect_server_role must be a bool, got {elect_server_role!r}")
        if elect_server_role and database is None:
            raise ValueError("elect_server_role=True needs database=...")
        self.database = database
        self._elect = elect_server_role
        self.start_timeout: float = _timeout(start_timeout, "start_timeout")
        """How long ``start()`` waits for an unreachable database (seconds)."""
        self.exit_timeout: float = _timeout(exit_timeout, "exit_timeout")
        """How long the stop at interpreter exit waits for the threads (seconds)."""
        self._publisher = Publisher()
        self._watch = CalendarWatch()  # the wall clock, for every calendar job of this host
        self._lock = threading.RLock()
        self._state = _NEW
        self._recurring: list[object] = []
        self._distributed: list[object] = []
        self._ids: set[int] = set()  # id() of every registered job (the lists keep them alive)
        self._runners: list[JobRunner] = []
        self._sql: Any = None  # the distributed side (poller, election), made at start()
        self._forwarding: Attachment | None = None  # receives triggers while this process is main
        self._shutdown: Shutdown | None = None  # made by the first stop()
        self._starter: threading.Thread | None = None  # the thread inside _start_runner()
        self._paused: set[int] = set()  # id() of the paused recurring jobs
        self._paused_rows: set[str] = set()  # distributed jobs this host paused (for status)
        for job in jobs:
            self._register(job)
        self._history: Any = attach_history(self, history)  # run history (None when off)

    # ---------------------------------------------------------------- registration
    def add(self, job: object) -> None:
        """Register another job; after ``start()`` it starts at once."""
        with self._lock:
            self._register(job)
            if self._state != _RUNNING:
                return
            if _is_distributed(job):
                if self._sql is None:
                    self._start_sql()  # starts every registered distributed job, this one too
                else:
                    self._sql.add(job)
            else:
                self._start_runner(job)

    def _register(self, job: object) -> None:
        if isinstance(job, type):
            raise TypeError(f"job must be an instance, not the class {job.__name__}")
        if id(job) in self._ids:
            raise ValueError(f"job {job!r} is already registered")
        if _is_distributed(job):
            check_distributed(job)
            if self.database is None:
                raise ValueError(f"distributed job {job!r} needs JobHost(database=...)")
            name = getattr(job, "name")  # noqa: B009
            if any(getattr(j, "name") == name for j in self._distributed):  # noqa: B009
                raise ValueError(f"a distributed job named {name!r} is already registered")
            self._distributed.append(job)
            self._ids.add(id(job))
            return
        if not callable(getattr(job, "run", None)):
            raise TypeError(f"job must have a run(token) method, got {job!r}")
        schedule(getattr(job, "period", None), "period")
        for attr in ("delay", "ignored_delay"):
            if hasattr(job, attr):
                duration(getattr(job, attr), attr)
        self._recurring.append(job)
        self._ids.add(id(job))

    @property
    def jobs(self) -> tuple[object, ...]:
        """Every registered job, recurring first."""
        return (*self._recurring, *self._distributed)

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
            if self._distributed or self._elect:
                self._start_sql()
            if self._history is not None:
                self._history.start(self._sql)
            if self._role_service is not None:
                self._role_service.start(clock=self.clock, publisher=self._publisher)
            self._state = _RUNNING
            if self._gates.main_dom is not None:
                # Listen for forwarded triggers, and take the lock now if it is free, so that
                # other processes can reach a main instance from the start (not after `delay`).
                self._forwarding = attach(self._gates.main_dom, self)
                self._gates.main_dom.try_acquire()
            self._runners = []
            _warn_if_duplicated(self)
            _started_hosts.add(self)
            for job in self._recurring:
                self._start_runner(job)
        atexit.register(self._stop_at_exit)
        return self

    def _start_sql(self) -> None:
        from recurjobs.sql._integration import HostSql

        self._sql = HostSql(self)
        if self._history is not None:  # its tables are created (and checked) with the jobs table
            self._history.add_tables(self._sql.store)
        self._sql.start(self._distributed)

    def _start_runner(self, job: object) -> None:
        """Start one job's thread; called with the host lock held, so the stop sequence (which
        takes the lock first) never sees a half-started job."""
        runner = JobRunner(
            job, clock=self.clock, gates=self._gates, publisher=self._publisher, watch=self._watch
        )
        runner.paused = id(job) in self._paused
        self._runners.append(runner)
        self._starter = threading.current_thread()
        try:
            if self._publisher.wants(JobStarting):
                self._publisher.publish(JobStarting(job=job, at=self.clock.now()))
            if self._shutdown is not None:  # a JobStarting handler called stop(): run nothing
                runner.close()
            runner.start()
            if self._publisher.wants(JobStarted):
                self._publisher.publish(JobStarted(job=job, at=self.clock.now()))
        finally:
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
        on_host_thread = self._on_host_thread()
        if first and not on_host_thread:
            return shutdown.run(lambda: self._stop_sequence(shutdown))
        if first:
            shutdown.run_in_thread(lambda: self._stop_sequence(shutdown))
        if shutdown.runs_here() or self._starter is threading.current_thread():
            # A handler of the sequence itself, or of start(): the sequence goes on after it.
            return False
        if on_host_thread:
            return shutdown.wait_for_threads(self._job_threads)
        if shutdown.done():
            return self._all_ended()
        return shutdown.wait()

    def _stop_sequence(self, shutdown: Shutdown) -> bool:
        """The stop order, top to bottom; the only place it is written. Returns whether every
        thread ended by ``shutdown.deadline``."""
        with self._lock:
            runners, sql = list(self._runners), self._sql
        # 1. No run begins any more: cancel every token and stop claiming distributed runs.
        for runner in runners:
            runner.close()
        if sql is not None:
            sql.stop_claiming()
        # ... then publish JobStopping and wake each job thread. In batches, each given a
        # moment to end: thousands of threads woken at once fight over the GIL.
        for i in range(0, len(runners), _WAKE_BATCH):
            batch = runners[i : i + _WAKE_BATCH]
            for runner in batch:
                runner.stop()
            until = time.monotonic() + _BATCH_WAIT
            if shutdown.deadline is not None:
                until = min(until, shutdown.deadline)
            for runner in batch:
                runner.join(shutdown.left(until))
        # 2. Wait for the job threads and the distributed runs. Claims and the elected role
        #    stay alive meanwhile, so no other server starts the same work yet.
        ended = True
        for runner in runners:
            if not runner.join(shutdown.left()):
                logger.warning("%s did not stop before the stop() deadline", runner.name)
                ended = False
        if sql is not None:
            ended = sql.wait_runs(shutdown.deadline) and ended
        # 3. Hand back the claims: flush pending finishes, end the poller and heartbeats.
        if sql is not None:
            ended = sql.hand_back(shutdown.deadline) and ended
        # 4. Resign the elected role, now that the jobs it gates have ended.
        if sql is not None:
            sql.resign()
        service = self._role_service
        if service is not None:
            call_user("stop() of the server_role service", service.stop, default=None)
            joined = call_user(
                "join() of the server_role service", service.join, shutdown.left(), default=False
            )
            ended = bool(joined) and ended
        # 5. Stop listening for forwarded triggers, then release the main-instance lock:
        #    another process may take over now.
        if self._forwarding is not None:
            self._forwarding.close()
        if self._gates.main_dom is not None:
            self._gates.main_dom.release()
        # 6. Write the run history still queued (every run has ended or been given up on).
        if self._history is not None:
            ended = self._history.close(shutdown.deadline) and ended
        # 7. Dispose of the engines recurjobs made.
        if sql is not None:
            sql.dispose()
        return ended

    def _on_host_thread(self) -> bool:
        """Whether the caller is a thread the stop sequence waits for (or runs user code)."""
        me = threading.current_thread()
        with self._lock:
            runners = list(self._runners)
        return in_user_code() or any(r.owns(me) for r in runners)

    def _job_threads(self) -> list[threading.Thread]:
        with self._lock:
            return [r.thread for r in self._runners if r.thread is not None]

    def _all_ended(self) -> bool:
        """After the stop sequence: whether every thread has ended by now (no waiting)."""
        with self._lock:
            runners, sql = list(self._runners), self._sql
        ended = all(r.join(0) for r in runners)
        if sql is not None:
            ended = sql.wait_runs(time.monotonic()) and ended
        return ended

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
        """
        if not isinstance(strategy, NextExecution):
            raise TypeError(f"strategy must be a NextExecution, got {strategy!r}")
        if next_delay is not None:
            duration(next_delay, "next_delay")
            if strategy is not NextExecution.NONE:
                raise ValueError(
                    f"give either strategy or next_delay, not both (strategy={strategy!r}, "
                    f"next_delay={next_delay!r})"
                )
        if isinstance(job, str):
            raise TypeError(
                f"job must be the job class or instance to trigger, not the name {job!r}; "
                "for a distributed job use trigger_distributed(name)"
            )
        if not isinstance(job, (type, TriggerableJob)):
            raise TypeError(f"job must be a TriggerableJob subclass or instance, got {job!r}")
        kind = job if isinstance(job, type) else type(job)
        if not issubclass(kind, TriggerableJob):
            raise TypeError(
                f"{kind.__name__} cannot be triggered: it does not subclass TriggerableJob"
            )
        runner = self._runner_for(job)
        if runner is None or runner.paused:
            return False
        if not self._gates.is_main():
            return self._forward(runner.job, strategy, next_delay)
        if self._gates.check(runner.view.server_roles()) is not None:
            return False  # the run cannot happen here now: refuse it rather than drop it later
        return runner.trigger(strategy, next_delay)

    def _runner_for(self, job: object) -> JobRunner | None:
        """The runner of a registered job (class or instance), None when not running."""
        with self._lock:
            if self._state != _RUNNING:
                return None
            if isinstance(job, type):
                found = [r for r in self._runners if type(r.job) is job]
                if len(found) > 1:
                    raise ValueError(
                        f"{job.__name__} is registered {len(found)} times; trigger the instance"
                    )
            else:
                found = [r for r in self._runners if r.job is job]
        return found[0] if found else None

    def _forward(
        self, job: object, strategy: NextExecution, next_delay: timedelta | None
    ) -> bool:
        """Hand a trigger to this machine's main instance; True only when it accepted it."""
        main_dom = self._gates.main_dom
        if main_dom is None:
            return False
        return forward_trigger(main_dom, job, self.jobs, strategy, next_delay)

    def trigger_for(self, job_class: type[TJ]) -> JobTrigger[TJ]:
        """A typed handle that triggers ``job_class`` on this host."""
        if not (isinstance(job_class, type) and issubclass(job_class, TriggerableJob)):
            raise TypeError(f"job_class must be a TriggerableJob subclass, got {job_class!r}")
        return JobTrigger(self, job_class)

    def trigger_distributed(self, name: str) -> bool:
        """Mark the distributed job ``name`` due now, for whichever server polls next."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        if not 1 <= len(name) <= 200:
            raise ValueError(f"name must be 1 to 200 characters, got {name!r}")
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
        from recurjobs._pause import resolve, set_row_paused

        with self._lock:
            target = resolve(
                job, self._recurring, self._distributed, database=self.database is not None
            )
            for item in target.recurring:
                (self._paused.add if paused else self._paused.discard)(id(item))
            runners = [r for r in self._runners if id(r.job) in {id(j) for j in target.recurring}]
            sql = self._sql if self._state == _RUNNING else None
        for runner in runners:
            runner.paused = paused
        known = bool(target.recurring)
        if target.row is None:
            return known
        if sql is not None:
            done = set_row_paused(sql.store, target.row, target.distributed, paused)
            if done:
                sql.note_paused(target.row, paused)
        else:
            from recurjobs.sql._integration import statement_timeout
            from recurjobs.sql._store import JobStore

            store = JobStore(
                self.database,
                table_prefix=self.settings.table_prefix,
                statement_timeout=statement_timeout(self.settings),
            )
            try:
                done = set_row_paused(store, target.row, target.distributed, paused)
            finally:
                store.dispose()
        if done and target.distributed is not None:
            with self._lock:
                (self._paused_rows.add if paused else self._paused_rows.discard)(target.row)
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
        records = [
            runners[id(j)].status(planned=running)
            if id(j) in runners
            else not_started(j, paused=id(j) in self._paused)
            for j in self._recurring
        ]
        if sql is not None:
            records.extend(sql.status())
        else:
            records.extend(
                not_started(j, distributed=True, paused=getattr(j, "name") in self._paused_rows)  # noqa: B009
                for j in self._distributed
            )
        return tuple(records)

    def __repr__(self) -> str:
        return f"JobHost(jobs={len(self.jobs)}, state={self._state})"


class JobTrigger(Generic[TJ]):
    """A typed handle for triggering one job class: ``host.trigger_for(J).trigger()``."""

    __slots__ = ("_host", "job_class")

    def __init__(self, host: JobHost, job_class: type[TJ]) -> None:
        self._host = host
        self.job_class = job_class

    def trigger(
        self, strategy: NextExecution = NextExecution.NONE, *, next_delay: timedelta | None = None
    ) -> bool:
        """Trigger the job; same rules and result as ``JobHost.trigger``."""
        return self._host.trigger(self.job_class, strategy, next_delay=next_delay)

    def __repr__(self) -> str:
        return f"JobTrigger({self.job_class.__name__})"


def _is_distributed(job: object) -> bool:
    if isinstance(job, DistributedJob):
        return True
    return not isinstance(job, RecurringJob) and callable(getattr(job, "execute", None))


def _is_engine(value: object) -> bool:
    return type(value).__name__ == "Engine" and hasattr(value, "dialect")


def _timeout(value: object, name: str) -> float:
    """A number of seconds, at least zero (``JobHost``'s start and exit timeouts)."""
    seconds = seconds_or_none(value, name)
    if seconds is None:
        raise TypeError(f"{name} must be a number of seconds, got None")
    return seconds


def _warn_if_duplicated(host: JobHost) -> None:
    """Warn when another running host of this process shares the MainDom key and job classes.

    Both hosts would be "main" (one acquisition is shared per process), so every such job
    would run twice: the usual cause is a module-level ``app = create_app()`` plus a server
    that calls ``create_app()`` again.
    """
    main_dom = host.gates.main_dom
    if main_dom is None:
        return
    mine = {type(job) for job in host.jobs if not _is_distributed(job)}
    twice: set[type] = set()
    for other in list(_started_hosts):
        theirs = other.gates.main_dom
        if other is host or not other.running or theirs is None or theirs.key != main_dom.key:
            continue
        twice |= mine & {type(job) for job in other.jobs if not _is_distributed(job)}
    if twice:
        names = ", ".join(sorted(kind.__qualname__ for kind in twice))
        logger.warning(
            "another JobHost in this process already runs %s with main instance key %r: each "
            "of these jobs now runs twice. Create one JobHost per process (for example, do not "
            "call create_app() both at import time and from the server).",
            names,
            main_dom.key,
        )


def _reset_hosts_in_child() -> None:
    for host in list(_started_hosts):
        host._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_hosts_in_child)
