"""What a JobHost needs of the SQL side: the distributed poller and the elected role.

``JobHost.start()`` imports this module only when the host has distributed jobs or
``elect_server_role=True``, so apps without a database never import SQLAlchemy.

The stop order ``JobHost.stop()`` runs (``recurjobs._shutdown.stop_sequence``) calls, in this
order: :meth:`HostSql.stop_claiming` (never blocks), :meth:`HostSql.wait_runs` (claims and the
elected role keep being renewed), :meth:`HostSql.hand_back` (pending finishes flushed, threads
ended), :meth:`HostSql.resign` (the elected role given up), and, after the host released its
other resources, :meth:`HostSql.dispose`. Deadlines are on ``time.monotonic()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from recurjobs._roles import ServerRole
from recurjobs._settings import DistributedJobSettings
from recurjobs._status import JobStatus
from recurjobs.sql._election import DatabaseServerRoles, default_identity
from recurjobs.sql._poller import DistributedPoller, heartbeat_interval
from recurjobs.sql._retry import RetryPolicy
from recurjobs.sql._shared import is_shared
from recurjobs.sql._store import JobStore

if TYPE_CHECKING:
    from recurjobs._host import JobHost

__all__ = ["HostSql", "statement_timeout"]


def statement_timeout(settings: DistributedJobSettings) -> float:
    """The lock-wait bound of a host's statements (seconds): a heartbeat interval, at most 5 s
    and at least 1 s (MySQL's smallest lock wait), so one locked row never costs a lease."""
    return min(5.0, max(1.0, heartbeat_interval(settings)))


class HostSql:
    """The distributed side of one host: a store, a poller and (optionally) an election."""

    def __init__(self, host: JobHost) -> None:
        self._host = host
        self.owner = default_identity()
        prefix = host.settings.table_prefix
        self.statement_timeout = statement_timeout(host.settings)
        # The poller's retries back off on this event, so stop() never waits out a back-off.
        self._stopping = threading.Event()
        self.store = JobStore(
            host.database,
            table_prefix=prefix,
            statement_timeout=self.statement_timeout,
            retry=RetryPolicy(sleep=self._back_off),
        )
        self.beat_store = self._beat_store(host.database, prefix)
        self.poller: DistributedPoller | None = None
        self.roles: DatabaseServerRoles | None = None

    def _back_off(self, seconds: float) -> None:
        """A retry's pause, cut short once the host stops claiming."""
        self._stopping.wait(seconds)

    def _beat_store(self, database: object, prefix: str) -> JobStore:
        """The heartbeat thread's store: its own pool for a URL, so heartbeats never wait for
        a connection behind claims and finishes; a shared in-memory SQLite is one connection."""
        engine = self.store.engine
        if is_shared(engine):
            return self.store
        interval = self._host.settings.poll_period.total_seconds()
        # One heartbeat must not hold up the others for long: a short retry, then next beat.
        retry = RetryPolicy(max_time=min(2.0, max(interval, 0.2)), max_attempts=3, max_wait=0.5)
        source = database if isinstance(database, str) else engine
        return JobStore(
            source, table_prefix=prefix, retry=retry, statement_timeout=self.statement_timeout
        )

    # ------------------------------------------------------------------ starting
    def start(self, jobs: Sequence[object]) -> None:
        """Check the database (raising ``DatabaseUnavailable`` when it cannot be used), then
        start the poller (when there are distributed jobs) and the election (when asked)."""
        host = self._host
        check = getattr(self.store, "check_ready", None)
        if check is not None:
            try:
                check(getattr(host, "start_timeout", 10.0))
            except BaseException:
                self.dispose()
                raise
        try:
            if jobs:
                self._start_poller(jobs)
            if host.elects_server_role:
                prefix = host.settings.table_prefix
                self.roles = DatabaseServerRoles(self.store.engine, table_prefix=prefix)
                self.roles._eligible = host._may_publish  # only a main instance publishes
                self.roles.start(clock=host.clock, publisher=host.publisher)
        except BaseException:  # no thread can start (the system is out of them): undo it all
            self._undo_start()
            raise

    def _undo_start(self) -> None:
        if self.poller is not None:
            self.poller.stop_claiming()
            self.poller.hand_back(time.monotonic() + 5.0)
        if self.roles is not None:
            self.roles.stop()
            self.roles.join(5.0)
        self.dispose()

    def _start_poller(self, jobs: Sequence[object]) -> None:
        host = self._host
        self.poller = DistributedPoller(
            store=self.store,
            jobs=list(jobs),
            settings=host.settings,
            clock=host.clock,
            publisher=host.publisher,
            owner=self.owner,
            ready=host.gates.ready,
            beat_store=self.beat_store,
        )
        self.poller.start()

    def add(self, job: object) -> None:
        """Register a distributed job with the running poller (starting one if needed)."""
        if self.poller is None:
            self._start_poller([job])
        else:
            self.poller.add(job)

    # ------------------------------------------------------------------- running
    def trigger(self, name: str) -> bool:
        """Mark a distributed job due now (kept while it runs: it runs again right after)."""
        return self.poller is not None and self.poller.trigger(name)

    def note_paused(self, name: str, paused: bool) -> None:
        """Show a pause or resume of ``name`` in ``status()`` at once."""
        if self.poller is not None:
            self.poller.note_paused(name, paused)

    def server_role(self) -> ServerRole:
        """The elected role (UNKNOWN before the first successful touch)."""
        return self.roles() if self.roles is not None else ServerRole.UNKNOWN

    def status(self) -> list[JobStatus]:
        """Status records of the distributed jobs, from the poller's view."""
        if self.poller is None:
            return []
        return list(self.poller.status())

    # ------------------------------------------------------------------ stopping
    def stop_claiming(self) -> None:
        """No new claims; cancel every run's token and wake the threads. Never blocks.

        Heartbeats and the election keep running: claims and the role are held until the
        runs that need them ended (:meth:`wait_runs`) and the host says so.
        """
        self._stopping.set()
        if self.poller is not None:
            self.poller.stop_claiming()

    def run_threads(self) -> list[threading.Thread]:
        """The threads of the distributed runs going on now."""
        return [] if self.poller is None else self.poller.run_threads()

    def wait_runs(self, deadline: float | None) -> bool:
        """Wait (claims renewed meanwhile) until no distributed run is left or ``deadline``
        (``time.monotonic()``; None: no limit) passed; True when none is left."""
        return self.poller is None or self.poller.wait_runs(deadline)

    def hand_back(self, deadline: float | None) -> bool:
        """Flush pending finishes and end the poller and heartbeat threads, by ``deadline``.

        A run still going keeps its claim, unrenewed (it goes stale after its lease). True
        when every thread ended and every claim was handed back.
        """
        return self.poller is None or self.poller.hand_back(deadline)

    def resign(self) -> None:
        """Give up the elected role now (another server takes it at its next touch)."""
        if self.roles is not None:
            self.roles.resign()

    def dispose(self) -> None:
        """Close the pools of engines made from URLs (a given Engine is left alone)."""
        if self.roles is not None:
            self.roles.dispose()
        self.store.dispose()
        if self.beat_store is not self.store:
            self.beat_store.dispose()
