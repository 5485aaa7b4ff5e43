"""Batched claims: every due row a host has slots for, claimed in one guarded UPDATE.

One claim per row costs a round trip per row, so with many jobs due at the same boundary the
last one starts many round trips after the first. A batch claims them all at once:

1. Where the database can skip rows locked by other transactions (PostgreSQL, MySQL 8,
   MariaDB 10.6+), a ``SELECT ... FOR UPDATE SKIP LOCKED`` of the claimable rows first locks
   the ones nobody else is writing. The batch then never waits on a row another host is
   claiming or an operator holds open: those rows are simply not in this batch. (Without it,
   one locked row would hold up the whole batch for the statement timeout.)
2. One ``UPDATE ... WHERE name IN (...) AND <claimable guard>`` writes this batch's claim id
   into every row still claimable: the same portable guard as a single claim
   (``_claims.claimable``), evaluated by the database row by row, so the fencing is the same.
3. A ``SELECT`` reads back which rows now carry the batch's claim id. That, not the
   ``rowcount``, says which claims were won, so drivers that count changed rather than matched
   rows cannot mislead it.

All three run in one transaction, which may be repeated as a whole (``_retry``): a repeat
after a lost acknowledgement finds the rows already carrying the batch's claim id, which the
guard accepts, and reads them back as won.

One fresh claim id serves the whole batch: a claim is fenced by (job name, claim id), which
stays unique per run, and later writes (heartbeat, finish, release) name both.

Claiming up to a number of rows. :class:`BatchClaims` claims at most ``limit`` of the named
rows, whichever are claimable now (rows already carrying the batch's claim id first, then
triggered, then longest waiting), so a host never claims more than its free slots and hosts
claiming together each take rows nobody else is taking instead of racing for the same ones:

- PostgreSQL and SQLite: one ``UPDATE``, ``WITH picked AS (SELECT name ... ORDER BY ... LIMIT
  k FOR UPDATE SKIP LOCKED) UPDATE ... WHERE name IN (SELECT name FROM picked) AND <claimable
  guard>`` (SQLite without the locking clause: its writer holds the whole file), then the
  read-back ``SELECT``: steps 1 and 2 in one statement.
- MySQL/MariaDB (which cannot update a table it selects from in a subquery): a plain
  ``SELECT`` of up to ``4k`` claimable rows in that order, then locking ``SELECT`` s of those,
  ``k`` at a time in that order, until ``k`` are locked (``SKIP LOCKED`` where the server has
  it; usually one statement, one more per ``k`` rows other hosts are claiming), the
  guarded ``UPDATE`` of those rows, and the read-back, as in 1-3 above. InnoDB keeps a lock on
  every row a locking read looked at, and an ordered locking read looks at all candidates
  before its ``LIMIT``: one host's batch would lock every due row and the others would skip
  them all. If the plain read finds rows already carrying the batch's claim id, the batch is
  a repeat whose first attempt committed, and those rows are its answer.

The statements are built once per table and dialect, with every value a bound parameter, so
SQLAlchemy's compiled cache serves them; PostgreSQL gets the names as one parameter (a JSON
array, :func:`name_in`), so the SQL text does not grow with the number of names.

Per-row guard terms (:func:`claim_batch`, which claims every named row it can, with no limit:
steps 1-3 above, built at each call). ``row_guards`` maps a job name to a guard of its own,
used instead of the shared ``claimable`` for that row and OR-ed into the statement as
``(name = :n AND <its guard>)``. Rows whose due rule depends on a value bound per row (a cron
job's fire time) can go into the same batch that way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    Update,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from recurjobs.sql._claims import claimable
from recurjobs.sql._clockexpr import db_now_ms

__all__ = [
    "BatchClaims",
    "batch_guard",
    "by_primary_key",
    "claim_batch",
    "name_in",
    "skips_locked_rows",
]


S = TypeVar("S", Select[Any], Update)


def by_primary_key(statement: S, table: Table) -> S:
    """``statement`` told to reach ``table``'s rows through its primary key on MySQL/MariaDB.

    InnoDB locks every row a locking read or an ``UPDATE`` looks at, and on a small table the
    optimizer prefers a full scan to an ``IN`` list on the key: one host's claim would then
    lock every row, and the others' ``SKIP LOCKED`` would find none. (PostgreSQL locks only
    the rows it returns or changes; SQLite locks the file.)"""
    hint = "FORCE INDEX (PRIMARY)"
    for name in ("mysql", "mariadb"):
        if isinstance(statement, Update):
            statement = statement.with_hint(hint, table, dialect_name=name)
        else:
            statement = statement.with_hint(table, hint, dialect_name=name)
    return statement


def skips_locked_rows(dialect: Dialect) -> bool:
    """Whether the server understands ``FOR UPDATE SKIP LOCKED``."""
    version = tuple(dialect.server_version_info or ())
    if dialect.name == "postgresql":
        return version >= (9, 5)
    if dialect.name in ("mysql", "mariadb"):
        if getattr(dialect, "is_mariadb", False):
            return version >= (10, 6)
        return version >= (8, 0, 1)
    return False


def batch_guard(
    jobs: Table,
    names: Sequence[str],
    claim_id: str,
    row_guards: Mapping[str, ColumnElement[bool]] | None = None,
) -> ColumnElement[bool]:
    """Which of ``names`` may be claimed with ``claim_id`` now: ``claimable`` for the plain
    rows, each row's own guard for those in ``row_guards``."""
    c = jobs.c
    own = row_guards or {}
    plain = [n for n in names if n not in own]
    terms: list[ColumnElement[bool]] = []
    if plain:
        terms.append(and_(c.name.in_(plain), claimable(jobs, claim_id)))
    terms += [and_(c.name == n, own[n]) for n in names if n in own]
    return or_(*terms) if terms else false()


