"""Database fixtures: run one test against SQLite, PostgreSQL and MariaDB/MySQL.

Load with ``pytest_plugins = ["tests.dbs"]`` in ``tests/conftest.py``, then ask for ``db`` (a
:class:`TestDatabase`) or just ``db_url``. Either fixture parametrises the test over the three
backends; the PostgreSQL and MySQL variants carry the ``postgres`` and ``mysql`` markers, so
``-m "not mysql"`` deselects them.

Each test gets a fresh, empty namespace: SQLite a new file in ``tmp_path``; the server backends
share one database, so each test gets a unique ``table_prefix`` (pass it to
``DistributedJobSettings(table_prefix=...)``) and its tables are dropped at teardown.

The servers come from ``RECURJOBS_TEST_POSTGRES_URL`` and ``RECURJOBS_TEST_MYSQL_URL``, which
``eval "$(bash scripts/test-databases.sh)"`` (run by ``make test``) sets. When a variable is
missing or its server cannot be reached in 5 seconds, the test is skipped on a developer's
machine and fails when ``CI=true``: under CI an unreachable database is an error, never a skip.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, NoReturn

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

BACKENDS: Final = ("sqlite", "postgres", "mysql")
ENV_VARS: Final = {
    "postgres": "RECURJOBS_TEST_POSTGRES_URL",
    "mysql": "RECURJOBS_TEST_MYSQL_URL",
}
CONNECT_TIMEOUT_SECONDS: Final = 5
# Teardown must not hang behind a lock that a test left behind (pytest-timeout would kill it).
_LOCK_TIMEOUT_SECONDS: Final = 5


@dataclass(frozen=True)
class TestDatabase:
    """Where one test keeps its tables: a backend, a SQLAlchemy URL and a private prefix."""

    __test__: ClassVar[bool] = False  # a class, not a test case, despite its name

    backend: str
    url: str
    table_prefix: str


def database_urls() -> dict[str, str | None]:
    """Backend name -> URL; ``None`` for SQLite (a temp file per test) or an unset variable."""
    urls: dict[str, str | None] = {"sqlite": None}
    for backend, variable in ENV_VARS.items():
        urls[backend] = os.environ.get(variable) or None
    return urls


def under_ci() -> bool:
    """Whether this run is CI's, where a missing database fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() == "true"


def database_unavailable(reason: str) -> NoReturn:
    """Skip the current test, or fail it under CI."""
    if under_ci():
        pytest.fail(
            f"{reason} (CI=true: a database test that cannot run fails, it is never skipped)",
            pytrace=False,
        )
    pytest.skip(reason)


def _connect_args(backend: str) -> dict[str, Any]:
    """Driver arguments bounding the connect time and, for teardown, lock waits."""
    if backend == "postgres":
        return {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c lock_timeout={_LOCK_TIMEOUT_SECONDS * 1000}",
        }
    if backend == "mysql":
        return {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "init_command": f"SET SESSION lock_wait_timeout = {_LOCK_TIMEOUT_SECONDS}",
        }
    return {}


def _shown(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


# URL -> None when the server answered, else why not. Filled once per URL and session, so an
# unreachable server costs one connect timeout, not one per test.
_reachability: dict[str, str | None] = {}


def _problem_reaching(backend: str, url: str) -> str | None:
    if url not in _reachability:
        try:
            engine = sa.create_engine(url, poolclass=NullPool, connect_args=_connect_args(backend))
            try:
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1"))
            finally:
                engine.dispose()
        except Exception as exc:  # whatever goes wrong, the database cannot be used
            _reachability[url] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            _reachability[url] = None
    return _reachability[url]


def drop_tables(database: TestDatabase) -> None:
    """Drop every table whose name starts with the database's prefix (in dependency order)."""
    engine = sa.create_engine(
        database.url, poolclass=NullPool, connect_args=_connect_args(database.backend)
    )
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=lambda name, _: name.startswith(database.table_prefix))
        metadata.drop_all(engine)
    finally:
        engine.dispose()


def new_table_prefix() -> str:
    """A prefix no other test (or concurrent test run) uses: ``t_`` + 8 hex digits + ``_``."""
    return f"t_{secrets.token_hex(4)}_"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A fresh, empty place for tables on each backend; server tables are dropped afterwards."""
    backend: str = request.param
    if backend == "sqlite":
        yield TestDatabase("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}", new_table_prefix())
        return

    url = database_urls()[backend]
    if url is None:
        database_unavailable(
            f'{ENV_VARS[backend]} is not set; run: eval "$(bash scripts/test-databases.sh)"'
        )
    problem = _problem_reaching(backend, url)
    if problem is not None:
        database_unavailable(f"{backend} at {_shown(url)} is unreachable: {problem}")

    database = TestDatabase(backend, url, new_table_prefix())
    yield database
    try:
        drop_tables(database)
    except Exception as exc:  # a leftover uniquely prefixed table harms no other test
        warnings.warn(
            f"could not drop the {database.table_prefix}* tables on {backend}: {exc}",
            stacklevel=1,
        )


@pytest.fixture
def db_url(db: TestDatabase) -> str:
    """The URL of ``db`` (parametrised over the backends like it); use ``db.table_prefix``."""
    return db.url
