"""JobStore: the distributed jobs table, one short guarded statement per operation.

Every method is one small transaction (ensure and prune: a read, then guarded writes), retried
through transient faults by the store's :class:`RetryPolicy`, and no statement waits on a lock
for longer than the store's ``statement_timeout`` (``_bounds``). Due and stale are decided by the
database clock inside the statements (``_claims``); Python time appears only in what ``rows()``
shows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, and_, delete, false, insert, or_, select, true
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement, Executable, Select

from recurjobs._cron import Cron
from recurjobs._jobs import check_distributed
from recurjobs._validate import instance
from recurjobs._validate import table_prefix as check_prefix
from recurjobs.sql._batch import BatchClaims, name_in
from recurjobs.sql._bounds import (
    DEFAULT_STATEMENT_TIMEOUT,
    bounded_waits,
    check_statement_timeout,
    share_bound,
    to_ms,
)
from recurjobs.sql._claims import (
    claimable,
    due,
    guarded_update,
    last_attempted,
    new_claim_id,
    stale,
    unpaused,
)
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._finishes import Finishes
from recurjobs.sql._fires import (
    cron_text,
    first_fire_after,
    gap_after,
    next_fire,
    nominal_period_ms,
)
from recurjobs.sql._migrate import add_missing_columns
from recurjobs.sql._pool import single_statement_options
from recurjobs.sql._ready import check_ready
from recurjobs.sql._retry import RetryPolicy, is_lock_timeout
from recurjobs.sql._rows import Claim, Due, JobRow, Poll, job_row, ms
from recurjobs.sql._shared import shared_lock
from recurjobs.sql._tables import create_tables, jobs_table
from recurjobs.sql._urls import engine_for, masked, scrub, single_statement_engine

__all__ = ["JobStore"]

logger = logging.getLogger("recurjobs.sql")

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
        self._finishes = Finishes(self.jobs, self._step)

    def __repr__(self) -> str:
        return f"JobStore({self.url!r}, table={self.jobs.name!r})"

    # ------------------------------------------------------------------ plumbing
    def _step(self, what: str, fn: Callable[[Connection], T], *, single: bool = False) -> T:
        """Run ``fn`` in one bounded transaction, retried through transient faults.

        ``single``: ``fn`` runs exactly one statement, which may then run in autocommit.
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

        return self.retry.call(what, self.url, attempt)

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
        lacks (``paused``, ``cron``); hosts doing it at the same moment all succeed."""

        def create() -> None:
            create_tables(self.engine, self.metadata, limit_ms=self._bound_ms)
            add_missing_columns(self.engine, self.jobs, limit_ms=self._bound_ms)

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
        wanted: dict[str, tuple[int, bool, Cron | None]] = {}
        for job in jobs:
            check_distributed(job)
            period = getattr(job, "period")  # noqa: B009
            if isinstance(period, Cron):
                wanted[getattr(job, "name")] = (0, False, period)  # noqa: B009
            else:
                aligned = bool(getattr(job, "align_to_clock", False))
                wanted[getattr(job, "name")] = (ms(period), aligned, None)  # noqa: B009
        if not wanted:
            return
        c = self.jobs.c
        query = select(c.name, c.period_ms, c.aligned, c.cron).where(c.name.in_(list(wanted)))
        existing = self._existing(query)
        now_ms = self.now_ms() if any(w[2] is not None for w in wanted.values()) else 0
        for name, (period_ms, aligned, cron) in wanted.items():
            if cron is not None:
                self._ensure_cron(name, cron, now_ms, existing.get(name))
            elif name not in existing and self._insert(name, period_ms, aligned, None):
                continue
            elif existing.get(name) != (period_ms, aligned, None):
                stmt = self.jobs.update().where(c.name == name)
                stmt = stmt.values(period_ms=period_ms, aligned=aligned, cron=None)
                self._execute("updating a job's period", stmt)

    def _existing(self, query: Executable) -> dict[str, tuple[int, bool, str | None]]:
        rows = self._step("reading job rows", lambda conn: list(conn.execute(query)))
        return {r.name: (int(r.period_ms), bool(r.aligned), r.cron) for r in rows}

    def _ensure_cron(
        self, name: str, cron: Cron, now_ms: int, found: tuple[int, bool, str | None] | None
    ) -> None:
        """Insert a Cron row, or switch a row to this calendar (restarting it from now)."""
        text = cron_text(cron)
        period_ms = nominal_period_ms(cron, now_ms)
        if found is None and self._insert(name, period_ms, False, text):
            return
        if found is not None and found[1:] == (False, text):
            return  # the period_ms of a Cron row is informational: not rewritten
        c = self.jobs.c
        # Guarded, so that of hosts switching the row at once only the first restarts it.
        stmt = self.jobs.update().where(
            c.name == name, or_(c.cron.is_(None), c.cron != text, c.aligned == true())
        )
        stmt = stmt.values(
            period_ms=period_ms, aligned=False, cron=text, last_attempted_run_ms=db_now_ms()
        )
        self._execute("updating a job's calendar", stmt)

    def _insert(self, name: str, period_ms: int, aligned: bool, cron: str | None) -> bool:
        """Insert a new row; False when another host inserted it first."""
        stmt = insert(self.jobs).values(
            name=name,
            period_ms=period_ms,
            aligned=aligned,
            last_run_ms=db_now_ms(),
            running=False,
            due_now=False,
            cron=cron,
        )
        if cron is not None:  # a new Cron row does not catch up fire times before it existed
            stmt = stmt.values(last_attempted_run_ms=db_now_ms())
        try:
            self._execute("inserting a job row", stmt)
        except IntegrityError:
            return False
        return True

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
        query = self._poll_query
        if query is None:  # built once: every value is a parameter (compiled cache)
            c = self.jobs.c
            now = db_now_ms().label("now_ms")
            query = self._poll_query = (
                select(c.name, c.due_now, c.cron, last_attempted(self.jobs).label("attempted"), now)
                .where(
                    name_in(self.jobs, self.engine.dialect, "p_names"),
                    due(self.jobs) | c.cron.is_not(None),
                    unpaused(self.jobs),
                    (c.running == false()) | stale(self.jobs),
                )
                .order_by(c.due_now.desc(), c.last_run_ms, c.name)
            )
        params = {"p_names": list(names)}
        rows = self._step(
            "polling for due jobs", lambda conn: list(conn.execute(query, params)), single=True
        )
        if not rows:  # an idle poll of period jobs: no second statement for the clock
            return Poll(due=[], now_ms=None, fires_ms={})
        now_ms = int(rows[0].now_ms)
        found: list[Due] = []
        fires: dict[str, int] = {}
        for name, due_now, text, attempted, _ in rows:
            if text is None:
                # A period row: the SELECT judged it due.
                found.append(Due(name, triggered=bool(due_now)))
                continue
            own = crons.get(name) if crons is not None else None
            planned = _plan(text, own, int(attempted))
            if planned is None:  # a calendar this host cannot read: triggers only
                if due_now:
                    found.append(Due(name, triggered=True))
                continue
            fire, gap = planned
            fires[name] = fire
            if fire <= now_ms:
                found.append(Due(name, fire_ms=fire, gap_ms=gap, triggered=bool(due_now)))
            elif due_now:  # triggered before its fire time: the lease takes the gap ahead
                found.append(Due(name, gap_ms=gap, triggered=True))
        return Poll(due=found, now_ms=now_ms, fires_ms=fires)

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
        claim = Claim(name=name, claim_id=new_claim_id(), lease=lease)
        c = self.jobs.c
        now = db_now_ms()
        values = {
            "running": True,
            "owner": owner[:255],
            "claim_id": claim.claim_id,
            "last_attempted_run_ms": now,
            "last_alive_ms": now,
            "lease_ms": ms(lease),
            "due_now": False,
        }
        where = and_(c.name == name, claimable(self.jobs, claim.claim_id, fire_ms))
        try:
            won = self._step(
                "claiming a job",
                lambda conn: guarded_update(conn, self.jobs, where, values),
                single=True,
            )
        except Exception as exc:
            if not is_lock_timeout(exc):
                raise
            self._report_locked(name, exc)
            return None
        self._locked.discard(name)
        return claim if won else None

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
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, got {limit!r}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        claim_id = new_claim_id()
        as_ms = {lease: ms(lease) for lease in set(leases.values())}  # usually one lease
        leases_ms = {name: as_ms[lease] for name, lease in leases.items()}
        most = len(leases_ms) if limit is None else limit
        try:
            won = self._step(
                "claiming jobs",
                lambda conn: self._batches.claim(
                    conn, leases_ms, limit=most, claim_id=claim_id, owner=owner
                ),
            )
        except Exception as exc:
            if not is_lock_timeout(exc):
                raise
            logger.debug("a batch of claims on %s waited out a lock: %s", self.url, exc)
            return None
        self._locked.difference_update(won)
        return [Claim(name=name, claim_id=claim_id, lease=leases[name]) for name in won]

    def warm_up(self) -> None:
        """Run the batched-claim and grouped-finish statements once on no rows, so that their
        compiled forms are cached before they are needed (writes nothing)."""
        self._step("warming up", self._batches.warm_up)
        self._step("warming up", self._finishes.warm_up)

    def locked_rows(self) -> frozenset[str]:
        """The job rows whose last claim timed out on a lock held by another transaction."""
        return frozenset(self._locked)

    def _report_locked(self, name: str, exc: BaseException) -> None:
        """Log a claim that timed out on a locked row: WARNING once, DEBUG while it lasts."""
        level = logging.DEBUG if name in self._locked else logging.WARNING
        self._locked.add(name)
        logger.log(
            level,
            "the row of %s on %s stayed locked by another transaction for %gs; "
            "not claimed this time (%s)",
            name,
            self.url,
            self.statement_timeout,
            scrub(str(getattr(exc, "orig", None) or exc).splitlines()[0][:200], self.engine),
        )

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
        c = self.jobs.c
        where = and_(c.name == name, unpaused(self.jobs))
        return self._step(
            "triggering a job",
            lambda conn: guarded_update(conn, self.jobs, where, {"due_now": True}),
        )

    def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume ``name`` cluster-wide; False when there is no row of that name.

        A paused row is never claimed (a run going on finishes). Resuming does not trigger a
        run: the job runs when its schedule says it is due, which may be at the next poll.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        if not 1 <= len(name) <= 200:
            raise ValueError(f"name must be 1 to 200 characters, got {name!r}")
        if not isinstance(paused, bool):
            raise TypeError(f"paused must be a bool, got {paused!r}")
        c = self.jobs.c
        return self._step(
            "pausing a job" if paused else "resuming a job",
            lambda conn: guarded_update(conn, self.jobs, c.name == name, {"paused": paused}),
        )

    def paused_names(self, names: Collection[str] | None = None) -> set[str]:
        """The paused jobs among ``names`` (all rows when None)."""
        if isinstance(names, str):
            raise TypeError(f"names must be a collection of names, got {names!r}")
        c = self.jobs.c
        query = select(c.name).where(c.paused == true())
        params: dict[str, list[str]] = {}
        if names is not None:
            if not names:
                return set()
            query = query.where(name_in(self.jobs, self.engine.dialect, "p_names"))
            params["p_names"] = list(names)
        return set(
            self._step("reading paused jobs", lambda conn: list(conn.scalars(query, params)))
        )

    # --------------------------------------------------------------- inspection
    def rows(self) -> list[JobRow]:
        """Every row, by name, for status pages and the CLI."""
        query = select(self.jobs, stale(self.jobs).label("stale"), db_now_ms().label("now_ms"))
        query = query.order_by(self.jobs.c.name)
        return self._step(
            "reading job rows", lambda conn: [job_row(r) for r in conn.execute(query)]
        )

    def prune(
        self, *, keep: Collection[str] | None = None, older_than: timedelta | None = None
    ) -> list[str]:
        """Delete rows not in ``keep`` and/or not run for ``older_than``; return their names.

        At least one criterion is required. Rows that are running (and not stale) are kept, and
        ``older_than`` alone never deletes a paused row.
        """
        if keep is None and older_than is None:
            raise ValueError("prune needs keep=..., older_than=... or both")
        if keep is not None and isinstance(keep, str):
            raise TypeError(f"keep must be a collection of names, got {keep!r}")
        c = self.jobs.c
        now = db_now_ms()
        guards: list[ColumnElement[bool]] = [(c.running == false()) | stale(self.jobs)]
        if keep is not None:
            guards.append(c.name.not_in(list(keep)))
        if older_than is not None:
            # A paused job is idle on purpose: age alone never deletes it (and its pause).
            guards.append(unpaused(self.jobs))
            cutoff = ms(older_than)
            guards.append(now - c.last_run_ms > cutoff)
            guards.append(c.last_alive_ms.is_(None) | (now - c.last_alive_ms > cutoff))
        guard = and_(*guards)
        query = select(c.name).where(guard)
        candidates = self._step("reading job rows", lambda conn: list(conn.scalars(query)))
        pruned: list[str] = []
        for name in candidates:
            # Guarded again: a row that started running since the read is kept.
            stmt = delete(self.jobs).where(c.name == name, guard)
            if self._execute("pruning a job row", stmt) == 1:
                pruned.append(name)
        return pruned


def _plan(text: str, own: Cron | None, after_ms: int) -> tuple[int, int] | None:
    """The first fire time after ``after_ms`` and the gap to the next one, by the row's
    calendar ``text`` or, when this host cannot read it, by the job's own Cron ``own``."""
    planned = next_fire(text, after_ms)
    if planned is None and own is not None:
        fire = first_fire_after(own, after_ms)
        planned = fire, gap_after(own, fire)
    return planned
