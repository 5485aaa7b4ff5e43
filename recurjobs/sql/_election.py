"""DatabaseServerRoles: this server's role, elected through the database it shares with others.

Every ``touch_interval`` the ``recurjobs-election`` thread runs one short transaction (see
``_servers_table``): renew or take the publisher lease if it is ours, free or stale; mark our
row alive (inactive when this server may not campaign: not its machine's main instance);
count the active servers seen within ``stale_timeout``. The role follows from that:

- holding the lease and alone: ``SINGLE``; holding it with others alive: ``SCHEDULING_PUBLISHER``;
- not holding it: ``SUBSCRIBER``, even when alone. The lease is then held by a server that was
  alive a moment ago; at most ``stale_timeout`` later it goes stale and we take it. So there is
  never a moment where two servers both claim SINGLE or SCHEDULING_PUBLISHER.

A lone server holds the lease too, so a second server finds it taken and becomes SUBSCRIBER at
its first touch, with no gap and no overlap.

Calling the object (what ``JobHost`` does before every run) never does I/O: it reads the role
cached by the last successful touch. That role is valid for ``stale_timeout`` from the moment
the touch was *sent* (the database stamped the lease no earlier, so nobody can take it before
then); after that the object answers ``UNKNOWN`` by itself, even while the thread is stuck in a
hung database call, and the thread announces the change as soon as it can.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import secrets
import socket
import threading
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import Connection, Engine, MetaData
from sqlalchemy.engine import URL

from recurjobs._clock import Clock, SystemClock
from recurjobs._guard import call_user, log_quietly
from recurjobs._notifications import Publisher, ServerRoleChanged
from recurjobs._roles import ServerRole
from recurjobs._validate import duration
from recurjobs._validate import table_prefix as check_prefix
from recurjobs.sql._retry import RetryPolicy
from recurjobs.sql._rows import ms
from recurjobs.sql._servers_table import ServerTables, Touched, bounded_waits
from recurjobs.sql._shared import exclusive
from recurjobs.sql._urls import engine_for, masked, scrub

__all__ = ["DatabaseServerRoles", "default_identity"]

logger = logging.getLogger("recurjobs.sql")

T = TypeVar("T")

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"
_UNKNOWN = (ServerRole.UNKNOWN, -math.inf)  # (role, monotonic time it is valid until)


def default_identity() -> str:
    """Host name, process id and a random suffix: unique even across restarts."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{secrets.token_hex(4)}"


