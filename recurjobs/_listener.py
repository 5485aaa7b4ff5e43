"""The main instance's side of trigger forwarding: listen beside the lock file, deliver.

All hosts of one process that share a lock file share one listener; a request goes to the one
host of this process that has the job (``_forward.py`` has the protocol). The listener starts
when this process becomes main, at any ``try_acquire()`` through ``_maindom.on_main``, and
closes when its last host stops, before the host releases the lock. The socket file is mode
0o600 from its first moment, a stale one (nobody answers) is replaced, anything else at that
path is left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import selectors
import socket
import stat
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

from recurjobs import _forward
from recurjobs._forward import (
    TIMEOUT,
    Reply,
    decode_delay,
    delivering,
    job_id,
    read_line,
    status_to_wire,
)
from recurjobs._guard import log_quietly
from recurjobs._maindom import MainDom, on_main
from recurjobs._schedule import NextExecution
from recurjobs._trigger import check_trigger, deliver, refusal

if TYPE_CHECKING:
    from recurjobs._host import JobHost

__all__ = ["Attachment", "attach"]

_STRANGER_READ = 0.5  # seconds a peer of another user gets to send its request
logger = logging.getLogger("recurjobs.forward")

_RETRY_BIND = 5.0  # seconds between attempts to create a socket that could not be created


class _Listener:
    """This process's listener for one lock file, shared by the hosts that use that file."""

    def __init__(self, main_dom: MainDom, path: str | None) -> None:
        self.main_dom = main_dom
        self.path = path
        self.hosts: list[JobHost] = []
        self.mutex = threading.Lock()
        self.sock: socket.socket | None = None
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        self.wake_r, self.wake_w = socket.socketpair()
        self.thread: threading.Thread | None = None
        self.closed = False
        self.retry_at = 0.0
        self.warned = False

    def ensure(self) -> None:
        """This process is main: listen, unless already listening (called at every check)."""
        if self.sock is not None or self.closed:
            return
        try:
            with self.mutex:
                if self.sock is not None or self.closed or time.monotonic() < self.retry_at:
                    return
                self._listen()
        except Exception:
            log_quietly(
                logging.ERROR,
                "the trigger listener failed to start",
                exc_info=True,
                on=logger,
            )

    def _listen(self) -> None:
        self.retry_at = time.monotonic() + _RETRY_BIND
        if self.path is None:
            self._warn(f"the directory of {self.main_dom.path} is too long for a Unix socket")
            return
        problem = _occupied(self.path)
        if problem:
            self._warn(f"cannot listen on {self.path}: {problem}")
            return
        try:
            sock, identity = _bind(self.path)
        except OSError as exc:
            self._warn(f"cannot listen on {self.path}: {exc}")
            return
        self.sock, self.identity = sock, identity
        self.thread = threading.Thread(
            target=self._serve, args=(sock,), name="recurjobs-trigger-listener", daemon=True
        )
        self.thread.start()
        log_quietly(logging.INFO, "listening for forwarded triggers on %s", self.path, on=logger)

    def _warn(self, message: str) -> None:
        if not self.warned:
            self.warned = True
            log_quietly(
                logging.WARNING,
                "%s; triggers from other processes will return False",
                message,
                on=logger,
            )

    def close(self, *, unlink: bool = True) -> None:
        """Stop accepting forwarded triggers; remove the socket file if it is still ours."""
        with self.mutex:
            self.closed = True
            sock, self.sock = self.sock, None
            thread = self.thread
        if sock is not None and unlink and self.path is not None:
            with contextlib.suppress(OSError):
                info = os.lstat(self.path)
                if (info.st_dev, info.st_ino) == self.identity:
                    os.unlink(self.path)
        if not unlink:  # a forked child: the wake socket pair is shared with the parent
            thread = None
        else:
            with contextlib.suppress(OSError):
                self.wake_w.send(b"x")
        if thread is not None and thread is not threading.current_thread():
            thread.join(TIMEOUT)
        for item in (sock, self.wake_r, self.wake_w):
            if item is not None:
                item.close()

    def _serve(self, sock: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self.wake_r, selectors.EVENT_READ)
            while not self.closed:
                ready = {key.fileobj for key, _ in selector.select()}
                if self.closed or self.wake_r in ready:
                    return
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                with conn:
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(TIMEOUT)
            extra: dict[str, object] = {}
            if not _same_user(conn):
                # Read what it sent first, so it gets the reason rather than a broken pipe;
                # briefly: the listener answers one peer at a time, and this one is refused.
                with contextlib.suppress(OSError, ValueError):
                    read_line(conn, time.monotonic() + _STRANGER_READ)
                reply = Reply(False, "refused: the sender runs as another user")
            else:
                line = read_line(conn, time.monotonic() + TIMEOUT)
                try:
                    request = json.loads(line)
                except ValueError:
                    reply = Reply(False, f"bad request {line[:200]!r}")
                else:
                    reply, extra = self._deliver(request)
            payload = {"accepted": reply.accepted, "reason": reply.reason, "pid": os.getpid()}
            conn.sendall(json.dumps({**payload, **extra}).encode() + b"\n")
        except Exception as exc:  # a broken request must not end the listener
            log_quietly(logging.DEBUG, "forwarded request dropped: %r", exc, on=logger)

    def _deliver(self, request: Any) -> tuple[Reply, dict[str, object]]:
        """Answer one request: a trigger, a pause or resume, or a status (see ``_forward``)."""
        try:
            action = request.get("action", "trigger")
            name, index, count = request["job"], request["index"], request["count"]
            expires = float(request["expires"])
            if action == "trigger":
                strategy = NextExecution[request["strategy"]]
                next_delay = decode_delay(request["next_delay"])
            elif action not in ("pause", "resume", "status"):
                raise ValueError(action)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
            return Reply(False, f"bad request {request!r}"), {}
        if time.time() > expires:
            return Reply(False, "the request arrived after its sender stopped waiting"), {}
        with self.mutex:
            hosts = list(self.hosts)
        found = [(h, js) for h in hosts if (js := [j for j in h.jobs if job_id(type(j)) == name])]
        if not found:
            return Reply(False, f"no job {name} is registered in the main instance"), {}
        if len(found) > 1:
            reason = f"{name} is registered with several hosts in the main instance"
            return Reply(False, reason), {}
        host, jobs = found[0]
        if len(jobs) != count or not isinstance(index, int) or not 0 <= index < count:
            return Reply(False, f"{name} is registered {len(jobs)} times in the main instance"), {}
        if action == "status":
            statuses = [status_to_wire(s) for s in host.status() if s.kind == "recurring"]
            return Reply(True, "status"), {"statuses": statuses}
        # The sender reports "not done" once ``expires`` passed: a change may only be made
        # before that. The host may hold its lock a while (adding a job whose database is
        # slow), so it is waited for with that bound; the change itself is made without it
        # (a trigger runs the gates, which are user code).
        if action != "trigger":
            return self._set_paused(host, jobs[index], action == "pause", expires), {}
        try:
            check_trigger(jobs[index], strategy, next_delay)
        except (TypeError, ValueError) as exc:
            return Reply(False, f"the main instance refused: {exc}"), {}
        in_time, runner = host._runner_until(jobs[index], expires)
        if not in_time:
            return Reply(False, "the main instance was busy until its sender stopped waiting"), {}
        delivering.active = True
        try:
            accepted = deliver(host, runner, strategy, next_delay)
        finally:
            delivering.active = False
        if not accepted:
            return Reply(False, f"the main instance refused it: {refusal(host, runner)}"), {}
        return Reply(True, "accepted"), {}

    @staticmethod
    def _set_paused(host: JobHost, job: object, paused: bool, expires: float) -> Reply:
        verb = "pause" if paused else "resume"
        # pause() takes the same (re-entrant) lock: held here, it cannot be held up any more
        with host._locked_before(expires) as in_time:
            if not in_time:
                return Reply(False, "the main instance was busy until its sender stopped waiting")
            done = host.pause(job) if paused else host.resume(job)
        return Reply(done, f"{verb}d" if done else f"the main instance could not {verb} it")


