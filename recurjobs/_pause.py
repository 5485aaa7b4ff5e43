"""Pause and resume: which registered jobs a ``JobHost.pause(job)`` argument names, and the
database side of pausing a distributed job.

A recurring job is paused in this process only: its runner ignores due runs with
``IgnoreReason.PAUSED``. A distributed job is paused cluster-wide: the ``paused`` column of its
row, which the claim guard reads (``sql._claims.unpaused``). Both work before ``start()`` and
after ``stop()``; the database side then uses a short-lived store of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recurjobs._jobs import job_name
from recurjobs._settings import DistributedJobSettings

__all__ = ["Target", "resolve", "set_host_row_paused", "set_row_paused"]


@dataclass(frozen=True)
class Target:
    """What one ``pause``/``resume`` argument names.

    ``recurring``: the registered recurring jobs it matches. ``row``: the distributed job name
    whose row to set (None: no row), ``distributed``: the registered distributed job of that
    name (None when the name is only looked up in the table).
    """

    recurring: tuple[object, ...]
    row: str | None
    distributed: object | None


def resolve(
    job: object, recurring: Sequence[object], distributed: Sequence[object], *, database: bool
) -> Target:
    """The jobs ``job`` (a class, an instance or a name, as ``status()`` shows it) names.

    A name matches every recurring job of that name and the distributed job of that name; a
    name no registered job has is looked up in the table (when there is a database), so a
    job another server runs can be paused from here. A class matches its registered
    instances, an instance only itself.
    """
    if isinstance(job, str):
        if not job:
            raise ValueError("job must be a non-empty name, got ''")
        mine = tuple(j for j in recurring if job_name(j) == job)
        found = [j for j in distributed if getattr(j, "name", None) == job]
        if found:
            return Target(mine, job, found[0])
        # A row's name has at most 200 characters (a recurring job's name has no limit).
        row = job if database and not mine and len(job) <= 200 and job[-1] != " " else None
        return Target(mine, row, None)
    if job is None or isinstance(job, (bool, int, float, bytes, bytearray)):
        raise TypeError(f"job must be a job class, instance or name, got {job!r}")
    if isinstance(job, type):
        mine = tuple(j for j in recurring if type(j) is job)
        found = [j for j in distributed if type(j) is job]
    else:
        mine = tuple(j for j in recurring if j is job)
        found = [j for j in distributed if j is job]
    if len(found) > 1:
        names = ", ".join(repr(getattr(j, "name", "?")) for j in found)
        raise ValueError(f"{job!r} matches several distributed jobs ({names}); pause them by name")
    if found:
        return Target(mine, getattr(found[0], "name"), found[0])  # noqa: B009
    return Target(mine, None, None)


def set_row_paused(store: Any, name: str, job: object | None, paused: bool) -> bool:
    """Set the ``paused`` column of ``name``'s row through ``store``; whether the job is known.

    A registered job (``job``) whose row does not exist yet (no host has polled) gets its row
    now, so the pause holds from its very first poll. A name without a row and without a
    registered job is unknown (False); the table is then neither created nor changed.
    """
    if job is None:
        from sqlalchemy import inspect

        if not inspect(store.engine).has_table(store.jobs.name):
            return False
    store.create_schema()  # the table, and the columns an older version's table lacks
    if store.set_paused(name, paused):
        return True
    if job is None:
        return False
    if not paused:
        return True  # no row: nothing is paused, and the job is known
    store.ensure([job])
    return bool(store.set_paused(name, paused))


def set_host_row_paused(
    name: str,
    job: object | None,
    paused: bool,
    *,
    sql: Any,
    database: Any,
    settings: DistributedJobSettings,
) -> bool:
    """:func:`set_row_paused` for a host: through its own store while it runs (``sql``, its SQL
    side, which then shows the change in ``status()`` at once), else through a short-lived
    store on ``database``."""
    if sql is not None:
        done = set_row_paused(sql.store, name, job, paused)
        if done:
            sql.note_paused(name, paused)
        return done
    from recurjobs.sql._integration import statement_timeout
    from recurjobs.sql._store import JobStore

    store = JobStore(
        database,
        table_prefix=settings.table_prefix,
        statement_timeout=statement_timeout(settings),
    )
    try:
        return set_row_paused(store, name, job, paused)
    finally:
        store.dispose()
