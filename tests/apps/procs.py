"""Helpers for tests that start other processes: free ports, polling with a deadline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (put on PYTHONPATH so children import ``tests.apps``)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a child: repo on PYTHONPATH, a private TMPDIR (MainDom lock files)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TMPDIR"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("WERKZEUG_RUN_MAIN", None)
    env.pop("WERKZEUG_SERVER_FD", None)
    env.update(extra)
    return env


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` every 20 ms until it returns something truthy; TimeoutError after
    ``timeout`` real seconds, naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.02)


def lines(path: Path) -> list[str]:
    """The complete lines of ``path`` so far (none when it does not exist yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


def python() -> str:
    """The interpreter running the tests (the project's virtualenv)."""
    return sys.executable


def script(name: str) -> str:
    """A console script installed next to the interpreter (``flask``, ``gunicorn``, ...)."""
    return str(Path(sys.executable).with_name(name))


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's whole process group and wait for the leader."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
