"""A loopback TCP proxy whose faults a test controls: drop, stall, refuse, pass through.

``FaultProxy((host, port))`` listens on ``127.0.0.1`` and forwards every connection to an
upstream server that must itself be on the loopback interface (no traffic leaves the
machine). One thread runs a ``selectors`` loop for the listener and every connection; the
control methods hand their work to that thread and return once it is done:

* :meth:`FaultProxy.drop` resets every current connection (RST on both sides); new ones work.
* :meth:`FaultProxy.stall` holds the bytes of every connection, current and new, for ``seconds``
  (nothing is read or written; the kernel buffers keep what was sent), then forwards them.
  Like a frozen network path: no error, only silence.
* :meth:`FaultProxy.refuse` closes the listening socket for ``seconds`` (a connect gets
  "connection refused") and, by default, resets every current connection: a database that went
  down and came back on the same port.
* :meth:`FaultProxy.hold_commit` holds one transaction open on the server: the first
  connection that sends ``after`` (bytes, e.g. a column only one UPDATE writes) and then a
  ``COMMIT`` is stalled, that connection alone, for ``seconds`` from the COMMIT on. Its row locks
  stay held meanwhile, like a host paused between UPDATE and COMMIT.
* :meth:`FaultProxy.lose_commit_reply` lets the server apply one ``COMMIT`` but never answer it:
  the first connection that sends ``after`` and then a ``COMMIT`` is reset (both sides) as soon
  as the server's reply to it arrives. The transaction is committed; the client sees a dropped
  connection, as when a network dies between a commit and its acknowledgement.
* :meth:`FaultProxy.pass_through` ends the current fault at once.

A new fault replaces the current one. Everything is bounded: a fault ends by itself, the proxy
closes itself after ``lifetime`` seconds, each direction buffers at most 64 KiB, and at most
``max_connections`` connections are open (more are reset at once). ``log`` keeps
``(time.time(), what)`` for every control call, so a report can say what happened when.

Usage::

    with FaultProxy(("127.0.0.1", 5432)) as proxy:
        url = proxy.proxied_url("postgresql+psycopg://u:p@127.0.0.1:5432/db")
        ...
        proxy.stall(10)
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import math
import os
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ["FaultProxy"]

T = TypeVar("T")

_BUFFER_LIMIT: Final = 64 * 1024
_CHUNK: Final = 16 * 1024
_CONTROL_TIMEOUT: Final = 5.0  # a control call waits this long for the loop thread at most
_REBIND_FOR: Final = 5.0  # after a refusal, try this long to listen on the same port again
_IDLE_TICK: Final = 1.0  # the loop re-checks its lifetime at least this often
_PASS, _STALL, _REFUSE = "pass", "stall", "refuse"


def _loopback_address(host: str) -> str:
    """The IPv4 loopback address ``host`` names; ValueError for anything off this machine."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"upstream host {host!r} does not resolve: {exc}") from None
    for info in infos:
        address = str(info[4][0])
        if ipaddress.ip_address(address).is_loopback:
            return address
    raise ValueError(f"upstream host must be a loopback address, got {host!r}")


