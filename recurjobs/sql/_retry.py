"""Retrying database steps through transient faults (tenacity), with bounded total time.

A transient fault is one that a second attempt a moment later may not meet: a connection that
was lost or refused, a deadlock or lock wait chosen as victim, a serialization failure, SQLite's
"database is locked". Anything else (a syntax error, a missing table, a constraint) is raised at
once.

A lock or statement timeout (:func:`is_lock_timeout`) is transient too, but it is not repeated
at once: the statement already waited its whole bound (``_bounds``), so another attempt now
would only multiply the wait. The caller's next round (the next poll, the next heartbeat) is
the retry.

Retrying writes is safe here because every write is a single guarded statement that can be
repeated: heartbeat and trigger write the same thing again; a claim repeats with the *same*
claim id and its guard also accepts a row that already carries that id, so when the first
attempt committed but the acknowledgement was lost, the retry finds the claim already ours
instead of orphaning it (see ``_claims``); a finish whose first attempt committed finds its
claim id gone and reports "not ours", which only costs a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from recurjobs._guard import log_quietly

__all__ = ["RetryPolicy", "is_lock_timeout", "is_transient"]

logger = logging.getLogger("recurjobs.sql")

T = TypeVar("T")

# MySQL/MariaDB error codes: lock wait timeout, deadlock, server gone / lost connection,
# can't connect, server shutdown in progress, too many connections, connection killed.
_MYSQL_TRANSIENT = {1205, 1213, 2006, 2013, 2002, 2003, 1053, 1040, 1927}
# PostgreSQL SQLSTATE classes/codes: connection exceptions, serialization failure, deadlock,
# lock not available, admin shutdown / crash shutdown / cannot connect now, too many connections.
_PG_TRANSIENT_PREFIXES = ("08",)
_PG_TRANSIENT = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300"}
_SQLITE_LOCKED = ("database is locked", "database table is locked")
# Refusals that no second attempt changes, recognised by their text where the driver gives no
# code (psycopg 3 reports connection failures with sqlstate None): wrong password or user,
# unknown database, no permission.
_REFUSED = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "not permitted to log in",
    "permission denied",
    "access denied",
    # libpq refuses a connection option before connecting (port 99999, sslmode=bogus)
    "invalid port number",
    "invalid sslmode value",
    "invalid connection option",
    "invalid integer value",
    "invalid value for parameter",
)
_SQLITE_TRANSIENT = (*_SQLITE_LOCKED, "disk i/o error")
# Waited out its bound: PostgreSQL lock_not_available and query_canceled (statement_timeout);
# MySQL/MariaDB lock wait timeout, MySQL max_execution_time, MariaDB max_statement_time.
_PG_LOCK_TIMEOUT = {"55P03", "57014"}
_MYSQL_LOCK_TIMEOUT = {1205, 3024, 1969}


def _mysql_errno(orig: BaseException | None) -> int | None:
    """The error number of a MySQL driver's error: ``args`` is ``(errno, message)``.

    Checked before ``sqlstate``: PyMySQL also carries a SQLSTATE (``HY000`` for most errors),
    which says far less than the number.
    """
    args = getattr(orig, "args", ())
    return args[0] if args and type(args[0]) is int else None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a database fault worth another attempt a moment later."""
    if isinstance(exc, (DisconnectionError, PoolTimeoutError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    errno = _mysql_errno(orig)
    if errno is not None:
        return errno in _MYSQL_TRANSIENT or errno == 0  # 0: PyMySQL's closed connection
    code = getattr(orig, "sqlstate", None)  # psycopg 3
    if isinstance(code, str):
        return code in _PG_TRANSIENT or code.startswith(_PG_TRANSIENT_PREFIXES)
    message = str(orig).lower()
    if any(text in message for text in _SQLITE_TRANSIENT):
        return True
    if any(text in message for text in _REFUSED):
        return False
    # Unknown driver: a lost connection surfaces as OperationalError or InterfaceError.
    return (
        isinstance(exc, (OperationalError, InterfaceError))
        and "sqlite" not in type(orig).__module__
    )


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a statement that gave up waiting for a lock (or ran out of time)."""
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    orig = exc.orig
    errno = _mysql_errno(orig)
    if errno is not None:
        return errno in _MYSQL_LOCK_TIMEOUT
    code = getattr(orig, "sqlstate", None)  # psycopg 3
    if isinstance(code, str):
        return code in _PG_LOCK_TIMEOUT
    message = str(orig).lower()
    return "sqlite" in type(orig).__module__ and any(text in message for text in _SQLITE_LOCKED)


def _retried(exc: BaseException) -> bool:
    return is_transient(exc) and not is_lock_timeout(exc)


@dataclass(frozen=True)
class RetryPolicy:
    """How one database step is retried: exponential back-off, bounded in time and attempts.

    ``sleep`` is injected (tests pass a recorder instead of ``time.sleep``).
    """

    max_time: float = 5.0
    max_attempts: int = 6
    initial_wait: float = 0.05
    max_wait: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def call(self, what: str, where: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` and return its result, retrying transient faults; log each retry.

        Lock and statement timeouts are raised at once (see the module's docstring).

        ``what`` names the step and ``where`` the (masked) database URL for the log lines. The
        last fault is raised when the retries give up.
        """

        def log_retry(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            log_quietly(
                logging.WARNING,
                "%s on %s failed (attempt %d), retrying: %s",
                what,
                where,
                state.attempt_number,
                _first_line(exc),
                on=logger,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retried),
            stop=tenacity.stop_after_delay(self.max_time)
            | tenacity.stop_after_attempt(self.max_attempts),
            # Exponential from initial_wait up to max_wait, plus jitter so hosts that failed
            # together do not retry in lockstep.
            wait=tenacity.wait_exponential(multiplier=self.initial_wait, max=self.max_wait)
            + tenacity.wait_random(0, self.initial_wait),
            before_sleep=log_retry,
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)


def _first_line(exc: BaseException | None) -> str:
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "no result"
    return text.splitlines()[0][:300]
