"""A throwaway PostgreSQL server of the test's own, for tests that stop and start the server.

Stopping the shared test server would break every other test run using it at that moment (and
another run's ``scripts/test-databases.sh`` would restart it under us), so the outage test
gets a private cluster: ``initdb`` into a temporary directory, a free loopback port, password
authentication over TCP. As root the server runs as the ``postgres`` user, since PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PrivatePostgres", "postgres_bindir"]

USER = "recurjobs"
PASSWORD = "outage-test-secret"


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with ``initdb`` and ``pg_ctl``, if any."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
        reverse=True,
    )
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivatePostgres:
    """One private PostgreSQL cluster in a new temporary directory: ``start()``, ``stop()``,
    ``url``; ``remove()`` stops it and deletes the directory.

    The directory is made directly under the system temp dir, since as root the server runs
    as ``postgres``, which cannot enter pytest's root-only ``tmp_path``.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        directory = Path(tempfile.mkdtemp(prefix="recurjobs-pg-"))
        self.directory = directory
        self.data = directory / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(directory, "postgres", "postgres")
        password_file = directory / "password"
        password_file.write_text(PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(password_file, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
        )

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions and close connections)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs, and delete its directory."""
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.directory, ignore_errors=True)
