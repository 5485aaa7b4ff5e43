"""Batched claims (``JobStore.try_claim_many``, ``_batch``) and the engines' pool settings, on
SQLite, PostgreSQL and MariaDB alike (``db`` fixture)."""

from __future__ import annotations

import logging
import math
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, true
from sqlalchemy.pool import Pool
from sqlalchemy.pool.base import ResetStyle

from recurjobs.sql import JobStore, make_engine
from recurjobs.sql._batch import claim_batch
from recurjobs.sql._rowwriter import RowWriter
from recurjobs.sql._wake import AFTER, next_boundary
from tests.dbs import TestDatabase
from tests.sql.helpers import Job, race, row, set_row
from tests.sql.runhelpers import Fault, faulty_engine

P = 3_600_000  # the rows' period (one hour), in ms
LEASE = timedelta(minutes=5)


def due_rows(store: JobStore, *names: str) -> None:
    """Rows for ``names`` (period P), all due now."""
    store.ensure([Job(n) for n in names])
    for name in names:
        set_row(store, name, last_run_ms=store.now_ms() - P - 1000)


def test_a_batch_claims_every_due_free_row_and_no_other(store: JobStore) -> None:
    """Of four rows (two due and free, one due but held by another claim, one not due), a
    batch claims exactly the two, with one claim id and each row's own lease."""
    due_rows(store, "a", "b", "held", "later")
    set_row(store, "later", last_run_ms=store.now_ms())
    held = store.try_claim("held", owner="other", lease=LEASE)
    leases = {"a": LEASE, "b": timedelta(minutes=7), "held": LEASE, "later": LEASE}
    claims = store.try_claim_many(leases, owner="me")
    assert claims is not None and held is not None
    assert ["a", "b"] == sorted(c.name for c in claims)
    assert 1 == len({c.claim_id for c in claims})
    rows = {n: row(store, n) for n in leases}
    assert (True, "me", 300_000, False) == (
        bool(rows["a"]["running"]),
        rows["a"]["owner"],
        rows["a"]["lease_ms"],
        bool(rows["a"]["due_now"]),
    )
    assert 420_000 == rows["b"]["lease_ms"]
    assert ("other", held.claim_id) == (rows["held"]["owner"], rows["held"]["claim_id"])
    assert False is bool(rows["later"]["running"])


def test_rows_claimed_in_a_batch_are_fenced_one_by_one(store: JobStore) -> None:
    """Each claim of a batch finishes its own row only: finishing ``a`` leaves ``b`` claimed."""
    due_rows(store, "a", "b")
    claims = store.try_claim_many({"a": LEASE, "b": LEASE}, owner="me")
    assert claims is not None
    by_name = {c.name: c for c in claims}
    assert True is store.finish(by_name["a"])
    assert (False, True) == (bool(row(store, "a")["running"]), bool(row(store, "b")["running"]))
    assert False is store.finish(by_name["a"])  # its claim id is gone from that row
    assert True is store.heartbeat(by_name["b"])


def test_a_repeated_batch_confirms_its_own_claims(store: JobStore) -> None:
    """Running a batch statement again with the same claim id (a retry after a lost reply)
    reads back the rows it already holds instead of losing them."""
    due_rows(store, "a", "b")
    leases = {"a": 300_000, "b": 300_000}
    with store.engine.begin() as conn:
        first = claim_batch(conn, store.jobs, leases, claim_id="c" * 32, owner="me")
    with store.engine.begin() as conn:
        again = claim_batch(conn, store.jobs, leases, claim_id="c" * 32, owner="me")
    assert (["a", "b"], ["a", "b"]) == (sorted(first), sorted(again))


def test_a_per_row_guard_replaces_the_shared_one_for_its_row(store: JobStore) -> None:
    """A row given its own guard is claimed by that guard (here: always), even when the shared
    guard would refuse it (not due)."""
    due_rows(store, "a", "own")
    set_row(store, "own", last_run_ms=store.now_ms())
    leases = {"a": 300_000, "own": 300_000}
    with store.engine.begin() as conn:
        won = claim_batch(
            conn, store.jobs, leases, claim_id="d" * 32, owner="me", row_guards={"own": true()}
        )
    assert ["a", "own"] == sorted(won)


def test_racing_batches_never_claim_a_row_twice(db: TestDatabase) -> None:
    """Four stores claiming the same 20 due rows at once: every row is won exactly once."""
    stores = [JobStore(db.url, table_prefix=db.table_prefix) for _ in range(4)]
    try:
        stores[0].create_schema()
        names = [f"r{i:02d}" for i in range(20)]
        due_rows(stores[0], *names)
        leases = dict.fromkeys(names, LEASE)
        results = race(*(lambda s=s: s.try_claim_many(leases, owner="x") for s in stores))
        won = sorted(c.name for r in results if isinstance(r, list) for c in r)
        assert names == won, results
    finally:
        for s in stores:
            s.dispose()