def claim_batch(
    conn: Connection,
    jobs: Table,
    leases_ms: Mapping[str, int],
    *,
    claim_id: str,
    owner: str,
    row_guards: Mapping[str, ColumnElement[bool]] | None = None,
) -> list[str]:
    """Claim every row of ``leases_ms`` (name -> lease in ms) that is claimable now, with
    ``claim_id``; return the names won. Runs inside the caller's transaction."""
    c = jobs.c
    names = list(leases_ms)
    if not names:
        return []
    if skips_locked_rows(conn.dialect):
        free = select(c.name).where(batch_guard(jobs, names, claim_id, row_guards))
        free = by_primary_key(free, jobs).with_for_update(skip_locked=True)
        names = list(conn.scalars(free))
        if not names:
            return []
    now = db_now_ms()
    distinct = {leases_ms[n] for n in names}
    lease: object = (
        distinct.pop()
        if len(distinct) == 1
        else case({n: leases_ms[n] for n in names}, value=c.name)
    )
    values = {
        "running": True,
        "owner": owner[:255],
        "claim_id": claim_id,
        "last_attempted_run_ms": now,
        "last_alive_ms": now,
        "lease_ms": lease,
        "due_now": False,
    }
    claim = update(jobs).where(batch_guard(jobs, names, claim_id, row_guards)).values(values)
    conn.execute(by_primary_key(claim, jobs))
    won = select(c.name).where(c.name.in_(names), c.claim_id == claim_id)
    return list(conn.scalars(won))


class _JsonNames(TypeDecorator[list[str]]):
    """A list of names bound as one JSON text (``json.dumps`` runs in C; psycopg's dumper of
    a Python list works element by element in Python, a millisecond per thousand names)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(list(value))


def name_in(jobs: Table, dialect: Dialect, param: str) -> ColumnElement[bool]:
    """``name`` is one of the names bound as ``param`` (a list): on PostgreSQL one JSON text
    parameter unpacked by the server, so the SQL text and its parsing do not grow with the
    number of names; an expanding ``IN`` elsewhere."""
    c = jobs.c
    if dialect.name == "postgresql":
        listed = cast(bindparam(param, type_=_JsonNames()), JSONB)
        return c.name.in_(select(func.jsonb_array_elements_text(listed)))
    return c.name.in_(bindparam(param, expanding=True))


class BatchClaims:
    """The batched-claim statements of one jobs table (see the module docs), built at the
    first use on each dialect and reused."""

    def __init__(self, jobs: Table) -> None:
        self.jobs = jobs
        self._built: dict[str, _Plan] = {}

    def claim(
        self,
        conn: Connection,
        leases_ms: Mapping[str, int],
        *,
        limit: int,
        claim_id: str,
        owner: str,
    ) -> list[str]:
        """Claim at most ``limit`` of the rows of ``leases_ms`` (name -> lease in ms) that are
        claimable now, with ``claim_id``; return the names won. Runs inside the caller's
        transaction (on PostgreSQL it is one statement, which may run in autocommit)."""
        names = list(leases_ms)
        limit = min(limit, len(names))
        if limit <= 0:
            return []
        params = _params(names, limit, claim_id, owner[:255])
        distinct = set(leases_ms.values())
        if len(distinct) == 1:
            params["b_lease"] = distinct.pop()
            plan = self._built.get(conn.dialect.name)
            if plan is None:
                plan = self._built[conn.dialect.name] = _plan(self.jobs, conn.dialect, None)
        else:  # leases differ (periods changed in a rolling deploy): a statement of its own
            plan = _plan(self.jobs, conn.dialect, leases_ms)
        if plan.window is not None and plan.pick is not None:
            # MySQL/MariaDB: choose, lock only those rows, then write them (see _plan).
            chosen = conn.execute(plan.window, params).all()
            ours = [name for name, mine in chosen if mine]
            if ours:  # a repeat after a lost reply: the first attempt committed these
                return ours
            order = [name for name, _ in chosen]
            picked: list[str] = []
            for start in range(0, len(order), limit):  # in claim order, a limit's worth a time
                params["b_chosen"] = order[start : start + limit]
                params["b_limit"] = limit - len(picked)
                picked += conn.scalars(plan.pick, params)
                if len(picked) >= limit:
                    break
            if not picked:
                return []
            params["b_names"] = picked
        conn.execute(plan.claim, params)
        return list(conn.scalars(plan.read, params))

    def warm_up(self, conn: Connection) -> None:
        """Run this dialect's statements on no rows (their compiled forms get cached)."""
        plan = self._built.get(conn.dialect.name)
        if plan is None:
            plan = self._built[conn.dialect.name] = _plan(self.jobs, conn.dialect, None)
        params = _params([], 1, "", "")
        params["b_lease"] = 1
        for statement in (plan.window, plan.pick, plan.claim, plan.read):
            if statement is not None:
                conn.execute(statement, params)


