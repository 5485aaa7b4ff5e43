"""The JobStore contract, run against SQLite, PostgreSQL and MariaDB alike (``db`` fixture).

The database clock cannot be moved, so boundary tests read the database's now first and place
``last_run_ms`` / ``last_alive_ms`` relative to it: 2 s on the safe side of a boundary for "not
yet", 50 ms past it for "now".
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from recurjobs._history import PRUNE_JOB_NAME
from recurjobs.sql import Claim, JobStore, guarded_update
from recurjobs.sql._urls import SQLITE_BUSY_TIMEOUT_MS
from tests.dbs import TestDatabase
from tests.sql.helpers import HOUR, Job, names, race, row, set_row

P = 3_600_000  # the period of most rows here (one hour), in ms
LEASE = timedelta(minutes=5)
L = 300_000  # LEASE in ms


def claim_ready(store: JobStore, name: str = "a") -> None:
    """Ensure a row for ``name`` (period P) and make it due."""
    store.ensure([Job(name)])
    set_row(store, name, last_run_ms=store.now_ms() - P - 1000)


def test_database_clock_is_epoch_milliseconds(store: JobStore) -> None:
    """The database clock reads epoch milliseconds close to this host's clock and moves on."""
    first = store.now_ms()
    assert abs(time.time() * 1000 - first) < 60_000
    later = first
    deadline = time.monotonic() + 5
    while later == first and time.monotonic() < deadline:
        later = store.now_ms()
    assert later > first
    assert later - first < 1000  # millisecond resolution, not seconds


def test_create_schema_twice_is_harmless(store: JobStore) -> None:
    """Creating the schema again leaves the table and its rows alone."""
    store.ensure([Job("a")])
    store.create_schema()
    assert ["a"] == names(store)


def test_schema_creation_racing_from_several_engines_all_succeed(db: TestDatabase) -> None:
    """Several hosts creating the schema at the same moment all succeed."""
    for round_ in range(3):
        prefix = f"{db.table_prefix}r{round_}_"
        stores = [JobStore(db.url, table_prefix=prefix) for _ in range(4)]
        results = race(*(s.create_schema for s in stores))
        assert [None] * len(stores) == results
        stores[0].ensure([Job("a")])
        assert ["a"] == names(stores[1])
        for s in stores:
            s.dispose()


def test_ensure_inserts_missing_rows_with_last_run_now(store: JobStore) -> None:
    """A new row starts with last_run = database now, not running, period as declared."""
    before = store.now_ms()
    store.ensure([Job("a", timedelta(seconds=90)), Job("b", align_to_clock=True)])
    after = store.now_ms()
    a = row(store, "a")
    assert before <= a["last_run_ms"] <= after
    assert (90_000, False, False, None) == (
        a["period_ms"],
        bool(a["aligned"]),
        bool(a["running"]),
        a["claim_id"],
    )
    assert bool(row(store, "b")["aligned"])
    assert [] == store.due_names(["a", "b"])


def test_ensure_never_deletes_unknown_rows(store: JobStore) -> None:
    """Rows of jobs a host does not know survive its ensure (rolling deploys)."""
    store.ensure([Job("old"), Job("a")])
    store.ensure([Job("a"), Job("new")])
    assert ["a", "new", "old"] == names(store)


def test_ensure_updates_a_changed_period_and_keeps_last_run(store: JobStore) -> None:
    """A changed period or alignment is written; last_run and a running claim are kept."""
    store.ensure([Job("a")])
    set_row(store, "a", last_run_ms=store.now_ms() - P - 1000)
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    before = row(store, "a")
    store.ensure([Job("a", timedelta(minutes=2), align_to_clock=True)])
    after = row(store, "a")
    assert (120_000, True) == (after["period_ms"], bool(after["aligned"]))
    assert (before["last_run_ms"], claim.claim_id) == (after["last_run_ms"], after["claim_id"])


