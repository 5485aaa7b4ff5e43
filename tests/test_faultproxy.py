"""The fault-injection proxy itself: it forwards, drops, stalls, refuses and ends by itself.

An echo server on 127.0.0.1 stands upstream; every test takes well under a second or two.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faultproxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                sock.sendall(chunk)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """An echo server on a free loopback port, shut down after the test."""
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    """A running proxy in front of the echo server, closed after the test."""
    with FaultProxy(echo, lifetime=60) as p:
        yield p


def _connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _wait_for(predicate: object, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.01)
    return False


def test_passes_bytes_both_ways(proxy: FaultProxy) -> None:
    """Bytes sent through the proxy reach the upstream and its answer comes back intact."""
    with _connect(proxy) as sock:
        assert b"hello" == _roundtrip(sock, b"hello")


def test_passes_a_large_payload_intact(proxy: FaultProxy) -> None:
    """A payload far larger than the proxy's 64 KiB buffers arrives complete and in order."""
    payload = bytes(range(256)) * 8192  # 2 MiB
    with _connect(proxy, timeout=10) as sock:
        received = bytearray()

        def read() -> None:
            while len(received) < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        sock.sendall(payload)
        reader.join(10)
    assert payload == bytes(received)


def test_drop_resets_current_connections_and_accepts_new_ones(proxy: FaultProxy) -> None:
    """drop() ends every open connection (the client sees EOF or a reset); a new one works."""
    with _connect(proxy) as old:
        assert b"a" == _roundtrip(old, b"a")
        assert 1 == proxy.drop()
        try:
            ended = old.recv(10) == b""
        except ConnectionResetError:
            ended = True
        assert ended
    with _connect(proxy) as new:
        assert b"b" == _roundtrip(new, b"b")
        assert 1 == proxy.connections  # read while open: the proxy drops it once it closes


def test_stall_holds_bytes_until_it_ends(proxy: FaultProxy) -> None:
    """During stall(0.6) nothing is forwarded; the held bytes arrive once it is over."""
    with _connect(proxy) as sock:
        assert b"x" == _roundtrip(sock, b"x")
        proxy.stall(0.6)
        began = time.monotonic()
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        sock.settimeout(3)
        assert b"held" == sock.recv(10)
        waited = time.monotonic() - began
    assert 0.5 <= waited < 2.0, waited


def test_stall_holds_new_connections_too(proxy: FaultProxy) -> None:
    """A connection made during a stall is accepted, but its bytes wait for the stall's end."""
    proxy.stall(0.5)
    with _connect(proxy) as sock:
        sock.sendall(b"new")
        sock.settimeout(0.25)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        sock.settimeout(3)
        assert b"new" == sock.recv(10)


def test_pass_through_ends_a_stall_early(proxy: FaultProxy) -> None:
    """pass_through() forwards the held bytes at once instead of after the stall's time."""
    with _connect(proxy) as sock:
        proxy.stall(30)
        assert "stall" == proxy.state()
        sock.sendall(b"now")
        proxy.pass_through()
        sock.settimeout(2)
        assert b"now" == sock.recv(10)
    assert "pass" == proxy.state()


def test_hold_commit_holds_only_the_connection_that_commits_after_the_marker(
    proxy: FaultProxy,
) -> None:
    """hold_commit() stalls the one connection that sent the marker and then COMMIT."""
    with _connect(proxy) as other, _connect(proxy) as marked:
        assert b"UPDATE t SET mark=1" == _roundtrip(marked, b"UPDATE t SET mark=1")
        proxy.hold_commit(0.6, after=b"mark")
        assert b"SELECT 1; commit" == _roundtrip(other, b"SELECT 1; commit")  # no marker
        assert b"UPDATE t SET mark=2" == _roundtrip(marked, b"UPDATE t SET mark=2")
        began = time.monotonic()
        marked.sendall(b"commit")
        marked.settimeout(0.3)
        with pytest.raises(TimeoutError):
            marked.recv(10)
        assert b"still free" == _roundtrip(other, b"still free")
        marked.settimeout(3)
        assert b"commit" == marked.recv(10)
        waited = time.monotonic() - began
    assert 0.5 <= waited < 2.0, waited
    assert ["holding a COMMIT for 0.6 s", "released a held COMMIT"] == [
        what for _, what in proxy.log if "COMMIT" in what and "after" not in what
    ]


