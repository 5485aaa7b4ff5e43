"""Triggers reach the job: a process that is not the main instance forwards ``trigger()``.

The process holding a :class:`MainDom` lock listens on a Unix socket beside the lock file
(``MainDom.socket_path``, owner-only; see ``_listener.py``). Another process of the same
machine and key, say a web worker that took the request, sends one JSON line ``{"job",
"index", "count", "strategy", "next_delay", "expires"}`` and reads one back: ``{"accepted",
"reason", "pid"}``. ``accepted`` is what ``trigger()`` returned in the main instance. The
sender waits at most 1 s; the main instance refuses a request that arrives after its
``expires`` (wall-clock seconds, shortly before the sender gives up), so a trigger reported as
not accepted never runs later.

A job is named across processes by its class, ``module:qualname``, plus its position among
the registered instances of that class (``index`` of ``count``): the same code registers the
same jobs in the same order everywhere.

This module is the protocol and the sending side. Windows has no AF_UNIX guarantee: there,
forwarding is off and a forwarded trigger is False.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from recurjobs._maindom import MainDom
from recurjobs._schedule import INFINITE, NextExecution

__all__ = [
    "SUPPORTED",
    "TIMEOUT",
    "Reply",
    "decode_delay",
    "delivering",
    "forward_trigger",
    "job_id",
    "read_line",
    "send_trigger",
]

logger = logging.getLogger("recurjobs.forward")

TIMEOUT = 1.0
"""How long a sender waits for the main instance's answer, in seconds."""
_GRACE = 0.1  # the main instance refuses requests older than TIMEOUT - _GRACE
MAX_LINE = 4096
SUPPORTED = hasattr(socket, "AF_UNIX") and sys.platform != "win32"
delivering = threading.local()  # .active: this thread delivers a forwarded trigger


def job_id(kind: type) -> str:
    """The name of a job class that is the same in every process running the same code."""
    return f"{kind.__module__}:{kind.__qualname__}"


@dataclass(frozen=True)
class Reply:
    """The main instance's answer; ``pid`` is None when no main instance answered."""

    accepted: bool
    reason: str
    pid: int | None = None


# ----------------------------------------------------------------------------- sender
def forward_trigger(
    main_dom: MainDom,
    job: object,
    jobs: tuple[object, ...],
    strategy: NextExecution,
    next_delay: timedelta | None,
) -> bool:
    """Forward one trigger of ``job`` (an instance among ``jobs``) to the main instance."""
    reply = send_trigger(main_dom, job, jobs, strategy, next_delay)
    if not reply.accepted:
        logger.warning("trigger of %s was not run: %s", job_id(type(job)), reply.reason)
    return reply.accepted


def send_trigger(
    main_dom: MainDom,
    job: object,
    jobs: tuple[object, ...],
    strategy: NextExecution,
    next_delay: timedelta | None,
    *,
    timeout: float = TIMEOUT,
) -> Reply:
    """Ask the main instance for ``main_dom``'s key to trigger ``job``; wait up to ``timeout``."""
    if not SUPPORTED:
        return Reply(False, "forwarding triggers needs Unix sockets, which this OS lacks")
    if getattr(delivering, "active", False):
        return Reply(False, "this process lost the main instance lock while delivering")
    path = main_dom.socket_path
    if path is None:
        return Reply(False, f"the directory of {main_dom.path} is too long for a Unix socket")
    same = [j for j in jobs if type(j) is type(job)]
    request = {
        "job": job_id(type(job)),
        "index": next((i for i, j in enumerate(same) if j is job), 0),
        "count": len(same),
        "strategy": strategy.name,
        "next_delay": _encode_delay(next_delay),
        "expires": time.time() + timeout - _GRACE,
    }
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = read_line(sock, deadline)
    except FileNotFoundError:
        return Reply(False, f"no main instance listens on {path}")
    except ConnectionRefusedError:
        return Reply(False, f"no main instance answers on {path} (stale socket)")
    except TimeoutError:
        return Reply(False, f"the main instance did not answer within {timeout:g} s ({path})")
    except OSError as exc:
        return Reply(False, f"cannot reach the main instance on {path}: {exc}")
    try:
        answer = json.loads(line)
        return Reply(bool(answer["accepted"]), str(answer["reason"]), int(answer["pid"]))
    except (ValueError, KeyError, TypeError):
        return Reply(False, f"the main instance sent a reply that is not understood: {line!r}")


def read_line(sock: socket.socket, deadline: float) -> bytes:
    """One line of at most MAX_LINE bytes, read by the monotonic ``deadline``."""
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(MAX_LINE)
        if not chunk:
            raise ConnectionResetError("closed before answering")
        data += chunk
        if len(data) > MAX_LINE:
            raise ValueError("line too long")
    return data


def _encode_delay(value: timedelta | None) -> float | str | None:
    if value is None:
        return None
    return "infinite" if value == INFINITE else value.total_seconds()


def decode_delay(value: object) -> timedelta | None:
    """The inverse of the request's ``next_delay`` encoding; ValueError for anything else."""
    if value is None:
        return None
    if value == "infinite":
        return INFINITE
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
        return timedelta(seconds=value)
    raise ValueError(f"bad next_delay {value!r}")