def _free_port() -> int:
    """A free port below the kernel's ephemeral range, so no outgoing connection borrows it
    while the listener is closed during a refusal (0: let the kernel choose)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    if low <= 21000:
        return 0
    rng = random.Random()
    for _ in range(50):
        port = rng.randrange(20000, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return 0


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (SO_LINGER 0) instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _commits_after(pair: _Pair, chunk: bytes, marker: bytes) -> bool:
    """Whether ``chunk``, sent by ``pair``'s client, commits after the client sent ``marker``
    (in this chunk or an earlier one)."""
    if marker in chunk:
        pair.saw_marker = True
    return pair.saw_marker and b"COMMIT" in chunk.upper()


class _Pair:
    """One proxied connection: the client's socket, the upstream socket and their buffers."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.to_upstream = bytearray()
        self.to_client = bytearray()
        self.connecting = True
        self.closed = False
        self.held_until = 0.0  # this connection alone is stalled until then (hold_commit)
        self.saw_marker = False
        self.lose_reply = False  # its COMMIT went upstream: reset it when the reply comes


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:port`` to a loopback ``upstream`` with injectable faults."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        port: int = 0,
        lifetime: float = 3600.0,
        max_connections: int = 256,
    ) -> None:
        host, upstream_port = upstream
        if not isinstance(upstream_port, int) or not 0 < upstream_port < 65536:
            raise ValueError(f"upstream port must be 1..65535, got {upstream_port!r}")
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be 0..65535, got {port!r}")
        if not lifetime > 0:
            raise ValueError(f"lifetime must be > 0 seconds, got {lifetime!r}")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        self.upstream = (_loopback_address(host), upstream_port)
        self.lifetime = float(lifetime)
        self.max_connections = max_connections
        self.log: list[tuple[float, str]] = []
        self.accepted = 0
        self.errors: list[str] = []
        self._port = port or _free_port()
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._pairs: set[_Pair] = set()
        self._registered: dict[socket.socket, int] = {}
        self._mode = _PASS
        self._mode_until = 0.0
        self._rebind_until = 0.0
        self._hold: tuple[float, bytes, float] | None = None  # seconds, marker, armed until
        self._lose: tuple[bytes, float] | None = None  # marker, armed until (lose_commit_reply)
        self._commands: list[tuple[Callable[[], object], list[object], threading.Event]] = []
        self._commands_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._shut = False
        self._end_of_life = 0.0

    # ------------------------------------------------------------------ life cycle
    @property
    def port(self) -> int:
        """The port the proxy listens on (on 127.0.0.1)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the loop thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> FaultProxy:
        """Listen and start the loop thread; the proxy closes itself ``lifetime`` s later."""
        if self._thread is not None:
            raise RuntimeError("this FaultProxy was already started")
        self._listen()
        if self._listener is None:
            raise OSError(f"cannot listen on 127.0.0.1:{self._port}: {self.errors[-1:]}")
        self._port = self._listener.getsockname()[1]
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._end_of_life = time.monotonic() + self.lifetime
        self._note(f"listening on 127.0.0.1:{self._port} -> {self.upstream[0]}:{self.upstream[1]}")
        self._thread = threading.Thread(target=self._loop, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Reset every connection, stop listening and end the loop thread (bounded wait)."""
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(_CONTROL_TIMEOUT)
        else:
            self._shutdown()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def proxied_url(self, url: str) -> str:
        """``url`` (an SQLAlchemy URL to the upstream) with host and port set to this proxy."""
        from sqlalchemy import make_url

        proxied = make_url(url).set(host="127.0.0.1", port=self._port)
        return proxied.render_as_string(hide_password=False)

    # -------------------------------------------------------------------- controls
    def drop(self) -> int:
        """Reset every current connection; return how many there were."""
        return self._call("drop", self._drop_all)

    def stall(self, seconds: float) -> None:
        """Hold every byte of every connection (current and new) for ``seconds``."""
        self._check_seconds(seconds)
        self._call(f"stall {seconds:g} s", lambda: self._set_mode(_STALL, seconds))

    def refuse(self, seconds: float, *, drop: bool = True) -> None:
        """Refuse new connections for ``seconds`` (and reset current ones when ``drop``)."""
        self._check_seconds(seconds)

        def refuse() -> None:
            self._set_mode(_REFUSE, seconds)
            if drop:
                self._drop_all()

        self._call(f"refuse {seconds:g} s" + (" and drop" if drop else ""), refuse)

    def hold_commit(self, seconds: float, *, after: bytes, within: float = 10.0) -> None:
        """Stall the first connection that sends ``after`` and then ``COMMIT`` for ``seconds``.

        Armed for ``within`` seconds; ``log`` says when a COMMIT was held (or none came).
        """
        self._check_seconds(seconds)
        self._check_seconds(within)
        if not isinstance(after, bytes) or not after:
            raise TypeError(f"after must be non-empty bytes, got {after!r}")

        def arm() -> None:
            self._hold = (float(seconds), after, time.monotonic() + within)
            for pair in self._pairs:
                pair.saw_marker = False

        self._call(f"hold a COMMIT after {after.decode(errors='replace')} for {seconds:g} s", arm)

    def lose_commit_reply(self, *, after: bytes, within: float = 10.0) -> None:
        """Reset the first connection that sends ``after`` and then ``COMMIT`` once the server
        has answered the COMMIT (the answer is not forwarded). Armed for ``within`` seconds;
        ``log`` says when a reply was lost."""
        self._check_seconds(within)
        if not isinstance(after, bytes) or not after:
            raise TypeError(f"after must be non-empty bytes, got {after!r}")

        def arm() -> None:
            self._lose = (after, time.monotonic() + within)
            for pair in self._pairs:
                pair.saw_marker = False

        self._call(f"lose the reply to a COMMIT after {after.decode(errors='replace')}", arm)

    def pass_through(self) -> None:
        """End the current fault now: forward everything again."""
        self._call("pass through", lambda: self._set_mode(_PASS, 0.0))

    def state(self) -> str:
        """``"pass"``, ``"stall"``, ``"refuse"`` or ``"closed"``."""
        return self._mode if self.running else "closed"

    @property
    def holding(self) -> bool:
        """Whether a hold_commit() is armed or holds a connection now."""
        return self._hold is not None or any(p.held_until > 0.0 for p in list(self._pairs))

    @property
    def connections(self) -> int:
        """How many proxied connections are open now."""
        return len(self._pairs)

    @staticmethod
    def _check_seconds(seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, got {seconds!r}")
        if not 0 < seconds <= 3600:
            raise ValueError(f"seconds must be in (0, 3600], got {seconds!r}")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread and return its result (bounded wait)."""
        if not self.running:
            raise RuntimeError(f"cannot {what}: the proxy is not running")
        done = threading.Event()
        result: list[object] = []
        with self._commands_lock:
            self._commands.append((fn, result, done))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if not done.wait(_CONTROL_TIMEOUT):
            raise TimeoutError(f"the proxy's loop did not {what} within {_CONTROL_TIMEOUT} s")
        self._note(what)
        if result and isinstance(result[0], BaseException):
            raise result[0]
        return result[0] if result else None  # type: ignore[return-value]

    def _note(self, what: str) -> None:
        self.log.append((time.time(), what))

    # ----------------------------------------------------------------- loop thread
    def _loop(self) -> None:
        try:
            while not self._closing:
                now = time.monotonic()
                if now >= self._end_of_life:
                    self._note("lifetime over")
                    break
                if self._mode != _PASS and now >= self._mode_until:
                    self._set_mode(_PASS, 0.0)
                if self._listener is None and self._mode != _REFUSE:
                    self._listen()
                wake = min(self._end_of_life, now + _IDLE_TICK)
                if self._mode != _PASS:
                    wake = min(wake, self._mode_until)
                if self._listener is None and self._mode != _REFUSE:
                    wake = min(wake, now + 0.1)  # retrying to listen again
                wake = min(wake, self._release_held(now))
                if self._hold is not None:
                    if now >= self._hold[2]:
                        self._hold = None
                        self._note("hold_commit: no COMMIT came")
                    else:
                        wake = min(wake, self._hold[2])
                for key, mask in self._selector.select(max(0.0, wake - now)):
                    self._dispatch(key, mask)
                self._run_commands()
        except Exception as exc:  # keep a record; close() below still frees everything
            self.errors.append(f"loop failed: {exc!r}")
        finally:
            self._shutdown()
            self._run_commands()  # release callers waiting on a command

    def _run_commands(self) -> None:
        with self._commands_lock:
            commands, self._commands = self._commands, []
        for fn, result, done in commands:
            try:
                result.append(fn())
            except Exception as exc:
                result.append(exc)
            done.set()

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        data = key.data
        if data == "wake":
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        elif data == "listen":
            self._accept()
        elif isinstance(data, tuple):
            pair, side = data
            if not pair.closed:
                self._pump(pair, side, mask)

    def _listen(self) -> None:
        """Open the listening socket on our port (retried for a while after a refusal)."""
        if self._shut:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self._port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            if time.monotonic() > self._rebind_until:
                self.errors.append(f"cannot listen on 127.0.0.1:{self._port}: {exc}")
                if self._thread is not None:
                    self._closing = True  # a proxy that cannot listen is of no use
            return
        sock.setblocking(False)
        self._listener = sock
        self._selector.register(sock, selectors.EVENT_READ, "listen")

    def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _accept(self) -> None:
        if self._listener is None:
            return
        for _ in range(64):
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.errors.append(f"accept failed: {exc}")
                return
            if len(self._pairs) >= self.max_connections:
                _reset(client)
                continue
            self.accepted += 1
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = upstream.connect_ex(self.upstream)
            pair = _Pair(client, upstream)
            self._pairs.add(pair)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                self._close(pair)
                continue
            self._interest(pair)

    def _pump(self, pair: _Pair, side: str, mask: int) -> None:
        try:
            if side == "upstream" and pair.connecting:
                code = pair.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code != 0:
                    self._close(pair)
                    return
                pair.connecting = False
            elif not self._stalled(pair):
                sock, peer_buffer, own_buffer = (
                    (pair.client, pair.to_upstream, pair.to_client)
                    if side == "client"
                    else (pair.upstream, pair.to_client, pair.to_upstream)
                )
                if mask & selectors.EVENT_READ and len(peer_buffer) < _BUFFER_LIMIT:
                    chunk = sock.recv(_CHUNK)
                    if not chunk:
                        self._close(pair, flush=True)
                        return
                    if side == "client" and self._hold is not None:
                        self._maybe_hold(pair, chunk)
                    if side == "client" and self._lose is not None:
                        self._maybe_lose(pair, chunk)
                    if side == "upstream" and pair.lose_reply:
                        self._note("lost the reply to a COMMIT")
                        self._close(pair, reset=True)
                        return
                    peer_buffer += chunk
                if mask & selectors.EVENT_WRITE and own_buffer:
                    sent = sock.send(own_buffer)
                    del own_buffer[:sent]
            self._flush(pair)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(pair)
            return
        if not pair.closed:
            self._interest(pair)

    def _flush(self, pair: _Pair) -> None:
        """Send what each side has waiting, as far as the sockets take it now."""
        if self._stalled(pair) or pair.connecting:
            return
        for sock, buffer in ((pair.upstream, pair.to_upstream), (pair.client, pair.to_client)):
            if buffer:
                try:
                    sent = sock.send(buffer)
                except (BlockingIOError, InterruptedError):
                    continue
                del buffer[:sent]

    def _stalled(self, pair: _Pair) -> bool:
        return self._mode == _STALL or pair.held_until > 0.0

    def _maybe_hold(self, pair: _Pair, chunk: bytes) -> None:
        """Hold ``pair`` if it sent the armed marker before and this chunk commits."""
        assert self._hold is not None
        seconds, marker, _ = self._hold
        if _commits_after(pair, chunk, marker):
            pair.held_until = time.monotonic() + seconds
            self._hold = None
            self._note(f"holding a COMMIT for {seconds:g} s")

    def _maybe_lose(self, pair: _Pair, chunk: bytes) -> None:
        """Mark ``pair`` to lose its next reply if it sent the marker before and this chunk
        commits (the chunk itself goes upstream: the server applies the COMMIT)."""
        assert self._lose is not None
        marker, until = self._lose
        if time.monotonic() > until:
            self._lose = None
            self._note("no COMMIT came to lose its reply")
            return
        if _commits_after(pair, chunk, marker):
            pair.lose_reply = True
            self._lose = None

    def _release_held(self, now: float) -> float:
        """Let held connections go once their time is up; when the next one is due."""
        nearest = math.inf
        for pair in list(self._pairs):
            if pair.held_until > 0.0:
                if now >= pair.held_until:
                    pair.held_until = 0.0
                    self._note("released a held COMMIT")
                    with contextlib.suppress(OSError):
                        self._flush(pair)
                    if not pair.closed:
                        self._interest(pair)
                else:
                    nearest = min(nearest, pair.held_until)
        return nearest

    def _interest(self, pair: _Pair) -> None:
        """Register what each socket of ``pair`` waits for (nothing at all while stalled)."""
        moving = not self._stalled(pair)
        client = 0
        upstream = selectors.EVENT_WRITE if pair.connecting else 0
        if moving and not pair.connecting:
            if len(pair.to_upstream) < _BUFFER_LIMIT:
                client |= selectors.EVENT_READ
            if pair.to_client:
                client |= selectors.EVENT_WRITE
            if len(pair.to_client) < _BUFFER_LIMIT:
                upstream |= selectors.EVENT_READ
            if pair.to_upstream:
                upstream |= selectors.EVENT_WRITE
        self._register(pair.client, client, (pair, "client"))
        self._register(pair.upstream, upstream, (pair, "upstream"))

    def _register(self, sock: socket.socket, events: int, data: object) -> None:
        current = self._registered.get(sock, 0)
        if events == current:
            return
        if events == 0:
            self._selector.unregister(sock)
            del self._registered[sock]
        elif current == 0:
            self._selector.register(sock, events, data)
            self._registered[sock] = events
        else:
            self._selector.modify(sock, events, data)
            self._registered[sock] = events

    def _close(self, pair: _Pair, *, flush: bool = False, reset: bool = False) -> None:
        if pair.closed:
            return
        if flush:
            with contextlib.suppress(OSError):
                self._flush(pair)
        pair.closed = True
        self._pairs.discard(pair)
        for sock in (pair.client, pair.upstream):
            if self._registered.pop(sock, 0):
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()

    def _drop_all(self) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair, reset=True)
        return len(pairs)

    def _set_mode(self, mode: str, seconds: float) -> None:
        was = self._mode
        if mode != _REFUSE and was == _REFUSE:
            # Listen before the new mode shows: whoever sees "pass" may connect at once.
            self._rebind_until = time.monotonic() + _REBIND_FOR
            self._listen()
        self._mode = mode
        self._mode_until = time.monotonic() + seconds
        if mode == _REFUSE:
            self._unlisten()
        if mode == _PASS and was != _PASS:
            self._note(f"{was} over")
        for pair in list(self._pairs):
            if not pair.closed:
                if mode == _PASS:
                    with contextlib.suppress(OSError):
                        self._flush(pair)
                self._interest(pair)

    def _shutdown(self) -> None:
        self._shut = True
        self._drop_all()
        self._unlisten()
        with contextlib.suppress(Exception):
            self._selector.close()
        for sock in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        self._mode = _PASS


if __name__ == "__main__":  # a manual check: python tests/faultproxy.py HOST PORT
    import sys

    with FaultProxy((sys.argv[1], int(sys.argv[2])), lifetime=60) as p:
        print(f"127.0.0.1:{p.port} -> {sys.argv[1]}:{sys.argv[2]} for 60 s (pid {os.getpid()})")
        time.sleep(60)
