"""What the dashboard reads: the statements that fill :mod:`._records` from the tables.

Every page is a handful of short read statements that use the indexes: the latest run of each
job through ``(job, started_ms, id)``, the runs and failures of the last day through
:mod:`._daycounts`. The job names found in the history come from a recursive walk of the job
index (one probe per distinct name), never from scanning the table. Times are epoch
milliseconds of the database clock, read once per page.

Tables may be missing (no host with distributed jobs, history or an election has started on
this database yet) or be older than this version (no ``paused``/``cron`` columns): what is
missing is shown as unknown, never an error. Only this module, :mod:`._daycounts` and
:mod:`._actions` touch SQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Engine,
    MetaData,
    and_,
    case,
    func,
    inspect,
    or_,
    select,
    text,
)

from recurjobs.dashboard._counts import DAY_MS
from recurjobs.dashboard._daycounts import DayCounts
from recurjobs.dashboard._latest import LatestRuns
from recurjobs.dashboard._records import (
    RUN_COLUMNS,
    HistoryPage,
    JobRowView,
    Overview,
    Run,
    Server,
    job_row_of,
    run_of,
)
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._history_table import column_text, runs_table
from recurjobs.sql._servers_table import PUBLISHER, ServerTables
from recurjobs.sql._shared import exclusive
from recurjobs.sql._tables import jobs_table
from recurjobs.sql._urls import masked

# The records are re-exported: Dashboard returns them, and tests import them from here.
__all__ = ["Dashboard", "HistoryPage", "JobRowView", "Overview", "Run", "Server"]

#: At most this many job names are taken from the history (a typo'd name loop cannot flood).
MAX_HISTORY_NAMES = 500
#: Tables found missing are looked for again after this many seconds.
_RECHECK_S = 10.0


@dataclass
class _Schema:
    jobs: bool = False
    jobs_columns: frozenset[str] = frozenset()
    runs: bool = False
    servers: bool = False
    checked: float = field(default=-1e9)


class Dashboard:
    """The read (and action) statements of one database and table prefix."""

    def __init__(self, engine: Engine, prefix: str) -> None:
        self.engine = engine
        self.prefix = prefix
        self.url = masked(engine)
        metadata = MetaData()
        self.jobs = jobs_table(metadata, prefix)
        self.runs = runs_table(metadata, prefix)
        tables = ServerTables(metadata, prefix)
        self.servers, self.leases = tables.servers, tables.leases
        self._schema = _Schema()
        self._schema_lock = threading.Lock()
        self.days = DayCounts(engine.dialect.name, self.runs)
        self.latest = LatestRuns()

    # ------------------------------------------------------------------ schema
    def schema(self) -> _Schema:
        """Which tables (and jobs columns) exist; looked up again, every ``_RECHECK_S``
        seconds, while anything is missing (a table not created yet, an old jobs table)."""
        with self._schema_lock:
            current = self._schema
            if _complete(current) or time.monotonic() - current.checked < _RECHECK_S:
                return current
        with exclusive(self.engine):
            inspector = inspect(self.engine)
            names = set(inspector.get_table_names())
            columns: frozenset[str] = frozenset()
            if self.jobs.name in names:
                columns = frozenset(c["name"] for c in inspector.get_columns(self.jobs.name))
        found = _Schema(
            jobs=self.jobs.name in names,
            jobs_columns=columns,
            runs=self.runs.name in names,
            servers=self.servers.name in names and self.leases.name in names,
            checked=time.monotonic(),
        )
        with self._schema_lock:
            self._schema = found
        return found

    # ---------------------------------------------------------------- overview
    def overview(self) -> Overview:
        """The jobs table, each job's latest run, its runs and failures of the last day, and
        the servers."""
        schema = self.schema()
        with exclusive(self.engine), self.engine.connect() as conn:
            now_ms, publisher, top_id = self._now_and_publisher(conn, schema)
            rows = self._rows(conn, schema) if schema.jobs else {}
            last_runs: dict[str, Run] = {}
            failures: dict[str, int] = {}
            runs_24h: dict[str, int] = {}
            if schema.runs:
                last_runs = self.latest.get(
                    lambda: self._last_runs(conn),
                    lambda above, ids, limit: self._newer(conn, above, ids, limit),
                )
                runs_24h, failures = self.days.counts(conn, set(last_runs), now_ms, top_id)
            servers: list[Server] = []
            if schema.servers:
                servers = [
                    Server(
                        identity=r.identity,
                        address=r.address,
                        registered_ms=int(r.registered_ms),
                        last_seen_ms=int(r.last_seen_ms),
                        active=bool(r.active),
                        publisher=publisher is not None and r.identity == publisher,
                    )
                    for r in conn.execute(select(self.servers).order_by(self.servers.c.identity))
                ]
        return Overview(
            now_ms=now_ms,
            rows=rows,
            last_runs=last_runs,
            runs_24h=runs_24h,
            failures_24h=failures,
            servers=servers,
            publisher=publisher,
            has_history=schema.runs,
            has_servers=schema.servers,
        )

    def _now_and_publisher(self, conn: Any, schema: _Schema) -> tuple[int, str | None, int]:
        """The database's now, the holder of a live publisher lease and the highest id of the
        history (0 without one), in one statement.

        On PostgreSQL the same statement turns parallel query off for the page's transaction:
        starting parallel workers for these short index scans costs more than the scans (tens
        of milliseconds on a busy machine)."""
        first: list[Any] = [db_now_ms()]
        if schema.runs:
            first.append(select(func.max(self.runs.c.id)).scalar_subquery())
        if self.engine.dialect.name == "postgresql":
            first.append(func.set_config("max_parallel_workers_per_gather", "0", True))
        if not schema.servers:
            row = conn.execute(select(*first)).one()
            return int(row[0]), None, int(row[1] or 0) if schema.runs else 0
        lease = self.leases.c
        holder = (
            select(lease.holder)
            .where(
                lease.name == PUBLISHER,
                lease.token.is_not(None),
                db_now_ms() - func.coalesce(lease.renewed_ms, 0)
                <= func.coalesce(lease.lease_ms, 0),
            )
            .scalar_subquery()
        )
        row = conn.execute(select(holder, *first)).one()
        return int(row[1]), row[0], int(row[2] or 0) if schema.runs else 0

    def _rows(self, conn: Any, schema: _Schema, name: str | None = None) -> dict[str, JobRowView]:
        c = self.jobs.c
        present = [col for col in self.jobs.columns if col.name in schema.jobs_columns]
        query = select(*present).order_by(c.name)
        if name is not None:
            query = query.where(c.name == name)
        result: dict[str, JobRowView] = {}
        for row in conn.execute(query):
            view = job_row_of(row)
            result[view.name] = view
        return result

    def _last_runs(self, conn: Any) -> tuple[dict[str, Run], int]:
        """The latest run of every job in the history: a recursive walk of the job index
        yields the distinct names (one index probe each), and for each the id of its latest
        run; then those rows by primary key."""
        prep = self.engine.dialect.identifier_preparer
        table = prep.format_table(self.runs)
        walk = text(
            f"WITH RECURSIVE names(job, depth) AS ("
            f" SELECT MIN(job), 1 FROM {table}"
            f" UNION ALL"
            f" SELECT (SELECT MIN(r.job) FROM {table} r WHERE r.job > names.job), depth + 1"
            f" FROM names WHERE names.job IS NOT NULL AND depth < {MAX_HISTORY_NAMES})"
            f" SELECT (SELECT r.id FROM {table} r WHERE r.job = names.job"
            f" ORDER BY r.started_ms DESC, r.id DESC LIMIT 1) AS last_id"
            f" FROM names WHERE names.job IS NOT NULL LIMIT {MAX_HISTORY_NAMES}"
        )
        high = conn.execute(select(func.max(self.runs.c.id))).scalar_one_or_none()
        ids = [int(i) for i in conn.execute(walk).scalars() if i is not None]
        if not ids:
            return {}, int(high or 0)
        columns = [self.runs.c[name] for name in RUN_COLUMNS]
        query = select(*columns).where(self.runs.c.id.in_(ids))
        return {r.job: run_of(r) for r in conn.execute(query)}, int(high or 0)

    def _newer(self, conn: Any, above: int, ids: Collection[int], limit: int) -> list[Run]:
        """Rows with an id above ``above`` or in ``ids``, by id (primary key lookups)."""
        r = self.runs.c
        where = r.id > above if not ids else or_(r.id > above, r.id.in_(sorted(ids)))
        columns = [self.runs.c[name] for name in RUN_COLUMNS]
        query = select(*columns).where(where).order_by(r.id).limit(limit)
        return [run_of(row) for row in conn.execute(query)]

    # -------------------------------------------------------------------- a job
    def job_row(self, name: str) -> tuple[int, JobRowView | None]:
        """The database's now and the jobs-table row of ``name`` (None without one)."""
        schema = self.schema()
        with exclusive(self.engine), self.engine.connect() as conn:
            now_ms = int(conn.execute(select(db_now_ms())).scalar_one())
            if not schema.jobs:
                return now_ms, None
            return now_ms, self._rows(conn, schema, name).get(name)

    def history(
        self,
        name: str,
        *,
        now_ms: int,
        outcome: str | None,
        since_ms: int | None,
        before: tuple[int, int] | None,
        limit: int,
    ) -> HistoryPage:
        """Runs of ``name`` newest first, filtered by outcome (``"running"``: none yet) and
        start time, older than the ``before`` key (``started_ms``, ``id``)."""
        if not self.schema().runs:
            return HistoryPage([], None, 0, 0)
        r = self.runs.c
        name = column_text(name, 200)  # as the writer stored it
        where = [r.job == name]
        if outcome == "running":
            where.append(r.outcome.is_(None))
        elif outcome is not None:
            where.append(r.outcome == outcome)
        if since_ms is not None:
            where.append(r.started_ms >= since_ms)
        if before is not None:
            started, ident = before
            where.append(or_(r.started_ms < started, and_(r.started_ms == started, r.id < ident)))
        columns = [self.runs.c[c] for c in RUN_COLUMNS] + [r.error]
        query = (
            select(*columns)
            .where(*where)
            .order_by(r.started_ms.desc(), r.id.desc())
            .limit(limit + 1)
        )
        day = r.started_ms > now_ms - DAY_MS
        failed: Any = func.sum(case((r.outcome == "failed", 1), else_=0))
        counts = select(func.count(), failed).where(r.job == name, day)
        with exclusive(self.engine), self.engine.connect() as conn:
            runs = [run_of(row) for row in conn.execute(query)]
            total, failures = conn.execute(counts).one()
        older = None
        if len(runs) > limit:
            runs = runs[:limit]
            older = f"{runs[-1].started_ms}.{runs[-1].id}"
        return HistoryPage(runs, older, int(total or 0), int(failures or 0))


def _complete(schema: _Schema) -> bool:
    return (
        schema.jobs and schema.runs and schema.servers and {"paused", "cron"} <= schema.jobs_columns
    )
