"""Tests for recurjobs.sql.DatabaseServerRoles: server-role election through the database.

Most tests drive one election round at a time with ``touch_once()`` (no threads, no sleeps);
the ``multiprocess`` tests run real servers (tests/sql/election_worker.py) against SQLite,
PostgreSQL and MariaDB and measure fail-over.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from recurjobs import JobHost, ServerRole
from recurjobs._notifications import Publisher, ServerRoleChanged
from recurjobs.sql._claims import guarded_update
from recurjobs.sql._clockexpr import db_now_ms
from recurjobs.sql._election import DatabaseServerRoles, default_identity
from recurjobs.sql._servers_table import PUBLISHER
from recurjobs.testing import ManualClock
from tests.dbs import TestDatabase
from tests.sql.helpers import race

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "election_worker.py"

INTERVAL = timedelta(seconds=0.2)
# One touch is a few statements, but on a machine busy with other tests it took over a second:
# a role is valid for stale_timeout from when its touch was sent, so keep that well above it.
# Tests that need a server to go stale move its rows into the past (age()) instead of waiting.
STALE = timedelta(seconds=5)
RETENTION = timedelta(seconds=10)
# The worker processes below wait out staleness in real time: shorter, with generous waits.
CLUSTER_INTERVAL, CLUSTER_STALE = 0.4, 2.0
STARTUP = 60.0  # until worker processes on a busy machine have reported

MakeRoles = Callable[..., DatabaseServerRoles]


@pytest.fixture
def make_roles(db: TestDatabase) -> Iterator[MakeRoles]:
    """DatabaseServerRoles on the test's database and prefix, disposed at teardown."""
    made: list[DatabaseServerRoles] = []

    def factory(**kwargs: Any) -> DatabaseServerRoles:
        options: dict[str, Any] = {
            "table_prefix": db.table_prefix,
            "touch_interval": INTERVAL,
            "stale_timeout": STALE,
            "retention": RETENTION,
        }
        options.update(kwargs)
        roles = DatabaseServerRoles(db.url, **options)
        made.append(roles)
        return roles

    yield factory
    for roles in made:
        roles.stop()
        roles.join(5)
        roles.dispose()


def lease(roles: DatabaseServerRoles) -> dict[str, Any]:
    """The publisher lease row as a dict."""
    with roles.engine.connect() as conn:
        row = conn.execute(select(roles.leases).where(roles.leases.c.name == PUBLISHER)).one()
    return dict(row._mapping)


def servers(roles: DatabaseServerRoles) -> dict[str, dict[str, Any]]:
    """Every row of the servers table, by identity."""
    with roles.engine.connect() as conn:
        rows = conn.execute(select(roles.servers)).all()
    return {r.identity: dict(r._mapping) for r in rows}


def age(roles: DatabaseServerRoles, identity: str, by: timedelta) -> None:
    """Move a server's last sign of life (and its lease renewal, if it holds it) into the past."""
    shift = round(by / timedelta(milliseconds=1))
    s, le = roles.servers.c, roles.leases.c
    with roles.engine.begin() as conn:
        conn.execute(
            update(roles.servers)
            .where(s.identity == identity)
            .values(last_seen_ms=s.last_seen_ms - shift)
        )
        conn.execute(
            update(roles.leases)
            .where(le.holder == identity)
            .values(renewed_ms=le.renewed_ms - shift)
        )