def test_ensure_racing_from_several_hosts_inserts_one_row(db: TestDatabase) -> None:
    """Hosts ensuring the same new job at once all succeed and leave one row."""
    stores = [JobStore(db.url, table_prefix=db.table_prefix) for _ in range(4)]
    stores[0].create_schema()
    results = race(*(partial(s.ensure, [Job("a"), Job("b")]) for s in stores))
    assert [None] * len(stores) == results
    assert ["a", "b"] == names(stores[0])
    for s in stores:
        s.dispose()


def test_due_at_the_period_boundary(store: JobStore) -> None:
    """A job is due once more than its period has passed since last_run, not before."""
    store.ensure([Job("a")])
    set_row(store, "a", last_run_ms=store.now_ms() - P + 2000)
    assert [] == store.due_names(["a"])
    assert None is store.try_claim("a", owner="h1", lease=LEASE)
    set_row(store, "a", last_run_ms=store.now_ms() - P - 50)
    assert ["a"] == store.due_names(["a"])
    assert None is not store.try_claim("a", owner="h1", lease=LEASE)


def test_due_names_only_reports_the_names_asked_for(store: JobStore) -> None:
    """The poll looks only at the names a host knows, and an empty list costs no query."""
    claim_ready(store, "a")
    claim_ready(store, "b")
    assert ["b"] == store.due_names(["b", "unknown"])
    assert [] == store.due_names([])


def test_claim_marks_the_row_running(store: JobStore) -> None:
    """A claim writes running, owner, a fresh claim id, the lease and the sign of life."""
    claim_ready(store)
    before = store.now_ms()
    claim = store.try_claim("a", owner="host-1", lease=LEASE)
    assert claim is not None
    r = row(store, "a")
    assert (True, "host-1", claim.claim_id, L) == (
        bool(r["running"]),
        r["owner"],
        r["claim_id"],
        r["lease_ms"],
    )
    assert before <= r["last_alive_ms"] == r["last_attempted_run_ms"]
    assert 32 == len(claim.claim_id)


def test_running_row_is_skipped_until_stale(store: JobStore) -> None:
    """A running row is not claimable until its owner was silent for longer than the lease."""
    claim_ready(store)
    first = store.try_claim("a", owner="h1", lease=LEASE)
    assert first is not None
    assert [] == store.due_names(["a"])
    assert None is store.try_claim("a", owner="h2", lease=LEASE)
    set_row(store, "a", last_alive_ms=store.now_ms() - L + 2000)
    assert [] == store.due_names(["a"])
    assert None is store.try_claim("a", owner="h2", lease=LEASE)
    set_row(store, "a", last_alive_ms=store.now_ms() - L - 50)
    assert ["a"] == store.due_names(["a"])
    second = store.try_claim("a", owner="h2", lease=LEASE)
    assert second is not None
    assert (second.claim_id, "h2") == (row(store, "a")["claim_id"], row(store, "a")["owner"])


def test_stale_row_that_is_not_due_is_not_taken_over(store: JobStore) -> None:
    """Takeover also needs the job to be due: a stale claim alone does not start a run."""
    store.ensure([Job("a")])
    now = store.now_ms()
    set_row(store, "a", running=True, claim_id="x", last_alive_ms=now - L - 50, lease_ms=L)
    assert None is store.try_claim("a", owner="h2", lease=LEASE)


def test_old_owner_cannot_touch_the_row_after_a_takeover(store: JobStore) -> None:
    """After a takeover the old claim's heartbeat, finish and release change nothing."""
    claim_ready(store)
    old = store.try_claim("a", owner="h1", lease=LEASE)
    assert old is not None
    set_row(store, "a", last_alive_ms=store.now_ms() - L - 50)
    new = store.try_claim("a", owner="h2", lease=LEASE)
    assert new is not None
    before = row(store, "a")
    assert (False, False, False) == (
        store.heartbeat(old),
        store.finish(old),
        store.release(old),
    )
    assert before == row(store, "a")
    assert store.heartbeat(new)


