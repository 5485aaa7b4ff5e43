"""Pause and resume of distributed jobs (the ``paused`` column), and the column migration at
start, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    MetaData,
    String,
    Table,
    event,
    insert,
    inspect,
)

from recurjobs import CancellationToken, DistributedJobSettings, JobHost
from recurjobs.sql import JobStore
from recurjobs.sql._migrate import add_missing_columns
from tests.dbs import TestDatabase
from tests.sql.helpers import HOUR, Job, make_due, race, row, set_row
from tests.sql.runhelpers import settings


def old_layout(metadata: MetaData, prefix: str) -> Table:
    """The jobs table as the previous version created it: no ``paused``, no ``cron``."""
    return Table(
        f"{prefix}jobs",
        metadata,
        Column("name", String(200), primary_key=True),
        Column("period_ms", BigInteger, nullable=False),
        Column("aligned", Boolean, nullable=False, default=False),
        Column("last_run_ms", BigInteger, nullable=False),
        Column("last_attempted_run_ms", BigInteger, nullable=True),
        Column("last_alive_ms", BigInteger, nullable=True),
        Column("lease_ms", BigInteger, nullable=True),
        Column("running", Boolean, nullable=False, default=False),
        Column("owner", String(255), nullable=True),
        Column("claim_id", String(64), nullable=True),
        Column("due_now", Boolean, nullable=False, default=False),
    )


def make_old_table(db: TestDatabase) -> None:
    """Create the old-layout table with one row ("legacy"), as an older host left it."""
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        metadata = MetaData()
        table = old_layout(metadata, db.table_prefix)
        metadata.create_all(store.engine)
        values = {"name": "legacy", "period_ms": 3_600_000, "last_run_ms": 0, "aligned": False}
        with store.engine.begin() as conn:
            conn.execute(insert(table).values(running=False, due_now=False, **values))
    finally:
        store.dispose()


def columns(db: TestDatabase) -> set[str]:
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        return {c["name"] for c in inspect(store.engine).get_columns(store.jobs.name)}
    finally:
        store.dispose()


# --------------------------------------------------------------------------- the store
def test_a_paused_row_is_neither_due_nor_claimed_nor_triggered(store: JobStore) -> None:
    """A paused due row is left out of due_names, refuses claims and triggers; resumed, it is
    claimed again."""
    store.ensure([Job("a", HOUR)])
    make_due(store, "a")
    assert True is store.set_paused("a", True)
    paused = (
        store.due_names(["a"]),
        store.try_claim("a", owner="h", lease=HOUR),
        store.trigger("a"),
        store.paused_names(),
    )
    assert True is store.set_paused("a", False)
    claim = store.try_claim("a", owner="h", lease=HOUR)
    assert ([], None, False, {"a"}) == paused
    assert "a" == (claim.name if claim is not None else None)


def test_set_paused_of_a_missing_row_is_false(store: JobStore) -> None:
    """set_paused returns False when no row has the name, and changes nothing."""
    store.ensure([Job("a", HOUR)])
    assert (False, set()) == (store.set_paused("b", True), store.paused_names())


def test_a_running_claim_finishes_after_a_pause(store: JobStore) -> None:
    """Pausing a running job does not fence its claim: the finish lands, the row stays paused
    and is not claimed again."""
    store.ensure([Job("a", HOUR)])
    make_due(store, "a")
    claim = store.try_claim("a", owner="h", lease=HOUR)
    assert claim is not None
    store.set_paused("a", True)
    finished = store.finish(claim)
    make_due(store, "a")
    again = store.try_claim("a", owner="h", lease=HOUR)
    assert (True, True, False, None) == (
        finished,
        bool(row(store, "a")["paused"]),
        bool(row(store, "a")["running"]),
        again,
    )


def test_prune_by_age_keeps_paused_rows(store: JobStore) -> None:
    """prune(older_than=...) never deletes a paused row; prune(keep=...) still does."""
    store.ensure([Job("a", HOUR), Job("b", HOUR)])
    for name in ("a", "b"):
        set_row(store, name, last_run_ms=0, last_alive_ms=None)
    store.set_paused("a", True)
    by_age = store.prune(older_than=timedelta(days=1))
    by_keep = store.prune(keep=[])
    assert (["b"], ["a"]) == (by_age, by_keep)


def test_rows_show_paused(store: JobStore) -> None:
    """JobStore.rows() carries each row's paused state."""
    store.ensure([Job("a", HOUR), Job("b", HOUR)])
    store.set_paused("b", True)
    assert [("a", False), ("b", True)] == [(r.name, r.paused) for r in store.rows()]


