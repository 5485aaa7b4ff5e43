"""The Django integration in real processes: the test project tests/django_project under
``manage.py`` (migrate, check, runserver with its autoreloader, ``recurjobs run``) and gunicorn.

Each test copies the project into its tmp_path (so a test may edit a file to make runserver
reload) and reads the records its jobs append to one file (see djjobs/jobs.py).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apps.procs import (
    ROOT,
    child_env,
    free_port,
    lines,
    python,
    script,
    stop_group,
    wait_until,
)
from tests.dbs import TestDatabase, database_urls, drop_tables, new_table_prefix, under_ci
from tests.sql.pgcluster import PrivatePostgres, postgres_bindir

pytestmark = pytest.mark.multiprocess

SOAK_SECONDS = float(os.environ.get("RECURJOBS_DJANGO_SOAK_SECONDS", "120"))
"""How long the two gunicorn "machines" run together: two minutes (60 periods of the
distributed job); it starts among the first tests of a parallel run, beside other long ones.
``RECURJOBS_DJANGO_SOAK_SECONDS=30`` shortens it for a quick local run."""


@dataclass(frozen=True)
class Event:
    """One record: what happened, in which process and machine, when (time.time())."""

    name: str
    pid: int
    at: float
    machine: str
    detail: str


def events(path: Path) -> list[Event]:
    """The records written so far."""
    found = []
    for line in lines(path):
        name, pid, at, machine, *rest = line.split(" ", 4)
        found.append(Event(name, int(pid), float(at), machine, rest[0] if rest else ""))
    return found


def named(path: Path, name: str) -> list[Event]:
    """The records called ``name``."""
    return [e for e in events(path) if e.name == name]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of tests/django_project in tmp_path."""
    target = tmp_path / "project"
    shutil.copytree(ROOT / "tests" / "django_project", target)
    return target


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a project process: records to tmp_path/events.txt, locks in tmp_path."""
    values = child_env(tmp_path, DJTEST_OUT=str(tmp_path / "events.txt"), **extra)
    values["DJANGO_SETTINGS_MODULE"] = "djproj.settings"
    values.pop("RUN_MAIN", None)
    return values


def manage(project: Path, environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py ARGS`` in the project to completion."""
    return subprocess.run(
        [python(), str(project / "manage.py"), *args],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def served_pid(port: int) -> int | None:
    """The pid of the process that answers /pid on ``port``, None when nobody answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/pid", timeout=2) as answer:
            return int(answer.read())
    except (OSError, ValueError):  # not up yet, or cut off while the child reloads
        return None


# ------------------------------------------------------------------------- commands
@pytest.mark.timeout(90)
def test_migrate_and_check_start_no_host(project: Path, tmp_path: Path) -> None:
    """`migrate`, `check` and `shell` load the project (and import the jobs) but never start
    the host."""
    environ = env(tmp_path)
    commands = [["migrate"], ["check"], ["shell", "-c", "import djjobs.jobs"]]
    results = [manage(project, environ, *command) for command in commands]
    assert [0, 0, 0] == [r.returncode for r in results], [r.stderr for r in results]
    output = "".join(r.stdout + r.stderr for r in results)
    assert ("recurjobs host started" in output, "main instance lock" in output) == (False, False)
    assert 0 < len(named(tmp_path / "events.txt", "loaded"))  # check built the host
    assert [] == named(tmp_path / "events.txt", "run")


@pytest.mark.timeout(60)
def test_check_reports_bad_settings(project: Path, tmp_path: Path) -> None:
    """`manage.py check` fails with the recurjobs error ids and messages of bad settings."""
    bad = json.dumps({"DATABASE": "elsewhere", "DISTRIBUTED": {"poll_period": -1}})
    done = manage(project, env(tmp_path, DJTEST_RECURJOBS=bad), "check")
    assert 1 == done.returncode
    assert "recurjobs.E003" in done.stderr
    assert "recurjobs.E006" in done.stderr
    assert "'elsewhere', which is neither a URL nor a DATABASES alias" in done.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("stuck_seconds", "stop_timeout", "code"), [("1", "5", 0), ("30", "1", 1)], ids=["0", "1"]
)
def test_recurjobs_run_stops_on_sigterm(
    project: Path, tmp_path: Path, stuck_seconds: str, stop_timeout: str, code: int
) -> None:
    """`manage.py recurjobs run --stop-timeout T` gets SIGTERM while a job runs: it stops the
    host, waits for the job and exits 0 when the job ends within T; when the job ignores its
    cancellation beyond T, it exits 1 saying so, without waiting for the job."""
    out = tmp_path / "events.txt"
    environ = env(tmp_path, DJTEST_JOBS="StuckJob", DJTEST_STUCK_SECONDS=stuck_seconds)
    command = [python(), str(project / "manage.py"), "recurjobs", "run"]
    proc = subprocess.Popen(
        [*command, "--stop-timeout", stop_timeout],
        cwd=project,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(lambda: named(out, "stuck-start"), 30, "the job to start")
        signalled = time.time()
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=20)[1].decode()
    finally:
        stop_group(proc)
    assert code == proc.returncode, stderr
    waiting = f"recurjobs: stopping (waiting up to {stop_timeout} s for running jobs)"
    refused = f"some jobs did not stop within {stop_timeout} s"
    assert (True, code == 1) == (waiting in stderr, refused in stderr)
    ended = [e.at for e in named(out, "stuck-end")]
    if code == 0:  # the job was still running at the signal, and the command waited for it
        assert (1, True) == (len(ended), ended[0] > signalled)
    else:
        assert [] == ended


# ------------------------------------------------------------------------- runserver
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("main_dom", ["false", "true"])
def test_runserver_runs_jobs_once_and_again_after_a_reload(
    project: Path, tmp_path: Path, main_dom: str
) -> None:
    """runserver's watcher never runs jobs; its child does, and after a file change the old
    child stops its host at exit and the new child runs the jobs: one runner at a time."""
    out, port = tmp_path / "events.txt", free_port()
    command = [python(), str(project / "manage.py"), "runserver", f"127.0.0.1:{port}"]
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=project,
            env=env(tmp_path, DJTEST_MAIN_DOM=main_dom),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        first = wait_until(lambda: served_pid(port), 60, "the dev server to answer")
        wait_until(lambda: len(named(out, "run")) >= 5, 30, "five runs")
        jobs_file = project / "djjobs" / "jobs.py"
        jobs_file.write_text(jobs_file.read_text() + "\n# changed by the test\n")
        second = wait_until(
            lambda: (pid := served_pid(port)) not in (None, first) and pid, 60, "a new child"
        )
        wait_until(
            lambda: len([e for e in named(out, "run") if e.pid == second]) >= 5, 30, "new runs"
        )
    finally:
        stop_group(proc)
    runs = named(out, "run")
    assert {first, second} == {e.pid for e in runs}
    assert proc.pid not in {e.pid for e in runs}
    assert first in {e.pid for e in named(out, "closed")}  # stopped at the reload's exit
    last_of_first = max(e.at for e in runs if e.pid == first)
    first_of_second = min(e.at for e in runs if e.pid == second)
    assert last_of_first < first_of_second


# -------------------------------------------------------------------------- gunicorn
@pytest.fixture
def postgres_db() -> Iterator[TestDatabase]:
    """The shared PostgreSQL test database with a fresh table prefix (tables dropped after)."""
    url = database_urls()["postgres"]
    if url is None:
        if under_ci():
            pytest.fail("RECURJOBS_TEST_POSTGRES_URL is not set")
        pytest.skip(
            'RECURJOBS_TEST_POSTGRES_URL is not set; eval "$(bash scripts/test-databases.sh)"'
        )
    database = TestDatabase("postgres", url, new_table_prefix())
    yield database
    drop_tables(database)


def gunicorn(
    project: Path, environ: dict[str, str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    """gunicorn with 3 sync workers serving the project's WSGI app on ``port``."""
    command = [script("gunicorn"), "-w", "3", "-b", f"127.0.0.1:{port}", "--chdir", str(project)]
    command += ["--graceful-timeout", "10", "djproj.wsgi"]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def trigger(port: int) -> bool:
    """GET /trigger: the answering worker triggers PidJob; whether the trigger was accepted."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/trigger", timeout=10) as answer:
        return bool(json.load(answer)["accepted"])


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(int(SOAK_SECONDS) + 180)
def test_gunicorn_two_machines_three_workers_each(
    project: Path, tmp_path: Path, postgres_db: TestDatabase
) -> None:
    """Two "machines" (lock directories) of 3 gunicorn workers share PostgreSQL for two
    minutes: each runs the recurring job in one worker, the distributed job runs once per
    period cluster-wide with no overlap, and triggers from any worker's view and from
    `manage.py recurjobs trigger` are accepted."""
    out = tmp_path / "events.txt"
    procs, ports, environs = [], {}, {}
    for machine in ("a", "b"):
        locks = tmp_path / f"locks-{machine}"
        locks.mkdir()
        environ = env(
            tmp_path,
            DJTEST_DB=postgres_db.url.replace("postgresql+psycopg://", "postgresql://"),
            DJTEST_JOBS="PidJob,ClusterJob",
            DJTEST_LOCKS=str(locks),
            DJTEST_MACHINE=machine,
            DJTEST_PREFIX=postgres_db.table_prefix,
        )
        ports[machine], environs[machine] = free_port(), environ
        procs.append(
            gunicorn(project, environ, ports[machine], tmp_path / f"gunicorn-{machine}.log")
        )
    accepted: list[bool] = []
    try:
        wait_until(lambda: len({e.pid for e in named(out, "loaded")}) >= 6, 90, "six workers")
        begin = time.time()
        while time.time() < begin + SOAK_SECONDS:
            accepted.extend(trigger(port) for port in ports.values())
            time.sleep(5)
        # The command finds machine a's main instance through the same default lock key.
        command = manage(project, environs["a"], "recurjobs", "trigger", "PidJob")
    finally:
        for proc in procs:
            stop_group(proc)
    found = events(out)
    for machine in ("a", "b"):
        runners = {e.pid for e in found if e.name == "run" and e.machine == machine}
        loaded = {e.pid for e in found if e.name == "loaded" and e.machine == machine}
        assert (1, True) == (len(runners), runners <= loaded), machine
        assert runners <= {e.pid for e in found if e.name == "closed"}  # stopped at exit
    assert all(accepted) and len(accepted) >= 2
    expected = "triggered PidJob: the main instance (pid "
    assert (0, expected) == (command.returncode, command.stdout[: len(expected)]), command.stderr
    starts = sorted(e.at for e in found if e.name == "dist-start")
    ends = sorted(e.at for e in found if e.name == "dist-end")
    assert len(starts) == len(ends)
    overlaps = sum(1 for s, previous_end in zip(starts[1:], ends, strict=False) if s < previous_end)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert 0 == overlaps
    assert min(gaps) >= 1.5  # period 2 s; records come a little after each claim
    assert SOAK_SECONDS / 2 / 3 <= len(starts) <= SOAK_SECONDS / 2 + 3
    assert {"a", "b"} >= {e.machine for e in found if e.name == "dist-start"}


def docs_gunicorn_conf() -> str:
    """The gunicorn.conf.py of docs/django.md's `--preload` recipe, as the page shows it."""
    page = (ROOT / "docs" / "django.md").read_text()
    start = page.index("```python\n# gunicorn.conf.py\n") + len("```python\n")
    return page[start : page.index("```", start)]


def parent_pid(pid: int) -> int:
    """The parent of the live process ``pid`` (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.timeout(90)
def test_gunicorn_preload_with_the_documented_post_fork(project: Path, tmp_path: Path) -> None:
    """gunicorn with docs/django.md's gunicorn.conf.py (`preload_app`, AUTOSTART off, start()
    in `post_fork`) and 2 workers: the project loads once, in the master, which runs no job;
    one worker runs the recurring job, and triggers from the workers' views are accepted."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("reads parent pids from /proc")
    (project / "gunicorn.conf.py").write_text(docs_gunicorn_conf())
    out, port = tmp_path / "events.txt", free_port()
    command = [script("gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "djproj.wsgi"]
    with (tmp_path / "gunicorn.log").open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=project,
            env=env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: len(named(out, "run")) >= 3, 60, "three runs")
        runner = named(out, "run")[0].pid
        runner_parent = parent_pid(runner)
        accepted = [trigger(port) for _ in range(6)]
    finally:
        stop_group(proc)
    runs = named(out, "run")
    assert ({proc.pid}, {runner}) == ({e.pid for e in named(out, "loaded")}, {e.pid for e in runs})
    assert (proc.pid, [True] * 6) == (runner_parent, accepted)
    assert runner in {e.pid for e in named(out, "closed")}  # stopped at the worker's exit


# ------------------------------------------------------------------ database restart
@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this module's own, running; stopped and removed afterwards (the
    restart tests leave it running)."""
    bindir = postgres_bindir()
    if bindir is None:
        message = "no PostgreSQL server binaries under /usr/lib/postgresql"
        if under_ci():
            pytest.fail(message)
        pytest.skip(message)
    server = PrivatePostgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(150)
@pytest.mark.parametrize(("close", "after_restart"), [("true", "db-ok"), ("false", "db-error")])
def test_orm_job_survives_a_database_restart(
    project: Path,
    tmp_path: Path,
    private_postgres: PrivatePostgres,
    close: str,
    after_restart: str,
) -> None:
    """`manage.py recurjobs run` with a persistent Django connection (CONN_MAX_AGE=None): after
    the server restarts, every run succeeds on a new connection; with CLOSE_CONNECTIONS off
    the job keeps the dead connection and every run fails (the trap this closes)."""
    out = tmp_path / "events.txt"
    environ = env(
        tmp_path,
        DJTEST_DB=private_postgres.url.replace("postgresql+psycopg://", "postgresql://"),
        DJTEST_CONN_MAX_AGE="none",
        DJTEST_JOBS="DbJob",
        DJTEST_CLOSE=close,
    )
    command = [python(), str(project / "manage.py"), "recurjobs", "run", "--stop-timeout", "10"]
    with (tmp_path / "run.log").open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=project,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: len(named(out, "db-ok")) >= 3, 60, "three queries")
        before = {e.detail for e in named(out, "db-ok")}
        private_postgres.stop()
        private_postgres.start()
        restarted = time.time()

        def later() -> list[Event]:
            return [e for e in events(out) if e.name.startswith("db-") and e.at > restarted]

        wait_until(lambda: len(later()) >= 5, 60, "five runs after the restart")
    finally:
        stop_group(proc)
    assert 0 == proc.returncode, (tmp_path / "run.log").read_text()
    runs = later()
    assert {after_restart} == {e.name for e in runs}
    if after_restart == "db-ok":
        assert set() == before & {e.detail for e in runs}  # a new server connection
