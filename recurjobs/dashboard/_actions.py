"""The dashboard's writes: trigger, pause and resume a distributed job's row.

Each is one guarded ``UPDATE`` of the row by name, judged by ``rowcount == 1`` (False: no such
row). Trigger sets ``due_now`` exactly as ``JobStore.trigger`` does, so whichever host polls
next runs the job. Pause and resume set the ``paused`` column; hosts never claim a paused row.

Note: pause/resume write the column directly for now; ``JobStore.set_paused`` is the store's
own helper for the same statement and should replace :func:`set_paused` once both exist.
"""

from __future__ import annotations

from sqlalchemy import Engine, Table

from recurjobs.sql._bounds import bounded_waits
from recurjobs.sql._claims import guarded_update
from recurjobs.sql._shared import exclusive

__all__ = ["set_paused", "trigger"]

#: Lock waits of an action are bounded (milliseconds): an action never hangs on a locked row.
ACTION_LOCK_MS = 5000


def trigger(engine: Engine, jobs: Table, name: str) -> bool:
    """Mark ``name`` due now; False when the table has no such row."""
    with exclusive(engine), engine.begin() as conn, bounded_waits(conn, ACTION_LOCK_MS):
        return guarded_update(conn, jobs, jobs.c.name == name, {"due_now": True})


def set_paused(engine: Engine, jobs: Table, name: str, paused: bool) -> bool:
    """Pause (or resume) ``name`` cluster-wide; False when the table has no such row."""
    with exclusive(engine), engine.begin() as conn, bounded_waits(conn, ACTION_LOCK_MS):
        return guarded_update(conn, jobs, jobs.c.name == name, {"paused": paused})
