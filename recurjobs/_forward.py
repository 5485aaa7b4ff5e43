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

Besides triggers (``"action"`` absent or ``"trigger"``), a request may ask the main instance to
``"pause"`` or ``"resume"`` a job (same fields, no strategy) or for the ``"status"`` of the
recurring jobs of the host that registers ``job``: the answer then carries ``"statuses"``, one
object per job (:func:`status_to_wire`). The dashboard mounted in a web worker uses these, so
what it shows and does is the main instance's, wherever the request landed.

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
from datetime import datetime, timedelta
from typing import Any

from recurjobs._cron import Cron
from recurjobs._guard import log_quietly
from recurjobs._maindom import MainDom
from recurjobs._schedule import INFINITE, NextExecution
from recurjobs._status import JobStatus

__all__ = [
    "SUPPORTED",
    "TIMEOUT",
    "Reply",
    "decode_delay",
    "delivering",
    "forward_trigger",
    "job_id",
    "fetch_statuses",
    "read_line",
    "send_job_action",
    "send_trigger",
    "status_from_wire",
    "status_to_wire",
]

logger = logging.getLogger("recurjobs.forward")

TIMEOUT = 1.0
"""How long a sender waits for the main instance's answer, in seconds."""
_GRACE = 0.1  # the main instance refuses requests older than TIMEOUT - _GRACE
MAX_LINE = 4096
MAX_STATUS_LINE = 4 * 1024 * 1024  # a status answer: every recurring job of a host
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
        log_quietly(
            logging.WARNING,
            "trigger of %s was not run: %s",
            job_id(type(job)),
            reply.reason,
            on=logger,
        )
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
    request = {
        **_job_fields(job, jobs),
        "strategy": strategy.name,
        "next_delay": _encode_delay(next_delay),
        "expires": time.time() + timeout - _GRACE,
    }
    reply, _ = _exchange(path, request, timeout, MAX_LINE)
    return reply


def send_job_action(
    main_dom: MainDom, job: object, jobs: tuple[object, ...], action: str, *,
    timeout: float = TIMEOUT,
) -> Reply:  # fmt: skip
    """Ask the main instance to ``"pause"`` or ``"resume"`` ``job`` (one of ``jobs``)."""
    path = _reachable(main_dom)
    if isinstance(path, Reply):
        return path
    expires = time.time() + timeout - _GRACE
    request = {**_job_fields(job, jobs), "action": action, "expires": expires}
    reply, _ = _exchange(path, request, timeout, MAX_LINE)
    return reply


def fetch_statuses(
    main_dom: MainDom, job: object, jobs: tuple[object, ...], *, timeout: float = TIMEOUT
) -> tuple[JobStatus, ...] | None:
    """The main instance's ``status()`` of the recurring jobs of the host that registers
    ``job`` (one of ``jobs``), without any this process cannot read back; None when it does
    not answer or answers something else."""
    path = _reachable(main_dom)
    if isinstance(path, Reply):
        return None
    expires = time.time() + timeout - _GRACE
    request = {**_job_fields(job, jobs), "action": "status", "expires": expires}
    reply, answer = _exchange(path, request, timeout, MAX_STATUS_LINE)
    if not reply.accepted or not isinstance(answer.get("statuses"), list):
        return None
    statuses: list[JobStatus] = []
    for item in answer["statuses"]:
        try:
            statuses.append(status_from_wire(item))
        except (KeyError, TypeError, ValueError, OverflowError):
            continue  # one the caller cannot read (a zone no name stands for): left to it
    return tuple(statuses)


def _reachable(main_dom: MainDom) -> str | Reply:
    if not SUPPORTED:
        return Reply(False, "forwarding needs Unix sockets, which this OS lacks")
    path = main_dom.socket_path
    if path is None:
        return Reply(False, f"the directory of {main_dom.path} is too long for a Unix socket")
    return path


def _job_fields(job: object, jobs: tuple[object, ...]) -> dict[str, object]:
    same = [j for j in jobs if type(j) is type(job)]
    return {
        "job": job_id(type(job)),
        "index": next((i for i, j in enumerate(same) if j is job), 0),
        "count": len(same),
    }


def _exchange(
    path: str, request: dict[str, object], timeout: float, limit: int
) -> tuple[Reply, dict[str, Any]]:
    """Send ``request`` to the listener at ``path``; its reply, and the whole answer."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = read_line(sock, deadline, limit)
    except FileNotFoundError:
        return Reply(False, f"no main instance listens on {path}"), {}
    except ConnectionRefusedError:
        return Reply(False, f"no main instance answers on {path} (stale socket)"), {}
    except TimeoutError:
        return Reply(False, f"the main instance did not answer within {timeout:g} s ({path})"), {}
    except (OSError, ValueError) as exc:
        return Reply(False, f"cannot reach the main instance on {path}: {exc}"), {}
    try:
        answer = json.loads(line)
        reply = Reply(bool(answer["accepted"]), str(answer["reason"]), int(answer["pid"]))
    except (ValueError, KeyError, TypeError):
        what = line[:200]
        return Reply(False, f"the main instance sent a reply that is not understood: {what!r}"), {}
    return reply, answer


def read_line(sock: socket.socket, deadline: float, limit: int = MAX_LINE) -> bytes:
    """One line of at most ``limit`` bytes, read by the monotonic ``deadline``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed before answering")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ValueError("line too long")
        if chunk.endswith(b"\n"):
            return b"".join(chunks)


def status_to_wire(status: JobStatus) -> dict[str, object]:
    """``status`` as JSON-ready values (the inverse of :func:`status_from_wire`)."""
    period = status.period
    return {
        "name": status.name,
        "kind": status.kind,
        "period": (
            {"cron": period.expression, "tz": period.zone_name}
            if isinstance(period, Cron)
            else _encode_delay(period)
        ),
        "next_run": _encode_time(status.next_run),
        "last_start": _encode_time(status.last_start),
        "last_outcome": status.last_outcome,
        "runs": status.runs,
        "failures": status.failures,
        "running": status.running,
        "alive": status.alive,
        "paused": status.paused,
    }


def status_from_wire(item: dict[str, Any]) -> JobStatus:
    """A :class:`JobStatus` from :func:`status_to_wire`'s values; ValueError or TypeError for
    anything else."""
    raw = item["period"]
    period: timedelta | Cron | None
    if isinstance(raw, dict):
        period = Cron(str(raw["cron"]), tz=str(raw["tz"]))
    else:
        period = decode_delay(raw)
    if period is None:
        raise ValueError(f"bad period {raw!r}")
    kind = item["kind"]
    if kind not in ("recurring", "distributed"):
        raise ValueError(f"bad kind {kind!r}")
    outcome = item["last_outcome"]
    return JobStatus(
        name=str(item["name"]),
        kind=kind,
        period=period,
        next_run=_decode_time(item["next_run"]),
        last_start=_decode_time(item["last_start"]),
        last_outcome=None if outcome is None else str(outcome),
        runs=int(item["runs"]),
        failures=int(item["failures"]),
        running=bool(item["running"]),
        alive=bool(item["alive"]),
        paused=bool(item["paused"]),
    )


def _encode_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _decode_time(value: object) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"naive time {value!r}")
    return moment


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