# MySQL/MariaDB: how many rows, per row wanted, a batch chooses from (see _plan).
_WINDOW = 4


def _params(names: list[str], limit: int, claim_id: str, owner: str) -> dict[str, Any]:
    """A batch's parameters, every key always present (``b_lease`` is added when the rows
    share one lease). SQLAlchemy's compiled cache keys a statement by the parameter names it is
    executed with, so the warm-up must pass the same names as a claim, or the first claim of a
    busy period boundary compiles its statements again (about 10 ms each under load)."""
    return {
        "b_names": names,
        "b_limit": limit,
        "b_cid": claim_id,
        "b_owner": owner,
        "b_window": limit * _WINDOW,
        "b_chosen": [],
    }


class _Plan(NamedTuple):
    window: Executable | None
    """MySQL/MariaDB: the plain (non-locking) SELECT of the claimable rows in claim order, up
    to ``_WINDOW`` per row wanted, each marked when it already carries the batch's claim id."""
    pick: Executable | None
    """MySQL/MariaDB: the locking SELECT of the rows to claim among those (None: the claim
    picks)."""
    claim: Executable
    """The guarded UPDATE."""
    read: Executable
    """The read-back of the rows carrying the claim id."""


def _plan(jobs: Table, dialect: Dialect, leases_ms: Mapping[str, int] | None) -> _Plan:
    """The statements of a limited batch claim on ``dialect``; one lease for every row as the
    parameter ``b_lease``, or the per-row ``leases_ms``."""
    c = jobs.c
    cid = bindparam("b_cid", type_=String(64))
    guard = claimable(jobs, cid)
    names = name_in(jobs, dialect, "b_names")
    ours_first = case((c.claim_id == cid, 0), else_=1)
    pick = (
        select(c.name)
        .where(names, guard)
        .order_by(ours_first, c.due_now.desc(), c.last_run_ms, c.name)
        .limit(bindparam("b_limit", type_=Integer))
    )
    if skips_locked_rows(dialect):
        pick = pick.with_for_update(skip_locked=True)
    now = db_now_ms()
    lease: object = (
        bindparam("b_lease", type_=BigInteger)
        if leases_ms is None
        else case(dict(leases_ms), value=c.name)
    )
    values = {
        "running": True,
        "owner": bindparam("b_owner", type_=String(255)),
        "claim_id": cid,
        "last_attempted_run_ms": now,
        "last_alive_ms": now,
        "lease_ms": lease,
        "due_now": False,
    }
    read = select(c.name).where(names, c.claim_id == cid)
    if dialect.name in ("mysql", "mariadb"):
        # MySQL cannot UPDATE a table it selects from in a subquery, so: choose, lock, write.
        # InnoDB keeps a lock on every row a locking read looked at, and an ORDER BY ... LIMIT
        # looks at every candidate before it sorts: the ordered pick would lock all of them
        # (and every other host's SKIP LOCKED would find none). So the order is read without
        # locks, up to _WINDOW rows per row wanted; the locking read then walks those a
        # limit's worth at a time, in claim order (each group in primary-key order), skipping
        # rows others hold, until it has the limit.
        window = (
            select(c.name, (c.claim_id == cid).label("ours"))
            .where(names, guard)
            .order_by(ours_first, c.due_now.desc(), c.last_run_ms, c.name)
            .limit(bindparam("b_window", type_=Integer))
        )
        lock = by_primary_key(
            select(c.name)
            .where(c.name.in_(bindparam("b_chosen", expanding=True)), guard)
            .order_by(c.name)
            .limit(bindparam("b_limit", type_=Integer)),
            jobs,
        )
        if skips_locked_rows(dialect):  # else (MySQL < 8, MariaDB < 10.6) a plain read
            lock = lock.with_for_update(skip_locked=True)
        claim = by_primary_key(update(jobs).where(names, guard).values(values), jobs)
        return _Plan(window=window, pick=lock, claim=claim, read=read)
    picked = pick.cte("picked")
    claim = update(jobs).where(c.name.in_(select(picked.c.name)), guard).values(values)
    return _Plan(window=None, pick=None, claim=claim, read=read)
