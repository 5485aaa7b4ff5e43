"""Which database faults are retried, and how the retry policy behaves (no database needed)."""

from __future__ import annotations

import logging
import sqlite3

import psycopg.errors
import pymysql
import pytest
from sqlalchemy.exc import (
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)

from recurjobs.sql import RetryPolicy, is_lock_timeout, is_transient, masked

URL = "postgresql+psycopg://user:s3cret@db.example:5432/app"


def wrapped(kind: type[Exception], orig: Exception) -> Exception:
    """``orig`` as SQLAlchemy raises it (``kind`` is a DBAPIError subclass)."""
    return kind("UPDATE t SET x = 1", {}, orig)


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(OperationalError, sqlite3.OperationalError("database is locked")),
        wrapped(OperationalError, pymysql.err.OperationalError(1213, "Deadlock found")),
        wrapped(OperationalError, pymysql.err.OperationalError(1205, "Lock wait timeout")),
        wrapped(OperationalError, pymysql.err.OperationalError(2013, "Lost connection")),
        wrapped(OperationalError, pymysql.err.OperationalError(2003, "Can't connect")),
        wrapped(InterfaceError, pymysql.err.InterfaceError(0, "")),
        wrapped(OperationalError, psycopg.errors.SerializationFailure("could not serialize")),
        wrapped(OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")),
        wrapped(OperationalError, psycopg.errors.AdminShutdown("terminating connection")),
        wrapped(OperationalError, psycopg.OperationalError("connection refused")),
        DisconnectionError("pre-ping failed"),
    ],
    ids=lambda e: str(getattr(e, "orig", e))[:24],
)
def test_transient_faults_are_retried(exc: Exception) -> None:
    """Lost or refused connections, deadlocks, lock waits and SQLite busy count as transient."""
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(OperationalError, sqlite3.OperationalError("no such table: recurjobs_jobs")),
        wrapped(ProgrammingError, pymysql.err.ProgrammingError(1146, "Table doesn't exist")),
        wrapped(IntegrityError, pymysql.err.IntegrityError(1062, "Duplicate entry")),
        wrapped(ProgrammingError, psycopg.errors.UndefinedTable("relation does not exist")),
        wrapped(
            OperationalError,
            psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
                'FATAL:  password authentication failed for user "app"'
            ),
        ),
        wrapped(
            OperationalError,
            psycopg.OperationalError('connection failed: FATAL:  database "app" does not exist'),
        ),
        wrapped(OperationalError, pymysql.err.OperationalError(1045, "Access denied for user")),
        wrapped(OperationalError, pymysql.err.OperationalError(1049, "Unknown database 'x'")),
        wrapped(OperationalError, sqlite3.OperationalError("unable to open database file")),
        ValueError("not a database error"),
    ],
    ids=lambda e: str(getattr(e, "orig", e))[:24],
)
def test_permanent_faults_are_not_retried(exc: Exception) -> None:
    """Missing tables, constraint violations, refused credentials, unknown databases and
    non-database errors are raised at once (psycopg reports connection refusals without a
    SQLSTATE, so its message decides)."""
    assert not is_transient(exc)


def test_a_lost_connection_is_transient_whatever_the_driver_says() -> None:
    """An error that invalidated the connection is always worth another attempt."""
    exc = wrapped(ProgrammingError, ValueError("odd driver"))
    assert isinstance(exc, ProgrammingError)
    exc.connection_invalidated = True
    assert is_transient(exc)


def test_policy_retries_transient_faults_then_returns(caplog: pytest.LogCaptureFixture) -> None:
    """A step that fails transiently twice succeeds on the third attempt; each retry is logged
    at WARNING with the URL's password masked."""
    sleeps: list[float] = []
    attempts: list[int] = []
    fault = wrapped(OperationalError, pymysql.err.OperationalError(1213, "Deadlock found"))

    def step() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise fault
        return "done"

    policy = RetryPolicy(sleep=sleeps.append)
    with caplog.at_level(logging.WARNING, logger="recurjobs.sql"):
        assert "done" == policy.call("claiming a job", masked(URL), step)
    assert 3 == len(attempts)
    assert 2 == len(sleeps)
    assert all(0 < s <= policy.max_wait + policy.initial_wait for s in sleeps)
    assert 2 == len(caplog.records)
    assert all("s3cret" not in r.getMessage() for r in caplog.records)
    assert "***" in caplog.records[0].getMessage()


def test_policy_gives_up_after_its_attempts_and_raises_the_last_fault() -> None:
    """When the retries are used up the last fault reaches the caller."""
    fault = wrapped(OperationalError, psycopg.errors.SerializationFailure("could not serialize"))
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        raise fault

    with pytest.raises(OperationalError):
        RetryPolicy(max_attempts=4, sleep=lambda s: None).call("x", "y", step)
    assert 4 == len(calls)


def test_policy_raises_permanent_faults_at_once() -> None:
    """A permanent fault is not retried."""
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        raise wrapped(ProgrammingError, psycopg.errors.UndefinedTable("no table"))

    with pytest.raises(ProgrammingError):
        RetryPolicy(sleep=lambda s: None).call("x", "y", step)
    assert 1 == len(calls)


LOCK_TIMEOUTS = [
    wrapped(OperationalError, sqlite3.OperationalError("database is locked")),
    wrapped(OperationalError, pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")),
    wrapped(
        OperationalError,
        pymysql.err.OperationalError(1205, "Lock wait timeout exceeded", sqlstate="HY000"),
    ),
    wrapped(OperationalError, psycopg.errors.LockNotAvailable("canceling statement: lock timeout")),
    wrapped(OperationalError, psycopg.errors.QueryCanceled("canceling statement: timeout")),
]


@pytest.mark.parametrize("exc", LOCK_TIMEOUTS, ids=lambda e: str(getattr(e, "orig", e))[:24])
def test_lock_and_statement_timeouts_are_recognised(exc: Exception) -> None:
    """A statement that waited out its lock or statement bound is a lock timeout, and
    transient (the next round may find the lock gone)."""
    assert (True, True) == (is_lock_timeout(exc), is_transient(exc))


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(OperationalError, pymysql.err.OperationalError(1213, "Deadlock found")),
        wrapped(OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")),
        wrapped(OperationalError, sqlite3.OperationalError("no such table: x")),
        wrapped(OperationalError, pymysql.err.OperationalError(2013, "Lost connection")),
        ValueError("database is locked"),
    ],
    ids=lambda e: str(getattr(e, "orig", e))[:24],
)
def test_other_faults_are_no_lock_timeouts(exc: Exception) -> None:
    """Deadlocks, lost connections and other errors are not lock timeouts."""
    assert not is_lock_timeout(exc)


@pytest.mark.parametrize("exc", LOCK_TIMEOUTS, ids=lambda e: str(getattr(e, "orig", e))[:24])
def test_policy_does_not_repeat_a_lock_timeout(exc: Exception) -> None:
    """A statement that already waited its whole bound is raised at once, not waited again."""
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        raise exc

    with pytest.raises(OperationalError):
        RetryPolicy(sleep=lambda s: None).call("x", "y", step)
    assert 1 == len(calls)


def test_masked_hides_passwords() -> None:
    """masked() renders a URL with its password replaced, and never echoes garbage."""
    assert "postgresql+psycopg://user:***@db.example:5432/app" == masked(URL)
    assert "<unparsable database URL>" == masked("not a url at all")
