"""A server that accepts connections and never answers (gone without closing them, a proxy
that keeps the socket): start() still fails within start_timeout, and the engines recurjobs
makes bound how long such a server can hold a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import make_url

from recurjobs import DistributedJobSettings, JobHost
from recurjobs.sql import DatabaseUnavailable
from recurjobs.sql._urls import _silence_bounds, masked, scrub
from tests.sql.helpers import Job


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose server accepts every connection and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_start_against_a_silent_server_fails_within_start_timeout(
    silent_port: int, scheme: str
) -> None:
    """start_timeout=1: DatabaseUnavailable after about the least time an attempt is given
    (2 s), not after the driver's own timeouts (10-30 s, or never for a MySQL handshake)."""
    settings = DistributedJobSettings(table_prefix="silent_")
    url = f"{scheme}://u:secret-pw@127.0.0.1:{silent_port}/db"
    host = JobHost([Job("a")], database=url, distributed=settings, start_timeout=1)
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="did not answer") as caught:
        host.start()
    assert time.monotonic() - began < 6
    assert "secret-pw" not in str(caught.value)
    assert False is host.running


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "mysql+pymysql://u@h/db",
            {"connect_timeout": 10, "read_timeout": 30, "write_timeout": 30},
        ),
        ("mysql+pymysql://u@h/db?read_timeout=5", {"connect_timeout": 10, "write_timeout": 30}),
        (
            "postgresql+psycopg://u@h/db",
            {
                "connect_timeout": 10,
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": 30_000,
            },
        ),
        ("sqlite:///x.db", {}),
    ],
)
def test_engines_bound_a_silent_server(url: str, expected: dict[str, int]) -> None:
    """PyMySQL gets read and write timeouts, psycopg TCP keepalives and a TCP user timeout;
    a value the URL sets itself is kept."""
    assert expected == _silence_bounds(make_url(url), 5000)


def test_a_password_in_the_query_is_masked_and_scrubbed() -> None:
    """?password=... (and sslpassword) never shows in a message."""
    url = "postgresql+psycopg://u@h/db?sslmode=require&password=Hunter22&sslpassword=Key-99"
    shown = masked(url)
    assert ("Hunter22" in shown, "Key-99" in shown, "sslmode=require" in shown) == (
        False,
        False,
        True,
    )
    assert "failed for *** and ***" == scrub("failed for Hunter22 and Key-99", url)


def test_a_bad_port_is_a_value_error_at_construction() -> None:
    """Port 99999 is refused at JobHost(), naming database."""
    with pytest.raises(ValueError, match="database"):
        JobHost(database="postgresql+psycopg://u:p@127.0.0.1:99999/x")


def test_a_parameter_the_driver_refuses_is_a_value_error_naming_database() -> None:
    """?connect_timeout=abc: a ValueError naming database and the masked URL, not a bare
    int() error."""
    settings = DistributedJobSettings(delay=timedelta(0))
    host = JobHost(
        [Job("a")],
        database="mysql+pymysql://u:pw-secret@127.0.0.1:1/x?connect_timeout=abc",
        distributed=settings,
    )
    with pytest.raises(ValueError, match="database has a parameter the driver refuses") as caught:
        host.start()
    assert "pw-secret" not in str(caught.value)


def test_an_option_libpq_refuses_fails_start_at_once() -> None:
    """?sslmode=bogus is refused by libpq before it connects: start() fails at once with
    DatabaseUnavailable (not retried as an outage for start_timeout), password masked."""
    settings = DistributedJobSettings(table_prefix="silent_")
    url = "postgresql+psycopg://u:pw-secret@127.0.0.1:1/db?sslmode=bogus"
    host = JobHost([Job("a")], database=url, distributed=settings, start_timeout=10)
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="sslmode") as caught:
        host.start()
    assert time.monotonic() - began < 5
    assert "pw-secret" not in str(caught.value)
