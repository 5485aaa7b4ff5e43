"""docs/deployment.md runs as written: its files, its gunicorn commands and its flask command.

The page's ```python blocks that start with ``# NAME.py`` are written to a scratch directory,
and each command is run there exactly as printed, through a shell, with this virtualenv's
scripts first on PATH. Only the address differs: gunicorn reads ``GUNICORN_CMD_ARGS`` for it,
so the command line itself stays the page's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.apps.procs import ROOT, free_port, lines, wait_until

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="gunicorn"),
    pytest.mark.slow,
    pytest.mark.multiprocess,
]

PAGE = ROOT / "docs" / "deployment.md"
FACTORY = "gunicorn -w 4 'myapp:create_app()'"
MODULE_APP = "gunicorn -w 4 wsgi:app"
PRELOAD = "gunicorn -c gunicorn_preload.py -w 4 'myapp:create_app()'"
TRIGGER = "flask --app myapp recurjobs trigger RebuildSearchIndex"
RUN_LINE = re.compile(r"^rebuilding the search index in process (\d+)$")
_FILE_BLOCK = re.compile(r"^```python\n# (\w+\.py)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def scratch(tmp_path: Path) -> Path:
    """A directory holding the page's files, as a reader would paste them."""
    text = PAGE.read_text()
    work = tmp_path / "app"
    work.mkdir()
    for name, body in _FILE_BLOCK.findall(text):
        (work / name).write_text(f"# {name}\n{body}")
    return work


def page_commands() -> list[str]:
    """Every fenced block of the page without a language that holds one line: the commands."""
    commands, block, language = [], [], None
    for line in PAGE.read_text().splitlines():
        if not line.startswith("```"):
            block.append(line)
        elif language is None:
            language, block = line[3:], []
        else:
            if language == "" and len(block) == 1:
                commands.append(block[0])
            language = None
    return commands


def environment(tmp_path: Path, port: int) -> dict[str, str]:
    """This virtualenv first on PATH, a private temp directory, gunicorn's bind address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PYTHONPATH"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["TMPDIR"] = str(tmp_path)
    env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{port} --graceful-timeout 10"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def reindex(port: int) -> int:
    """POST /admin/reindex and return the status code."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/admin/reindex", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def run_pids(log: Path) -> list[int]:
    """The pid of every run the job printed."""
    return [int(m.group(1)) for line in lines(log) if (m := RUN_LINE.match(line))]


def test_the_page_shows_the_commands_tested_here() -> None:
    """The commands this file runs are the page's, character for character."""
    commands = page_commands()
    assert [True] * 4 == [c in commands for c in (FACTORY, MODULE_APP, PRELOAD, TRIGGER)]
    assert ["gunicorn_preload.py", "myapp.py", "wsgi.py"] == sorted(
        name for name, _ in _FILE_BLOCK.findall(PAGE.read_text())
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [FACTORY, MODULE_APP, PRELOAD])
def test_gunicorn_command_runs_each_trigger_once(tmp_path: Path, command: str) -> None:
    """Under each documented gunicorn command every POST is accepted (202) and the job runs
    once per request in a single worker; with `trigger`, the flask command reaches it too."""
    work, port = scratch(tmp_path), free_port()
    env = environment(tmp_path, port)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: reindex(port) == 202, 30, "the first accepted trigger")
        wait_until(lambda: run_pids(log), 10, "the first run")
        codes = []
        for n in range(12):
            codes.append(reindex(port))
            wait_until(lambda n=n: len(run_pids(log)) == n + 2, 10, f"run {n + 2}")  # type: ignore[misc]
        cli = subprocess.run(
            ["bash", "-c", TRIGGER], cwd=work, env=env, capture_output=True, text=True, timeout=30
        )
        wait_until(lambda: len(run_pids(log)) == 14, 10, "the command's run")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    pids = run_pids(log)
    assert ([202] * 12, 14, 1) == (codes, len(pids), len(set(pids)))
    expected = f"triggered RebuildSearchIndex: the main instance (pid {pids[0]}) accepted it\n"
    assert (0, expected) == (cli.returncode, cli.stdout)


def test_flask_trigger_without_a_server_fails_in_one_line(tmp_path: Path) -> None:
    """With no server running, the documented flask command exits 1 with a one-line error."""
    work = scratch(tmp_path)
    cli = subprocess.run(
        ["bash", "-c", TRIGGER],
        cwd=work,
        env=environment(tmp_path, free_port()),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (1, 1) == (cli.returncode, len(cli.stderr.splitlines()))
    assert cli.stderr.startswith("Error: RebuildSearchIndex was not triggered: no main instance")
