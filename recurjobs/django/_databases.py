"""A ``DATABASES`` alias of the Django project as the SQLAlchemy URL recurjobs connects with.

Django and recurjobs use different drivers for the same server: PostgreSQL goes through
psycopg 3 (``postgresql+psycopg``), MySQL and MariaDB through PyMySQL (``mysql+pymysql``),
SQLite through the standard library. Host, port, user, password and database name are taken
over; of ``OPTIONS`` only the connection parameters both drivers understand (``sslmode`` and
friends for PostgreSQL, ``charset`` and ``unix_socket`` for MySQL). Anything else: give a URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DRIVERS", "alias_url"]

DRIVERS = {
    "django.db.backends.postgresql": "postgresql+psycopg",
    "django.contrib.gis.db.backends.postgis": "postgresql+psycopg",
    "django.db.backends.mysql": "mysql+pymysql",
    "django.contrib.gis.db.backends.mysql": "mysql+pymysql",
    "django.db.backends.sqlite3": "sqlite",
    "django.contrib.gis.db.backends.spatialite": "sqlite",
}
"""Django database ``ENGINE`` -> SQLAlchemy driver name recurjobs uses for it."""

_POSTGRES_OPTIONS = frozenset(
    {
        "application_name",
        "channel_binding",
        "connect_timeout",
        "gssencmode",
        "options",
        "passfile",
        "service",
        "sslcert",
        "sslcrl",
        "sslkey",
        "sslmode",
        "sslrootcert",
        "target_session_attrs",
    }
)
_MYSQL_OPTIONS = frozenset({"charset", "unix_socket", "read_default_file", "read_default_group"})


def alias_url(alias: str, databases: Mapping[str, Any], where: str) -> str:
    """The URL for ``databases[alias]``; ValueError naming ``where`` when it cannot be made."""
    from sqlalchemy.engine import URL

    if alias not in databases:
        known = ", ".join(sorted(map(str, databases))) or "none"
        raise ValueError(
            f"{where} is {alias!r}, which is neither a URL nor a DATABASES alias (aliases: {known})"
        )
    entry = databases[alias]
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: DATABASES[{alias!r}] is not a dict")
    engine = entry.get("ENGINE", "")
    driver = DRIVERS.get(engine)
    if driver is None:
        raise ValueError(
            f"{where}: DATABASES[{alias!r}] uses ENGINE {engine!r}; recurjobs works with "
            "PostgreSQL, MySQL/MariaDB and SQLite (give a SQLAlchemy URL instead)"
        )
    name = entry.get("NAME")
    name = str(name) if name is not None else ""  # NAME may be a pathlib.Path
    if driver == "sqlite":
        if (
            not name
            or name == ":memory:"
            or name.startswith("file::memory:")
            or (name.startswith("file:") and "mode=memory" in name)
        ):
            raise ValueError(
                f"{where}: DATABASES[{alias!r}] is an in-memory SQLite database, which other "
                "connections and processes cannot see; use a file or a server"
            )
        return _sqlite_url(name)
    options = entry.get("OPTIONS") or {}
    allowed = _POSTGRES_OPTIONS if driver.startswith("postgresql") else _MYSQL_OPTIONS
    query = {k: str(v) for k, v in options.items() if k in allowed and v is not None}
    port = entry.get("PORT") or None
    try:
        port_number = int(port) if port is not None else None
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: DATABASES[{alias!r}]['PORT'] is not a number: {port!r}"
        ) from None
    host = entry.get("HOST") or None
    if host is not None and str(host).startswith("/"):
        # A Unix socket: Django passes it as the host; in a URL it goes in the query (libpq's
        # host=/dir, PyMySQL's unix_socket=/path), or it would be read as the database's name.
        query.setdefault("host" if driver.startswith("postgresql") else "unix_socket", str(host))
        host = None  # (OPTIONS' own unix_socket wins, as in Django's MySQL backend)
    url = URL.create(
        driver,
        username=entry.get("USER") or None,
        password=entry.get("PASSWORD") or None,
        host=host,
        port=port_number,
        database=name or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)


def _sqlite_url(name: str) -> str:
    """The URL of the SQLite database Django opens for ``NAME``.

    Django opens every SQLite database with ``uri=True``, so a ``NAME`` that starts with
    ``file:`` is a URI (``file:/srv/db.sqlite3?mode=rwc``): the URL says so (``?uri=true``,
    SQLAlchemy's spelling) and carries the URI's parameters (``mode``, ``cache``, ...) as its
    query. Without it SQLite reads the URL's database as a plain file name, unless it was
    built to read URIs anyway: ``file:db.sqlite3?mode=rwc`` would then be a file of that very
    name in the working directory, another database than Django's.
    """
    from urllib.parse import parse_qsl

    from sqlalchemy.engine import URL

    if not name.startswith("file:"):
        return URL.create("sqlite", database=name).render_as_string(hide_password=False)
    path, _, rest = name.partition("#")[0].partition("?")
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(rest, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    query["uri"] = ["true"]
    url = URL.create("sqlite", database=path, query=query)
    return url.render_as_string(hide_password=False)