def test_paused_names_refuses_a_single_string(store: JobStore) -> None:
    """paused_names("a") is a TypeError naming the parameter, not a lookup of each letter."""
    with pytest.raises(TypeError, match="names must be a collection of names, got 'ab'"):
        store.paused_names("ab")


@pytest.mark.parametrize(
    ("name", "paused", "error", "match"),
    [
        (3, True, TypeError, "name must be a str"),
        ("", True, ValueError, "name must be 1 to 200 characters"),
        ("x" * 201, True, ValueError, "name must be 1 to 200 characters"),
        ("report ", True, ValueError, "name must not end with a space"),
        ("a", 1, TypeError, "paused must be a bool, got 1"),
        ("a", None, TypeError, "paused must be a bool, got None"),
    ],
)
def test_set_paused_bad_input(
    store: JobStore, name: object, paused: object, error: type[Exception], match: str
) -> None:
    """set_paused names the parameter and the value it refuses."""
    with pytest.raises(error, match=match):
        store.set_paused(name, paused)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the migration
def test_hosts_starting_together_add_the_missing_columns_once(db: TestDatabase) -> None:
    """Three hosts started at once on an old-layout table all start; the table gains paused
    and cron, and the old row reads as not paused."""
    make_old_table(db)
    hosts = [
        JobHost([Job("a", HOUR)], database=db.url, distributed=settings(db, delay=HOUR))
        for _ in range(3)
    ]
    try:
        results = race(*(host.start for host in hosts))
        started = [host.running for host in hosts]
    finally:
        for host in hosts:
            host.stop(10)
    assert [None] * 3 == [None if r is h else r for r, h in zip(results, hosts, strict=True)]
    assert [True] * 3 == started
    assert {"paused", "cron"} <= columns(db)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        assert [("legacy", False)] == [(r.name, r.paused) for r in store.rows()]
    finally:
        store.dispose()


def test_racing_add_missing_columns_adds_each_column_exactly_once(db: TestDatabase) -> None:
    """Three concurrent add_missing_columns calls succeed and add each column once in all."""
    make_old_table(db)
    stores = [JobStore(db.url, table_prefix=db.table_prefix) for _ in range(3)]
    try:
        results = race(*(lambda s=s: add_missing_columns(s.engine, s.jobs) for s in stores))
    finally:
        for s in stores:
            s.dispose()
    added = sorted(name for r in results if isinstance(r, list) for name in r)
    assert (["cron", "paused"], []) == (
        added,
        [r for r in results if not isinstance(r, list)],
    )


def test_add_missing_columns_leaves_a_complete_or_missing_table_alone(db: TestDatabase) -> None:
    """Nothing is added to a table that has every column, nor to a table that does not exist:
    no DDL statement is sent (in particular no table is created)."""
    store = JobStore(db.url, table_prefix=db.table_prefix)
    sent: list[str] = []

    def note(conn: object, cursor: object, statement: str, *rest: object) -> None:
        sent.append(statement.lstrip().split(None, 1)[0].upper())

    try:
        event.listen(store.engine, "before_cursor_execute", note)
        absent = add_missing_columns(store.engine, store.jobs)
        absent_ddl = [s for s in sent if s in ("ALTER", "CREATE", "DROP")]
        event.remove(store.engine, "before_cursor_execute", note)
        store.create_schema()
        sent.clear()
        event.listen(store.engine, "before_cursor_execute", note)
        complete = add_missing_columns(store.engine, store.jobs)
        complete_ddl = [s for s in sent if s in ("ALTER", "CREATE", "DROP")]
        event.remove(store.engine, "before_cursor_execute", note)
    finally:
        store.dispose()
    assert ([], []) == (absent, complete)
    assert ([], []) == (absent_ddl, complete_ddl)


