"""JobStore: the distributed jobs table, one short guarded statement per operation.

Every method is one small transaction (ensure and prune: a read, then guarded writes), retried
through transient faults by the store's :class:`RetryPolicy`, and no statement waits on a lock
for longer than the store's ``statement_timeout`` (``_bounds``). Due and stale are decided by the
database clock inside the statements (``_claims``); Python time appears only in what ``rows()``
shows.

The class holds what every operation shares (the engines, the bounded and retried ``_step``),
the schema and start check, and the fenced writes of a claim (heartbeat, finish, release). The
longer method bodies live with the question they answer, as functions the methods call:
ensuring rows (``_ensure``), polling (``_polls``), claiming (``_claiming``), and triggers,
pause flags, listing and pruning rows (``_operator``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, and_, select
from sqlalchemy.engine import URL
from sqlalchemy.sql import Executable, Select

from recurjobs._cron import Cron
from recurjobs._validate import instance
from recurjobs._validate import table_prefix as check_prefix
from recurjobs.sql._batch import BatchClaims
from recurjobs.sql._bounds import (
    DEFAULT_STATEMENT_TIMEOUT,
    bounded_waits,
    check_statement_timeout,
    share_bound,
    to_ms,
)
from recurjobs.sql._claiming import check_limit, claim_many, claim_one
from recurjobs.sql._claims import guarded_update, new_claim_id
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._ensure import ensure_rows
from recurjobs.sql._finishes import Finishes
from recurjobs.sql._migrate import add_missing_columns, exact_names
from recurjobs.sql._operator import mark_due, mark_paused, paused_rows, prune_rows, read_rows
from recurjobs.sql._polls import poll_query, read_poll
from recurjobs.sql._pool import single_statement_options
from recurjobs.sql._ready import check_ready
from recurjobs.sql._retry import RetryPolicy
from recurjobs.sql._rows import Claim, JobRow, Poll
from recurjobs.sql._shared import shared_lock
from recurjobs.sql._tables import create_tables, jobs_table
from recurjobs.sql._urls import engine_for, masked, single_statement_engine

__all__ = ["JobStore"]

T = TypeVar("T")


class JobStore:
    """The distributed jobs table of one database and table prefix.

    ``database`` is a URL (an engine is made with :func:`make_engine`) or an SQLAlchemy
    ``Engine`` (used as it is; :meth:`dispose` leaves it alone).

    ``statement_timeout`` (seconds) bounds how long any statement waits for a lock held by
    another transaction (and, on PostgreSQL, how long it runs; MySQL/MariaDB count whole
    seconds). A claim that hits it is "not claimed this time" (``None``); other steps raise the
    driver's error at once, without retrying, and are tried again at their next round.
    """

    def __init__(
        self,
        database: str | URL | Engine,
        *,
        table_prefix: str = "recurjobs_",
        retry: RetryPolicy | None = None,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
    ) -> None:
        check_prefix(table_prefix)
        self.statement_timeout = check_statement_timeout(statement_timeout)
        self._bound_ms = to_ms(self.statement_timeout)
        self.engine, self._owns_engine = engine_for(
            database, statement_timeout=self.statement_timeout
        )
        self.url = masked(self.engine)
        self.retry = instance(retry, RetryPolicy, "retry") if retry is not None else RetryPolicy()
        self.metadata = MetaData()
        self.jobs = jobs_table(self.metadata, table_prefix)
        # One shared connection (in-memory SQLite) must not interleave two transactions; the
        # lock is the engine's, shared with every other user of it (``_shared``).
        self._serial = shared_lock(self.engine)
        # Single-statement steps skip BEGIN/COMMIT where that is safe (``_pool``).
        single = single_statement_options(self.engine, self._bound_ms)
        self._single = self.engine
        self._twin: Engine | None = None  # MySQL/MariaDB: autocommit connections of our own
        if single:
            self._single = self.engine.execution_options(**single)
            share_bound(self._single, self.engine)
        else:
            self._twin = single_statement_engine(self.engine, self._bound_ms)
            if self._twin is not None:
                self._single = self._twin
        self._locked: set[str] = set()  # rows whose claim last timed out on a lock (logged once)
        self._batches = BatchClaims(self.jobs)
        self._poll_query: Select[Any] | None = None
        # Finishes of runs ending together share a connection and a transaction.
        self._finishes = Finishes(
            self.jobs, self._step, whole_file_locks=self.engine.dialect.name == "sqlite"
        )

    def __repr__(self) -> str:
        return f"JobStore({self.url!r}, table={self.jobs.name!r})"

    # ------------------------------------------------------------------ plumbing
    def _step(
        self,
        what: str,
        fn: Callable[[Connection], T],
        *,
        single: bool = False,
        retried: bool = True,
    ) -> T:
        """Run ``fn`` in one bounded transaction, retried through transient faults.

        ``single``: ``fn`` runs exactly one statement, which may then run in autocommit.
        ``retried=False``: one attempt, whose fault is raised at once (best-effort steps).
        """
        engine = self._single if single else self.engine
        # On the twin every statement commits itself: a transaction would only add COMMIT.
        open_connection = engine.connect if engine is self._twin else engine.begin

        def attempt() -> T:
            with (
                self._serialised(),
                open_connection() as conn,
                bounded_waits(conn, self._bound_ms),
            ):
                return fn(conn)

        return self.retry.call(what, self.url, attempt) if retried else attempt()

    def _execute(self, what: str, statement: Executable) -> int:
        """Run one statement in its own transaction; return its rowcount."""
        return self._step(what, lambda conn: conn.execute(statement).rowcount, single=True)

    @contextlib.contextmanager
    def _serialised(self) -> Iterator[None]:
        if self._serial is None:
            yield
        else:
            with self._serial:
                yield

    def dispose(self) -> None:
        """Close the pooled connections of an engine this store made (not of a given one)."""
        if self._owns_engine:
            self.engine.dispose()
        if self._twin is not None:
            self._twin.dispose()

    # -------------------------------------------------------------------- schema
    def create_schema(self) -> None:
        """Create the table if it is missing, or add the columns an older version's table
        lacks (``paused``, ``cron``) and, on MySQL/MariaDB, make its names compare exactly;
        hosts doing it at the same moment all succeed."""

        def create() -> None:
            create_tables(self.engine, self.metadata, limit_ms=self._bound_ms)
            add_missing_columns(self.engine, self.jobs, limit_ms=self._bound_ms)
            exact_names(self.engine, self.jobs, limit_ms=self._bound_ms)

        self.retry.call("creating tables", self.url, create)

    def check_ready(self, timeout: float) -> None:
        """Check that this store can work, or raise :class:`~recurjobs.sql.DatabaseUnavailable`.

        Connects, creates the table if it is missing (or adds the columns an older version's
        table lacks), and proves with a rolled-back write that
        rows can be written and (on MySQL/MariaDB) that updates count matched rows
        (``CLIENT.FOUND_ROWS``). Refused credentials, an unknown database, an SQLite path that
        cannot be opened or written, or a connection counting changed rows fail at once; a
        server that cannot be reached is retried for ``timeout`` seconds first.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
        if not timeout >= 0 or timeout == float("inf"):
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
        check_ready(
            self.engine,
            self.metadata,
            self.jobs,
            timeout=float(timeout),
            limit_ms=self._bound_ms,
            sleep=self.retry.sleep,
        )

    def now_ms(self) -> int:
        """The database clock now, in epoch milliseconds."""
        return self._step(
            "reading the clock", lambda conn: int(conn.execute(select(db_now_ms())).scalar_one())
        )

    # ------------------------------------------------------------------ schedule
    def ensure(self, jobs: Iterable[object]) -> None:
        """Insert missing rows (``last_run`` = now) and update changed schedules or alignment.

        A Cron job's row holds its calendar in ``cron`` (``"<expression>|<zone name>"``) and a
        nominal gap between fire times in ``period_ms`` (``_fires.nominal_period_ms``); it is
        inserted with ``last_attempted_run`` = now, so fire times before the row existed are
        not caught up, and a row whose calendar changes restarts from now the same way.

        Rows of jobs not given are left alone: in a rolling deploy other hosts may still run
        them. Removing them is :meth:`prune`'s job.
        """
        ensure_rows(self, jobs)

    def due_names(self, names: Collection[str]) -> list[str]:
        """Of ``names``, those due and claimable now: triggered first, then longest waiting."""
        return [d.name for d in self.poll(names).due]

    def poll(self, names: Collection[str], crons: Mapping[str, Cron] | None = None) -> Poll:
        """Of ``names``, those due and claimable now, triggered first, then longest waiting;
        with the database's now and the next fire time of each free Cron row.

        One ``SELECT``: period rows are judged in it; free Cron rows are read with their
        ``last_attempted_run`` and judged here (``_fires``) from database times only. The
        calendar is the row's ``cron`` column; ``crons`` (name -> the Cron this host declared)
        stands in when this host cannot read the column.
        """
        if not names:
            return Poll(due=[], now_ms=None, fires_ms={})
        if self._poll_query is None:  # built once: every value is a parameter (compiled cache)
            self._poll_query = poll_query(self.jobs, self.engine.dialect)
        return read_poll(self, self._poll_query, names, crons)

    # -------------------------------------------------------------------- claims
    def try_claim(
        self, name: str, *, owner: str, lease: timedelta, fire_ms: int | None = None
    ) -> Claim | None:
        """Claim ``name`` if it is due and free (or stale); None when another host has it.

        ``lease`` is how long the claim lives without a heartbeat: the owner's period (for a
        Cron job, the gap after the claimed fire time) plus max_execution_time. ``fire_ms`` is
        a Cron row's fire time from :meth:`poll` (``Due.fire_ms``): the claim lands only if
        ``last_attempted_run < fire_ms <= now`` still holds (or the row is triggered).

        Retries reuse the claim id (see ``_claims.claimable``). When the row stays locked by
        another transaction for ``statement_timeout``, the answer is None too ("not claimed
        this time"): the wait is not repeated, the next poll tries again.
        """
        # The store chooses each claim's id (here and in try_claim_many); ``_claiming`` writes it.
        claim = Claim(name=name, claim_id=new_claim_id(), lease=lease)
        return claim if claim_one(self, claim, owner=owner, fire_ms=fire_ms) else None

    def try_claim_many(
        self, leases: Mapping[str, timedelta], *, owner: str, limit: int | None = None
    ) -> list[Claim] | None:
        """Claim the jobs of ``leases`` (name -> lease) that are due and free (or stale), at
        most ``limit`` of them (None: all), in one guarded UPDATE (``_batch``); return the
        claims won (one fresh claim id for the batch). Rows that another transaction holds
        locked are skipped where the server can (``SKIP LOCKED``): fewer than ``limit`` claims
        means no other row was claimable now.

        None when the batch waited out ``statement_timeout`` on a lock (a server without
        ``SKIP LOCKED``, or SQLite's file lock): the caller may claim the rows one by one.
        """
        check_limit(limit)
        return claim_many(self, leases, owner=owner, limit=limit, claim_id=new_claim_id())

    def warm_up(self) -> None:
        """Run the batched-claim and grouped-finish statements once on no rows, so that their
        compiled forms are cached before they are needed (writes nothing).

        Best effort, so tried once: a fault raises at once, without the retries (and their
        WARNING lines) of a real step; the statements then compile at their first use."""
        for warm_up in (self._batches.warm_up, self._finishes.warm_up):
            self._step("warming up", warm_up, retried=False)

    def locked_rows(self) -> frozenset[str]:
        """The job rows whose last claim timed out on a lock held by another transaction."""
        return frozenset(self._locked)

    def _fenced(self, what: str, claim: Claim, values: dict[str, object]) -> bool:
        c = self.jobs.c
        where = and_(c.name == claim.name, c.claim_id == claim.claim_id)
        return self._step(
            what, lambda conn: guarded_update(conn, self.jobs, where, values), single=True
        )

    def heartbeat(self, claim: Claim) -> bool:
        """Renew ``claim``; False when it is no longer ours (taken over after going stale).

        A row locked by another transaction for ``statement_timeout`` raises the driver's
        error (``is_lock_timeout``): "could not renew this time", not "lost".
        """
        return self._fenced("renewing a claim", claim, {"last_alive_ms": db_now_ms()})

    def finish(self, claim: Claim) -> bool:
        """End the run of ``claim``: stamp ``last_run`` and free the row, if it is still ours.

        Finishes called by several threads at once run together (``_finishes``): one
        transaction, each finish judged on its own row.
        """
        return self._finishes.finish(claim)

    def release(self, claim: Claim) -> bool:
        """Give back a claim whose run never started; the job stays due (``due_now``)."""
        values: dict[str, object] = {
            "running": False,
            "owner": None,
            "claim_id": None,
            "due_now": True,
        }
        return self._fenced("releasing a claim", claim, values)

    def trigger(self, name: str) -> bool:
        """Mark ``name`` due now for whichever host polls next; False when there is no row or
        the job is paused (a trigger is refused, not kept for after the resume)."""
        return mark_due(self, name)

    def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume ``name`` cluster-wide; False when there is no row of that name.

        A paused row is never claimed (a run going on finishes). Resuming does not trigger a
        run: the job runs when its schedule says it is due, which may be at the next poll.
        """
        return mark_paused(self, name, paused)

    def paused_names(self, names: Collection[str] | None = None) -> set[str]:
        """The paused jobs among ``names`` (all rows when None)."""
        return paused_rows(self, names)

    # --------------------------------------------------------------- inspection
    def rows(self) -> list[JobRow]:
        """Every row, by name, for status pages and the CLI."""
        return read_rows(self)

    def prune(
        self, *, keep: Collection[str] | None = None, older_than: timedelta | None = None
    ) -> list[str]:
        """Delete rows not in ``keep`` and/or not run for ``older_than``; return their names.

        At least one criterion is required. Rows that are running (and not stale) are kept,
        ``older_than`` alone never deletes a paused row, and ``keep`` always keeps the run
        history's own pruning job (``recurjobs.history.prune``).
        """
        return prune_rows(self, keep, older_than)
