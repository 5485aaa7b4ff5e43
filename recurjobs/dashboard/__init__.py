"""A web dashboard for recurjobs: jobs, a job's history, servers; optional actions.

::

    from recurjobs.dashboard import create_app

    app = create_app("postgresql+psycopg://...")        # a Flask (WSGI) app, read-only

Serve it with any WSGI server (``recurjobs dashboard --database URL`` uses waitress), or let
the Flask extension mount it inside your app (``RECURJOBS_DASHBOARD_PREFIX``). Needs the
``dashboard`` extra (Flask and waitress).

Read-only by default: without ``allow_actions=True`` *and* an ``authorize(request) -> bool``
that returns True for the request, no button is rendered and every POST is answered 403.
Actions are POST forms carrying a signed double-submit CSRF token (see ``docs/dashboard.md``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from recurjobs._validate import table_prefix as check_prefix
from recurjobs.dashboard._app import BLUEPRINT, make_blueprint
from recurjobs.dashboard._data import Dashboard
from recurjobs.sql._urls import engine_for

__all__ = ["BLUEPRINT", "STATEMENT_TIMEOUT", "create_app", "dashboard_blueprint"]

STATEMENT_TIMEOUT = 5.0
"""Seconds any statement of the dashboard may wait for a lock (and run, on PostgreSQL)."""


def _check(
    database: object,
    table_prefix: object,
    allow_actions: object,
    authorize: object,
    secret_key: object,
) -> bytes:
    if isinstance(database, bytes) or not isinstance(database, (str, Engine)):
        raise TypeError(f"database must be a URL string or an SQLAlchemy Engine, got {database!r}")
    check_prefix(table_prefix)
    if not isinstance(allow_actions, bool):
        raise TypeError(f"allow_actions must be a bool, got {allow_actions!r}")
    if authorize is not None and not callable(authorize):
        raise TypeError(f"authorize must be a callable taking the request, got {authorize!r}")
    if secret_key is None:
        return secrets.token_bytes(32)
    if isinstance(secret_key, str):
        secret_key = secret_key.encode()
    if not isinstance(secret_key, bytes):
        raise TypeError(f"secret_key must be str or bytes, got {secret_key!r}")
    if len(secret_key) < 16:
        raise ValueError(f"secret_key must be at least 16 bytes long, got {len(secret_key)}")
    return secret_key


def _check_sqlite_file(database: object) -> None:
    """ValueError when ``database`` is a URL naming an SQLite file that does not exist:
    opening it would create an empty database and show an empty dashboard of the wrong file."""
    if not isinstance(database, str):
        return  # an Engine, or a wrong type that _check names
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    from recurjobs._clistore import mask_url_text, missing_sqlite_file

    try:
        parsed = make_url(database)
    except (ArgumentError, ValueError):
        return  # engine_for names the bad URL
    if missing_sqlite_file(parsed):
        raise ValueError(
            f"database names an SQLite file that does not exist: {mask_url_text(database)} "
            "(the dashboard shows an existing database and never creates one)"
        )


def dashboard_blueprint(
    database: str | Engine,
    *,
    table_prefix: str = "recurjobs_",
    allow_actions: bool = False,
    authorize: Callable[[Any], bool] | None = None,
    secret_key: str | bytes | None = None,
    host: Any = None,
) -> Any:
    """The dashboard as a Flask blueprint named ``recurjobs_dashboard``, to register on an app
    of yours (``app.register_blueprint(bp, url_prefix="/jobs")``); the app's own
    ``before_request`` hooks (its login) then guard it. ``host`` (a :class:`recurjobs.JobHost`)
    adds that host's recurring jobs to the jobs page. Other arguments as for
    :func:`create_app`."""
    key = _check(database, table_prefix, allow_actions, authorize, secret_key)
    engine, _ = engine_for(database, statement_timeout=STATEMENT_TIMEOUT)
    data = Dashboard(engine, table_prefix)
    return make_blueprint(
        data, allow_actions=allow_actions, authorize=authorize, secret_key=key, host=host
    )


def create_app(
    database: str | Engine,
    *,
    table_prefix: str = "recurjobs_",
    allow_actions: bool = False,
    authorize: Callable[[Any], bool] | None = None,
    secret_key: str | bytes | None = None,
) -> Any:
    """A Flask (WSGI) app showing the jobs, runs and servers of ``database``.

    ``database`` is a URL or an SQLAlchemy ``Engine``; ``table_prefix`` as the hosts use it.
    Actions (trigger, pause, resume) need ``allow_actions=True`` and ``authorize``, called with
    the Flask request, returning True. ``secret_key`` signs the CSRF tokens (random per app by
    default; give every worker process of one dashboard the same one). Bad arguments raise
    ``TypeError``/``ValueError`` naming them, as does a URL naming an SQLite file that does not
    exist (the dashboard never creates one, like ``recurjobs dashboard``); the database is
    first used by a request.
    """
    from flask import Flask

    blueprint = dashboard_blueprint(
        database,
        table_prefix=table_prefix,
        allow_actions=allow_actions,
        authorize=authorize,
        secret_key=secret_key,
    )
    _check_sqlite_file(database)  # after the other checks; nothing has connected yet
    app = Flask("recurjobs.dashboard")
    app.register_blueprint(blueprint)
    return app
