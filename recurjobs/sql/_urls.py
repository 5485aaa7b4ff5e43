"""Database URLs: checked at construction, engines made for them, shown with passwords hidden.

- :func:`check_url` judges a ``database=`` value when a host is built (``ValueError`` naming
  the parameter), without connecting and without importing a driver.
- :func:`make_engine` / :func:`engine_for` make the engine recurjobs uses for a URL.
- :func:`masked` and :func:`scrub` keep passwords out of every log line and message, also a
  password typed with a raw ``@``, ``:`` or ``/`` in it.
- :class:`DatabaseUnavailable` is what ``start()`` raises when the database cannot be used.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from recurjobs._masking import SECRET_PARAM, mask_query
from recurjobs.sql._bounds import (
    DEFAULT_STATEMENT_TIMEOUT,
    bound_sessions,
    check_statement_timeout,
    session_bound_ms,
    to_ms,
)
from recurjobs.sql._pool import POOL_SETTINGS, configure_pool
from recurjobs.sql._shared import in_memory

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "SUPPORTED_BACKENDS",
    "DatabaseUnavailable",
    "check_url",
    "engine_for",
    "make_engine",
    "masked",
    "scrub",
    "single_statement_engine",
]

SQLITE_BUSY_TIMEOUT_MS = to_ms(DEFAULT_STATEMENT_TIMEOUT)
"""How long SQLite waits for another process's write lock before reporting "locked" (the
default statement timeout, see ``_bounds``)."""

SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")
"""The SQLAlchemy backend names recurjobs has a database clock for (``_clockexpr``)."""

_CONNECT_TIMEOUT_S = 10
# Drivers known to take ``connect_timeout`` (seconds) as a connect argument.
_TIMEOUT_DRIVERS = {
    ("postgresql", "psycopg"),
    ("postgresql", "psycopg2"),
    ("mysql", "pymysql"),
    ("mariadb", "pymysql"),
}
# A server that goes silent (gone without closing the connection: a crashed host, a network
# cut, a proxy that keeps the socket) must not hold a thread in a read for ever: the server
# bounds every statement (``_bounds``), so an answer later than this many seconds past that
# bound will not come. PyMySQL reads and writes with this timeout; libpq gets TCP keepalives
# and a TCP user timeout, which notice a peer that is gone (not one that keeps the socket).
_SILENT_S = 30
_PG_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": _SILENT_S * 1000,
}
_EXAMPLE = "such as sqlite:///jobs.db or postgresql+psycopg://user:password@host/db"
_MASK = "***"
_UNPARSABLE = "<unparsable database URL>"
# scheme://user:secret@rest: the secret runs to the LAST "@", so a raw "@" in it stays hidden.
_USERINFO = re.compile(r"^(?P<scheme>[^:/?#\s]+://)(?P<user>[^:@/]*):(?P<secret>.*)@(?P<rest>.*)$")


class DatabaseUnavailable(RuntimeError):
    """The database of a host cannot be used: refused credentials, an unknown database, a
    missing driver, an unwritable SQLite file, or a server unreachable for ``start_timeout``.

    ``url`` is the masked URL and ``reason`` a one-line explanation (passwords scrubbed).
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot use the database {url}: {reason}")
        self.url = url
        self.reason = reason


class _MissingDriver(DatabaseUnavailable, ImportError):
    """The URL's driver is not installed. Still an ``ImportError`` for callers that catch it."""


# Import names of drivers, and how to install them.
_INSTALL = {
    "psycopg": 'pip install "recurjobs[postgres]" (psycopg 3)',
    "psycopg2": "pip install psycopg2-binary",
    "pymysql": 'pip install "recurjobs[mysql]" (PyMySQL)',
    "MySQLdb": "pip install mysqlclient",
    "mariadb": "pip install mariadb",
}


# Query parameters that carry a secret (libpq and PyMySQL take ``?password=...``).
_SECRET_PARAM = SECRET_PARAM