def test_heartbeat_renews_the_claim(store: JobStore) -> None:
    """A heartbeat moves last_alive to the database's now, and counts even when repeated at once."""
    claim_ready(store)
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    set_row(store, "a", last_alive_ms=store.now_ms() - L + 1000)
    before = store.now_ms()
    assert [True, True, True] == [store.heartbeat(claim) for _ in range(3)]
    assert row(store, "a")["last_alive_ms"] >= before


def test_guarded_update_counts_matched_rows_even_when_nothing_changes(store: JobStore) -> None:
    """rowcount means matched rows on every backend (MySQL: CLIENT.FOUND_ROWS)."""
    store.ensure([Job("a")])
    jobs = store.jobs
    with store.engine.begin() as conn:
        assert guarded_update(conn, jobs, jobs.c.name == "a", {"owner": "same"})
        assert guarded_update(conn, jobs, jobs.c.name == "a", {"owner": "same"})
        assert not guarded_update(conn, jobs, jobs.c.name == "b", {"owner": "same"})


def test_finish_stamps_last_run_and_frees_the_row(store: JobStore) -> None:
    """Finish clears the claim and stamps last_run with the database's now; the job is not due."""
    claim_ready(store)
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    before = store.now_ms()
    assert store.finish(claim)
    r = row(store, "a")
    assert (False, None, None) == (bool(r["running"]), r["owner"], r["claim_id"])
    assert r["last_run_ms"] >= before
    assert [] == store.due_names(["a"])
    assert not store.finish(claim)


def test_release_frees_the_row_and_keeps_the_job_due(store: JobStore) -> None:
    """A released claim (run never started) leaves the job due, without stamping last_run."""
    claim_ready(store)
    last_run = row(store, "a")["last_run_ms"]
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    assert store.release(claim)
    assert (last_run, False) == (row(store, "a")["last_run_ms"], bool(row(store, "a")["running"]))
    assert ["a"] == store.due_names(["a"])


def test_concurrent_claims_have_exactly_one_winner(db: TestDatabase) -> None:
    """Of many hosts claiming the same due row at once, exactly one wins."""
    stores = [JobStore(db.url, table_prefix=db.table_prefix) for _ in range(6)]
    stores[0].create_schema()
    for round_ in range(5):
        claim_ready(stores[0], f"j{round_}")
        name = f"j{round_}"
        claims = race(
            *(partial(s.try_claim, name, owner=f"h{i}", lease=LEASE) for i, s in enumerate(stores))
        )
        wins = [c for c in claims if c is not None]
        assert 1 == len(wins)
        assert isinstance(wins[0], Claim)
        assert wins[0].claim_id == row(stores[0], name)["claim_id"]
    for s in stores:
        s.dispose()