def test_lose_commit_reply_resets_the_committing_connection_when_the_reply_comes(
    proxy: FaultProxy,
) -> None:
    """lose_commit_reply() forwards the marked connection's COMMIT, then drops the server's
    answer and resets that connection; other connections and commits pass."""
    with _connect(proxy) as other, _connect(proxy) as marked:
        proxy.lose_commit_reply(after=b"mark")
        assert b"UPDATE t SET mark=1" == _roundtrip(marked, b"UPDATE t SET mark=1")
        assert b"SELECT 1; commit" == _roundtrip(other, b"SELECT 1; commit")  # no marker
        marked.sendall(b"commit")
        try:
            answer = marked.recv(10)
        except ConnectionResetError:
            answer = b""
        assert b"" == answer  # the echo (the server's answer) never arrives
        assert b"still free" == _roundtrip(other, b"still free")
    assert ["lost the reply to a COMMIT"] == [
        what for _, what in proxy.log if what.startswith("lost")
    ]


def test_refuse_refuses_then_listens_again_on_the_same_port(proxy: FaultProxy) -> None:
    """refuse(0.5) resets open connections, refuses new ones, then accepts on the same port."""
    port = proxy.port
    with _connect(proxy) as old:
        assert b"a" == _roundtrip(old, b"a")
        proxy.refuse(0.5)
        with pytest.raises(ConnectionRefusedError):
            _connect(proxy).close()
        try:
            ended = old.recv(10) == b""
        except ConnectionResetError:
            ended = True
        assert ended
    assert _wait_for(lambda: proxy.state() == "pass", timeout=3)
    assert port == proxy.port
    with _connect(proxy) as new:
        assert b"b" == _roundtrip(new, b"b")


def test_refuse_without_drop_keeps_current_connections(proxy: FaultProxy) -> None:
    """refuse(..., drop=False) only refuses new connections; an open one keeps working."""
    with _connect(proxy) as old:
        proxy.refuse(5, drop=False)
        with pytest.raises(ConnectionRefusedError):
            _connect(proxy).close()
        assert b"still" == _roundtrip(old, b"still")
        proxy.pass_through()
    with _connect(proxy) as new:
        assert b"b" == _roundtrip(new, b"b")


def test_the_proxy_ends_by_itself_after_its_lifetime(echo: tuple[str, int]) -> None:
    """A proxy with lifetime 0.3 s closes its connections and its port without being told."""
    proxy = FaultProxy(echo, lifetime=0.3).start()
    try:
        sock = _connect(proxy)
        assert _wait_for(lambda: not proxy.running, timeout=3)
        sock.settimeout(2)
        try:
            ended = sock.recv(10) == b""
        except ConnectionResetError:
            ended = True
        sock.close()
        assert ended
        assert "closed" == proxy.state()
        with pytest.raises(ConnectionRefusedError):
            _connect(proxy).close()
    finally:
        proxy.close()


def test_close_ends_the_thread_and_controls_then_raise(echo: tuple[str, int]) -> None:
    """After close() the loop thread is gone and a control call is a RuntimeError."""
    proxy = FaultProxy(echo, lifetime=60).start()
    proxy.close()
    assert False is proxy.running
    with pytest.raises(RuntimeError, match="not running"):
        proxy.drop()


def test_the_control_log_says_what_happened(proxy: FaultProxy) -> None:
    """Every control call and every fault's end is logged with a wall-clock time."""
    proxy.stall(0.2)
    assert _wait_for(lambda: proxy.state() == "pass")
    proxy.drop()
    assert ["stall 0.2 s", "stall over", "drop"] == [what for _, what in proxy.log[1:]]


@pytest.mark.parametrize(
    ("upstream", "kwargs", "message"),
    [
        (("192.0.2.1", 5432), {}, "loopback"),
        (("127.0.0.1", 0), {}, "upstream port"),
        (("127.0.0.1", 5432), {"lifetime": 0}, "lifetime"),
        (("127.0.0.1", 5432), {"port": -1}, "port"),
        (("127.0.0.1", 5432), {"max_connections": 0}, "max_connections"),
    ],
)
def test_bad_construction_is_a_value_error(
    upstream: tuple[str, int], kwargs: dict[str, int], message: str
) -> None:
    """An upstream off this machine or a bad number is refused at construction."""
    with pytest.raises(ValueError, match=message):
        FaultProxy(upstream, **kwargs)


@pytest.mark.parametrize(
    ("seconds", "error"), [(0, ValueError), (-1, ValueError), ("1", TypeError)]
)
def test_bad_fault_durations_are_refused(
    proxy: FaultProxy, seconds: object, error: type[Exception]
) -> None:
    """A stall or refusal needs a positive number of seconds."""
    with pytest.raises(error, match="seconds"):
        proxy.stall(seconds)  # type: ignore[arg-type]
    assert "pass" == proxy.state()


def test_proxied_url_points_at_the_proxy(proxy: FaultProxy) -> None:
    """proxied_url() keeps driver, user, password and database and swaps host and port."""
    url = "postgresql+psycopg://u:p%40ss@127.0.0.1:5432/db"
    expected = f"postgresql+psycopg://u:p%40ss@127.0.0.1:{proxy.port}/db"
    assert expected == proxy.proxied_url(url)