def _is_secret_param(key: str) -> bool:
    return _SECRET_PARAM.fullmatch(f"?{key}=") is not None


def masked(target: Engine | URL | str) -> str:
    """The URL of ``target`` with the whole password hidden, for every log line and message;
    a password given as a query parameter (``?password=...``, ``sslpassword``) too.

    A password typed without URL-encoding may hold ``@``, ``:`` or ``/``; SQLAlchemy then reads
    part of it as the host. Everything up to the last ``@`` counts as password here, so no part
    of it is shown (the price, for a URL whose query holds an ``@``, is hiding more).
    """
    return mask_query(_masked(target))


def _masked(target: Engine | URL | str) -> str:
    if isinstance(target, Engine):
        target = target.url
    if isinstance(target, URL):
        split = _split_raw_at(target)
        if split is None:
            return target.render_as_string(hide_password=True)
        shown = f"{target.drivername}://{quote_plus(target.username or '')}:{_MASK}@{split[1]}"
        query = target.set(host=None, port=None, database=None).render_as_string()
        return shown + query[query.index("?") :] if "?" in query else shown
    return _mask_text(str(target))


def _split_raw_at(url: URL) -> tuple[str, str] | None:
    """For a URL whose password held a raw "@": (the rest of the password, the true
    host/port/database), as the parser had put them into the host or the database name."""
    if url.password is None:
        return None
    port = f":{url.port}" if url.port is not None else ""
    tail = f"{url.host or ''}{port}" + (f"/{url.database}" if url.database is not None else "")
    if "@" not in tail:
        return None
    rest, real = tail.rsplit("@", 1)
    return rest, real


def _mask_text(text: str) -> str:
    try:
        url: URL | None = make_url(text)
    except Exception:  # not a URL SQLAlchemy can read; it may still hold a password
        url = None
    if url is not None and url.password is None:
        return url.render_as_string(hide_password=True)
    match = _USERINFO.match(text.strip())
    if match is not None:
        return f"{match['scheme']}{match['user']}:{_MASK}@{match['rest']}"
    if url is not None:
        return masked(url)
    return _UNPARSABLE


def _secrets(target: Engine | URL | str) -> set[str]:
    """Every spelling of the password of ``target`` that a driver's message might echo."""
    found: set[str] = set()
    if isinstance(target, Engine):
        target = target.url
    if isinstance(target, URL):
        for key, value in target.query.items():
            if _is_secret_param(key):
                found.update([value] if isinstance(value, str) else value)
        if target.password is None:
            return _spellings(found)
        found.add(str(target.password))
        split = _split_raw_at(target)
        if split is not None:
            found.add(f"{target.password}@{split[0]}")
        return _spellings(found)
    match = _USERINFO.match(target.strip())
    if match is not None and match["secret"]:
        found.add(match["secret"])
    with contextlib.suppress(Exception):
        found |= _secrets(make_url(target))
    return _spellings(found)


def _spellings(found: set[str]) -> set[str]:
    """Each secret, its pieces between raw "@"s, and their URL-encoded forms (3+ characters)."""
    for secret in list(found):
        found.update(secret.split("@"))
    for secret in list(found):
        found.add(quote(secret, safe=""))
        found.add(quote_plus(secret, safe=""))
    # One or two characters would garble every message and are no secret worth the name.
    return {secret for secret in found if len(secret) >= 3}


