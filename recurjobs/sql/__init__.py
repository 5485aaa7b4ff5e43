"""The SQL side of recurjobs: distributed jobs tracked in a database table.

Most applications never import this package: ``JobHost(jobs, database=...)`` uses it. It is
public for tools (status pages, the CLI, maintenance scripts) and for extensions that need a
cluster-wide "exactly one of us" decision:

- :class:`DatabaseServerRoles`: server-role election through the database (``_election``).
- :class:`JobStore`: the jobs table of one database and table prefix (create, ensure, poll,
  claim, heartbeat, finish, trigger, prune, rows).
- :class:`JobRow`, :class:`Claim`: what the store hands out.
- :func:`guarded_update`: one ``UPDATE ... WHERE <guard>`` judged by ``rowcount == 1``.
- :func:`db_now_ms`: the database clock as an SQL expression (epoch milliseconds).
- :func:`make_engine`, :func:`masked`, :func:`check_url`: engines for URLs; URLs with the
  password hidden; a ``database=`` value judged at construction.
- :class:`DatabaseUnavailable`: what ``JobStore.check_ready`` (and so ``JobHost.start()``)
  raises when the database cannot be used.
- :class:`RetryPolicy`, :func:`is_transient`, :func:`is_lock_timeout`: how database steps ride
  out transient faults, and which faults mean a lock was held for longer than the bound.
"""

from recurjobs.sql._claims import guarded_update, new_claim_id
from recurjobs.sql._clockexpr import db_now_ms, int_div
from recurjobs.sql._election import DatabaseServerRoles
from recurjobs.sql._retry import RetryPolicy, is_lock_timeout, is_transient
from recurjobs.sql._rows import Claim, JobRow
from recurjobs.sql._store import JobStore
from recurjobs.sql._urls import DatabaseUnavailable, check_url, make_engine, masked

__all__ = [
    "Claim",
    "DatabaseServerRoles",
    "DatabaseUnavailable",
    "JobRow",
    "JobStore",
    "RetryPolicy",
    "check_url",
    "db_now_ms",
    "guarded_update",
    "int_div",
    "is_lock_timeout",
    "is_transient",
    "make_engine",
    "masked",
    "new_claim_id",
]