def test_a_limited_batch_claims_the_longest_waiting_rows_first(store: JobStore) -> None:
    """With five due rows and room for two, a batch claims the two that waited longest (a
    triggered row before them); the next batch takes what is left, and no more."""
    due_rows(store, "a", "b", "c", "d", "e")
    now = store.now_ms()
    for i, name in enumerate("abcde"):
        set_row(store, name, last_run_ms=now - P - 1000 * (10 - i))  # a waited longest
    assert store.trigger("d")
    leases = dict.fromkeys("abcde", LEASE)
    first = store.try_claim_many(leases, owner="me", limit=2)
    assert first is not None
    assert ["a", "d"] == sorted(c.name for c in first)
    second = store.try_claim_many(leases, owner="me", limit=10)
    assert second is not None
    assert ["b", "c", "e"] == sorted(c.name for c in second)
    assert [] == store.try_claim_many(leases, owner="me", limit=10)


def test_a_repeated_limited_batch_confirms_its_own_claims_first(store: JobStore) -> None:
    """A limited batch repeated with the same claim id (a retry after a lost reply) reports
    the rows it already holds, not others: it never holds more rows than its limit."""
    due_rows(store, "a", "b", "c", "d")
    leases = dict.fromkeys("abcd", 300_000)
    with store.engine.begin() as conn:
        first = store._batches.claim(conn, leases, limit=2, claim_id="e" * 32, owner="me")
    with store.engine.begin() as conn:
        again = store._batches.claim(conn, leases, limit=2, claim_id="e" * 32, owner="me")
    assert 2 == len(first)
    assert sorted(first) == sorted(again)
    assert 2 == sum(bool(row(store, n)["running"]) for n in "abcd")


def test_racing_limited_batches_share_the_rows_without_overlap(db: TestDatabase) -> None:
    """Four stores each claiming up to 8 of the same 20 due rows at once: no row is won twice,
    none is left (every row another batch skipped was claimed by that batch), no store takes
    more than 8."""
    stores = [JobStore(db.url, table_prefix=db.table_prefix) for _ in range(4)]
    try:
        stores[0].create_schema()
        names = [f"r{i:02d}" for i in range(20)]
        due_rows(stores[0], *names)
        leases = dict.fromkeys(names, LEASE)
        results = race(*(lambda s=s: s.try_claim_many(leases, owner="x", limit=8) for s in stores))
        won = [[c.name for c in r] for r in results if isinstance(r, list)]
        assert 4 == len(won), results
        assert all(len(w) <= 8 for w in won), won
        assert names == sorted(n for w in won for n in w)
    finally:
        for s in stores:
            s.dispose()


def test_warming_up_writes_nothing(store: JobStore) -> None:
    """warm_up() runs the batch and finish statements on no rows: a due row stays unclaimed
    and a claimed row stays claimed, with the same claim id."""
    due_rows(store, "free", "held")
    held = store.try_claim("held", owner="me", lease=LEASE)
    assert held is not None
    before = {n: row(store, n) for n in ("free", "held")}
    store.warm_up()
    assert before == {n: row(store, n) for n in ("free", "held")}
    assert ["free"] == store.due_names(["free", "held"])


def test_after_warming_up_a_claim_and_a_finish_compile_nothing(store: JobStore) -> None:
    """warm_up() leaves the compiled forms of the claim and finish statements in the engine's
    cache, under the parameter names a real claim uses (SQLAlchemy keys the cache by them): the
    first claim of a busy boundary must not pay for compiling them."""
    due_rows(store, "a", "b", "c")
    store.warm_up()
    cache = store.engine._compiled_cache
    assert cache is not None
    before = len(cache)
    claims = store.try_claim_many(dict.fromkeys("abc", LEASE), owner="me", limit=2)
    assert claims is not None and 2 == len(claims)
    assert all(store.finish(c) for c in claims)
    assert before == len(cache)


def test_an_idle_poll_is_one_statement_and_no_ping(db: TestDatabase) -> None:
    """An engine recurjobs makes sends no pre-ping: polling for due jobs is one statement."""
    engine = make_engine(db.url)
    store = JobStore(engine, table_prefix=db.table_prefix)
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    try:
        store.create_schema()
        store.ensure([Job("a")])
        store.due_names(["a"])  # the connection is pooled now
        # (every engine: on MySQL/MariaDB the poll runs on the store's autocommit twin)
        event.listen(Engine, "before_cursor_execute", record)
        assert [] == store.due_names(["a"])
        assert 1 == len(sent), sent
        for pool in {engine.pool, store._single.pool}:
            assert (False, ResetStyle.reset_none) == (pool._pre_ping, pool._reset_on_return)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
        store.dispose()
        engine.dispose()