def scrub(text: str, target: Engine | URL | str) -> str:
    """``text`` (a driver's error message, say) with every spelling of ``target``'s password
    replaced by ``***``, longest first so no fragment of it survives (passwords shorter than
    three characters are left: replacing them would garble the message)."""
    for secret in sorted(_secrets(target), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def check_url(value: object) -> None:
    """Judge a ``database=`` value at construction: an ``Engine``, or a URL of a supported
    backend. ``TypeError`` for other types, ``ValueError`` naming ``database`` and the masked
    value otherwise.

    Only the URL's form and backend are judged, so no driver is imported: a URL for a driver
    that is not installed passes here and fails ``start()`` with :class:`DatabaseUnavailable`.
    """
    if isinstance(value, Engine):
        return
    if not isinstance(value, (str, URL)):
        # Bytes may be a URL with its password: name the type only.
        shown_value = type(value).__name__ if isinstance(value, (bytes, bytearray)) else repr(value)
        raise TypeError(f"database must be a URL or an SQLAlchemy Engine, got {shown_value:.100}")
    shown = masked(value)
    if shown == _UNPARSABLE and not any(char in str(value) for char in "@:") and len(value) < 80:
        shown = str(value)  # no room for a password in it: show what was given
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"database must be a database URL {_EXAMPLE}, got {value!r}")
    try:
        url = make_url(value)
    except NoSuchModuleError:
        scheme = str(value).split("://", 1)[0].split("+", 1)[0].lower()
        if scheme == "postgres":
            raise ValueError(
                f"database has no SQLAlchemy dialect 'postgres' in {shown}: "
                "write postgresql+psycopg://... instead"
            ) from None
        raise ValueError(f"database is an unsupported database URL: {shown!r}") from None
    except ArgumentError:
        raise ValueError(f"database must be a database URL {_EXAMPLE}, got {shown!r}") from None
    except ValueError:  # the port is no number: say so without echoing the text that was read
        raise ValueError(
            f"database has a port that is not a number in {shown!r} (or a password with a "
            "raw '@', ':' or '/': encode it with urllib.parse.quote_plus, '@' becomes %40)"
        ) from None
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError(f"database has a port outside 1 to 65535 in {shown!r}")
    backend = url.get_backend_name()
    if backend == "postgres":
        raise ValueError(
            f"database has no SQLAlchemy dialect 'postgres' in {shown}: "
            "write postgresql+psycopg://... instead"
        )
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"database is an unsupported database URL: {shown!r} (backend {backend!r}; "
            "recurjobs supports sqlite, postgresql, mysql and mariadb)"
        )
    if url.password is not None and "@" in f"{url.host or ''}{url.database or ''}":
        raise ValueError(
            f"database has an '@' in its password that is not URL-encoded: {shown} "
            "(encode the password with urllib.parse.quote_plus, '@' becomes %40)"
        )
    try:
        url.get_dialect()  # finds SQLAlchemy's dialect class; the driver is imported later
    except NoSuchModuleError:
        raise ValueError(
            f"database names a driver SQLAlchemy does not know: {url.get_driver_name()!r} "
            f"in {shown}"
        ) from None


def engine_for(
    database: object, *, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
) -> tuple[Engine, bool]:
    """The engine for ``database`` (a URL or an Engine) and whether we made it (and own it)."""
    if isinstance(database, Engine):
        return database, False
    check_url(database)
    assert isinstance(database, (str, URL))  # check_url accepts nothing else
    return make_engine(database, statement_timeout=statement_timeout), True


def make_engine(url: str | URL, *, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT) -> Engine:
    """An engine for ``url`` suited to a long-lived background poller.

    No pre-ping and no reset on return (``_pool``): a connection the server dropped (restart,
    idle timeout) fails its step, is dropped from the pool, and the step's retry runs on a
    fresh connection. Server drivers get a bounded connect timeout, so a poll cannot hang on a
    dead host for minutes. SQLite files get WAL mode (readers never block the writer) and a
    busy timeout (writers queue instead of failing at once), set on every new connection; an
    in-memory SQLite database is one shared connection, since each new one would be empty
    (every recurjobs use of it takes its turn: ``_shared``).

    Every new connection's session is bounded by ``statement_timeout`` seconds (lock waits,
    and statement time on PostgreSQL; SQLite's busy timeout), see ``_bounds``.

    A driver that is not installed raises :class:`DatabaseUnavailable` (also an
    ``ImportError``) saying what to install.
    """
    limit_ms = to_ms(check_statement_timeout(statement_timeout))
    return _make(make_url(url), limit_ms, autocommit=False)


