"""No statement waits on a lock without bound: a row held by another transaction (a paused
host, an operator's open ``psql``) delays only that row, and only for the store's
``statement_timeout`` (1 s here), on engines recurjobs makes and on engines passed in alike."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text, update

from recurjobs.sql import Claim, JobStore, is_lock_timeout
from recurjobs.sql._bounds import bounded_waits, session_bound_ms
from tests.dbs import TestDatabase
from tests.sql.helpers import Job, make_due

LEASE = timedelta(minutes=5)
BOUND = 1.0  # the statement_timeout of the stores under test, in seconds


@pytest.fixture(params=["url", "engine"])
def bounded_store(request: pytest.FixtureRequest, db: TestDatabase) -> Iterator[JobStore]:
    """A store bounded at 1 s, on an engine it made from the URL or on one passed in; rows
    "locked", "free" and "running" are due, and "running" is claimed."""
    given = create_engine(db.url) if request.param == "engine" else None
    store = JobStore(
        db.url if given is None else given, table_prefix=db.table_prefix, statement_timeout=BOUND
    )
    store.create_schema()
    store.ensure([Job("locked"), Job("free"), Job("running")])
    for name in ("locked", "free", "running"):
        make_due(store, name)
    yield store
    store.dispose()
    if given is not None:
        given.dispose()


def timed(call: Callable[[], object]) -> tuple[object, float]:
    """The result of ``call`` (or the exception it raised) and the seconds it took."""
    began = time.monotonic()
    try:
        result = call()
    except Exception as exc:
        result = exc
    return result, time.monotonic() - began


def hold_row(db: TestDatabase, store: JobStore, name: str) -> tuple[Engine, Connection]:
    """Another client's engine and open transaction, holding an uncommitted UPDATE of ``name``."""
    holder = create_engine(db.url)
    conn = holder.connect()
    c = store.jobs.c
    conn.execute(update(store.jobs).where(c.name == name).values(owner="operator"))
    return holder, conn


