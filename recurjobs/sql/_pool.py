"""Connection-pool settings of the engines recurjobs makes: no round trip that buys nothing.

Two of SQLAlchemy's defaults cost a round trip per store step without protecting anything
that the steps do not already protect:

- **No pre-ping.** ``pool_pre_ping`` sends a ping at every checkout to find connections the
  server dropped (restart, idle timeout). A dropped connection is found anyway by the step
  that uses it: its statement fails with a disconnect error, SQLAlchemy invalidates the
  connection (and every other connection of the pool checked out before, since a restarted
  server dropped them all), and the step's retry (``_retry``, which counts invalidated
  connections as transient) runs again on a fresh connection. Every step is safe to repeat
  (see ``_retry``). The cost moves from every step to one logged retry after an outage.
  :func:`_mark_disconnects` makes sure the invalidation also happens for the connection errors
  SQLAlchemy's dialects do not recognise by themselves (an administrator's shutdown on
  PostgreSQL, a killed session on MariaDB): without it, the retry could be handed the same
  dead connection again.
- **No reset on return.** The pool rolls back every connection it gets back. Every use of a
  recurjobs engine goes through an SQLAlchemy ``Connection`` (``engine.begin()`` for every
  step, ``engine.connect()`` for the start check), and closing a ``Connection`` already ends
  its transaction: a block that did not commit is rolled back then. The pool's second rollback
  finds nothing to end (psycopg and sqlite3 skip it client-side, PyMySQL sends it: one wasted
  round trip per step on MySQL/MariaDB). Code that takes a raw DBAPI connection from these
  engines would have to end its own transaction; recurjobs has none.

And one PostgreSQL saving: a step that is a single statement runs in autocommit
(:func:`single_statement_options`), which drops the ``BEGIN`` and ``COMMIT`` round trips. A
single statement is atomic on its own, so nothing changes for correctness. Only where the
engine's sessions carry the lock and statement bounds (``_bounds.bound_sessions``): the
transaction-local bounds of an application's engine would not outlive one statement.
MySQL/MariaDB get the same saving differently: switching a PyMySQL connection into autocommit
and back costs two round trips, and PyMySQL sends ``COMMIT`` even in autocommit, so a store
runs its single-statement steps on a twin engine whose connections never leave autocommit
(``_urls.single_statement_engine``), without committing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext

from recurjobs.sql._bounds import session_bound_ms

__all__ = ["POOL_SETTINGS", "configure_pool", "single_statement_options"]

POOL_SETTINGS: dict[str, Any] = {"pool_pre_ping": False, "pool_reset_on_return": None}
"""The ``create_engine`` arguments recurjobs makes its engines with (see the module docs)."""

# Connection-level faults by code: PostgreSQL SQLSTATE class 08 and the shutdown codes;
# MySQL/MariaDB server gone, lost, can't connect, shutdown, connection killed, closed (0).
_PG_DROPPED = ("08", "57P01", "57P02", "57P03")
_MYSQL_DROPPED = {0, 1053, 1927, 2002, 2003, 2006, 2013, 2055}


def configure_pool(engine: Engine) -> None:
    """Install the disconnect detection on an engine recurjobs made."""
    event.listen(engine, "handle_error", _mark_disconnects)


def _mark_disconnects(context: ExceptionContext) -> None:
    """Count a connection-level fault as a disconnect, so the pool drops the connection."""
    if context.is_disconnect or context.is_pre_ping:
        return
    orig = context.original_exception
    args = getattr(orig, "args", ())
    if args and type(args[0]) is int:  # a MySQL driver's (errno, message)
        dropped = args[0] in _MYSQL_DROPPED
    else:
        code = getattr(orig, "sqlstate", None)  # psycopg 3
        dropped = isinstance(code, str) and code.startswith(_PG_DROPPED)
    if dropped:
        context.is_disconnect = True


def single_statement_options(engine: Engine, limit_ms: int) -> dict[str, Any]:
    """Execution options for a step that is one statement (autocommit on PostgreSQL when the
    sessions carry a bound of at most ``limit_ms``; nothing otherwise)."""
    if engine.dialect.name != "postgresql":
        return {}
    bound = session_bound_ms(engine)
    if bound is None or bound > limit_ms:
        return {}
    return {"isolation_level": "AUTOCOMMIT"}
