"""Faults around pausing and the column migration: a table or row held by another transaction,
an unreachable database. Every wait is bounded; nothing is half-done."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, MetaData, create_engine, make_url, select, update
from sqlalchemy.pool import NullPool

from recurjobs import JobHost
from recurjobs.sql import DatabaseUnavailable, JobStore
from recurjobs.sql._retry import is_lock_timeout
from tests.dbs import TestDatabase
from tests.sql.helpers import HOUR, Job, server_proxy, wait_until
from tests.sql.runhelpers import settings
from tests.sql.test_pause_sql import columns, make_old_table, old_layout


@contextmanager
def holding(db: TestDatabase, write: bool) -> Iterator[Connection]:
    """An open transaction on the jobs table (a read, or a write of row "legacy"/"a") that holds
    its locks until the block ends."""
    engine = create_engine(db.url, poolclass=NullPool)
    table = old_layout(MetaData(), db.table_prefix)
    try:
        with engine.connect() as conn:
            conn.begin()
            if write or db.backend == "sqlite":  # SQLite: only a writer blocks the ALTER
                conn.execute(update(table).values(due_now=False))
            else:
                conn.execute(select(table)).all()
            try:
                yield conn
            finally:
                conn.rollback()
    finally:
        engine.dispose()


@pytest.mark.timeout(90)
def test_migration_blocked_by_an_open_transaction_fails_start_in_bounded_time(
    db: TestDatabase,
) -> None:
    """While another transaction holds the old table, start() gives up after its start_timeout
    (plus one lock wait) with DatabaseUnavailable and leaves the table as it was; once the
    transaction ends, a host starts and adds the columns."""
    make_old_table(db)
    host = JobHost([Job("a", HOUR)], database=db.url, distributed=settings(db), start_timeout=2)
    with holding(db, write=False):
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            host.start()
        took = time.monotonic() - began
    unchanged = columns(db)
    later = JobHost([Job("a", HOUR)], database=db.url, distributed=settings(db))
    with later:
        started = later.running
    assert took < 2 + 10, took
    assert ("paused" not in unchanged, True) == (True, started)
    assert {"paused", "cron"} <= columns(db)


@pytest.mark.timeout(60)
def test_pause_of_a_locked_row_raises_after_the_statement_bound(db: TestDatabase) -> None:
    """A row held by another writer makes pause() raise a lock timeout after about the host's
    statement bound (1 s with a 0.1 s poll), not hang; the row is not paused."""
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        store.create_schema()
        store.ensure([Job("a", HOUR)])
        host = JobHost([Job("a", HOUR)], database=db.url, distributed=settings(db))
        engine = create_engine(db.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.begin()
                row_a = update(store.jobs).where(store.jobs.c.name == "a")
                conn.execute(row_a.values(due_now=True))
                began = time.monotonic()
                with pytest.raises(Exception) as caught:
                    host.pause("a")
                took = time.monotonic() - began
                conn.rollback()
        finally:
            engine.dispose()
        paused = store.paused_names()
    finally:
        store.dispose()
    assert (True, set()) == (is_lock_timeout(caught.value), paused)
    assert took < 1 + 10, took


def unreachable(db: TestDatabase, tmp_path: Path) -> str:
    """A URL of the test's backend where nothing answers."""
    if db.backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'jobs.db'}"
    return make_url(db.url).set(host="127.0.0.1", port=1).render_as_string(hide_password=False)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["pause", "resume"])
def test_pause_with_the_database_unreachable_raises_in_bounded_time(
    db: TestDatabase, tmp_path: Path, method: str
) -> None:
    """pause() or resume() of a distributed job on an unreachable database raises (after the
    store's short retry) instead of returning a made-up answer or hanging."""
    host = JobHost([Job("a", HOUR)], database=unreachable(db, tmp_path), distributed=settings(db))
    began = time.monotonic()
    with pytest.raises(Exception) as caught:
        getattr(host, method)("a")
    took = time.monotonic() - began
    assert "OperationalError" == type(caught.value).__name__
    assert took < 5 + 10, took


@pytest.mark.slow  # 5-10 s: real outages through the proxy
@pytest.mark.timeout(60)
def test_pause_on_a_running_host_whose_database_refuses_raises_in_bounded_time(
    db: TestDatabase,
) -> None:
    """On a running host whose database went down (connections refused), pause() and
    resume() raise the driver's OperationalError within the retry budget; status() does not
    show the job paused, and once the database is back the row is not paused and pause()
    works."""
    proxy = server_proxy(db)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    host = JobHost([Job("a", HOUR)], database=proxy.proxied_url(db.url), distributed=settings(db))
    try:
        host.start()
        proxy.refuse(30)
        answers = []
        for method in ("pause", "resume", "pause"):
            began = time.monotonic()
            with pytest.raises(Exception) as caught:
                getattr(host, method)("a")
            answers.append((type(caught.value).__name__, time.monotonic() - began))
        shown = [s.paused for s in host.status()]
        proxy.pass_through()
        unchanged = store.paused_names()
        assert True is host.pause("a")
        assert {"a"} == store.paused_names()
    finally:
        host.stop(5)
        proxy.close()
        store.dispose()
    assert ["OperationalError"] * 3 == [name for name, _ in answers], answers
    assert all(took < 5 + 10 for _, took in answers), answers
    assert ([False], set()) == (shown, unchanged)


@pytest.mark.slow  # 5-10 s: real outages through the proxy
@pytest.mark.timeout(60)
def test_a_host_whose_database_refuses_keeps_its_view_of_paused(db: TestDatabase) -> None:
    """A running host whose database refuses connections for 3 s keeps showing the pause it
    last read in status() (no made-up "not paused"); once the database is back it reads the
    rows again and shows a resume made meanwhile by another process."""
    proxy = server_proxy(db)
    other = JobStore(db.url, table_prefix=db.table_prefix)
    host = JobHost([Job("a", HOUR)], database=proxy.proxied_url(db.url), distributed=settings(db))
    try:
        host.start()
        assert wait_until(lambda: "a" in [r.name for r in other.rows()], 20)
        other.set_paused("a", True)
        assert wait_until(lambda: host.status()[0].paused, 20)
        proxy.refuse(30)
        other.set_paused("a", False)
        seen: list[bool] = []
        began = time.monotonic()
        while time.monotonic() - began < 3.0:  # real time: the outage being watched
            seen.append(host.status()[0].paused)
            time.sleep(0.1)
        proxy.pass_through()
        resumed = wait_until(lambda: not host.status()[0].paused, 20)
    finally:
        host.stop(5)
        proxy.close()
        other.dispose()
    assert (True, True) == (all(seen), resumed), seen
