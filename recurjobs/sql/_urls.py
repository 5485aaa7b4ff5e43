"""Engines for URL strings, and URLs fit for logs (passwords masked)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from recurjobs.sql._bounds import DEFAULT_STATEMENT_TIMEOUT, bound_sessions, to_ms

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "engine_for", "make_engine", "masked"]

SQLITE_BUSY_TIMEOUT_MS = to_ms(DEFAULT_STATEMENT_TIMEOUT)
"""How long SQLite waits for another process's write lock before reporting "locked" (the
default statement timeout, see ``_bounds``)."""

_CONNECT_TIMEOUT_S = 10
# Drivers known to take ``connect_timeout`` (seconds) as a connect argument.
_TIMEOUT_DRIVERS = {
    ("postgresql", "psycopg"),
    ("postgresql", "psycopg2"),
    ("mysql", "pymysql"),
    ("mariadb", "pymysql"),
}


def masked(target: Engine | URL | str) -> str:
    """The URL of ``target`` with the password hidden, for every log line and message."""
    if isinstance(target, Engine):
        url = target.url
    elif isinstance(target, URL):
        url = target
    else:
        try:
            url = make_url(target)
        except Exception:  # a string that is no URL: show nothing of it
            return "<unparsable database URL>"
    return url.render_as_string(hide_password=True)


def engine_for(
    database: object, *, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
) -> tuple[Engine, bool]:
    """The engine for ``database`` (a URL or an Engine) and whether we made it (and own it)."""
    if isinstance(database, Engine):
        return database, False
    if isinstance(database, (str, URL)):
        return make_engine(database, statement_timeout=statement_timeout), True
    raise TypeError(f"database must be a URL or an SQLAlchemy Engine, got {database!r}")


def make_engine(url: str | URL, *, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT) -> Engine:
    """An engine for ``url`` suited to a long-lived background poller.

    ``pool_pre_ping`` replaces connections the server dropped (restart, idle timeout) before
    they are used. Server drivers get a bounded connect timeout, so a poll cannot hang on a
    dead host for minutes. SQLite files get WAL mode (readers never block the writer) and a
    busy timeout (writers queue instead of failing at once), set on every new connection; an
    in-memory SQLite database is one shared connection, since each new one would be empty.

    Every new connection's session is bounded by ``statement_timeout`` seconds (lock waits,
    and statement time on PostgreSQL; SQLite's busy timeout), see ``_bounds``.
    """
    url = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    backend = url.get_backend_name()
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False}
        if url.database in (None, "", ":memory:"):
            kwargs["poolclass"] = StaticPool
    elif _bounded(url):
        kwargs["connect_args"] = {"connect_timeout": _CONNECT_TIMEOUT_S}
    engine = create_engine(url, **kwargs)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_wal)
    bound_sessions(engine, to_ms(statement_timeout))
    return engine


def _bounded(url: URL) -> bool:
    """Whether to give the driver a connect timeout (known driver, none set in the URL)."""
    driver = (url.get_backend_name(), url.get_driver_name())
    return driver in _TIMEOUT_DRIVERS and "connect_timeout" not in url.query


def _sqlite_wal(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()