# ----------------------------------------------------------------------- the host API
def test_unstarted_host_pauses_rows_by_job_and_by_name(db: TestDatabase) -> None:
    """An unstarted host pauses its registered job (writing its row first), pauses a row it
    does not run by name, and returns False for a name without a row."""
    host = JobHost([Job("mine", HOUR)], database=db.url, distributed=settings(db))
    other = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        mine = host.pause("mine")
        other.ensure([Job("theirs", HOUR)])
        theirs = host.pause("theirs")
        unknown = host.pause("nobody")
        status = [(s.name, s.paused) for s in host.status()]
        paused = other.paused_names()
        resumed = (host.resume("theirs"), other.paused_names())
    finally:
        other.dispose()
    assert (True, True, False) == (mine, theirs, unknown)
    assert ([("mine", True)], {"mine", "theirs"}) == (status, paused)
    assert (True, {"mine"}) == resumed


def test_unknown_name_does_not_create_the_table(db: TestDatabase) -> None:
    """Pausing an unknown name on a database without the table returns False and creates
    nothing."""
    host = JobHost([], database=db.url, distributed=settings(db))
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        result = host.pause("nobody")
        exists = inspect(store.engine).has_table(store.jobs.name)
    finally:
        store.dispose()
    assert (False, False) == (result, exists)


def test_running_host_status_and_trigger_of_a_paused_job(db: TestDatabase) -> None:
    """On a running host a paused distributed job shows paused in status() and
    trigger_distributed refuses it; resumed, the trigger is accepted and the job runs."""
    job = Job("a", HOUR)
    host = JobHost([job], database=db.url, distributed=settings(db))
    with host:
        assert True is host.pause(job)
        paused = [s.paused for s in host.status()]
        refused = host.trigger_distributed("a")
        assert True is host.resume(job)
        accepted = host.trigger_distributed("a")
        ran = job.ran.wait(30)
        resumed = [s.paused for s in host.status()]
    assert ([True], False, True, True, [False]) == (paused, refused, accepted, ran, resumed)


def test_paused_by_another_process_shows_in_status_after_a_poll(db: TestDatabase) -> None:
    """A pause written by someone else shows in the host's status() once it has polled."""
    from tests.sql.helpers import wait_until

    job = Job("a", HOUR)
    other = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        with JobHost([job], database=db.url, distributed=settings(db)) as host:
            assert wait_until(lambda: "a" in [r.name for r in other.rows()], 30)
            other.set_paused("a", True)
            seen = wait_until(lambda: host.status()[0].paused, 30)
    finally:
        other.dispose()
    assert True is seen


def test_database_settings_are_used_by_an_unstarted_host(db: TestDatabase) -> None:
    """The unstarted host's pause uses its table prefix (not the default one)."""
    host = JobHost(
        [Job("a", HOUR)],
        database=db.url,
        distributed=DistributedJobSettings(table_prefix=db.table_prefix),
    )
    host.pause("a")
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        assert {"a"} == store.paused_names()
    finally:
        store.dispose()


def test_a_distributed_job_pausing_itself_while_the_host_stops(db: TestDatabase) -> None:
    """A distributed run whose token stop() cancels pauses its own job before it returns: no
    deadlock, pause() answers True, stop() returns True, and the row is paused and handed
    back (not running)."""
    started = threading.Event()
    answers: list[bool] = []
    box: list[JobHost] = []

    def body(token: CancellationToken) -> None:
        started.set()
        token.wait(20)  # until stop() cancels it
        answers.append(box[0].pause("a"))

    job = Job("a", HOUR, body=body)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        store.create_schema()
        store.ensure([job])
        make_due(store, "a")
        host = JobHost([job], database=db.url, distributed=settings(db))
        box.append(host)
        host.start()
        assert started.wait(20)
        stopped: list[bool] = []
        stopper = threading.Thread(target=lambda: stopped.append(host.stop(10)))
        stopper.start()
        stopper.join(30)
        final = row(store, "a")
    finally:
        store.dispose()
    assert (False, [True], [True]) == (stopper.is_alive(), stopped, answers)
    assert (True, False) == (bool(final["paused"]), bool(final["running"]))
