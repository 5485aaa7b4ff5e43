"""The programs in examples/ run, briefly, and stay short enough to read in one go."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.apps.procs import ROOT, child_env, free_port, python, wait_until

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_short_and_say_how_to_run(path: Path) -> None:
    """Each example is under 60 lines and its docstring has a "To run:" line."""
    text = path.read_text()
    assert (True, True) == (len(text.splitlines()) < 60, "\nTo run:" in text)


def run_example(tmp_path: Path, *args: str) -> str:
    """Run an example with RECURJOBS_EXAMPLE_SECONDS=2; return its output (exit code must be 0)."""
    done = subprocess.run(
        [python(), *args],
        env=child_env(tmp_path, RECURJOBS_EXAMPLE_SECONDS="2"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # stderr may hold log lines (a retried "database is locked" under load); only the code counts.
    assert 0 == done.returncode, done.stderr
    return done.stdout


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_script_app(tmp_path: Path) -> None:
    """script_app.py triggers the export at once and reports both jobs' runs at the end."""
    out = run_example(tmp_path, str(ROOT / "examples" / "script_app.py")).splitlines()
    assert "triggered export: True" in out
    assert "export done" in out
    assert "Export: 1 runs, last outcome executed" == out[-1]
    assert out[-2].startswith("Heartbeat: ")


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_distributed_workers(tmp_path: Path) -> None:
    """distributed_workers.py with two workers: runs happen and every worker exits cleanly."""
    out = run_example(tmp_path, str(ROOT / "examples" / "distributed_workers.py"), "2")
    lines = out.splitlines()
    assert "all workers stopped; exit codes: [0, 0]" == lines[-1]
    assert 1 <= sum(1 for line in lines if line.endswith("sends the invoices"))


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_flask_app(tmp_path: Path) -> None:
    """flask_app.py under `flask run`: /status answers and POST /refresh runs the job."""
    port = free_port()
    app = str(ROOT / "examples" / "flask_app.py")
    proc = subprocess.Popen(
        [python(), "-m", "flask", "--app", app, "run", "--port", str(port)],
        env=child_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def status() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{base}/status", timeout=2) as answer:
                return dict(json.load(answer))
        except OSError:
            return None

    try:
        wait_until(status, 30, "the app to answer")
        request = urllib.request.Request(f"{base}/refresh", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert 202 == answer.status
        done = wait_until(lambda: (s := status()) and s["refreshed"] and s, 30, "a refresh")
        jobs = done["jobs"]
        # The trigger's run, and maybe already the automatic one 2 s after start.
        assert [("RefreshRates", True)] == [(j["name"], j["runs"] >= 1) for j in jobs]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert 0 == proc.returncode


@pytest.mark.multiprocess
@pytest.mark.timeout(150)
def test_django_project(tmp_path: Path) -> None:
    """examples/django_project under `runserver`: /status answers, POST /refresh runs the job,
    and `manage.py recurjobs status` lists both jobs."""
    project = ROOT / "examples" / "django_project"
    port = free_port()
    environ = child_env(tmp_path, SHOP_DB=str(tmp_path / "shop.sqlite3"))
    environ.pop("RUN_MAIN", None)
    proc = subprocess.Popen(
        [python(), "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=project,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # A test run started in the background of a shell ignores SIGINT, and children inherit
        # that: give the server the default, so SIGINT stops it (and its host) as Ctrl+C does.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    base = f"http://127.0.0.1:{port}"

    def status() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{base}/status", timeout=2) as answer:
                return dict(json.load(answer))
        except OSError:
            return None

    try:
        wait_until(status, 30, "the project to answer")
        request = urllib.request.Request(f"{base}/refresh", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert 202 == answer.status
        done = wait_until(lambda: (s := status()) and s["refreshed"] and s, 30, "a refresh")
        assert ["RefreshRates", "nightly-report"] == [j["name"] for j in done["jobs"]]
    finally:
        proc.send_signal(signal.SIGINT)  # the stop at exit waits up to 5 s for the jobs
        proc.wait(60)
    assert 0 == proc.returncode
    listed = subprocess.run(
        [python(), "manage.py", "recurjobs", "status"],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == listed.returncode, listed.stderr
    assert "nightly-report" in listed.stdout
