"""The command line's database side: checked URLs, one store per command, one-line errors.

Nothing here prints. Failures are :class:`CommandError` with a message fit for one line, the
password masked; ``bad_input`` tells bad input (exit code 2) from a failed operation (1).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

from recurjobs._masking import mask_query

__all__ = [
    "CommandError",
    "check_database_url",
    "driver_missing",
    "mask_url_text",
    "pause_row",
    "split_target",
    "read_rows",
    "read_runs",
    "trigger_row",
    "with_store",
]

_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")


class CommandError(Exception):
    """A one-line failure for the user; ``bad_input`` selects exit code 2 instead of 1;
    ``unknown_name``: the job name has no row (a framework's command may add the names of
    its project's jobs)."""

    def __init__(
        self, message: str, *, bad_input: bool = False, unknown_name: bool = False
    ) -> None:
        super().__init__(message)
        self.bad_input = bad_input
        self.unknown_name = unknown_name


def split_target(target: str, wrong: str) -> tuple[str, str]:
    """``MODULE:ATTR`` as its two parts, with the working directory put on the import path
    (where ``python -m`` would find the module); CommandError (bad input) saying
    ``"{wrong}, got {target!r}"`` when it is not of that form."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CommandError(f"{wrong}, got {target!r}", bad_input=True)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return module_name, attr


def mask_url_text(text: str) -> str:
    """``text`` with anything between ``user:`` and the last ``@`` replaced by ``***`` (also
    without a ``scheme://``), and the values of password-carrying query parameters.

    For URLs that do not parse: the password must not be shown even then.
    """
    if "://" in text:
        text = re.sub(r"^([^:/@]*://[^:/@]*:).*@", r"\1***@", text, flags=re.DOTALL)
    else:
        text = re.sub(r"^([^:/@]*:).*@", r"\1***@", text, flags=re.DOTALL)
    return mask_query(text)


def check_database_url(url: object, name: str = "--database") -> Any:
    """Parse a database URL for recurjobs; return SQLAlchemy's ``URL``.

    Raises ValueError (naming ``name`` and the masked URL) for a URL that does not parse, a
    port that is no number or out of range, a backend other than SQLite, PostgreSQL or
    MySQL/MariaDB, or a driver name SQLAlchemy does not know; TypeError for a non-string.
    """
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if not isinstance(url, str):
        raise TypeError(f"{name} must be a database URL string, got {url!r}")
    shown = " ".join(mask_url_text(url).split())
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"{name} is not a database URL: {shown!r}") from None
    except ValueError:  # int() of the port
        raise ValueError(f"{name} has a port that is not a number: {shown!r}") from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"{name} has port {parsed.port}, expected 1 to 65535: {shown}")
    backend = parsed.get_backend_name()
    if backend == "postgres":
        raise ValueError(
            f"{name} uses the dialect name 'postgres', which SQLAlchemy does not know: write "
            f"postgresql:// (or postgresql+psycopg://): {shown}"
        )
    if backend not in _BACKENDS:
        raise ValueError(
            f"{name} names the unsupported database {backend!r} (recurjobs works with sqlite, "
            f"postgresql and mysql/mariadb): {shown}"
        )
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"{name} names an unknown driver {parsed.drivername!r}: {shown}") from None
    return parsed


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def missing_sqlite_file(parsed: Any) -> bool:
    """Whether ``parsed`` (a SQLAlchemy URL) names an SQLite file that does not exist; a
    database in memory, or given as a ``file:`` URI (``?uri=true``), is not judged."""
    from recurjobs.sql._shared import in_memory

    if parsed.get_backend_name() != "sqlite" or in_memory(parsed):
        return False
    database = str(parsed.database)
    if database.startswith("file:") or parsed.query.get("uri") == "true":
        return False
    return not os.path.exists(database)


def driver_missing(exc: ImportError, shown: str) -> str:
    """The one line for a URL whose driver is not installed (``shown``: the masked URL):
    recurjobs' own message names the driver and how to install it."""
    from recurjobs.sql import DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    return f"the driver for {shown} is not installed: {exc.name or exc}"


def _open_store(url: str, prefix: str, source: str = "--database") -> Any:
    """A JobStore on ``url``, or a CommandError that never shows the password."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

    from recurjobs.sql import JobStore

    try:
        parsed = check_database_url(url, source)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc), bad_input=True) from None
    shown = mask_url_text(url)
    if missing_sqlite_file(parsed):
        raise CommandError(f"no SQLite database file at {shown}", bad_input=True)
    try:
        store = JobStore(url, table_prefix=prefix)
    except NoSuchModuleError:
        raise CommandError(f"unsupported database URL: {shown}", bad_input=True) from None
    except ImportError as exc:
        raise CommandError(driver_missing(exc, shown)) from None
    except ValueError as exc:
        raise CommandError(str(exc), bad_input=True) from None
    try:
        exists = inspect(store.engine).has_table(store.jobs.name)
    except (SQLAlchemyError, OSError) as exc:
        store.dispose()
        raise CommandError(f"cannot reach {shown}: {_scrub(_first_line(exc), parsed)}") from None
    if not exists:
        store.dispose()
        raise CommandError(
            f"no table {store.jobs.name} in {shown} (a wrong table prefix, or no host has "
            "started with distributed jobs there yet)",
            bad_input=True,
        )
    try:
        # A table made by an older version gains its missing columns, as a host's start does.
        store.create_schema()
    except (SQLAlchemyError, OSError) as exc:
        store.dispose()
        raise CommandError(
            f"cannot update {store.jobs.name} on {shown}: {_scrub(_first_line(exc), parsed)}"
        ) from None
    return store


def _scrub(text: str, url: Any) -> str:
    password = getattr(url, "password", None)
    return text.replace(str(password), "***") if password else text


def with_store(
    url: str, prefix: str, what: Callable[[Any], Any], source: str = "--database"
) -> Any:
    """``what(store)`` on a store for ``url``; database errors become one-line CommandErrors."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    store = _open_store(url, prefix, source)
    try:
        return what(store)
    except SQLAlchemyError as exc:
        raise CommandError(
            f"database error on {store.url}: {_scrub(_first_line(exc), make_url(url))}"
        ) from None
    finally:
        store.dispose()


def read_rows(url: str, prefix: str, *, source: str = "--database") -> list[Any]:
    """Every row of the distributed jobs table (``JobStore.rows()``); ``source`` names where
    the URL came from in error messages."""
    return list(with_store(url, prefix, lambda store: store.rows(), source))


def read_runs(
    url: str, prefix: str, *, job: str | None, limit: int, source: str = "--database"
) -> list[Any]:
    """The newest ``limit`` runs (of ``job``) from the run history table, newest first."""
    from recurjobs.sql._history import read_history

    return list(
        with_store(
            url,
            prefix,
            lambda store: read_history(store.engine, prefix, job=job, limit=limit),
            source,
        )
    )


def trigger_row(url: str, prefix: str, name: str, *, source: str = "--database") -> None:
    """Mark ``name`` due now; CommandError (bad input, exit 2) when there is no such row, and
    (exit 1) when the job is paused."""

    def trigger(store: Any) -> list[Any] | None:
        if store.trigger(name):
            return None
        return list(store.rows())

    rows = with_store(url, prefix, trigger, source)
    if rows is not None:
        if any(row.name == name and row.paused for row in rows):
            raise CommandError(f"{name} is paused: resume it first (recurjobs resume {name})")
        known = [row.name for row in rows]
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise CommandError(
            f"no distributed job named {name!r} in the database (its row appears once a host "
            f"with that job has started; known: {listed or 'none'})",
            bad_input=True,
            unknown_name=True,
        )


def pause_row(
    url: str, prefix: str, name: str, paused: bool, *, source: str = "--database"
) -> None:
    """Pause or resume the row of ``name``; CommandError (bad input, exit 2, as for a trigger)
    when there is no such row."""

    def set_paused(store: Any) -> list[str] | None:
        if store.set_paused(name, paused):
            return None
        return [row.name for row in store.rows()]

    known = with_store(url, prefix, set_paused, source)
    if known is not None:
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise CommandError(
            f"no distributed job named {name!r} in the database (its row appears once a host "
            f"with that job has started; known: {listed or 'none'})",
            bad_input=True,
        )
