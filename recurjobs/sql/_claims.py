"""Guarded UPDATEs: the one primitive behind every "exactly one of us" decision.

A decision is a single ``UPDATE ... WHERE <guard>`` judged by ``rowcount == 1``: the database
evaluates the guard and writes the row atomically, so of several hosts racing for the same row
exactly one sees its update land. No read-modify-write, no ``SELECT ... FOR UPDATE``, no table
lock and no ``RETURNING``, so the same statement is correct on SQLite, PostgreSQL and MySQL.

``rowcount`` must count *matched* rows. PostgreSQL and SQLite do. MySQL reports *changed* rows
unless the client sets ``CLIENT.FOUND_ROWS``; SQLAlchemy's MySQL dialects always set it (see
"rowcount Support" in its MySQL dialect docs, and ``create_connect_args`` in
``sqlalchemy/dialects/mysql/mysqldb.py``, which the PyMySQL dialect inherits), so a heartbeat
that lands twice in one millisecond, writing the same values, still counts as renewed. The
contract tests pin this on a real server.

This module also holds the guards of the distributed jobs table: *due*, *stale*, *unpaused* and
*claimable*, all computed from the database clock in the statement itself. A Cron row's fire
time ``F`` is the one value computed outside the statement (in Python, from database times:
``_fires``); it is bound into the guard, which checks ``last_attempted_run < F <= now`` itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Connection, Table, and_, false, func, literal, or_, true, update
from sqlalchemy.sql.elements import ColumnElement

from recurjobs.sql._clockexpr import db_now_ms, int_div

__all__ = [
    "FireTime",
    "claimable",
    "due",
    "guarded_update",
    "last_attempted",
    "new_claim_id",
    "stale",
    "unpaused",
]

FireTime = int | ColumnElement[int] | None
"""A Cron row's fire time ``F`` for a guard: epoch ms bound as a parameter, an SQL expression
(a ``CASE`` over names, for a statement covering several rows), or None (a Cron row is then
due only when triggered)."""


def guarded_update(
    conn: Connection, table: Table, where: ColumnElement[bool], values: Mapping[str, Any]
) -> bool:
    """Run ``UPDATE table SET values WHERE where`` and return whether exactly one row matched.

    ``where`` must pin a single row (by primary key) plus the guard. Values may be SQL
    expressions (such as ``db_now_ms()``), evaluated by the database in the same statement.
    """
    result = conn.execute(update(table).where(where).values(dict(values)))
    return result.rowcount == 1


def new_claim_id() -> str:
    """A fresh random claim id (128 bits, 32 hex digits): no two claims ever share one."""
    return secrets.token_hex(16)


def due(jobs: Table, fire: FireTime = None) -> ColumnElement[bool]:
    """The row's job should run now, by the database clock.

    Triggered (``due_now``); or, for a period row (``cron`` NULL) aligned to the clock, a UTC
    multiple of the period (counted from the Unix epoch) lies after ``last_run`` and at or
    before now; or, not aligned, more than a period has passed since ``last_run``; or, for a
    Cron row, the fire time ``fire`` lies after ``last_attempted_run`` and at or before now.

    ``fire`` is computed by the caller from database times (``_fires.first_fire_after`` of
    the row's ``last_attempted_run``); the guard re-checks both bounds against the row as it is
    when the statement runs, so a stale read can only make a claim miss, never run a fire time
    twice: every claim moves ``last_attempted_run`` to the database's now, at or past ``fire``.
    """
    now = db_now_ms()
    c = jobs.c
    aligned_due = int_div(now, c.period_ms) > int_div(c.last_run_ms, c.period_ms)
    interval_due = now - c.last_run_ms > c.period_ms
    clauses = [
        c.due_now == true(),
        and_(
            c.cron.is_(None),
            or_(and_(c.aligned == true(), aligned_due), and_(c.aligned == false(), interval_due)),
        ),
    ]
    if fire is not None:
        f = literal(fire, BigInteger) if isinstance(fire, int) else fire
        clauses.append(and_(c.cron.is_not(None), last_attempted(jobs) < f, f <= now))
    return or_(*clauses)


def last_attempted(jobs: Table) -> ColumnElement[int]:
    """``last_attempted_run``, or ``last_run`` for a row never claimed (written by a version
    that left it NULL): the instant a Cron row's next fire time is counted from."""
    return func.coalesce(jobs.c.last_attempted_run_ms, jobs.c.last_run_ms)


def stale(jobs: Table) -> ColumnElement[bool]:
    """The owner of a running row showed no sign of life for longer than its lease.

    A running row with no lease or no sign of life recorded (written by hand, or by a future
    version) counts as stale rather than blocking the job forever.
    """
    c = jobs.c
    silent_for = db_now_ms() - func.coalesce(c.last_alive_ms, 0)
    return silent_for > func.coalesce(c.lease_ms, 0)


def unpaused(jobs: Table) -> ColumnElement[bool]:
    """The job is not paused (``JobHost.pause``): a paused row is never claimed."""
    return jobs.c.paused == false()


def claimable(
    jobs: Table, claim_id: str | ColumnElement[str], fire: FireTime = None
) -> ColumnElement[bool]:
    """Due (``fire``: see :func:`due`), not paused, and not running (or stale); or already
    claimed with ``claim_id`` (a value, or a bound parameter of a statement built once).

    The last case makes a claim idempotent: when a retry repeats a claim whose first attempt
    committed but whose reply was lost, the row already carries our claim id and the retry
    confirms it, instead of leaving an orphaned claim behind until it goes stale.
    """
    c = jobs.c
    return or_(
        and_(due(jobs, fire), unpaused(jobs), or_(c.running == false(), stale(jobs))),
        and_(c.running == true(), c.claim_id == claim_id),
    )
