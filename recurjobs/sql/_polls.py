"""Polling: which of a host's jobs are due and claimable now, read in one ``SELECT``.

A period row is judged by the statement itself (``_claims.due``, on the database clock). A
free Cron row is read with its ``last_attempted_run`` and the database's now, and judged here
(``_fires``) from those database times only: its first fire time after the last attempt is
due when it is at or before now. The poll also hands back each free Cron row's next fire time,
so the poller can wake just after it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, false, select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select

from recurjobs._cron import Cron
from recurjobs.sql._batch import name_in
from recurjobs.sql._claims import due, last_attempted, stale, unpaused
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._fires import first_fire_after, gap_after, next_fire
from recurjobs.sql._rows import Due, Poll

if TYPE_CHECKING:
    from recurjobs.sql._store import JobStore

__all__ = ["poll_query", "read_poll"]


def poll_query(jobs: Table, dialect: Dialect) -> Select[Any]:
    """The poll's ``SELECT``, with every value a parameter (built once: compiled cache)."""
    c = jobs.c
    now = db_now_ms().label("now_ms")
    return (
        select(c.name, c.due_now, c.cron, last_attempted(jobs).label("attempted"), now)
        .where(
            name_in(jobs, dialect, "p_names"),
            due(jobs) | c.cron.is_not(None),
            unpaused(jobs),
            (c.running == false()) | stale(jobs),
        )
        .order_by(c.due_now.desc(), c.last_run_ms, c.name)
    )


def read_poll(
    store: JobStore,
    query: Select[Any],
    names: Collection[str],
    crons: Mapping[str, Cron] | None,
) -> Poll:
    """Run ``query`` (:func:`poll_query`) for ``names`` and judge the Cron rows it read: the
    rest of :meth:`JobStore.poll` (documented there)."""
    params = {"p_names": list(names)}
    rows = store._step(
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


def _plan(text: str, own: Cron | None, after_ms: int) -> tuple[int, int] | None:
    """The first fire time after ``after_ms`` and the gap to the next one, by the row's
    calendar ``text`` or, when this host cannot read it, by the job's own Cron ``own``."""
    planned = next_fire(text, after_ms)
    if planned is None and own is not None:
        fire = first_fire_after(own, after_ms)
        planned = fire, gap_after(own, fire)
    return planned
