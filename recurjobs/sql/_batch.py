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

Per-row guard terms. ``row_guards`` maps a job name to a guard of its own, used instead of
the shared ``claimable`` for that row and OR-ed into the statement as
``(name = :n AND <its guard>)``. Rows whose due rule depends on a value bound per row (a cron
job's fire time) can go into the same batch that way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, Table, and_, case, false, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from recurjobs.sql._claims import claimable
from recurjobs.sql._clockexpr import db_now_ms

__all__ = ["batch_guard", "claim_batch", "skips_locked_rows"]


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
        names = list(conn.scalars(free.with_for_update(skip_locked=True)))
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
    conn.execute(update(jobs).where(batch_guard(jobs, names, claim_id, row_guards)).values(values))
    won = select(c.name).where(c.name.in_(names), c.claim_id == claim_id)
    return list(conn.scalars(won))
