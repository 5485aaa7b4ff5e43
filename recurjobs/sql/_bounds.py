"""Bounded waits: no statement recurjobs runs waits on a lock (or runs) without a bound.

One uncommitted transaction on one row (a host paused between UPDATE and COMMIT, an operator's
open ``psql``) would otherwise block a claim or a heartbeat for the server's default lock wait:
forever on PostgreSQL, 50 s on InnoDB. Every statement therefore runs under a bound well inside
the shortest lease, and a statement that hits it fails fast (``_retry.is_lock_timeout``): the
caller treats it as "not this time" and tries again at its next round.

The bound is set in one of two ways:

- Engines recurjobs makes from a URL (``make_engine``) get it once per new connection, as
  session settings (:func:`bound_sessions`): no extra round trip per statement.
- An ``Engine`` the application passed in is not changed for good: each transaction sets the
  bound for itself (:func:`bounded_waits`): transaction-local settings on PostgreSQL, a session
  setting that is put back afterwards on MySQL/MariaDB.

Per backend: PostgreSQL ``lock_timeout`` and ``statement_timeout``; MySQL/MariaDB
``innodb_lock_wait_timeout`` (row locks) and ``lock_wait_timeout`` (metadata locks), both whole
seconds (at least 1); SQLite the busy timeout. MySQL has no statement timeout for writes (its
``max_execution_time`` covers only SELECTs), so there the bound is on lock waits only.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, event, text

__all__ = [
    "DEFAULT_STATEMENT_TIMEOUT",
    "bound_sessions",
    "bounded_waits",
    "check_statement_timeout",
    "session_bound_ms",
    "share_bound",
    "to_ms",
]

DEFAULT_STATEMENT_TIMEOUT = 5.0
"""Seconds a statement may wait for a lock (or run, on PostgreSQL) before it gives up.

Far below a claim's lease (``period + max_execution_time``; ``max_execution_time`` defaults to
5 min) and no longer than the default heartbeat interval (the poll period, 5 s), so one locked
row neither blocks the other claims for long nor lets a running job's claim expire.
"""

_MAX_STATEMENT_TIMEOUT = 3600.0

# Engines whose every connection carries a session bound, with that bound in milliseconds.
_bounded_engines: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def check_statement_timeout(value: object, name: str = "statement_timeout") -> float:
    """``value`` as seconds, or ``TypeError``/``ValueError`` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not (0.001 <= seconds <= _MAX_STATEMENT_TIMEOUT):  # also refuses NaN
        raise ValueError(
            f"{name} must be between 0.001 and {_MAX_STATEMENT_TIMEOUT:g} seconds, got {value!r}"
        )
    return seconds


def to_ms(seconds: float) -> int:
    """Whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))


def _mysql_seconds(limit_ms: int) -> int:
    return max(1, math.ceil(limit_ms / 1000))


def session_bound_ms(engine: Engine) -> int | None:
    """The bound every connection of ``engine`` carries (set by :func:`bound_sessions`)."""
    return _bounded_engines.get(engine)


def share_bound(copy: Engine, engine: Engine) -> None:
    """Let ``copy`` (``engine.execution_options(...)``, same pool) count as bounded like
    ``engine``."""
    bound = _bounded_engines.get(engine)
    if bound is not None:
        _bounded_engines[copy] = bound


def bound_sessions(engine: Engine, limit_ms: int) -> None:
    """Bound lock waits (and statement time on PostgreSQL) of every new connection of ``engine``.

    For engines recurjobs made and owns: the settings are applied once per connection, in the
    pool's ``connect`` event, so statements pay no extra round trip.
    """
    dialect = engine.dialect.name
    if dialect == "postgresql":
        statements = [
            "SELECT set_config('lock_timeout', %(t)s, false), "
            "set_config('statement_timeout', %(t)s, false)"
        ]
        params: dict[str, Any] | None = {"t": str(limit_ms)}
    elif dialect in ("mysql", "mariadb"):
        seconds = _mysql_seconds(limit_ms)
        statements = [
            f"SET SESSION innodb_lock_wait_timeout = {seconds}, "
            f"SESSION lock_wait_timeout = {seconds}"
        ]
        params = None
    elif dialect == "sqlite":
        statements = [f"PRAGMA busy_timeout = {int(limit_ms)}"]
        params = None
    else:
        return

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                if params is None:
                    cursor.execute(statement)
                else:
                    cursor.execute(statement, params)
        finally:
            cursor.close()
        if dialect == "postgresql":
            # Session settings made inside a transaction are undone by its rollback.
            dbapi_connection.commit()

    event.listen(engine, "connect", on_connect)
    _bounded_engines[engine] = limit_ms


@contextlib.contextmanager
def bounded_waits(conn: Connection, limit_ms: int) -> Iterator[None]:
    """Bound lock waits (and, on PostgreSQL, statement time) for the statements inside.

    Nothing is done when the engine's sessions already carry a bound no longer than
    ``limit_ms`` (:func:`bound_sessions`). Otherwise PostgreSQL gets transaction-local settings;
    MySQL/MariaDB and SQLite session settings that are put back afterwards, so an engine shared
    with other code is left as it was.
    """
    session = _bounded_engines.get(conn.engine)
    if session is not None and session <= limit_ms:
        yield
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        setting = (
            "SELECT set_config('statement_timeout', :t, true), set_config('lock_timeout', :t, true)"
        )
        conn.execute(text(setting), {"t": str(limit_ms)})
    elif dialect in ("mysql", "mariadb"):
        conn.execute(
            text(
                "SET @recurjobs_lock_wait = @@SESSION.innodb_lock_wait_timeout, "
                "@recurjobs_mdl_wait = @@SESSION.lock_wait_timeout, "
                "SESSION innodb_lock_wait_timeout = :s, SESSION lock_wait_timeout = :s"
            ),
            {"s": _mysql_seconds(limit_ms)},
        )
        try:
            yield
        finally:
            # A failure here means a broken connection, which goes away with its session.
            with contextlib.suppress(Exception):
                conn.execute(
                    text(
                        "SET SESSION innodb_lock_wait_timeout = @recurjobs_lock_wait, "
                        "SESSION lock_wait_timeout = @recurjobs_mdl_wait"
                    )
                )
        return
    if dialect == "sqlite":  # in-process: setting and putting back costs no round trip
        previous = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(limit_ms)}")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {previous}")
        return
    yield
