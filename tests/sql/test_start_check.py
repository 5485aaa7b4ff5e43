"""What ``JobStore.check_ready`` (run by ``JobHost.start()``) refuses, on real servers: bad
configuration fails at once with ``DatabaseUnavailable`` naming the masked URL and the reason;
an unreachable server fails after the timeout; a MySQL engine counting changed rows is refused."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, make_url

from recurjobs.sql import DatabaseUnavailable, JobStore, masked
from tests.dbs import TestDatabase
from tests.sql.helpers import Job, make_due

LEASE = timedelta(minutes=5)
BAD_PASSWORD = "Wr0ng@pa:ss/word"  # raw "@", ":" and "/" once encoded into the URL


# A permanent error fails "at once": well inside the patience given, even on a busy machine
# (a MySQL login refusal took 8 s of wall time there), instead of retrying until the end.
PATIENCE = 45.0  # below the 60 s test timeout, so a test that waits it out fails as itself
AT_ONCE = PATIENCE / 3


def with_parts(url: str, **parts: object) -> str:
    """``url`` with some parts replaced (the password URL-encoded), rendered in full."""
    return make_url(url).set(**parts).render_as_string(hide_password=False)  # type: ignore[arg-type]


def refusal(database: object, timeout: float = 5.0) -> tuple[DatabaseUnavailable, float]:
    """The DatabaseUnavailable that check_ready raises for ``database``, and how long it took."""
    store = JobStore(database, table_prefix="t_never_used_")  # type: ignore[arg-type]
    began = time.monotonic()
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            store.check_ready(timeout)
        return caught.value, time.monotonic() - began
    finally:
        store.dispose()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_only(db: TestDatabase) -> None:
    """Skip the SQLite variant of a test about servers."""
    if db.backend == "sqlite":
        pytest.skip("SQLite has no server, credentials or port")


def test_a_usable_database_passes_and_gets_its_table(db: TestDatabase) -> None:
    """A reachable database with the right credentials passes, its table is created, and the
    rolled-back probe leaves no row behind."""
    store = JobStore(db.url, table_prefix=db.table_prefix)
    store.check_ready(5)
    store.check_ready(5)  # again, with the table there
    assert (True, []) == (inspect(store.engine).has_table(store.jobs.name), store.rows())
    store.dispose()


def test_a_wrong_password_fails_at_once(db: TestDatabase) -> None:
    """Refused credentials raise at once (no retrying for the timeout), with the URL masked and
    no part of the password in the message."""
    server_only(db)
    url = with_parts(db.url, password=BAD_PASSWORD)
    error, took = refusal(url, timeout=PATIENCE)
    message = str(error)
    expected_reason = {"postgres": "password authentication failed", "mysql": "Access denied"}
    assert (True, True) == (
        message.startswith(f"cannot use the database {masked(url)}: "),
        expected_reason[db.backend] in message,
    ), message
    assert [] == [part for part in ("Wr0ng", "pa:ss", "ss/word", "%40") if part in message]
    assert took < AT_ONCE, took


def test_an_unknown_database_fails_at_once(db: TestDatabase) -> None:
    """A database name the server does not know raises at once, naming the reason, with the
    URL masked."""
    server_only(db)
    name = make_url(db.url).database
    url = with_parts(db.url, database=f"{name}_no_such_db")
    error, took = refusal(url, timeout=PATIENCE)
    expected_reason = {"postgres": "does not exist", "mysql": "Unknown database"}
    assert True is (expected_reason[db.backend] in str(error)), str(error)
    assert True is str(error).startswith(f"cannot use the database {masked(url)}: "), str(error)
    assert took < AT_ONCE, took


@pytest.mark.slow
def test_an_unreachable_server_fails_after_the_timeout(db: TestDatabase) -> None:
    """Connection refused is retried for the timeout (1 s here), then raised saying so."""
    server_only(db)
    error, took = refusal(with_parts(db.url, host="127.0.0.1", port=closed_port()), timeout=1.0)
    assert True is ("still unreachable after 1s" in str(error)), str(error)
    assert 0.9 < took < 1.0 + AT_ONCE, took


def test_an_sqlite_directory_fails_at_once(tmp_path: Path) -> None:
    """An SQLite URL naming a directory raises at once, saying it is a directory."""
    error, took = refusal(f"sqlite:///{tmp_path}", timeout=PATIENCE)
    assert (f"sqlite:///{tmp_path}", True) == (
        error.url,
        error.reason.endswith(f"({tmp_path} is a directory)"),
    ), str(error)
    assert took < AT_ONCE, took


def test_an_sqlite_file_in_a_missing_directory_fails_at_once(tmp_path: Path) -> None:
    """An SQLite file whose directory does not exist raises at once, naming the directory."""
    error, took = refusal(f"sqlite:///{tmp_path}/missing/jobs.db", timeout=PATIENCE)
    assert True is (f"the directory {tmp_path}/missing does not exist" in str(error)), str(error)
    assert took < AT_ONCE, took


def test_an_sqlite_file_under_proc_fails_at_once() -> None:
    """An SQLite file where no file can be made (``/proc``) raises at once."""
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux /proc")
    error, took = refusal("sqlite:////proc/recurjobs-test/jobs.db", timeout=PATIENCE)
    assert True is ("unable to open database file" in str(error)), str(error)
    assert took < AT_ONCE, took


def test_an_sqlite_file_in_a_read_only_directory_fails_at_once(tmp_path: Path) -> None:
    """An SQLite file in a directory the process may not write raises at once, saying so."""
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        error, _ = refusal(f"sqlite:///{folder}/jobs.db", timeout=PATIENCE)
    finally:
        folder.chmod(stat.S_IRWXU)
    assert True is (f"the directory {folder} is not writable" in str(error)), str(error)


def test_a_read_only_sqlite_file_fails_at_once(tmp_path: Path) -> None:
    """An existing SQLite file whose tables exist but that cannot be written is refused: the
    probe write proves it, instead of every later claim failing."""
    path = tmp_path / "jobs.db"
    JobStore(f"sqlite:///{path}", table_prefix="t_never_used_").create_schema()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    error, took = refusal(read_only, timeout=PATIENCE)
    assert True is ("readonly database" in str(error)), str(error)
    assert took < AT_ONCE, took


def test_mysql_engine_without_found_rows_is_refused(db: TestDatabase) -> None:
    """An engine whose connect_args replace client_flag (losing CLIENT.FOUND_ROWS) counts
    changed rows: a repeated heartbeat would read as "claim lost", so it is refused, by name."""
    if db.backend != "mysql":
        pytest.skip("only MySQL/MariaDB can count changed rows")
    engine = create_engine(db.url, connect_args={"client_flag": 0})
    store = JobStore(engine, table_prefix=db.table_prefix)
    store.create_schema()
    store.ensure([Job("a")])
    make_due(store, "a")
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    # What goes wrong without the check: the second trigger changes nothing and reads False.
    assert [True, False] == [store.trigger("a"), store.trigger("a")]
    with pytest.raises(DatabaseUnavailable, match=r"CLIENT\.FOUND_ROWS"):
        store.check_ready(5)
    store.dispose()
    engine.dispose()


def test_mysql_engine_keeping_found_rows_passes(db: TestDatabase) -> None:
    """An engine whose own client_flag includes CLIENT.FOUND_ROWS is accepted, and repeated
    writes that change nothing still count."""
    if db.backend != "mysql":
        pytest.skip("only MySQL/MariaDB can count changed rows")
    from pymysql.constants import CLIENT

    engine = create_engine(db.url, connect_args={"client_flag": CLIENT.FOUND_ROWS})
    store = JobStore(engine, table_prefix=db.table_prefix)
    store.check_ready(5)
    store.ensure([Job("a")])
    make_due(store, "a")
    claim = store.try_claim("a", owner="h1", lease=LEASE)
    assert claim is not None
    assert [True, True] == [store.trigger("a"), store.trigger("a")]
    store.dispose()
    engine.dispose()


def test_host_start_fails_on_a_wrong_password(db: TestDatabase) -> None:
    """``JobHost.start()`` raises the refusal itself and starts no thread: a wrong password
    never "starts" into a loop of warnings."""
    server_only(db)
    from recurjobs import DistributedJobSettings, JobHost

    url = with_parts(db.url, password=BAD_PASSWORD)
    host = JobHost(
        [Job("a", timedelta(seconds=10))],
        database=url,
        distributed=DistributedJobSettings(table_prefix=db.table_prefix),
        start_timeout=PATIENCE,
    )
    before = set(threading.enumerate())
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        host.start()
    took = time.monotonic() - began
    threads = [t.name for t in set(threading.enumerate()) - before]
    assert (False, [], True) == (host.running, threads, masked(url) in str(caught.value))
    assert took < AT_ONCE, took
