"""An in-memory SQLite database is one connection: every recurjobs use of it takes turns.

Before, a ``host.history()`` read on ``sqlite://`` could end (and so roll back) the poller's
claim transaction on the shared connection, and distributed jobs silently stopped running. Each
test holds the engine's lock (as a step in progress would) and checks that a use of the engine
waits for it; the waits are liveness bounds, not schedules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, MetaData, inspect, make_url, text

from recurjobs import DistributedJobSettings, JobHost, RecurringJob
from recurjobs.dashboard._actions import trigger
from recurjobs.dashboard._data import Dashboard
from recurjobs.sql import DatabaseServerRoles, JobStore
from recurjobs.sql._historyread import read_history
from recurjobs.sql._shared import exclusive, in_memory, is_shared, shared_lock
from recurjobs.sql._tables import create_tables, jobs_table
from recurjobs.sql._urls import make_engine

PREFIX = "recurjobs_"


@pytest.fixture
def memory() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    store = JobStore(engine, table_prefix=PREFIX)
    store.create_schema()
    yield engine
    engine.dispose()


def _waits_for_the_lock(engine: Engine, use: Callable[[], object]) -> None:
    """``use()`` in another thread does not finish while this thread holds the lock, and
    finishes (without raising) once it is released."""
    lock = shared_lock(engine)
    assert lock is not None
    done = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            use()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        done.set()

    with lock:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        waited = not done.wait(0.3)
    assert done.wait(10), "the use never finished after the lock was released"
    assert not errors, errors
    assert waited, "the use ran while another thread held the shared connection"


def test_the_lock_belongs_to_the_connection_not_to_the_engine_object(memory: Engine) -> None:
    """Engines derived from one another share the lock; another in-memory database has its own."""
    derived = memory.execution_options(isolation_level="SERIALIZABLE")
    assert shared_lock(memory) is shared_lock(derived) is not None
    assert JobStore(memory)._serial is JobStore(derived)._serial is shared_lock(memory)
    other = make_engine("sqlite://")
    try:
        assert shared_lock(other) is not shared_lock(memory)
    finally:
        other.dispose()


def test_a_database_file_has_no_lock(tmp_path: object) -> None:
    """An SQLite file has a connection per thread: no lock, and ``exclusive`` takes nothing."""
    engine = make_engine(f"sqlite:///{tmp_path}/jobs.db")
    try:
        assert not is_shared(engine)
        assert shared_lock(engine) is None
        with exclusive(engine), engine.connect() as conn:  # nothing to take: no deadlock
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite+pysqlite://", True),
        ("sqlite:///jobs.db", False),
        ("sqlite:////tmp/jobs.db", False),
        ("postgresql+psycopg://u@localhost/db", False),
        ("mysql+pymysql://u@localhost/db", False),
    ],
)
def test_in_memory_names_exactly_the_sqlite_urls_without_a_file(url: str, expected: bool) -> None:
    """Only an SQLite URL without a file is an in-memory database."""
    assert expected == in_memory(make_url(url))


def test_the_lock_is_reentrant_for_its_holder(memory: Engine) -> None:
    """A thread holding the lock can still use the engine (a plain lock would deadlock here)."""
    with exclusive(memory), exclusive(memory):
        assert JobStore(memory, table_prefix=PREFIX).now_ms() > 0


def _store_step(engine: Engine) -> object:
    return JobStore(engine, table_prefix=PREFIX).now_ms()


def _history_read(engine: Engine) -> object:
    from recurjobs.sql._history import HistoryTables

    create_tables(engine, HistoryTables(PREFIX).metadata)
    return read_history(engine, PREFIX, limit=10)


def _table_creation(engine: Engine) -> object:
    metadata = MetaData()
    jobs_table(metadata, "other_")
    create_tables(engine, metadata)
    return None


def _dashboard_read(engine: Engine) -> object:
    return Dashboard(engine, PREFIX).overview()


def _dashboard_action(engine: Engine) -> object:
    return trigger(engine, jobs_table(MetaData(), PREFIX), "nobody")


def _election_round(engine: Engine) -> object:
    return DatabaseServerRoles(engine, table_prefix=PREFIX).touch_once()


@pytest.mark.parametrize(
    "use",
    [
        _store_step,
        _history_read,
        _table_creation,
        _dashboard_read,
        _dashboard_action,
        _election_round,
    ],
)
def test_every_use_of_an_in_memory_database_waits_for_the_one_in_progress(
    memory: Engine, use: Callable[[Engine], object]
) -> None:
    """Each recurjobs use of the engine waits while another thread holds its connection."""
    _waits_for_the_lock(memory, lambda: use(memory))


class Tick(RecurringJob):
    def __init__(self) -> None:
        super().__init__(timedelta(hours=1), delay=timedelta(hours=1))

    def run(self, token: object) -> None:
        pass


def test_host_history_waits_for_a_step_on_the_hosts_in_memory_database() -> None:
    """``host.history()`` reads through the host's own in-memory engine, and waits its turn."""
    host = JobHost(
        [Tick()],
        database="sqlite://",
        history=True,
        distributed=DistributedJobSettings(table_prefix=PREFIX),
    )
    host.start()
    try:
        engine = host._sql.store.engine
        assert shared_lock(engine) is not None
        _waits_for_the_lock(engine, lambda: host.history(limit=5))
        with engine.connect() as conn:  # the host's tables live in that one connection
            assert inspect(conn).has_table(f"{PREFIX}runs")
    finally:
        assert host.stop(10)