# ----------------------------------------------------------------- validation, no database
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"database": 42}, TypeError, "database must be a URL or an SQLAlchemy Engine, got 42"),
        ({"identity": 7}, TypeError, "identity must be a str or None, got 7"),
        ({"identity": ""}, ValueError, "identity must be 1-255 characters, got ''"),
        ({"identity": "x" * 256}, ValueError, "identity must be 1-255 characters"),
        ({"address": b"h"}, TypeError, "address must be a str or None, got b'h'"),
        ({"touch_interval": 5}, TypeError, "touch_interval must be a datetime.timedelta, got 5"),
        (
            {"touch_interval": timedelta(0)},
            ValueError,
            "touch_interval must be greater than zero",
        ),
        (
            {"stale_timeout": timedelta(seconds=-1)},
            ValueError,
            "stale_timeout must not be negative",
        ),
        (
            {"touch_interval": timedelta(seconds=60), "stale_timeout": timedelta(seconds=60)},
            ValueError,
            r"stale_timeout must exceed touch_interval \(datetime.timedelta\(seconds=60\)\), "
            r"got datetime.timedelta\(seconds=60\)",
        ),
        (
            {"retention": timedelta(seconds=120)},
            ValueError,
            r"retention must exceed stale_timeout .*, got datetime.timedelta\(seconds=120\)",
        ),
        ({"retention": "1d"}, TypeError, "retention must be a datetime.timedelta, got '1d'"),
        ({"table_prefix": "1x"}, ValueError, "table_prefix must be 1-40 letters.*got '1x'"),
        ({"table_prefix": None}, TypeError, "table_prefix must be a str, got None"),
    ],
)
def test_bad_arguments_are_rejected_at_the_call(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Every bad argument raises TypeError or ValueError naming the parameter and the value."""
    arguments: dict[str, Any] = {"database": "sqlite://", **kwargs}
    database = arguments.pop("database")
    with pytest.raises(error, match=message):
        DatabaseServerRoles(database, **arguments)


def test_start_rejects_a_bad_clock_or_publisher() -> None:
    """start() names a clock or publisher of the wrong kind."""
    roles = DatabaseServerRoles("sqlite://")
    with pytest.raises(TypeError, match="clock must provide now"):
        roles.start(clock=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="publisher must be a Publisher or None, got 'p'"):
        roles.start(publisher="p")  # type: ignore[arg-type]


def test_default_identity_is_host_pid_and_random_suffix() -> None:
    """The default identity is host name, process id and 8 random hex digits."""
    import socket

    pattern = rf"{re.escape(socket.gethostname())}:{os.getpid()}:[0-9a-f]{{8}}"
    roles = DatabaseServerRoles("sqlite://")
    assert re.fullmatch(pattern, roles.identity) is not None
    assert default_identity() != default_identity()


def test_role_is_unknown_before_the_first_touch() -> None:
    """Before any touch the role is UNKNOWN, and asking for it never touches the database."""
    # Port 1 is closed: any I/O would fail, so calling returns at once only because there is none.
    roles = DatabaseServerRoles("postgresql+psycopg://u:pw@127.0.0.1:1/none")
    assert (ServerRole.UNKNOWN, ServerRole.UNKNOWN) == (roles(), roles.role)


def test_failed_touch_is_logged_with_the_password_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A touch that cannot reach the database logs a warning without the password; the role
    stays UNKNOWN and nothing is raised."""
    roles = DatabaseServerRoles(
        "postgresql+psycopg://user:s3cret-pw@127.0.0.1:1/none",
        touch_interval=INTERVAL,
        stale_timeout=STALE,
    )
    with caplog.at_level(logging.WARNING, logger="recurjobs.sql"):
        role = roles.touch_once()
    text = caplog.text
    assert (ServerRole.UNKNOWN, False, True) == (
        role,
        "s3cret-pw" in text,
        "touching the servers table for" in text and "user:***@127.0.0.1:1/none" in text,
    )


# ------------------------------------------------------------------ one round at a time
def test_lone_server_is_single_and_holds_the_lease(make_roles: MakeRoles) -> None:
    """A server alone is SINGLE and holds the publisher lease, so a newcomer finds it taken."""
    roles = make_roles(address="web-1")
    role = roles.touch_once()
    row = servers(roles)[roles.identity]
    assert (ServerRole.SINGLE, roles.identity, True, "web-1") == (
        role,
        lease(roles)["holder"],
        bool(row["active"]),
        row["address"],
    )


def test_newcomer_is_subscriber_and_holder_becomes_publisher(make_roles: MakeRoles) -> None:
    """A second server is SUBSCRIBER at once; the holder turns SCHEDULING_PUBLISHER next touch."""
    first, second = make_roles(), make_roles()
    roles = [first.touch_once(), second.touch_once(), first.touch_once(), second.touch_once()]
    expected = [
        ServerRole.SINGLE,
        ServerRole.SUBSCRIBER,
        ServerRole.SCHEDULING_PUBLISHER,
        ServerRole.SUBSCRIBER,
    ]
    assert expected == roles


def test_a_server_that_may_not_publish_never_holds_the_lease(make_roles: MakeRoles) -> None:
    """A server whose ``_eligible`` says no (a host with a main instance lock sets it: a process
    that is not its machine's main instance) stays SUBSCRIBER even alone, gives the lease back
    if it held it, and another server takes it at its next touch."""
    may = {"now": False}
    first, second = make_roles(), make_roles()
    first._eligible = lambda: may["now"]
    assert ServerRole.SUBSCRIBER == first.touch_once()
    assert None is lease(first)["holder"]
    may["now"] = True
    assert ServerRole.SINGLE == first.touch_once()
    may["now"] = False  # lost its main instance lock
    assert ServerRole.SUBSCRIBER == first.touch_once()
    assert ServerRole.SINGLE == second.touch_once()  # the first no longer counts as live


def test_processes_that_are_not_main_do_not_count_as_live_servers(make_roles: MakeRoles) -> None:
    """One machine, three worker processes: the main instance campaigns, the other two may not
    publish. They stay SUBSCRIBER with their rows seen but inactive, so the main instance is
    SINGLE (a job limited to SINGLE runs on a lone machine however many workers it has). A
    second machine's main instance makes it SCHEDULING_PUBLISHER as before."""
    main, worker1, worker2 = make_roles(), make_roles(), make_roles()
    worker1._eligible = worker2._eligible = lambda: False
    assert ServerRole.SUBSCRIBER == worker1.touch_once()
    assert ServerRole.SUBSCRIBER == worker2.touch_once()
    assert ServerRole.SINGLE == main.touch_once()
    rows = servers(main)
    assert (True, False, False) == tuple(
        rows[r.identity]["active"] for r in (main, worker1, worker2)
    )
    other_machine = make_roles()
    assert ServerRole.SUBSCRIBER == other_machine.touch_once()
    assert ServerRole.SCHEDULING_PUBLISHER == main.touch_once()


def test_racing_first_touches_elect_exactly_one_holder(make_roles: MakeRoles) -> None:
    """Four servers touching an empty database at the same instant all create the tables
    without error and exactly one of them gets the lease."""
    contenders = [make_roles() for _ in range(4)]
    results = race(*(c.touch_once for c in contenders))
    holders = [r for r in results if r in (ServerRole.SINGLE, ServerRole.SCHEDULING_PUBLISHER)]
    subscribers = [r for r in results if r is ServerRole.SUBSCRIBER]
    assert (1, 3) == (len(holders), len(subscribers)), results
    after = [c.touch_once() for c in contenders]
    assert 1 == after.count(ServerRole.SCHEDULING_PUBLISHER), after


def test_resigned_publisher_is_replaced_at_the_next_touch(make_roles: MakeRoles) -> None:
    """A clean resignation frees the lease and deactivates the row: the other server is SINGLE
    at its very next touch, without waiting for anything to go stale."""
    publisher, other = make_roles(), make_roles()
    publisher.touch_once()
    other.touch_once()
    publisher.resign()
    row = servers(other)[publisher.identity]
    assert (ServerRole.UNKNOWN, None, False) == (publisher(), lease(other)["holder"], row["active"])
    assert ServerRole.SINGLE == other.touch_once()


def test_stale_publisher_loses_the_lease_and_cannot_take_it_back(make_roles: MakeRoles) -> None:
    """Once the holder has been silent for stale_timeout (by database time) another server takes
    the lease; the old holder comes back as SUBSCRIBER, not as a second publisher."""
    old, new = make_roles(), make_roles()
    old.touch_once()
    assert ServerRole.SUBSCRIBER == new.touch_once()
    age(old, old.identity, STALE + timedelta(milliseconds=200))
    taken = new.touch_once()
    back = old.touch_once()
    assert (ServerRole.SINGLE, ServerRole.SUBSCRIBER, new.identity) == (
        taken,
        back,
        lease(new)["holder"],
    )
    assert ServerRole.SCHEDULING_PUBLISHER == new.touch_once()


def test_fresh_lease_is_never_taken_early(make_roles: MakeRoles) -> None:
    """A lease lasts its holder's stale_timeout: a server with a shorter one cannot take it
    while the holder still counts on it."""
    long = timedelta(seconds=30)
    holder = make_roles(stale_timeout=long, retention=2 * long)
    other = make_roles()
    holder.touch_once()
    age(holder, holder.identity, timedelta(seconds=25))
    assert (ServerRole.SUBSCRIBER, holder.identity) == (other.touch_once(), lease(other)["holder"])


def test_touch_waits_only_briefly_for_a_frozen_servers_lock(
    make_roles: MakeRoles, db: TestDatabase
) -> None:
    """A holder frozen mid-touch keeps the lease row locked after its lease went stale: the
    other server's touch gives up after its bound (about 1 s here) instead of the server's lock
    wait default, and takes the lease once the lock is gone."""
    if db.backend == "sqlite":
        pytest.skip("SQLite waits for the busy timeout that make_engine sets (5 s)")
    slow = {"stale_timeout": timedelta(seconds=10), "retention": timedelta(seconds=20)}
    holder, other = make_roles(**slow), make_roles(**slow)
    holder.touch_once()
    age(holder, holder.identity, timedelta(seconds=11))
    c = holder.leases.c
    with holder.engine.connect() as frozen:
        frozen.execute(update(holder.leases).where(c.name == PUBLISHER).values(holder=c.holder))
        began = time.monotonic()
        role = other.touch_once()
        took = time.monotonic() - began
        frozen.rollback()
    assert (ServerRole.UNKNOWN, True) == (role, 0.5 < took < 10), took  # server waits: 50 s+
    assert ServerRole.SINGLE == other.touch_once()


def test_renewal_in_the_same_millisecond_still_counts(make_roles: MakeRoles) -> None:
    """Writing identical values twice matches the row both times (MySQL reports matched rows)."""
    roles = make_roles()
    roles.touch_once()
    c = roles.leases.c
    values = {"holder": "h", "token": "t", "renewed_ms": 12345}
    with roles.engine.begin() as conn:
        results = [guarded_update(conn, roles.leases, c.name == PUBLISHER, values) for _ in "ab"]
    assert [True, True] == results


def test_rows_unseen_beyond_retention_are_deleted(make_roles: MakeRoles) -> None:
    """A touch deletes servers unseen for longer than retention and keeps the others, even
    inactive ones."""
    roles, quiet = make_roles(), make_roles()
    quiet.touch_once()
    quiet.resign()
    with roles.engine.begin() as conn:
        now = int(conn.execute(select(db_now_ms())).scalar_one())
        long_ago = now - round(RETENTION / timedelta(milliseconds=1)) - 1000
        conn.execute(
            insert(roles.servers).values(
                identity="gone", registered_ms=long_ago, last_seen_ms=long_ago, active=True
            )
        )
    roles.touch_once()
    assert sorted([roles.identity, quiet.identity]) == sorted(servers(roles))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_joins_as_a_new_server(make_roles: MakeRoles) -> None:
    """A forked child forgets the parent's cached role, lease token and identity: it joins as
    one more server (SUBSCRIBER) while the parent keeps the lease."""
    roles = make_roles()
    roles.touch_once()
    parent_identity = roles.identity
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any of pytest's exit code
        try:
            os.close(read_end)
            before = roles()
            after = roles.touch_once()
            fresh = roles.identity != parent_identity
            os.write(write_end, f"{before.name} {after.name} {fresh}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert ("UNKNOWN SUBSCRIBER True", ServerRole.SCHEDULING_PUBLISHER, parent_identity) == (
        child,
        roles.touch_once(),
        roles.identity,
    )


def test_a_host_with_a_main_instance_lock_publishes_only_as_main(
    make_roles: MakeRoles, tmp_path: Path
) -> None:
    """JobHost(server_role=roles, main_dom=...) lets the election campaign only while it is
    the machine's main instance: with the lock held by another process, even a lone server
    stays SUBSCRIBER; once the lock is free it takes it and publishes."""
    import fcntl

    from recurjobs import MainDom

    roles = make_roles()
    main_dom = MainDom("election-test", directory=str(tmp_path))
    host = JobHost(server_role=roles, main_dom=main_dom)
    fd = os.open(main_dom.path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process holds the lock
        host.start()
        assert roles._eligible is not None
        assert ServerRole.SUBSCRIBER == roles.touch_once()
    finally:
        os.close(fd)
    try:
        assert ServerRole.SINGLE == roles.touch_once()
    finally:
        host.stop(5)
        main_dom.release()


def test_a_stop_past_its_deadline_still_frees_the_lease(make_roles: MakeRoles) -> None:
    """JobHost(server_role=roles) whose job ignores its token past stop()'s short deadline:
    stop() returns False, and the lease is still given back (not left to go stale)."""
    from recurjobs import CancellationToken, RecurringJob

    started = threading.Event()

    class Stubborn(RecurringJob):
        def run(self, token: CancellationToken) -> None:
            started.set()
            time.sleep(1.0)

    roles = make_roles(touch_interval=timedelta(seconds=0.2), stale_timeout=timedelta(seconds=5))
    job = Stubborn(timedelta(seconds=0.2), delay=timedelta(0), ignored_delay=timedelta(0))
    host = JobHost([job], server_role=roles)
    host.start()
    assert started.wait(10)
    assert False is host.stop(0.1)
    assert None is lease(roles)["holder"]


def test_job_host_takes_it_as_its_server_role(make_roles: MakeRoles) -> None:
    """JobHost(server_role=roles) gates runs on the elected role."""
    roles = make_roles()
    host = JobHost(server_role=roles)
    before = host.server_role
    roles.touch_once()
    assert (ServerRole.UNKNOWN, ServerRole.SINGLE) == (before, host.server_role)


# ---------------------------------------------------------------------- the thread
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file of its own."""
    return f"sqlite:///{tmp_path / 'roles.db'}"


@pytest.mark.timeout(20)
def test_thread_publishes_every_role_change(sqlite_url: str) -> None:
    """The thread publishes ServerRoleChanged(job=None, at=clock.now()) for the first role and
    for the UNKNOWN after stop; start is idempotent and a stopped instance cannot restart."""
    clock, publisher = ManualClock(), Publisher()
    seen: list[ServerRoleChanged] = []
    first = threading.Event()

    def record(change: ServerRoleChanged) -> None:
        seen.append(change)
        first.set()

    publisher.subscribe(ServerRoleChanged, record)
    roles = DatabaseServerRoles(sqlite_url, touch_interval=INTERVAL, stale_timeout=STALE)
    roles.start(clock=clock, publisher=publisher)
    roles.start(clock=clock, publisher=publisher)
    assert first.wait(10)
    roles.stop()
    assert True is roles.join(10)
    at = clock.now()
    expected = [
        ServerRoleChanged(job=None, at=at, old=ServerRole.UNKNOWN, new=ServerRole.SINGLE),
        ServerRoleChanged(job=None, at=at, old=ServerRole.SINGLE, new=ServerRole.UNKNOWN),
    ]
    assert expected == seen
    with pytest.raises(RuntimeError, match="was stopped"):
        roles.start(clock=clock, publisher=publisher)
    names = [t.name for t in threading.enumerate()]
    assert "recurjobs-election" not in names


def test_stop_before_start_needs_no_thread() -> None:
    """stop() and join() on an instance that never started return at once."""
    roles = DatabaseServerRoles("sqlite://")
    roles.stop()
    assert True is roles.join(0)


@pytest.mark.timeout(20)
def test_role_expires_while_the_database_hangs(
    sqlite_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a touch hangs, the role turns UNKNOWN by itself once stale_timeout has passed since
    the last successful touch; the thread logs and publishes it when the touch gives up."""
    clock, publisher = ManualClock(), Publisher()
    changes: list[tuple[ServerRole, ServerRole]] = []
    publisher.subscribe(ServerRoleChanged, lambda n: changes.append((n.old, n.new)))
    roles = DatabaseServerRoles(sqlite_url, touch_interval=INTERVAL, stale_timeout=STALE)
    roles.start(clock=clock, publisher=publisher)
    clock.wait_for_waiters(1, timeout=10)  # first touch done, parked until the next one
    hanging, release = threading.Event(), threading.Event()

    def hung_touch(conn: object, **_: object) -> Any:
        hanging.set()
        release.wait(10)
        raise RuntimeError("the database never answered")

    monkeypatch.setattr(roles, "_touch", hung_touch)
    clock.advance(INTERVAL)
    assert hanging.wait(10)
    during = [roles()]
    clock.advance(STALE)
    during.append(roles())
    with caplog.at_level(logging.INFO, logger="recurjobs.sql"):
        release.set()
        clock.wait_for_waiters(1, timeout=10)
    roles.stop()
    roles.join(10)
    assert [ServerRole.SINGLE, ServerRole.UNKNOWN] == during
    assert [
        (ServerRole.UNKNOWN, ServerRole.SINGLE),
        (ServerRole.SINGLE, ServerRole.UNKNOWN),
    ] == changes
    assert "no successful touch" in caplog.text


# ------------------------------------------------------------------ real processes
@dataclass
class Server:
    """One election_worker process and what it reported."""

    proc: subprocess.Popen[str]
    identity: str = ""
    role: str = "UNKNOWN"
    since: float = 0.0  # when the current role was reported (monotonic, this process)
    last_at: datetime | None = None  # the worker's own notification time
    history: list[str] = field(default_factory=list)  # every role it reported, in order
    lines: list[str] = field(default_factory=list)


class Cluster:
    """Election workers on one database; their reports update ``servers`` under ``changed``."""

    def __init__(self, db: TestDatabase, interval: float, stale: float) -> None:
        self.db, self.interval, self.stale = db, interval, stale
        self.servers: list[Server] = []
        self.changed = threading.Condition()

    def add(self, skew_minutes: float | None = None) -> Server:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        args = [sys.executable, str(WORKER), self.db.url, self.db.table_prefix]
        args += [str(self.interval), str(self.stale)]
        if skew_minutes is not None:
            args.append(str(skew_minutes))
        proc = subprocess.Popen(
            args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        server = Server(proc)
        self.servers.append(server)
        threading.Thread(target=self._pump, args=(server,), daemon=True).start()
        return server

    def _pump(self, server: Server) -> None:
        assert server.proc.stdout is not None
        for raw in server.proc.stdout:
            line = raw.strip()
            with self.changed:
                server.lines.append(line)
                word, _, rest = line.partition(" ")
                if word == "identity":
                    server.identity = rest
                elif word in ServerRole.__members__:
                    server.role, server.since = word, time.monotonic()
                    server.history.append(word)
                    server.last_at = datetime.fromisoformat(rest)
                self.changed.notify_all()

    def roles(self) -> list[str]:
        with self.changed:
            return [s.role for s in self.servers]

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = STARTUP) -> None:
        with self.changed:
            if not self.changed.wait_for(ready, timeout):
                pytest.fail(
                    f"not reached in {timeout} s: {what}; reports: "
                    f"{[s.lines for s in self.servers]}"
                )

    def wait_for_roles(self, *expected: str, timeout: float = STARTUP) -> None:
        self.wait_for(
            f"roles {list(expected)}", lambda: list(expected) == self.roles_now(), timeout
        )

    def roles_now(self) -> list[str]:
        return [s.role for s in self.servers]  # caller holds self.changed

    def stop(self, server: Server) -> None:
        assert server.proc.stdin is not None
        server.proc.stdin.write("stop\n")
        server.proc.stdin.flush()

    def close(self) -> None:
        for server in self.servers:
            try:
                if server.proc.stdin is not None:
                    server.proc.stdin.close()  # end of input: a clean stop
            except BrokenPipeError:
                pass  # killed already
        for server in self.servers:
            try:
                server.proc.wait(10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()
            if server.proc.stdout is not None:
                server.proc.stdout.close()


@pytest.fixture
def cluster(db: TestDatabase) -> Iterator[Cluster]:
    """A cluster of election workers (touch every 0.4 s, stale after 2 s), stopped at teardown."""
    made = Cluster(db, CLUSTER_INTERVAL, CLUSTER_STALE)
    yield made
    made.close()


def _converged(cluster: Cluster) -> None:
    """Start a skewed first server, wait until it is SINGLE, then add two plain servers and wait
    until it publishes for them."""
    cluster.add(skew_minutes=10)
    cluster.wait_for_roles("SINGLE")
    cluster.add()
    cluster.add()
    cluster.wait_for_roles("SCHEDULING_PUBLISHER", "SUBSCRIBER", "SUBSCRIBER")


@pytest.mark.multiprocess
@pytest.mark.timeout(3 * STARTUP)
def test_three_servers_elect_one_publisher_and_replace_it_when_killed(
    cluster: Cluster, record_property: Callable[[str, object], None]
) -> None:
    """Three servers, the first with a clock 10 minutes fast, settle on exactly one publisher;
    after kill -9 of it exactly one other server publishes within stale_timeout +
    touch_interval (asserted with slack): host clocks play no part."""
    _converged(cluster)
    time.sleep(5 * cluster.interval)
    assert ["SCHEDULING_PUBLISHER", "SUBSCRIBER", "SUBSCRIBER"] == cluster.roles()
    victim, *survivors = cluster.servers
    assert victim.last_at is not None
    ahead = victim.last_at - datetime.now(UTC)
    assert timedelta(minutes=9) < ahead < timedelta(minutes=11)

    killed = time.monotonic()
    victim.proc.kill()
    cluster.wait_for(
        "a survivor publishes",
        lambda: any(s.role == "SCHEDULING_PUBLISHER" for s in survivors),
    )
    took = max(s.since for s in survivors if s.role == "SCHEDULING_PUBLISHER") - killed
    record_property("takeover_seconds", round(took, 3))
    print(f"\ntakeover after kill -9 on {cluster.db.backend}: {took:.3f} s")
    time.sleep(3 * cluster.interval)
    bound = cluster.stale + cluster.interval
    assert ["SCHEDULING_PUBLISHER", "SUBSCRIBER"] == sorted(s.role for s in survivors)
    assert cluster.stale - 2 * cluster.interval < took < 3 * bound, took


@pytest.mark.multiprocess
@pytest.mark.timeout(3 * STARTUP)
def test_cleanly_stopped_publisher_hands_over_at_the_next_touch(
    db: TestDatabase, record_property: Callable[[str, object], None]
) -> None:
    """A publisher that stops cleanly frees the lease: the other server is SINGLE at its next
    touch, long before stale_timeout (6 s here) could have expired."""
    slow_stale = Cluster(db, CLUSTER_INTERVAL, 6.0)
    try:
        first = slow_stale.add()
        slow_stale.wait_for_roles("SINGLE")
        second = slow_stale.add()
        slow_stale.wait_for_roles("SCHEDULING_PUBLISHER", "SUBSCRIBER")
        asked = time.monotonic()
        slow_stale.stop(first)
        slow_stale.wait_for("the other server is SINGLE", lambda: second.role == "SINGLE")
        took = second.since - asked
        slow_stale.wait_for("the first one stopped", lambda: "stopped" in first.lines)
    finally:
        slow_stale.close()
    record_property("handover_seconds", round(took, 3))
    print(f"\nhandover after a clean stop on {db.backend}: {took:.3f} s")
    assert (["SINGLE", "SCHEDULING_PUBLISHER", "UNKNOWN"], "stopped") == (
        first.history,
        first.lines[-1],
    )
    assert took < 3.0, took


# ------------------------------------------------------- resigning, and the host's stop order
def test_resign_stops_touching_so_the_lease_stays_free(make_roles: MakeRoles) -> None:
    """resign() on a started instance ends its thread first, so no later touch takes the lease
    back: the other server becomes SINGLE and stays it."""
    publisher, other = make_roles(), make_roles()
    publisher.start()
    assert wait_for(lambda: publisher() is ServerRole.SINGLE)
    publisher.resign()
    time.sleep(3 * INTERVAL.total_seconds())  # several touch intervals of the resigned one
    assert (ServerRole.UNKNOWN, None, True) == (
        publisher(),
        lease(other)["holder"],
        publisher.join(0),
    )
    assert ServerRole.SINGLE == other.touch_once()


def test_host_keeps_the_elected_role_until_it_resigns(db: TestDatabase) -> None:
    """With elect_server_role, stopping claims and waiting for runs keeps the role and its lease;
    only resign() gives them up."""
    from tests.sql.helpers import Job
    from tests.sql.runhelpers import SqlSide, prepared

    job = Job("a", timedelta(hours=1))
    store = prepared(db, job)
    side = SqlSide(db, job, elect_server_role=True)
    try:
        side.start()
        roles = side.sql.roles
        assert roles is not None
        assert wait_for(lambda: side.sql.server_role() is ServerRole.SINGLE)
        side.sql.stop_claiming()
        assert side.sql.wait_runs(time.monotonic() + 5)
        assert side.sql.hand_back(time.monotonic() + 5)
        kept = (side.sql.server_role(), lease(roles)["holder"])
        side.sql.resign()
        assert (ServerRole.SINGLE, roles.identity) == kept
        assert (ServerRole.UNKNOWN, None) == (side.sql.server_role(), lease(roles)["holder"])
    finally:
        side.stop(5)
        store.dispose()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` in real time until it holds (for other threads' progress)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_concurrent_rounds_of_one_server_never_fail(make_roles: MakeRoles) -> None:
    """touch_once() from a caller while another round of the same server runs (the thread's,
    say): both succeed, where two first touches would both insert the server's row and one
    would fail on the primary key, leaving the role UNKNOWN."""
    for n in range(12):
        roles = make_roles(identity=f"racer-{n}")
        barrier = threading.Barrier(2)
        roles_seen: list[ServerRole] = []

        def round_(
            roles: DatabaseServerRoles = roles,
            barrier: threading.Barrier = barrier,
            roles_seen: list[ServerRole] = roles_seen,
        ) -> None:
            barrier.wait(5)
            roles_seen.append(roles.touch_once())

        threads = [threading.Thread(target=round_) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert ServerRole.UNKNOWN not in roles_seen, (n, roles_seen)
        assert len(roles_seen) == 2


@pytest.mark.timeout(30)
def test_a_role_change_handler_may_run_a_round_itself(sqlite_url: str) -> None:
    """A ServerRoleChanged handler (user code, run on the election thread) that calls
    touch_once() returns, and the thread goes on touching: handlers run outside the lock that
    keeps one round at a time, which is not re-entrant."""
    clock, publisher = ManualClock(), Publisher()
    roles = DatabaseServerRoles(sqlite_url, touch_interval=INTERVAL, stale_timeout=STALE)
    answered: list[ServerRole] = []
    returned = threading.Event()

    def confirm(change: ServerRoleChanged) -> None:
        if not answered:  # once: the round it runs announces nothing new
            answered.append(roles.touch_once())
            returned.set()

    publisher.subscribe(ServerRoleChanged, confirm)
    roles.start(clock=clock, publisher=publisher)
    try:
        ran = returned.wait(10)
        after = None
        if ran:  # else the thread is stuck holding the round: a round here would wait too
            clock.wait_for_waiters(1, timeout=10)  # the thread parked for its next round
            clock.advance(INTERVAL)
            clock.wait_for_waiters(1, timeout=10)
            after = roles.touch_once()
    finally:
        roles.stop()
        roles.join(10)
    assert (True, [ServerRole.SINGLE], ServerRole.SINGLE) == (ran, answered, after)


def test_resign_waits_for_a_round_in_progress(make_roles: MakeRoles) -> None:
    """resign() while a caller's round is under way (here held in its eligibility check, which
    runs inside the round): the resignation comes after that round, so the lease ends free and
    the role UNKNOWN; before, the round took the lease back after the resignation."""
    roles = make_roles()
    assert ServerRole.SINGLE == roles.touch_once()
    entered, release = threading.Event(), threading.Event()

    def eligible() -> bool:
        entered.set()
        release.wait(10)
        return True

    roles._eligible = eligible
    round_thread = threading.Thread(target=roles.touch_once)
    round_thread.start()
    assert entered.wait(10)
    resigning = threading.Thread(target=roles.resign)
    resigning.start()
    resigning.join(0.3)
    waited = resigning.is_alive()  # held behind the round
    release.set()
    round_thread.join(10)
    resigning.join(10)
    assert (True, None, ServerRole.UNKNOWN) == (waited, lease(roles)["holder"], roles.role)
