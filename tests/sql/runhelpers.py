"""Building blocks of the running-side tests: a fault injected by an engine event, a host whose
SQL side is driven through ``HostSql`` directly, and a job that runs until released."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from recurjobs import CancellationToken, DistributedJobSettings, JobHost, JobNotification
from recurjobs.sql import JobStore, make_engine
from recurjobs.sql._integration import HostSql
from tests.dbs import TestDatabase
from tests.sql.helpers import Job

FAST = {
    "poll_period": timedelta(seconds=0.1),
    "delay": timedelta(0),
    "max_execution_time": timedelta(seconds=2),
}


def settings(db: TestDatabase, **overrides: Any) -> DistributedJobSettings:
    """Fast poller settings on the test's table prefix."""
    return DistributedJobSettings(**(FAST | {"table_prefix": db.table_prefix} | overrides))


def is_finish(statement: str) -> bool:
    """Whether ``statement`` is the fenced finish (the only UPDATE that sets last_run_ms)."""
    head = statement.split("WHERE", 1)[0]
    return statement.lstrip().upper().startswith("UPDATE") and "last_run_ms" in head


class Fault:
    """Makes the statements that ``matches`` accepts fail with a transient OperationalError
    while ``active``; counts the failures. Installed on an engine with :meth:`install`."""

    def __init__(self, matches: Callable[[str], bool] = is_finish) -> None:
        self.matches = matches
        self.active = False
        self.hits = 0
        self._lock = threading.Lock()

    def install(self, engine: Engine) -> None:
        """Listen to ``engine``'s statements."""
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.active and self.matches(statement):
            with self._lock:
                self.hits += 1
            lost = Exception("injected: server closed the connection")
            raise OperationalError(statement, {}, lost)


def stubborn(release: threading.Event) -> Callable[[CancellationToken], None]:
    """A job body that ignores its token and runs until ``release`` is set (at most 30 s)."""

    def body(token: CancellationToken) -> None:
        release.wait(30)

    return body


def polite(started: threading.Event) -> Callable[[CancellationToken], None]:
    """A job body that signals ``started`` and runs until its token is cancelled (30 s max)."""

    def body(token: CancellationToken) -> None:
        started.set()
        token.wait(30)

    return body


def prepared(db: TestDatabase, *jobs: Job, due: tuple[str, ...] = ()) -> JobStore:
    """A store of the test's own with the jobs' rows written (as a host did before) and the
    ``due`` ones made due now."""
    from tests.sql.helpers import make_due

    store = JobStore(db.url, table_prefix=db.table_prefix)
    store.create_schema()
    store.ensure(jobs)
    for name in due:
        make_due(store, name)
    return store


class SqlSide:
    """A host's SQL side started through ``HostSql`` directly (the host itself not started),
    recording every notification; ``stop()`` runs the stop order of ``JobHost.stop()``."""

    def __init__(self, db: TestDatabase, *jobs: Job, database: Any = None, **host: Any) -> None:
        self.db = db
        self.events: list[JobNotification] = []
        self.host = JobHost(
            list(jobs),
            database=database if database is not None else db.url,
            distributed=host.pop("distributed", settings(db)),
            **host,
        )
        self.host.subscribe(JobNotification, self.events.append)
        self.sql = HostSql(self.host)

    def start(self) -> SqlSide:
        """Start the SQL side with every distributed job of the host."""
        self.sql.start([j for j in self.host.jobs if hasattr(j, "execute")])
        return self

    def kinds(self, name: str) -> list[str]:
        """Names of the notifications of job ``name`` so far."""
        return [type(e).__name__ for e in list(self.events) if getattr(e.job, "name", "") == name]

    def stop(self, timeout: float = 10.0) -> bool:
        """stop_claiming, wait_runs, hand_back, resign, dispose within ``timeout``."""
        deadline = time.monotonic() + timeout
        self.sql.stop_claiming()
        ended = self.sql.wait_runs(deadline)
        ended = self.sql.hand_back(deadline) and ended
        self.sql.resign()
        self.sql.dispose()
        return ended


@contextmanager
def sql_side(db: TestDatabase, *jobs: Job, **host: Any) -> Iterator[SqlSide]:
    """A started :class:`SqlSide`, stopped afterwards whatever happens."""
    side = SqlSide(db, *jobs, **host).start()
    try:
        yield side
    finally:
        side.stop(5)


def faulty_engine(db: TestDatabase, fault: Fault) -> Engine:
    """An engine for the test's database with ``fault`` installed (the caller disposes it)."""
    engine = make_engine(db.url)
    fault.install(engine)
    return engine
