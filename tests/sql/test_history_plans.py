"""The history's questions are answered from its indexes on every backend (EXPLAIN pinned):
the latest runs of one job and of all jobs without a sort, failures per job from the index
alone."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from recurjobs.sql import make_engine
from recurjobs.sql._history import HistoryTables, failures_query, history_query
from tests.dbs import TestDatabase


def _plan(conn: sa.Connection, backend: str, query: Any) -> str:
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if backend == "sqlite":
        return " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    if backend == "postgres":
        return " | ".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
    rows = conn.exec_driver_sql(f"EXPLAIN {sql}").mappings().all()
    return " | ".join(f"key={r['key']} extra={r['Extra']}" for r in rows)


def test_history_queries_use_the_indexes(db: TestDatabase) -> None:
    """EXPLAIN shows index scans, no sort for the newest-first lists, index-only failures."""
    tables = HistoryTables(db.table_prefix)
    runs = tables.runs
    rows = [
        {"job": f"job{i % 50}", "kind": "recurring", "host": "h", "trigger": "schedule",
         "started_ms": 1_700_000_000_000 + i, "ended_ms": 1_700_000_000_001 + i,
         "outcome": "failed" if i % 100 == 0 else "executed", "error": None}
        for i in range(5000)
    ]  # fmt: skip
    engine = make_engine(db.url)
    p = db.table_prefix
    try:
        with engine.begin() as conn:
            tables.metadata.create_all(conn)
            conn.execute(sa.insert(runs), rows)
            # The servers keep statistics by themselves; SQLite only after an ANALYZE, which
            # recurjobs never runs, so it plans without them.
            if db.backend != "sqlite":
                table = f"TABLE {p}runs" if db.backend == "mysql" else f"{p}runs"
                conn.exec_driver_sql(f"ANALYZE {table}")
        with engine.begin() as conn:
            if db.backend == "postgres":
                # A small table tempts the planner to scan and sort; with these off it shows
                # whether an index can serve the query (and its order) at all.
                for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                    conn.exec_driver_sql(f"SET LOCAL {setting} = off")
            one_job = _plan(conn, db.backend, history_query(runs, job="job3", limit=100))
            all_jobs = _plan(conn, db.backend, history_query(runs, limit=100))
            failures = _plan(conn, db.backend, failures_query(runs, 1_700_000_001_000))
    finally:
        engine.dispose()
    if db.backend == "sqlite":
        assert f"USING INDEX {p}runs_job_started" in one_job, one_job
        assert f"{p}runs_started" in all_jobs, all_jobs
        assert "TEMP B-TREE FOR ORDER BY" not in one_job + all_jobs
        assert f"USING COVERING INDEX {p}runs_outcome_started" in failures, failures
    elif db.backend == "postgres":
        assert f"Index Scan Backward using {p}runs_job_started" in one_job, one_job
        assert f"Index Scan Backward using {p}runs_started" in all_jobs, all_jobs
        assert "Sort" not in one_job + all_jobs
        assert f"Index Only Scan using {p}runs_outcome_started" in failures, failures
    else:
        assert f"key={p}runs_job_started" in one_job, one_job
        # MariaDB sorts a table this small rather than walk (started_ms, id): not pinned.
        assert "filesort" not in one_job, one_job
        assert f"key={p}runs_outcome_started" in failures, failures
        assert "Using index" in failures, failures