class DatabaseServerRoles:
    """The server role of this process, elected among the servers sharing ``database``.

    Use it as ``JobHost(jobs, server_role=DatabaseServerRoles(url))``: the host starts and
    stops it. ``database`` is a URL or an SQLAlchemy ``Engine`` (used as is, never disposed).
    ``identity`` names this server in the servers table and must be unique among the servers
    (default: :func:`default_identity`); ``address`` is informational (default: host name).
    """

    def __init__(
        self,
        database: str | URL | Engine,
        *,
        identity: str | None = None,
        address: str | None = None,
        touch_interval: timedelta = timedelta(seconds=60),
        stale_timeout: timedelta = timedelta(seconds=120),
        table_prefix: str = "recurjobs_",
        retention: timedelta = timedelta(days=1),
    ) -> None:
        self._own_identity = identity is None  # a fresh one after a fork, then
        self._identity = _text(default_identity() if identity is None else identity, "identity")
        self.address = _text(socket.gethostname() if address is None else address, "address")
        duration(touch_interval, "touch_interval", infinite=False, zero=False)
        duration(stale_timeout, "stale_timeout", infinite=False, zero=False)
        duration(retention, "retention", infinite=False, zero=False)
        if stale_timeout <= touch_interval:
            raise ValueError(
                f"stale_timeout must exceed touch_interval ({touch_interval!r}), "
                f"got {stale_timeout!r}"
            )
        if retention <= stale_timeout:
            raise ValueError(
                f"retention must exceed stale_timeout ({stale_timeout!r}), got {retention!r}"
            )
        check_prefix(table_prefix)
        self.engine, self._owns_engine = engine_for(database)
        self.url = masked(self.engine)
        self.touch_interval = touch_interval
        self.stale_timeout = stale_timeout
        self.retention = retention
        self._tables = ServerTables(MetaData(), table_prefix)
        self.servers, self.leases = self._tables.servers, self._tables.leases
        self._token = secrets.token_hex(16)  # what the lease guard compares (see _servers_table)
        # One touch, retries included, takes about touch_interval at most (1 to 10 s).
        bound = min(max(touch_interval.total_seconds(), 1.0), 10.0)
        self._bound_ms = round(bound * 1000)
        self._retry = RetryPolicy(max_time=bound, max_attempts=3, max_wait=0.5)
        self._schema_ready = False  # tables checked (again after any failure)
        self._joined = False  # a touch has succeeded: resign() has something to undo
        self._clock: Clock = SystemClock()
        self._publisher: Publisher | None = None
        self._state: tuple[ServerRole, float] = _UNKNOWN  # swapped whole: readers take no lock
        self._announced = ServerRole.UNKNOWN
        self._lock = threading.Lock()  # life cycle and announcements; never held over I/O
        # One election round at a time: the thread's and a caller's touch_once() would both
        # insert a new server's row, and the second insert fails on the primary key.
        self._round = threading.Lock()
        self._life = _NEW
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Whether this server may hold the lease now; a host with a main instance lock sets it
        # (only the machine's main instance runs role-gated recurring jobs, so only it may
        # publish: otherwise the lease could go to a process whose jobs are all ignored).
        self._eligible: Callable[[], bool] | None = None
        _instances.add(self)

    def __repr__(self) -> str:
        return f"DatabaseServerRoles({self.url!r}, identity={self._identity!r}, role={self.role})"

    # --------------------------------------------------------------------- the role
    def __call__(self) -> ServerRole:
        """The current role (no I/O): what ``JobHost(server_role=...)`` calls before runs."""
        return self.role

    @property
    def role(self) -> ServerRole:
        """The role of the last successful touch, or UNKNOWN once it is older than
        ``stale_timeout`` (or before the first touch, or after stopping)."""
        role, valid_until = self._state
        if role is not ServerRole.UNKNOWN and self._clock.monotonic() >= valid_until:
            return ServerRole.UNKNOWN
        return role

    @property
    def identity(self) -> str:
        """This server's name in the servers table."""
        return self._identity

    # ------------------------------------------------------------------- one round
    def touch_once(self) -> ServerRole:
        """Run one election round now, on this thread, and return the resulting role.

        Database errors are logged (URL masked), not raised; the role then stays what it was
        until it expires. The thread calls this every ``touch_interval``; tests and tools may
        call it directly, instead of or besides the thread: rounds run one at a time.
        """
        with self._round:
            self._touch_round()
        # Outside the round: the announcement runs the ServerRoleChanged handlers (user code,
        # which may run a round itself; the lock is not re-entrant).
        self._announce()
        return self.role

    def _touch_round(self) -> None:
        sent = self._clock.monotonic()
        campaign = self._may_publish()  # asked before the transaction, not inside it
        touch = functools.partial(self._touch, campaign=campaign)
        touched = self._step("touching the servers table", touch)
        if touched is not None:
            self._joined = True
            self._state = (_role_of(touched), sent + self.stale_timeout.total_seconds())
            for gone in touched.expired:
                prune = functools.partial(
                    self._tables.prune, identity=gone, retention_ms=ms(self.retention)
                )
                if self._step("pruning servers", prune):
                    log_quietly(
                        logging.INFO,
                        "removed server %s, unseen for over %s",
                        gone,
                        self.retention,
                        on=logger,
                    )

    def resign(self) -> None:
        """Stop touching, release the publisher lease and mark this server inactive, now; the
        role becomes UNKNOWN. Another server takes over at its next touch.

        This is "resign now": a running thread is stopped first (and waited for, bounded by
        one touch), so no touch can take the lease back afterwards. :meth:`stop` only asks the
        thread to end; it resigns on its way out. A host keeps its role until it has no
        role-gated work left, then resigns.
        """
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            self.stop()
            thread.join(self._bound_ms / 1000 * 2 + 1.0)
            if not thread.is_alive():
                return  # it resigned on its way out
        self._resign_now()

    def _resign_now(self) -> None:
        with self._round:  # not between a caller's round and its role: it would take it back
            if self._joined:
                self._step(
                    "resigning",
                    lambda conn: self._tables.resign(
                        conn, identity=self._identity, token=self._token
                    ),
                )
            self._state = _UNKNOWN
        self._announce()

    def _touch(self, conn: Connection, *, campaign: bool = True) -> Touched:
        return self._tables.touch(
            conn,
            identity=self._identity,
            address=self.address,
            token=self._token,
            stale_ms=ms(self.stale_timeout),
            retention_ms=ms(self.retention),
            campaign=campaign,
        )

    def _may_publish(self) -> bool:
        eligible = self._eligible
        if eligible is None:
            return True
        return bool(call_user("the eligible callable of the election", eligible, default=False))

    def _step(self, what: str, fn: Callable[[Connection], T]) -> T | None:
        """Run ``fn`` in one bounded transaction, retried through transient faults; on failure
        log it (URL masked) and return None."""

        def attempt() -> T:
            with exclusive(self.engine):  # an in-memory database: one connection for all
                if not self._schema_ready:
                    self._tables.create(self.engine)
                    self._schema_ready = True
                with self.engine.begin() as conn, bounded_waits(conn, self._bound_ms):
                    return fn(conn)

        try:
            return self._retry.call(what, self.url, attempt)
        except Exception as exc:
            self._schema_ready = False  # perhaps the tables were dropped: check at next touch
            line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            line = scrub(line, self.engine)  # every spelling of the password, masked
            log_quietly(
                logging.WARNING,
                "%s for %s on %s failed: %s",
                what,
                self._identity,
                self.url,
                line,
                on=logger,
            )
            return None

    def _announce(self) -> None:
        """Log and publish a change of the effective role since the last announcement."""
        new = self.role
        with self._lock:
            old, self._announced = self._announced, new
        if old is new:
            return
        if new is ServerRole.UNKNOWN and self._state[0] is not ServerRole.UNKNOWN:
            log_quietly(
                logging.WARNING,
                "server %s: no successful touch of %s within stale_timeout (%s); role %s -> "
                "UNKNOWN (another server may hold the lease now)",
                self._identity,
                self.url,
                self.stale_timeout,
                old.name,
                on=logger,
            )
        else:
            log_quietly(
                logging.INFO,
                "server %s: role %s -> %s",
                self._identity,
                old.name,
                new.name,
                on=logger,
            )
        if self._publisher is not None:
            at = self._clock.now()
            self._publisher.publish(ServerRoleChanged(job=None, at=at, old=old, new=new))

    # ------------------------------------------------------------------ life cycle
    def start(self, *, clock: Clock | None = None, publisher: Publisher | None = None) -> None:
        """Start the ``recurjobs-election`` daemon thread; starting again does nothing.

        ``clock`` times the touches and stamps the notifications; ``publisher`` receives a
        ``ServerRoleChanged`` for every change. A stopped instance cannot be started again.
        """
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must provide now(), monotonic() and wait(), got {clock!r}")
        if publisher is not None and not isinstance(publisher, Publisher):
            raise TypeError(f"publisher must be a Publisher or None, got {publisher!r}")
        with self._lock:
            if self._life == _RUNNING:
                return
            if self._life == _STOPPED:
                raise RuntimeError("this DatabaseServerRoles was stopped; create a new one")
            self._life = _RUNNING
            if clock is not None and clock is not self._clock:
                self._clock, self._state = clock, _UNKNOWN  # validity was on the old clock
            self._publisher = publisher
            self._thread = threading.Thread(
                target=self._run, name="recurjobs-election", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to resign and end (does not wait: see :meth:`join`)."""
        with self._lock:
            self._life = _STOPPED
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the thread; True when it has ended (or never ran)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def dispose(self) -> None:
        """Close the pooled connections of an engine made from a URL (the thread does it too)."""
        if self._owns_engine:
            self.engine.dispose()

    def _after_fork_in_child(self) -> None:
        # A child is a new server: it must not share the parent's lease token, thread, cached
        # role or pooled connections (SQLAlchemy's advice for engines crossing a fork).
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._round = threading.Lock()
        self._thread, self._life = None, _NEW
        self._token = secrets.token_hex(16)
        self._state, self._announced = _UNKNOWN, ServerRole.UNKNOWN
        self._joined = False
        if self._own_identity:
            self._identity = default_identity()
        if self._owns_engine:
            self.engine.dispose(close=False)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                began = self._clock.monotonic()
                self.touch_once()
                self._wait_until(began + self.touch_interval.total_seconds())
        finally:
            self._resign_now()
            self.dispose()

    def _wait_until(self, next_touch: float) -> None:
        """Wait for the next touch, waking when the role expires to announce it on time."""
        while not self._stop.is_set():
            now = self._clock.monotonic()
            if now >= next_touch:
                return
            valid_until = self._state[1]
            wake = min(next_touch, valid_until) if valid_until > now else next_touch
            self._clock.wait(self._stop, wake - now)
            self._announce()


_instances: weakref.WeakSet[DatabaseServerRoles] = weakref.WeakSet()


def _reset_in_child() -> None:
    for roles in list(_instances):
        roles._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


def _role_of(touched: Touched) -> ServerRole:
    if not touched.holds_lease:
        return ServerRole.SUBSCRIBER
    return ServerRole.SINGLE if touched.active <= 1 else ServerRole.SCHEDULING_PUBLISHER


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {value!r}")
    if not 1 <= len(value) <= 255:
        raise ValueError(f"{name} must be 1-255 characters, got {value!r}")
    return value
