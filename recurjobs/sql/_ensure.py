"""Ensuring job rows: which rows ``JobStore.ensure`` inserts, and which schedules it rewrites.

A period job's row holds its period and ``aligned``; a Cron job's row holds its calendar in
``cron`` and a nominal gap in ``period_ms`` (``_fires.nominal_period_ms``). One read of the
named rows says which are missing or differ; each of those is then one statement of its own:
an insert (losing the race to another host's insert is fine: its row is the same), or an
update. Every statement runs through the store's bounded, retried steps (``JobStore._step``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import insert, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from recurjobs._cron import Cron
from recurjobs._jobs import check_distributed
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._fires import cron_text, nominal_period_ms
from recurjobs.sql._rows import ms

if TYPE_CHECKING:
    from recurjobs.sql._store import JobStore

__all__ = ["ensure_rows"]

# What a row says of its schedule: (period_ms, aligned, cron text or None).
Found = tuple[int, bool, str | None]


def ensure_rows(store: JobStore, jobs: Iterable[object]) -> None:
    """The body of :meth:`JobStore.ensure` (documented there)."""
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
    c = store.jobs.c
    query = select(c.name, c.period_ms, c.aligned, c.cron).where(c.name.in_(list(wanted)))
    existing = _existing(store, query)
    now_ms = store.now_ms() if any(w[2] is not None for w in wanted.values()) else 0
    for name, (period_ms, aligned, cron) in wanted.items():
        if cron is not None:
            _ensure_cron(store, name, cron, now_ms, existing.get(name))
        elif name not in existing and _insert(store, name, period_ms, aligned, None):
            continue
        elif existing.get(name) != (period_ms, aligned, None):
            stmt = store.jobs.update().where(c.name == name)
            stmt = stmt.values(period_ms=period_ms, aligned=aligned, cron=None)
            store._execute("updating a job's period", stmt)


def _existing(store: JobStore, query: Executable) -> dict[str, Found]:
    rows = store._step("reading job rows", lambda conn: list(conn.execute(query)))
    return {r.name: (int(r.period_ms), bool(r.aligned), r.cron) for r in rows}


def _ensure_cron(store: JobStore, name: str, cron: Cron, now_ms: int, found: Found | None) -> None:
    """Insert a Cron row, or switch a row to this calendar (restarting it from now)."""
    text = cron_text(cron)
    period_ms = nominal_period_ms(cron, now_ms)
    if found is None and _insert(store, name, period_ms, False, text):
        return
    if found is not None and found[1:] == (False, text):
        return  # the period_ms of a Cron row is informational: not rewritten
    c = store.jobs.c
    # Guarded, so that of hosts switching the row at once only the first restarts it.
    stmt = store.jobs.update().where(
        c.name == name, or_(c.cron.is_(None), c.cron != text, c.aligned == true())
    )
    stmt = stmt.values(
        period_ms=period_ms, aligned=False, cron=text, last_attempted_run_ms=db_now_ms()
    )
    store._execute("updating a job's calendar", stmt)


def _insert(store: JobStore, name: str, period_ms: int, aligned: bool, cron: str | None) -> bool:
    """Insert a new row; False when another host inserted it first."""
    stmt = insert(store.jobs).values(
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
        store._execute("inserting a job row", stmt)
    except IntegrityError:
        return False
    return True