def test_retried_claim_confirms_a_claim_that_already_landed(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim repeated with the same id (commit outcome unknown) finds the row already ours."""
    claim_ready(store)
    monkeypatch.setattr("recurjobs.sql._store.new_claim_id", lambda: "c" * 32)
    first = store.try_claim("a", owner="h1", lease=LEASE)
    again = store.try_claim("a", owner="h1", lease=LEASE)
    assert first is not None
    assert first == again


def _aligned_period(now_ms: int) -> int:
    """A period of a day or more such that now is at least a minute away from its boundaries."""
    for days in (1, 2, 3, 5, 7):
        period = days * 86_400_000
        if 60_000 < now_ms % period < period - 60_000:
            return period
    raise AssertionError("unreachable: the candidates' boundaries are days apart")


def test_aligned_job_is_due_once_a_utc_multiple_of_the_period_passed(store: JobStore) -> None:
    """Aligned: due when a multiple of the period (from the epoch) lies after last_run."""
    store.ensure([Job("a", align_to_clock=True)])
    now = store.now_ms()
    period = _aligned_period(now)
    boundary = now // period * period  # the latest boundary, at least a minute ago
    set_row(store, "a", period_ms=period, last_run_ms=boundary)
    assert [] == store.due_names(["a"])
    set_row(store, "a", last_run_ms=boundary + 1000)
    assert [] == store.due_names(["a"])
    # One millisecond before the boundary is a whole period earlier; this is also the case a
    # rounded DECIMAL division on MySQL would get wrong.
    set_row(store, "a", last_run_ms=boundary - 1)
    assert ["a"] == store.due_names(["a"])


def test_aligned_job_is_due_for_short_periods_on_the_boundary(store: JobStore) -> None:
    """Aligned with a period shorter than the elapsed time: due even if less than a period ran."""
    store.ensure([Job("a", timedelta(seconds=30), align_to_clock=True)])
    now = store.now_ms()
    boundary = now // 30_000 * 30_000
    # last_run 1 ms before the latest boundary: less than a period ago, but a boundary passed.
    set_row(store, "a", last_run_ms=boundary - 1)
    assert ["a"] == store.due_names(["a"])


@pytest.mark.parametrize("aligned", [False, True], ids=["interval", "aligned"])
def test_boundaries_missed_during_an_overrun_give_one_run(store: JobStore, aligned: bool) -> None:
    """A job that missed several periods runs once, then waits for the next period or boundary."""
    store.ensure([Job("a", timedelta(seconds=30), align_to_clock=aligned)])
    set_row(store, "a", last_run_ms=store.now_ms() - 5 * 30_000)
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    assert store.finish(claim)
    after = row(store, "a")["last_run_ms"]
    due_again = store.due_names(["a"])
    if after % 30_000 < 29_000:  # the next boundary is not within this test's few milliseconds
        assert [] == due_again


def test_trigger_marks_a_job_due_now(store: JobStore) -> None:
    """A trigger makes a job due at the next poll; the claim consumes it."""
    store.ensure([Job("a")])
    assert [] == store.due_names(["a"])
    assert store.trigger("a")
    assert store.trigger("a")
    assert ["a"] == store.due_names(["a"])
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    assert store.finish(claim)
    assert [] == store.due_names(["a"])


def test_trigger_during_a_run_runs_the_job_once_more_after_it(store: JobStore) -> None:
    """A trigger while the job runs waits for the run to end, then makes it due once."""
    claim_ready(store)
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    assert store.trigger("a")
    assert [] == store.due_names(["a"])
    assert store.finish(claim)
    assert ["a"] == store.due_names(["a"])


def test_trigger_of_an_unknown_job_is_refused(store: JobStore) -> None:
    """Triggering a name without a row returns False and creates nothing."""
    assert not store.trigger("nope")
    assert [] == names(store)


def test_prune_keeps_the_named_jobs_and_running_rows(store: JobStore) -> None:
    """prune(keep=...) deletes idle rows of other jobs, never a running one."""
    store.ensure([Job("a"), Job("b"), Job("c")])
    claim_ready(store, "c")
    assert store.try_claim("c", owner="h1", lease=LEASE) is not None
    assert ["b"] == store.prune(keep=["a"])
    assert ["a", "c"] == names(store)


def test_prune_keep_always_keeps_the_history_pruning_job(store: JobStore) -> None:
    """The run history's own pruning job is the library's: a list of the caller's jobs keeps it."""
    store.ensure([Job("a"), Job(PRUNE_JOB_NAME)])
    assert [] == store.prune(keep=["a"])
    assert sorted(["a", PRUNE_JOB_NAME]) == names(store)


def test_prune_by_age(store: JobStore) -> None:
    """prune(older_than=...) deletes rows that have not run for that long."""
    store.ensure([Job("a"), Job("b")])
    set_row(store, "a", last_run_ms=store.now_ms() - 3 * 86_400_000)
    assert ["a"] == store.prune(older_than=timedelta(days=2))
    assert [] == store.prune(keep=["b"], older_than=timedelta(days=2))
    assert ["b"] == names(store)
    with pytest.raises(ValueError, match="keep"):
        store.prune()


def test_rows_describe_each_job(store: JobStore) -> None:
    """rows() reports the schedule, the claim and the next due time as UTC datetimes."""
    store.ensure([Job("a", timedelta(minutes=10)), Job("b", HOUR, align_to_clock=True)])
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is None
    store.trigger("b")
    a, b = store.rows()
    assert ("a", timedelta(minutes=10), False, False, None) == (
        a.name,
        a.period,
        a.align_to_clock,
        a.running,
        a.owner,
    )
    assert a.last_run + timedelta(minutes=10) == a.next_due
    assert a.last_run.tzinfo is not None
    assert (True, b.database_now) == (b.triggered, b.next_due)


def test_store_survives_the_server_closing_its_connection(db: TestDatabase) -> None:
    """When the server drops the pooled connection, the next step reconnects transparently."""
    if db.backend == "sqlite":
        pytest.skip("SQLite has no server to drop connections")
    store = JobStore(db.url, table_prefix=db.table_prefix)
    store.create_schema()
    _kill_pooled_connection(db, store.engine)
    store.ensure([Job("a")])
    assert ["a"] == names(store)
    store.dispose()


def test_single_statement_steps_survive_the_server_closing_their_connection(
    db: TestDatabase,
) -> None:
    """The connection single-statement steps use (on MySQL/MariaDB the store's autocommit
    twin engine's own) is dropped by the server: the next poll reconnects and answers."""
    if db.backend == "sqlite":
        pytest.skip("SQLite has no server to drop connections")
    store = JobStore(db.url, table_prefix=db.table_prefix)
    store.create_schema()
    store.ensure([Job("a")])
    _kill_pooled_connection(db, store._single)  # the connection the next poll takes
    assert [] == store.due_names(["a"])
    assert (db.backend == "mysql") == (store._twin is not None)
    store.dispose()


def _kill_pooled_connection(db: TestDatabase, engine: Engine) -> None:
    """Have the server end the session of ``engine``'s pooled connection."""
    own = "SELECT pg_backend_pid()" if db.backend == "postgres" else "SELECT CONNECTION_ID()"
    with engine.connect() as conn:
        pid = conn.execute(text(own)).scalar_one()
    killer = create_engine(db.url)
    with killer.connect() as conn:
        if db.backend == "postgres":
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        else:
            conn.execute(text(f"KILL {int(pid)}"))
    killer.dispose()


def test_sqlite_files_use_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    """Engines made for SQLite files switch to WAL and wait for locks instead of failing."""
    store = JobStore(f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as conn:
        mode = conn.execute(text("PRAGMA journal_mode")).scalar_one()
        timeout = conn.execute(text("PRAGMA busy_timeout")).scalar_one()
    assert ("wal", SQLITE_BUSY_TIMEOUT_MS) == (mode, timeout)
    store.dispose()


def test_in_memory_sqlite_is_one_database_for_every_thread() -> None:
    """An in-memory SQLite store keeps one database across threads (one shared connection)."""
    store = JobStore("sqlite://")
    store.create_schema()
    assert [None] == race(lambda: store.ensure([Job("a")]))
    assert ["a"] == names(store)


def test_a_given_engine_is_used_and_left_open(db: TestDatabase) -> None:
    """JobStore accepts an Engine; dispose() leaves an engine it did not make alone."""
    engine = create_engine(db.url)
    store = JobStore(engine, table_prefix=db.table_prefix)
    store.create_schema()
    store.ensure([Job("a")])
    store.dispose()
    with engine.connect() as conn:
        assert 1 == conn.execute(text(f"SELECT COUNT(*) FROM {store.jobs.name}")).scalar_one()
    engine.dispose()
    with pytest.raises(TypeError, match="database"):
        JobStore(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="table_prefix"):
        JobStore(db.url, table_prefix="bad prefix")