def single_statement_engine(engine: Engine, limit_ms: int) -> Engine | None:
    """For an engine :func:`make_engine` made on MySQL/MariaDB with sessions bounded to at most
    ``limit_ms``, a twin whose connections stay in autocommit: a step that is one statement
    then costs one round trip (PyMySQL sends ``COMMIT`` whenever it is asked to, even with
    nothing to commit, and switching a pooled connection in and out of autocommit costs two
    more). None for any other engine (an application's engine may carry connect arguments a
    twin would lose; only :func:`make_engine` bounds the sessions of its engines).

    Steps on the twin use ``engine.connect()`` without committing; the twin is made with
    ``skip_autocommit_rollback``, so closing the connection sends no ``ROLLBACK`` either.
    """
    bound = session_bound_ms(engine)
    if bound is None or bound > limit_ms:
        return None
    if (engine.dialect.name, engine.dialect.driver) not in _TWIN_DRIVERS:
        return None
    try:
        return _make(engine.url, bound, autocommit=True)
    except (TypeError, ArgumentError):  # SQLAlchemy before 2.0.43: no skip_autocommit_rollback
        return None


_TWIN_DRIVERS = {("mysql", "pymysql"), ("mariadb", "pymysql")}


def _make(url: URL, limit_ms: int, *, autocommit: bool) -> Engine:
    kwargs: dict[str, Any] = dict(POOL_SETTINGS)
    backend = url.get_backend_name()
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False}
        if in_memory(url):
            kwargs["poolclass"] = StaticPool
    else:
        kwargs["connect_args"] = _silence_bounds(url, limit_ms)
    if autocommit:
        # PyMySQL connects in autocommit (the server's default: no SET at connect), and
        # SQLAlchemy knows, so it neither switches it nor rolls back on close.
        kwargs["connect_args"] = kwargs.get("connect_args", {}) | {"autocommit": True}
        kwargs.update(isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
    try:
        engine = create_engine(url, **kwargs)
    except (TypeError, ValueError) as exc:  # a query parameter the dialect cannot read
        reason = scrub(str(exc), url)
        raise ValueError(
            f"database has a parameter the driver refuses in {masked(url)}: {reason}"
        ) from None
    except ImportError as exc:
        module = (exc.name or "").split(".")[0]
        hint = _INSTALL.get(module, "install the driver the URL names")
        error = _MissingDriver(
            masked(url), f"its driver {module or url.get_driver_name()!r} is not installed: {hint}"
        )
        error.name = exc.name
        raise error from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_wal)
    configure_pool(engine)
    bound_sessions(engine, limit_ms)
    return engine


def _silence_bounds(url: URL, limit_ms: int) -> dict[str, Any]:
    """Connect arguments that bound how long a silent server can hold a thread: a connect
    timeout for the drivers known to take one; read and write timeouts (PyMySQL) or TCP
    keepalives (psycopg). A value the URL sets itself is kept."""
    driver = (url.get_backend_name(), url.get_driver_name())
    if driver not in _TIMEOUT_DRIVERS:
        return {}
    bounds: dict[str, Any] = {"connect_timeout": _CONNECT_TIMEOUT_S}
    if driver[1] == "pymysql":
        silent = max(_SILENT_S, 2 * limit_ms // 1000 + 10)
        bounds |= {"read_timeout": silent, "write_timeout": silent}
    elif driver[1] == "psycopg":
        bounds |= _PG_KEEPALIVE
    return {key: value for key, value in bounds.items() if key not in url.query}


def _sqlite_wal(dbapi_connection: Any, connection_record: Any) -> None:
    """Put the file in WAL mode (readers never wait for the writer). A read-only connection
    (``?mode=ro&uri=true``, a file without write permission) cannot change the mode and reads
    in whatever mode the file has: not an error."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF != _SQLITE_READONLY:
            raise
    finally:
        cursor.close()


_SQLITE_READONLY = 8  # the primary result code of "attempt to write a readonly database"