def test_an_idle_poll_is_one_round_trip_on_mysql(db: TestDatabase) -> None:
    """On MySQL/MariaDB a single-statement step runs on autocommit connections of the store's
    own: the poll's SELECT is the only packet sent (no COMMIT, no ROLLBACK, no SET), while a
    claim batch still runs in one transaction on the engine's ordinary connections."""
    if db.backend != "mysql":
        pytest.skip("PyMySQL's packets are counted; benchmarks/bench_distributed.py counts all")
    sent: list[str] = []

    def count(dbapi_connection: Any, record: Any) -> None:
        send = dbapi_connection._execute_command

        def counted(command: int, sql: Any) -> Any:
            sent.append(sql.decode() if isinstance(sql, bytes) else str(sql))
            return send(command, sql)

        dbapi_connection._execute_command = counted

    event.listen(Pool, "connect", count)
    engine = make_engine(db.url)
    store = JobStore(engine, table_prefix=db.table_prefix)
    try:
        store.create_schema()
        due_rows(store, "a")
        store.due_names(["b"])  # a connection of the twin is pooled now
        sent.clear()
        assert [] == store.due_names(["b"])
        assert 1 == len(sent) and sent[0].lstrip().upper().startswith("SELECT"), sent
        sent.clear()
        claims = store.try_claim_many({"a": LEASE}, owner="me", limit=1)
        assert claims is not None and ["a"] == [c.name for c in claims]
        assert "COMMIT" == sent[-1].strip().upper(), sent  # the batch was one transaction
        assert store._twin is not None and store._twin is not engine
    finally:
        event.remove(Pool, "connect", count)
        store.dispose()
        engine.dispose()


def test_no_twin_engine_for_an_application_engine(db: TestDatabase) -> None:
    """An engine the application made may carry connect arguments (TLS, credentials plugins)
    that a copy would lose: its store uses it for every step, as before. Nor does a store whose
    statement bound is shorter than the engine's sessions carry get one."""
    from sqlalchemy import create_engine

    from recurjobs.sql._urls import single_statement_engine

    engine = create_engine(make_engine(db.url).url)
    loose = make_engine(db.url, statement_timeout=10.0)
    stores = [
        JobStore(engine, table_prefix=db.table_prefix),
        JobStore(loose, table_prefix=db.table_prefix, statement_timeout=2.0),
    ]
    try:
        assert None is single_statement_engine(engine, 60_000)
        assert [None, None] == [s._twin for s in stores]
    finally:
        for store in stores:
            store.dispose()
        engine.dispose()
        loose.dispose()


def test_next_boundary_is_just_after_the_next_multiple_of_a_period() -> None:
    """The poller's extra wake: the next multiple of any period, ``AFTER`` past it."""
    assert 10.0 + AFTER == next_boundary(7.3, [10.0])
    assert 6.0 + AFTER == next_boundary(4.0 + AFTER + 0.001, [2.0, 10.0])
    assert 4.0 + AFTER == next_boundary(4.0 + AFTER / 2, [2.0])  # not yet woken for it
    assert math.inf == next_boundary(5.0, [])


def test_an_open_limited_batch_locks_only_the_rows_it_claims(db: TestDatabase) -> None:
    """While one limited batch is still uncommitted, a second one claims other due rows at
    once: the first holds locks on its own rows only. (On MariaDB an ordered locking read, or
    an UPDATE the optimizer ran as a full scan, locked every row of the table, so the second
    batch found nothing.)"""
    if db.backend == "sqlite":
        pytest.skip("SQLite's writer locks the whole file: a second batch waits by design")
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        store.create_schema()
        names = [f"r{i:02d}" for i in range(20)]
        due_rows(store, *names)
        leases = dict.fromkeys(names, 300_000)
        with store.engine.connect() as first, store.engine.connect() as second:
            with first.begin():
                a = store._batches.claim(first, leases, limit=8, claim_id="a" * 32, owner="a")
                with second.begin():
                    b = store._batches.claim(second, leases, limit=8, claim_id="b" * 32, owner="b")
        assert (8, 8, set()) == (len(a), len(b), set(a) & set(b))
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("limit", "error"),
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("5", TypeError), (True, TypeError)],
)
def test_a_bad_limit_is_refused_naming_it(
    store: JobStore, limit: object, error: type[Exception]
) -> None:
    """try_claim_many's limit must be a positive int (or None); nothing is claimed otherwise."""
    due_rows(store, "a")
    with pytest.raises(error, match=r"^limit must be"):
        store.try_claim_many({"a": LEASE}, owner="me", limit=limit)  # type: ignore[arg-type]
    assert not row(store, "a")["running"]


def test_a_failing_warm_up_is_logged_at_debug_only(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """The warm-up at the first poll fails (a lost connection on its finish statement): one
    DEBUG line and nothing else (no WARNING, no retry); the rows are still written."""
    fault = Fault()  # the fenced finish's UPDATE, which the warm-up runs on no rows
    engine = faulty_engine(db, fault)
    store = JobStore(engine, table_prefix=db.table_prefix)
    try:
        fault.active = True
        writer = RowWriter(store=store, lock=threading.Lock(), jobs={"a": Job("a")})
        with caplog.at_level(logging.DEBUG, logger="recurjobs"):
            ensured = writer.ensure()
        fault.active = False
        said = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert (True, 1) == (ensured, fault.hits)
        assert [] == [m for level, m in said if level >= logging.WARNING]
        assert 1 == len([m for _, m in said if m.startswith("warming up on")]), said
        assert ["a"] == [r.name for r in store.rows()]
    finally:
        store.dispose()
        engine.dispose()