def _occupied(path: str) -> str:
    """Why ``path`` cannot be replaced by our socket ("" when it can: missing or stale)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return ""
    if not stat.S_ISSOCK(info.st_mode):
        return "something that is not a socket is in the way"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return ""  # stale: left by a process that ended without removing it
        except OSError as exc:
            return f"cannot tell whether it is in use ({exc})"
    return "another process answers on it"


def _bind(path: str) -> tuple[socket.socket, tuple[int, int]]:
    """Listen on ``path`` with mode 0o600 from the first moment anyone can connect.

    The socket is bound under a random name, restricted, then renamed over ``path`` (which
    replaces a stale socket in one step).
    """
    temp = os.path.join(os.path.dirname(path), f"rj-{secrets.token_hex(8)}.tmp")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(temp)
        try:
            os.chmod(temp, 0o600)
            sock.listen(64)
            os.replace(temp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        info = os.lstat(path)
    except OSError:
        sock.close()
        raise
    return sock, (info.st_dev, info.st_ino)


def _same_user(conn: socket.socket) -> bool:
    """On Linux, whether the peer runs as our user (or root); elsewhere the file mode decides."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid in (os.geteuid(), 0)


# ------------------------------------------------------------------ hosts and listeners
_listeners: dict[str, _Listener] = {}
_listeners_mutex = threading.Lock()
_warned_unsupported = False


class Attachment:
    """One host's use of its process's listener; ``close()`` at the host's stop."""

    def __init__(self, listener: _Listener, host: JobHost) -> None:
        self._listener: _Listener | None = listener
        self._host = host

    def close(self) -> None:
        """Detach the host; the last host to leave closes the listener and its socket file."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with _listeners_mutex:
            with listener.mutex:
                with contextlib.suppress(ValueError):
                    listener.hosts.remove(self._host)
                last = not listener.hosts
            if last and _listeners.get(listener.main_dom.path) is listener:
                del _listeners[listener.main_dom.path]
                on_main(listener.main_dom, None)
        if last:
            listener.close()


def attach(main_dom: MainDom, host: JobHost) -> Attachment | None:
    """Let ``host`` receive triggers forwarded to this process while it is main."""
    global _warned_unsupported
    if not _forward.SUPPORTED:
        if not _warned_unsupported:
            _warned_unsupported = True
            log_quietly(
                logging.WARNING,
                "no Unix sockets here: triggers are not forwarded between processes",
                on=logger,
            )
        return None
    with _listeners_mutex:
        listener = _listeners.get(main_dom.path)
        if listener is None:
            listener = _listeners[main_dom.path] = _Listener(main_dom, main_dom.socket_path)
            on_main(main_dom, listener.ensure)
        with listener.mutex:
            listener.hosts.append(host)
    if main_dom.is_main:
        listener.ensure()
    return Attachment(listener, host)


def _forget_listeners_in_child() -> None:
    # The child does not hold the lock: close the inherited sockets, leave the file to the parent.
    global _listeners_mutex
    _listeners_mutex = threading.Lock()
    for listener in list(_listeners.values()):
        listener.mutex = threading.Lock()
        on_main(listener.main_dom, None)
        listener.close(unlink=False)
    _listeners.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_listeners_in_child)