@pytest.mark.slow
def test_a_locked_row_delays_only_its_own_claim(
    db: TestDatabase, bounded_store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """While another transaction holds one row uncommitted, another due row is claimed at once,
    the locked row's claim answers None within the bound (not when the holder commits), and
    a running job's heartbeat on a third row still renews its claim."""
    if db.backend == "sqlite":
        pytest.skip("SQLite locks the whole file for a writer; see the SQLite test below")
    store = bounded_store
    running = store.try_claim("running", owner="h1", lease=LEASE)
    assert running is not None
    holder, conn = hold_row(db, store, "locked")
    try:
        with caplog.at_level(logging.DEBUG, logger="recurjobs.sql"):
            free, free_took = timed(lambda: store.try_claim("free", owner="h1", lease=LEASE))
            locked, locked_took = timed(lambda: store.try_claim("locked", owner="h1", lease=LEASE))
            again, _ = timed(lambda: store.try_claim("locked", owner="h1", lease=LEASE))
            beat, beat_took = timed(lambda: store.heartbeat(running))
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()
    assert (True, None, None, True) == (isinstance(free, Claim), locked, again, beat)
    # Waiting on the locked row would take the whole bound; anything shorter did not wait (a
    # busy CI machine took 0.51 s for a plain heartbeat, so no tighter figure is asserted).
    assert free_took < 0.9 * BOUND, free_took
    assert 0.5 * BOUND < locked_took < 2.5 * BOUND, locked_took
    assert beat_took < 0.9 * BOUND, beat_took
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 == len(warnings), [r.getMessage() for r in warnings]
    assert "not claimed this time" in warnings[0].getMessage()
    assert isinstance(store.try_claim("locked", owner="h1", lease=LEASE), Claim)


@pytest.mark.slow
def test_a_locked_sqlite_file_delays_claims_and_heartbeats_only_for_the_bound(
    db: TestDatabase, bounded_store: JobStore
) -> None:
    """On SQLite a writer locks the whole file: a claim answers None and a heartbeat raises a
    lock timeout ("could not renew this time", not "lost") within the bound, each waiting once."""
    if db.backend != "sqlite":
        pytest.skip("only SQLite locks the whole file")
    store = bounded_store
    running = store.try_claim("running", owner="h1", lease=LEASE)
    assert running is not None
    holder, conn = hold_row(db, store, "locked")
    try:
        locked, locked_took = timed(lambda: store.try_claim("free", owner="h1", lease=LEASE))
        beat, beat_took = timed(lambda: store.heartbeat(running))
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()
    assert (None, True) == (locked, isinstance(beat, Exception) and is_lock_timeout(beat))
    assert 0.5 * BOUND < locked_took < 2.5 * BOUND, locked_took
    assert 0.5 * BOUND < beat_took < 2.5 * BOUND, beat_took
    assert store.heartbeat(running)


@pytest.mark.slow
def test_a_heartbeat_on_a_locked_row_gives_up_within_the_bound(
    db: TestDatabase, bounded_store: JobStore
) -> None:
    """A heartbeat whose own row is locked raises a lock timeout after one bounded wait, and
    the claim is renewed once the lock is gone."""
    store = bounded_store
    running = store.try_claim("running", owner="h1", lease=LEASE)
    assert running is not None
    holder, conn = hold_row(db, store, "running")
    try:
        beat, took = timed(lambda: store.heartbeat(running))
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()
    assert True is (isinstance(beat, Exception) and is_lock_timeout(beat)), beat
    assert 0.5 * BOUND < took < 2.5 * BOUND, took
    assert store.heartbeat(running)


def test_engines_made_from_urls_carry_the_bound_in_every_session(db: TestDatabase) -> None:
    """An engine the store made bounds each new session once: a claim runs exactly one
    statement, and the session reports the bound."""
    store = JobStore(db.url, table_prefix=db.table_prefix, statement_timeout=2.5)
    store.create_schema()
    store.ensure([Job("a")])
    make_due(store, "a")
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    # (every engine: on MySQL/MariaDB a single claim runs on the store's autocommit twin)
    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert isinstance(store.try_claim("a", owner="h1", lease=LEASE), Claim)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    query = {
        "sqlite": "PRAGMA busy_timeout",
        "postgres": "SELECT current_setting('lock_timeout') || ' ' || "
        "current_setting('statement_timeout')",
        "mysql": "SELECT CONCAT(@@SESSION.innodb_lock_wait_timeout, ' ', "
        "@@SESSION.lock_wait_timeout)",
    }[db.backend]
    settings = set()
    for engine in (store.engine, store._single):
        with engine.connect() as conn:
            settings.add(str(conn.execute(text(query)).scalar_one()))
    expected = {"sqlite": "2500", "postgres": "2500ms 2500ms", "mysql": "3 3"}[db.backend]
    bounds = {session_bound_ms(store.engine), session_bound_ms(store._single)}
    assert (1, {expected}, {2500}) == (len(statements), settings, bounds)
    store.dispose()


def test_a_given_engine_keeps_its_own_session_settings(db: TestDatabase) -> None:
    """Bounding the store's statements on an engine passed in leaves that engine's sessions as
    they were: transaction-local on PostgreSQL, set and put back on MySQL/MariaDB and SQLite."""
    engine = create_engine(db.url, pool_size=1, max_overflow=0)
    query = {
        "sqlite": "PRAGMA busy_timeout",
        "postgres": "SELECT current_setting('lock_timeout') || ' ' || "
        "current_setting('statement_timeout')",
        "mysql": "SELECT CONCAT(@@SESSION.innodb_lock_wait_timeout, ' ', "
        "@@SESSION.lock_wait_timeout)",
    }[db.backend]

    def session() -> str:
        with engine.connect() as conn:
            return str(conn.execute(text(query)).scalar_one())

    before = session()
    store = JobStore(engine, table_prefix=db.table_prefix, statement_timeout=BOUND)
    store.create_schema()
    store.ensure([Job("a")])
    make_due(store, "a")
    inside: list[str] = []
    with engine.begin() as conn, bounded_waits(conn, 1000):
        inside.append(str(conn.execute(text(query)).scalar_one()))
    assert isinstance(store.try_claim("a", owner="h1", lease=LEASE), Claim)
    expected_inside = {"sqlite": "1000", "postgres": "1s 1s", "mysql": "1 1"}[db.backend]
    assert ([expected_inside], before, None) == (inside, session(), session_bound_ms(engine))
    store.dispose()
    engine.dispose()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (7200, ValueError),
        ("5", TypeError),
        (True, TypeError),
        (None, TypeError),
        (timedelta(seconds=5), TypeError),
    ],
    ids=repr,
)
def test_bad_statement_timeouts_are_refused_naming_the_parameter(
    value: object, error: type[Exception]
) -> None:
    """statement_timeout must be a number of seconds from 1 ms to an hour."""
    with pytest.raises(error, match=r"^statement_timeout must be"):
        JobStore("sqlite://", statement_timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError), ("1", TypeError)],
    ids=repr,
)
def test_bad_check_ready_timeouts_are_refused_naming_the_parameter(
    value: object, error: type[Exception]
) -> None:
    """check_ready's timeout must be a finite number of seconds, zero or more."""
    store = JobStore("sqlite://")
    with pytest.raises(error, match=r"^timeout must be"):
        store.check_ready(value)  # type: ignore[arg-type]
    store.dispose()
