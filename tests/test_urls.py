"""Database URLs: judged at construction (``check_url``), shown without any part of the password
(``masked``, ``scrub``), and a missing driver reported as such. No database is needed."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url

from recurjobs import CancellationToken, DistributedJob, JobHost
from recurjobs.sql import DatabaseUnavailable, JobStore, check_url, masked
from recurjobs.sql._urls import scrub

SECRET = "Pw@x:y/z"  # holds every character that breaks naive masking


@pytest.mark.parametrize(
    "value",
    [
        "sqlite://",
        "sqlite:///jobs.db",
        "sqlite:////var/lib/app/jobs.db",
        "postgresql://u:p@db/app",
        "postgresql+psycopg://u:p@db:5432/app",
        "postgresql+psycopg2://u:p@db/app",
        "mysql+pymysql://u:p@db/app",
        "mariadb+pymysql://u:p@db/app",
        "mysql+mysqldb://u:p@db/app",  # the driver need not be installed to judge the URL
        make_url("postgresql+psycopg://u:p@db/app"),
        create_engine("sqlite://"),
    ],
    ids=str,
)
def test_supported_urls_and_engines_pass(value: object) -> None:
    """URLs of SQLite, PostgreSQL and MySQL/MariaDB, URL objects and engines are accepted."""
    check_url(value)  # raises when it does not pass


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("not a url", ["database", "'not a url'"]),
        ("", ["database", "''"]),
        ("   ", ["database"]),
        ("postgres://u:s3cret@db/app", ["database", "'postgres'", "postgresql+psycopg://"]),
        ("oracle://u:s3cret@db/app", ["database", "'oracle'", "unsupported"]),
        ("mssql+pyodbc://u:s3cret@db/app", ["database", "'mssql'"]),
        ("nosuchdb://x/y", ["database", "unsupported database URL"]),
        ("postgresql+nosuchdriver://u:s3cret@db/app", ["database", "'nosuchdriver'"]),
        ("postgresql://u:s3cret@db:port/app", ["database", "port"]),
        (f"postgresql://u:{SECRET}@db/app", ["database", "quote_plus", "%40"]),
    ],
    ids=repr,
)
@pytest.mark.parametrize("where", ["check_url", "JobHost"])
def test_bad_urls_raise_value_error_naming_database(
    value: str, words: list[str], where: str
) -> None:
    """A malformed URL or an unsupported backend is a ValueError naming ``database`` and the
    value, with the password masked: from check_url, and from JobHost(database=...) itself."""
    with pytest.raises(ValueError) as caught:
        if where == "JobHost":
            JobHost([], database=value)
        else:
            check_url(value)
    message = str(caught.value)
    assert [] == [word for word in words if word not in message], message
    assert ("s3cret" not in message, "Pw" not in message, "x:y" not in message) == (
        True,
        True,
        True,
    ), message


def _value_id(value: object) -> str:
    """A test id that is the same in every process (xdist workers compare them)."""
    return "object()" if type(value) is object else repr(value)


@pytest.mark.parametrize(
    "value", [None, 42, 3.5, b"sqlite://", ["sqlite://"], object()], ids=_value_id
)
def test_values_of_other_types_raise_type_error(value: object) -> None:
    """Anything but a string, a URL or an Engine is a TypeError naming ``database``."""
    with pytest.raises(TypeError, match=r"^database must be a URL or an SQLAlchemy Engine, got "):
        check_url(value)


def test_masked_hides_a_raw_password_the_parser_cannot_read() -> None:
    """A password typed raw with '@', ':' and '/' (no parser can read the URL) is hidden whole."""
    url = f"postgresql+psycopg://user:{SECRET}@db.example:5432/app"
    assert "postgresql+psycopg://user:***@db.example:5432/app" == masked(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://user:Pw%40x%3Ay%2Fz@db.example:5432/app",  # URL-encoded
        "postgresql+psycopg://user:Pw@x@db.example:5432/app",  # a raw "@"
        "postgresql+psycopg://user:Pw@x/z@db.example:5432/app",  # a raw "@" and "/"
        "postgresql+psycopg://user:Pw:x/z@db.example:5432/app",  # a raw ":" and "/"
    ],
)
def test_masked_hides_the_whole_password(url: str) -> None:
    """masked() shows user, host, port and database but no character of the password, whether
    it was URL-encoded or typed raw, as text or as a parsed URL."""
    expected = "postgresql+psycopg://user:***@db.example:5432/app"
    assert (expected, expected) == (masked(url), masked(make_url(url)))


def test_masked_engine_of_a_raw_password_hides_all_of_it() -> None:
    """An engine made from a URL with a raw '@' in its password shows none of it either."""
    engine = create_engine("sqlite://")
    raw = create_engine("postgresql+psycopg://user:Pw@x/z@db.example/app")
    assert ("sqlite://", "postgresql+psycopg://user:***@db.example/app") == (
        masked(engine),
        masked(raw),
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://user:{SECRET}@db.example/app",
        "postgresql+psycopg://user:Pw%40x%3Ay%2Fz@db.example/app",
        make_url("postgresql+psycopg://user:Pw%40x%3Ay%2Fz@db.example/app"),
    ],
    ids=str,
)
def test_scrub_removes_every_spelling_of_the_password(url: object) -> None:
    """A driver message echoing the password, raw, encoded or split at a raw '@' by the URL
    parser, keeps none of it."""
    message = (
        f"FATAL: bad password {SECRET} (encoded Pw%40x%3Ay%2Fz) "
        "could not translate host name 'x:y/z@db.example'"
    )
    scrubbed = scrub(message, url)  # type: ignore[arg-type]
    assert [] == [part for part in ("Pw", "x:y/z", "%40x") if part in scrubbed], scrubbed


def test_masked_unparsable_text_never_shows_what_may_be_a_password() -> None:
    """Text that is no URL, which may hold credentials, is not echoed by masked()."""
    assert ["<unparsable database URL>"] * 2 == [masked("user:s3cret@host/db"), masked("x y")]


@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None, reason="MySQLdb installed")
def test_a_missing_driver_is_reported_with_what_to_install() -> None:
    """A URL whose driver is not installed raises DatabaseUnavailable naming the masked URL and
    the package to install (it stays an ImportError for callers that catch that)."""
    with pytest.raises(DatabaseUnavailable) as caught:
        JobStore("mysql+mysqldb://app:s3cret@db.example/app")
    assert (True, "MySQLdb") == (isinstance(caught.value, ImportError), caught.value.name)  # type: ignore[attr-defined]
    assert (
        "cannot use the database mysql+mysqldb://app:***@db.example/app: its driver 'MySQLdb' "
        "is not installed: pip install mysqlclient"
    ) == str(caught.value)


class _Distributed(DistributedJob):
    """A distributed job that does nothing: it makes the host use its database."""

    def execute(self, token: CancellationToken) -> None:
        pass


@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None, reason="MySQLdb installed")
def test_a_missing_driver_fails_host_start_with_what_to_install() -> None:
    """A host with a distributed job on a URL whose driver is missing: start() raises
    DatabaseUnavailable saying what to install, and starts no thread."""
    host = JobHost(
        [_Distributed(name="d", period=timedelta(minutes=1))],
        database="mysql+mysqldb://app:s3cret@db.example/app",
    )
    before = set(threading.enumerate())
    with pytest.raises(DatabaseUnavailable) as caught:
        host.start()
    started = [t.name for t in set(threading.enumerate()) - before]
    assert (False, [], False) == (host.running, started, "s3cret" in str(caught.value))
    assert str(caught.value).endswith(
        "its driver 'MySQLdb' is not installed: pip install mysqlclient"
    )


@pytest.mark.parametrize("how", ["uri", "permissions"])
def test_a_read_only_sqlite_file_outside_wal_mode_can_be_read(tmp_path: Path, how: str) -> None:
    """make_engine puts SQLite files in WAL mode at connect; a read-only connection cannot, and
    reads the file in its own journal mode instead of failing every statement."""
    import sqlite3

    from sqlalchemy import text

    from recurjobs.sql import make_engine

    path = tmp_path / "ro.db"
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.execute("CREATE TABLE t (x INTEGER)")
        raw.execute("INSERT INTO t VALUES (7)")
        raw.commit()
    if how == "uri":
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes read-only files")
        path.chmod(0o444)
        tmp_path.chmod(0o555)
        url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert 7 == conn.execute(text("SELECT x FROM t")).scalar_one()
    finally:
        engine.dispose()
        tmp_path.chmod(0o755)
