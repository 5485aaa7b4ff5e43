"""The rows as tools see them: triggers, pause flags, listing and pruning rows.

These are what ``JobHost.trigger``/``pause``, the CLI and the dashboard do to the jobs table
outside the schedule. A trigger and a pause are one guarded ``UPDATE`` each (``due_now``,
``paused``), judged by ``rowcount == 1``; listing reads every row with the database's now; a
prune reads the rows to delete, then deletes each with the same guard again. Each step runs
through the store's bounded, retried transactions (``JobStore._step``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, false, select, true
from sqlalchemy.sql import ColumnElement

from recurjobs._history import PRUNE_JOB_NAME
from recurjobs._validate import job_name_text
from recurjobs.sql._batch import name_in
from recurjobs.sql._claims import guarded_update, stale, unpaused
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._rows import JobRow, job_row, ms

if TYPE_CHECKING:
    from recurjobs.sql._store import JobStore

__all__ = ["mark_due", "mark_paused", "paused_rows", "prune_rows", "read_rows"]


def mark_due(store: JobStore, name: str) -> bool:
    """The body of :meth:`JobStore.trigger` (documented there)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    if not 1 <= len(name) <= 200 or name.endswith(" "):
        return False  # a name no row can have (on MySQL, "a " would find the row "a")
    c = store.jobs.c
    where = and_(c.name == name, unpaused(store.jobs))
    return store._step(
        "triggering a job",
        lambda conn: guarded_update(conn, store.jobs, where, {"due_now": True}),
    )


def mark_paused(store: JobStore, name: str, paused: bool) -> bool:
    """The body of :meth:`JobStore.set_paused` (documented there)."""
    job_name_text(name)
    if not isinstance(paused, bool):
        raise TypeError(f"paused must be a bool, got {paused!r}")
    c = store.jobs.c
    return store._step(
        "pausing a job" if paused else "resuming a job",
        lambda conn: guarded_update(conn, store.jobs, c.name == name, {"paused": paused}),
    )


def paused_rows(store: JobStore, names: Collection[str] | None) -> set[str]:
    """The body of :meth:`JobStore.paused_names` (documented there)."""
    if isinstance(names, str):
        raise TypeError(f"names must be a collection of names, got {names!r}")
    c = store.jobs.c
    query = select(c.name).where(c.paused == true())
    params: dict[str, list[str]] = {}
    if names is not None:
        if not names:
            return set()
        query = query.where(name_in(store.jobs, store.engine.dialect, "p_names"))
        params["p_names"] = list(names)
    return set(store._step("reading paused jobs", lambda conn: list(conn.scalars(query, params))))


def read_rows(store: JobStore) -> list[JobRow]:
    """The body of :meth:`JobStore.rows` (documented there)."""
    query = select(store.jobs, stale(store.jobs).label("stale"), db_now_ms().label("now_ms"))
    query = query.order_by(store.jobs.c.name)
    return store._step("reading job rows", lambda conn: [job_row(r) for r in conn.execute(query)])


def prune_rows(
    store: JobStore, keep: Collection[str] | None, older_than: timedelta | None
) -> list[str]:
    """The body of :meth:`JobStore.prune` (documented there)."""
    if keep is None and older_than is None:
        raise ValueError("prune needs keep=..., older_than=... or both")
    if keep is not None and isinstance(keep, str):
        raise TypeError(f"keep must be a collection of names, got {keep!r}")
    c = store.jobs.c
    now = db_now_ms()
    guards: list[ColumnElement[bool]] = [(c.running == false()) | stale(store.jobs)]
    if keep is not None:
        # The history's own pruning job is the library's, not one of the caller's: a list of
        # the caller's jobs keeps it too.
        guards.append(c.name.not_in([*keep, PRUNE_JOB_NAME]))
    if older_than is not None:
        # A paused job is idle on purpose: age alone never deletes it (and its pause).
        guards.append(unpaused(store.jobs))
        cutoff = ms(older_than)
        guards.append(now - c.last_run_ms > cutoff)
        guards.append(c.last_alive_ms.is_(None) | (now - c.last_alive_ms > cutoff))
    guard = and_(*guards)
    query = select(c.name).where(guard)
    candidates = store._step("reading job rows", lambda conn: list(conn.scalars(query)))
    pruned: list[str] = []
    for name in candidates:
        # Guarded again: a row that started running since the read is kept.
        stmt = delete(store.jobs).where(c.name == name, guard)
        if store._execute("pruning a job row", stmt) == 1:
            pruned.append(name)
    return pruned
