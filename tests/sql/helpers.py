"""Building blocks of the SQL tests: a minimal distributed job and direct row access."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import make_url, select

from recurjobs import CancellationToken, Cron
from recurjobs.sql import JobStore
from tests.dbs import TestDatabase
from tests.faultproxy import FaultProxy

HOUR = timedelta(hours=1)


class Job:
    """A duck-typed distributed job whose ``execute`` calls ``body(token)`` (default: nothing)."""

    def __init__(
        self,
        name: str,
        period: timedelta | Cron = HOUR,
        *,
        align_to_clock: bool = False,
        body: Callable[[CancellationToken], None] | None = None,
    ) -> None:
        self.name = name
        self.period = period
        self.align_to_clock = align_to_clock
        self.body = body
        self.runs = 0
        self.ran = threading.Event()

    def execute(self, token: CancellationToken) -> None:
        """Count the run, signal ``ran`` and call ``body``."""
        self.runs += 1
        self.ran.set()
        if self.body is not None:
            self.body(token)

    def __repr__(self) -> str:
        return f"Job({self.name!r})"


def set_row(store: JobStore, name: str, **values: Any) -> None:
    """Overwrite columns of one row directly (to place timestamps relative to the db clock)."""
    with store.engine.begin() as conn:
        conn.execute(store.jobs.update().where(store.jobs.c.name == name).values(**values))


def row(store: JobStore, name: str) -> dict[str, Any]:
    """One row as a plain dict of column values."""
    with store.engine.connect() as conn:
        result = conn.execute(select(store.jobs).where(store.jobs.c.name == name)).one()
    return dict(result._mapping)


def names(store: JobStore) -> list[str]:
    """The names of every row, sorted."""
    return [r.name for r in store.rows()]


def race(*calls: Callable[[], object]) -> list[object]:
    """Run ``calls`` on threads released at the same instant; return each result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def make_due(store: JobStore, name: str) -> None:
    """Move the row's last_run far enough back that the job is due now (by any period <= 1 d)."""
    set_row(store, name, last_run_ms=store.now_ms() - 86_400_000 - 1000)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` in real time until it holds (True) or ``timeout`` passes (False).

    For waiting on other threads' progress, never for letting a schedule pass.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def server_proxy(db: TestDatabase) -> FaultProxy:
    """A started fault proxy in front of the test's database server (skips the test on SQLite,
    which has no server); the test closes it."""
    url = make_url(db.url)
    if db.backend == "sqlite" or url.host is None or url.port is None:
        pytest.skip("a network fault needs a database server")
    return FaultProxy((url.host, url.port), lifetime=60).start()
