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
from recurjobs._jobs import DistributedJob, RecurringJob, TriggerableJob, check_distributed
from recurjobs._listener import Attachment, attach
from recurjobs._loop import JobRunner
from recurjobs._maindom import MainDom
from recurjobs._notifications import (
    JobNotification,
    JobStarted,
    JobStarting,
    JobStopping,
    Publisher,
    Subscription,
)
from recurjobs._roles import ServerRole
from recurjobs._schedule import NextExecution
from recurjobs._settings import DistributedJobSettings
from recurjobs._status import JobStatus, not_started
from recurjobs._validate import callable_, duration, instance, seconds_or_none

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
        self._gates = Gates(
            runtime_ready=ready if ready is not None else (lambda: True),  # type: ignore[arg-type]
            server_role=self._current_role,
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
        if not isinstance(elect_server_role, bool):
            raise TypeError(f"elect_server_role must be a bool, got {elect_server_role!r}")
        if elect_server_role and database is None:
            raise ValueError("elect_server_role=True needs database=...")
        self.database = database
        self._elect = elect_server_role
        self._publisher = Publisher()
        self._lock = threading.RLock()
        self._state = _NEW
        self._recurring: list[object] = []
        self._distributed: list[object] = []
        self._ids: set[int] = set()  # id() of every registered job (the lists keep them alive)
        self._runners: list[JobRunner] = []
        self._sql: Any = None  # the distributed side (poller, election), made at start()
        self._forwarding: Attachment | None = None  # receives triggers while this process is main
        for job in jobs:
            self._register(job)

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
        duration(getattr(job, "period", None), "period")
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
            if self._role_service is not None:
                self._role_service.start(clock=self.clock, publisher=self._publisher)
            self._state = _RUNNING
            if self._gates.main_dom is not None:
                # Listen for forwarded triggers, and take the lock now if it is free, so that
                # other processes can reach a main instance from the start (not after `delay`).
                self._forwarding = attach(self._gates.main_dom, self)
                self._gates.main_dom.try_acquire()
            self._runners = []
            for job in self._recurring:
                self._start_runner(job)
            _started_hosts.add(self)
        atexit.register(self._stop_at_exit)
        return self

    def _start_sql(self) -> None:
        from recurjobs.sql._integration import HostSql

        self._sql = HostSql(self)
        self._sql.start(self._distributed)

    def _start_runner(self, job: object) -> None:
        runner = JobRunner(job, clock=self.clock, gates=self._gates, publisher=self._publisher)
        self._publisher.publish(JobStarting(job=job, at=self.clock.now()))
        runner.start()
        self._runners.append(runner)
        self._publisher.publish(JobStarted(job=job, at=self.clock.now()))

    def stop(self, timeout: float = 30.0) -> bool:
        """Cancel every token, wake every wait and wait up to ``timeout`` seconds for the threads.

        Returns True when every thread ended. Never hangs: job threads are daemons, so one
        that ignores its token is left behind (and logged). Stopping twice is harmless.
        """
        limit = seconds_or_none(timeout, "timeout")
        with self._lock:
            if self._state != _RUNNING:
                self._state = _STOPPED
                return all(r.join(0) for r in self._runners)
            self._state = _STOPPED
            runners = list(self._runners)
            sql = self._sql
        atexit.unregister(self._stop_at_exit)
        for runner in runners:
            self._publisher.publish(JobStopping(job=runner.job, at=self.clock.now()))
            runner.cancel()
        if sql is not None:
            sql.stop()
        if self._role_service is not None:
            self._role_service.stop()
        deadline = None if limit is None else time.monotonic() + limit
        # Wake the parked threads a batch at a time and give each batch a moment to end: woken
        # all at once, thousands of threads fight over the GIL and stop() takes seconds.
        for i in range(0, len(runners), _WAKE_BATCH):
            batch = runners[i : i + _WAKE_BATCH]
            for runner in batch:
                runner.wake()
            until = time.monotonic() + _BATCH_WAIT
            if deadline is not None:
                until = min(until, deadline)
            for runner in batch:
                runner.join(max(0.0, until - time.monotonic()))
        ended = True
        for runner in runners:
            if not runner.join(_left(deadline)):
                logger.warning("%s did not stop within %s s", runner.name, timeout)
                ended = False
        if sql is not None and not sql.join(_left(deadline)):
            ended = False
        if self._role_service is not None and not self._role_service.join(_left(deadline)):
            ended = False
        if self._forwarding is not None:  # before the MainDom lock is released
            self._forwarding.close()
        return ended

    def _stop_at_exit(self) -> None:
        self.stop()

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
        the automatic run after it comes (SPEC's trigger table). Returns False when the host is
        not running or the job is not registered.
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
        kind = job if isinstance(job, type) else type(job)
        if not issubclass(kind, TriggerableJob):
            raise TypeError(
                f"{kind.__name__} cannot be triggered: it does not subclass TriggerableJob"
            )
        with self._lock:
            if self._state != _RUNNING:
                return False
            if isinstance(job, type):
                found = [r for r in self._runners if type(r.job) is job]
                if len(found) > 1:
                    raise ValueError(
                        f"{job.__name__} is registered {len(found)} times; trigger the instance"
                    )
            else:
                found = [r for r in self._runners if r.job is job]
        if not found:
            return False
        main_dom = self._gates.main_dom
        if main_dom is not None and not main_dom.try_acquire():
            # Not the main instance: the job runs there, so ask it (SPEC 9).
            return forward_trigger(main_dom, found[0].job, self.jobs, strategy, next_delay)
        return found[0].trigger(strategy, next_delay)

    def trigger_for(self, job_class: type[TJ]) -> JobTrigger[TJ]:
        """A typed handle that triggers ``job_class`` on this host."""
        if not (isinstance(job_class, type) and issubclass(job_class, TriggerableJob)):
            raise TypeError(f"job_class must be a TriggerableJob subclass, got {job_class!r}")
        return JobTrigger(self, job_class)

    def trigger_distributed(self, name: str) -> bool:
        """Mark the distributed job ``name`` due now, for whichever server polls next."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        with self._lock:
            sql = self._sql if self._state == _RUNNING else None
        return sql is not None and bool(sql.trigger(name))

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

    # ----------------------------------------------------------------------- status
    def status(self) -> tuple[JobStatus, ...]:
        """One immutable record per registered job (SPEC 9)."""
        with self._lock:
            runners = {id(r.job): r for r in self._runners}
            sql = self._sql
            running = self._state == _RUNNING
        records = [
            runners[id(j)].status(planned=running) if id(j) in runners else not_started(j)
            for j in self._recurring
        ]
        if sql is not None:
            records.extend(sql.status())
        else:
            records.extend(not_started(j, distributed=True) for j in self._distributed)
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


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _reset_hosts_in_child() -> None:
    for host in list(_started_hosts):
        host._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_hosts_in_child)
