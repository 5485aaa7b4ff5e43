"""The dashboard's actions: trigger, pause and resume a distributed job's row (or a local job).

Each is one guarded ``UPDATE`` of the row by name, judged by ``rowcount == 1`` (False: no such
row). Trigger sets ``due_now`` exactly as ``JobStore.trigger`` does, so whichever host polls
next runs the job. Pause and resume set the ``paused`` column; hosts never claim a paused row.

:func:`act` picks the target of an action from the dashboard: the job's row when the jobs table
has one, else the mounting app's host's recurring job of that name.

Note: pause/resume write the column directly for now; ``JobStore.set_paused`` is the store's
own helper for the same statement and should replace :func:`set_paused` once both exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Table, and_

from recurjobs.dashboard._data import Dashboard
from recurjobs.sql._bounds import bounded_waits
from recurjobs.sql._claims import guarded_update, unpaused
from recurjobs.sql._shared import exclusive

__all__ = [
    "SeveralNamed",
    "act",
    "local_actions",
    "refused",
    "remote_statuses",
    "set_paused",
    "trigger",
]

#: Lock waits of an action are bounded (milliseconds): an action never hangs on a locked row.
ACTION_LOCK_MS = 5000


def trigger(engine: Engine, jobs: Table, name: str, *, pausable: bool = True) -> bool:
    """Mark ``name`` due now; False when the table has no such row, or the job is paused (a
    trigger is refused, not kept for after the resume, as ``JobStore.trigger`` does).
    ``pausable``: the table has the ``paused`` column (an older version's may not)."""
    where = jobs.c.name == name
    if pausable:
        where = and_(where, unpaused(jobs))
    with exclusive(engine), engine.begin() as conn, bounded_waits(conn, ACTION_LOCK_MS):
        return guarded_update(conn, jobs, where, {"due_now": True})


def set_paused(engine: Engine, jobs: Table, name: str, paused: bool) -> bool:
    """Pause (or resume) ``name`` cluster-wide; False when the table has no such row."""
    with exclusive(engine), engine.begin() as conn, bounded_waits(conn, ACTION_LOCK_MS):
        return guarded_update(conn, jobs, jobs.c.name == name, {"paused": paused})


def local_actions(host: Any) -> dict[str, bool]:
    """Which actions the mounting app's host offers for its own recurring jobs."""
    if host is None:
        return {}
    return {
        "trigger": True,
        "pause": callable(getattr(host, "pause", None)),
        "resume": callable(getattr(host, "resume", None)),
    }


class SeveralNamed(ValueError):
    """Several jobs registered with the mounting app's host have the action's name: acting on
    one of them (or on the row of one) would be guessing, as the commands refuse to."""


def act(data: Dashboard, host: Any, verb: str, name: str) -> bool:
    """Do ``verb`` on ``name``: on its jobs-table row if it has one, else on the local host's
    recurring job of that name; :class:`SeveralNamed` (nothing done) when several of the
    host's registered jobs have that name."""
    job = None
    if host is not None:
        from recurjobs._jobs import one_named

        try:
            job = one_named(host.jobs, name, verb)
        except ValueError as exc:
            raise SeveralNamed(str(exc)) from None
    if data.schema().jobs:
        pausable = "paused" in data.schema().jobs_columns
        if verb == "trigger":
            if trigger(data.engine, data.jobs, name, pausable=pausable):
                return True
        elif pausable and set_paused(data.engine, data.jobs, name, verb == "pause"):
            return True
    if host is None or job is None:
        return False
    if verb == "trigger":
        return bool(host.trigger(job))  # forwarded to the main instance when it runs elsewhere
    main_dom = _main_elsewhere(host)
    if main_dom is not None:  # the job runs in the machine's main instance: pause it there
        from recurjobs._forward import send_job_action

        return send_job_action(main_dom, job, tuple(host.jobs), verb).accepted
    method = getattr(host, verb, None)
    return bool(method(job)) if callable(method) else False


#: PostgreSQL: insufficient privilege, read-only transaction (a standby, a read-only default).
_PG_REFUSED = frozenset({"42501", "25006"})
#: MySQL/MariaDB: command or column denied to the user, a server option (``--read-only``), a
#: read-only transaction, a read-only table, an operation needing a privilege the user lacks.
_MYSQL_REFUSED = frozenset({1142, 1143, 1290, 1792, 1036, 1227})
#: SQLite primary result codes: SQLITE_PERM, SQLITE_READONLY (a file or directory that may
#: not be written, a ``mode=ro`` URL).
_SQLITE_REFUSED = frozenset({3, 8})


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` (an SQLAlchemy error) says the database answered and refused a change
    (the dashboard's user may only read, the database or transaction is read-only), as opposed
    to a database that could not be reached or did not answer in time."""
    orig = getattr(exc, "orig", None)
    if orig is None or getattr(exc, "connection_invalidated", False):
        return False
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)  # psycopg 3 / 2
    if state in _PG_REFUSED:
        return True
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_REFUSED  # the primary code of an extended one
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and isinstance(args[0], int) and args[0] in _MYSQL_REFUSED


def remote_statuses(host: Any) -> list[Any] | None:
    """The main instance's status of the mounting host's recurring jobs, when they run in
    another process of the machine (a web worker that is not the main instance); the
    distributed jobs' rows come from the table as ever. None: ask the host itself."""
    main_dom = _main_elsewhere(host)
    jobs = tuple(getattr(host, "jobs", ()))
    recurring = [j for j in jobs if not callable(getattr(j, "execute", None))]
    if main_dom is None or not recurring:
        return None
    from recurjobs._forward import fetch_statuses

    statuses = fetch_statuses(main_dom, recurring[0], jobs)
    if statuses is None:
        return None
    seen = {s.name for s in statuses}
    mine = [s for s in host.status() if s.kind != "recurring" or s.name not in seen]
    return [*statuses, *mine]


def _main_elsewhere(host: Any) -> Any:
    find = getattr(host, "_main_elsewhere", None)
    return find() if callable(find) else None
