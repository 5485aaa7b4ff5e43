"""What ``start()`` checks before any thread starts: the database can be used as recurjobs uses it.

One attempt connects, creates the tables that are missing (or finds them), and writes a probe
row in a transaction that is rolled back, so it also proves the right to write. On MySQL and
MariaDB the probe repeats an UPDATE that changes nothing and needs ``rowcount == 1``: every
"exactly one of us" decision counts *matched* rows (``_claims``), which MySQL reports only when
the client sets ``CLIENT.FOUND_ROWS``. SQLAlchemy sets it, but an ``Engine`` whose
``connect_args`` carry their own ``client_flag`` replaces SQLAlchemy's, and then a repeated
heartbeat would read as "claim lost"; such an engine is refused here, before it can do harm.

Faults that no retry mends (refused credentials, an unknown database, a missing driver, an
SQLite path that cannot be opened or written, the FOUND_ROWS check) raise
:class:`~recurjobs.sql.DatabaseUnavailable` at once. Transient ones (connection refused, a
server starting up) are retried until ``timeout`` seconds have passed, then raised the same way.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, MetaData, Table, insert, update

from recurjobs._guard import log_quietly
from recurjobs.sql._bounds import bounded_waits
from recurjobs.sql._migrate import add_missing_columns, exact_names
from recurjobs.sql._retry import is_transient
from recurjobs.sql._shared import exclusive
from recurjobs.sql._tables import create_tables
from recurjobs.sql._urls import DatabaseUnavailable, masked, scrub

__all__ = ["check_ready"]

logger = logging.getLogger("recurjobs.sql")

_FIRST_WAIT = 0.1
_MAX_WAIT = 1.0
_LEAST_ATTEMPT = 2.0  # an attempt gets at least this long, even with start_timeout=0


def check_ready(
    engine: Engine,
    metadata: MetaData,
    jobs: Table,
    *,
    timeout: float,
    limit_ms: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Check (and prepare) the database of ``jobs`` or raise ``DatabaseUnavailable``; see above."""
    deadline = time.monotonic() + timeout
    wait = _FIRST_WAIT
    warned = False

    def attempt() -> None:
        create_tables(engine, metadata, limit_ms=limit_ms)
        add_missing_columns(engine, jobs, limit_ms=limit_ms)
        exact_names(engine, jobs, limit_ms=limit_ms)
        _probe(engine, jobs, limit_ms)

    while True:
        try:
            if not _within(attempt, max(deadline - time.monotonic(), _LEAST_ATTEMPT)):
                raise DatabaseUnavailable(
                    masked(engine),
                    f"still unreachable after {timeout:g}s: the server accepted the connection "
                    "but did not answer",
                )
            return
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            reason = _reason(engine, exc)
            if not is_transient(exc):
                raise DatabaseUnavailable(masked(engine), reason) from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseUnavailable(
                    masked(engine), f"still unreachable after {timeout:g}s: {reason}"
                ) from exc
            if not warned:
                log_quietly(
                    logging.WARNING,
                    "waiting up to %gs for the database %s: %s",
                    timeout,
                    masked(engine),
                    reason,
                    on=logger,
                )
                warned = True
            sleep(min(wait, left))
            wait = min(wait * 2, _MAX_WAIT)


def _within(attempt: Callable[[], None], seconds: float) -> bool:
    """Run ``attempt`` on a thread of its own for at most ``seconds``: False when it has not
    returned by then (a server that accepts connections and never answers holds a driver's
    read for as long as its own timeouts, longer than ``start_timeout``); what it raised is
    raised here. The thread is left to end on the driver's timeouts."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            attempt()
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name="recurjobs-start-check", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        return False
    error = outcome[0]
    if error is not None:
        raise error
    return True


def _probe(engine: Engine, jobs: Table, limit_ms: int) -> None:
    """Insert a probe row, repeat an UPDATE that changes nothing, roll it all back."""
    name = f"recurjobs-probe-{secrets.token_hex(8)}"
    row = {
        "name": name,
        "period_ms": 1,
        "aligned": False,
        "last_run_ms": 0,
        "running": False,
        "due_now": False,
    }
    unchanged = update(jobs).where(jobs.c.name == name).values(due_now=False)
    with exclusive(engine), engine.connect() as conn:
        try:
            with bounded_waits(conn, limit_ms):
                conn.execute(insert(jobs).values(**row))
                matched = conn.execute(unchanged).rowcount
        finally:
            conn.rollback()
    if matched != 1:
        raise DatabaseUnavailable(masked(engine), _not_matched(engine, matched))


def _not_matched(engine: Engine, matched: int) -> str:
    if engine.dialect.name in ("mysql", "mariadb"):
        return (
            "the connection reports changed rows, not matched rows (an UPDATE that changed "
            f"nothing counted {matched}): CLIENT.FOUND_ROWS is not set, most likely because the "
            "engine's connect_args replace client_flag; add CLIENT.FOUND_ROWS to it "
            "(pymysql.constants.CLIENT.FOUND_ROWS) or leave client_flag out"
        )
    return f"an UPDATE of one row reported rowcount {matched}; recurjobs needs matched rows"


def _reason(engine: Engine, exc: BaseException) -> str:
    """One line saying why, from the driver's own message, with the password scrubbed."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())[:300]
    hint = _sqlite_hint(engine) if engine.dialect.name == "sqlite" else None
    line = f"{line} ({hint})" if hint else line
    return scrub(line, engine)


def _sqlite_hint(engine: Engine) -> str | None:
    """What is wrong with an SQLite file's path, when something visibly is."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        return f"{path} is a directory"
    if not os.path.isdir(folder):
        return f"the directory {folder} does not exist"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    if not os.access(folder, os.W_OK):
        return f"the directory {folder} is not writable (SQLite needs it for its journal)"
    return None
