"""What a JobHost needs of the SQL side: the distributed poller and the elected role.

``JobHost.start()`` imports this module only when the host has distributed jobs or
``elect_server_role=True``, so apps without a database never import SQLAlchemy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from recurjobs._roles import ServerRole
from recurjobs._status import JobStatus
from recurjobs.sql._election import DatabaseServerRoles, default_identity
from recurjobs.sql._poller import DistributedPoller
from recurjobs.sql._store import JobStore

if TYPE_CHECKING:
    from recurjobs._host import JobHost

__all__ = ["HostSql"]

_RESIGN_WAIT = 5.0  # resign(): longest wait for the election thread to give up the role


class HostSql:
    """The distributed side of one host: a store, a poller and (optionally) an election."""

    def __init__(self, host: JobHost) -> None:
        self._host = host
        self.owner = default_identity()
        self.store = JobStore(host.database, table_prefix=host.settings.table_prefix)
        self.poller: DistributedPoller | None = None
        self.roles: DatabaseServerRoles | None = None

    def start(self, jobs: Sequence[object]) -> None:
        """Start the poller (when there are distributed jobs) and the election (when asked)."""
        host = self._host
        if jobs:
            self._start_poller(jobs)
        if host.elects_server_role:
            self.roles = DatabaseServerRoles(
                self.store.engine, table_prefix=host.settings.table_prefix
            )
            self.roles.start(clock=host.clock, publisher=host.publisher)

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
        )
        self.poller.start()

    def add(self, job: object) -> None:
        """Register a distributed job with the running poller (starting one if needed)."""
        if self.poller is None:
            self._start_poller([job])
        else:
            self.poller.add(job)

    def trigger(self, name: str) -> bool:
        """Mark a distributed job due now."""
        return self.poller is not None and self.poller.trigger(name)

    def server_role(self) -> ServerRole:
        """The elected role (UNKNOWN before the first successful touch)."""
        return self.roles() if self.roles is not None else ServerRole.UNKNOWN

    def stop(self) -> None:
        """Ask the poller and the election to stop (does not wait)."""
        if self.poller is not None:
            self.poller.stop()
        if self.roles is not None:
            self.roles.stop()

    def join(self, timeout: float | None) -> bool:
        """Wait for the poller and election threads; True when both ended."""
        ended = self.poller is None or self.poller.join(timeout)
        if self.roles is not None:
            ended = self.roles.join(timeout) and ended
        if ended:
            self.store.dispose()  # closes the pool of an engine made from a URL, not a given one
        return ended

    # The stop sequence's steps (JobHost._stop_sequence calls them in this order).
    def stop_claiming(self) -> None:
        """No new claims; cancel every run's token and wake the threads (never blocks)."""
        if self.poller is not None:
            self.poller.stop()

    def wait_runs(self, deadline: float | None) -> bool:
        """Wait until ``deadline`` (time.monotonic()) for the runs; True when none is left."""
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.poller is None or self.poller.join(left)

    def hand_back(self, deadline: float | None) -> bool:
        """Flush finishes and end the poller threads (each run hands its row back itself)."""
        return True

    def resign(self) -> None:
        """Give up the elected role."""
        if self.roles is not None:
            self.roles.stop()
            self.roles.join(_RESIGN_WAIT)

    def dispose(self) -> None:
        """Close the pool of an engine made from a URL (not a given one)."""
        self.store.dispose()

    def status(self) -> list[JobStatus]:
        """Status records of the distributed jobs, from the poller's view."""
        if self.poller is None:
            return []
        return list(self.poller.status())
