"""The cluster benchmark: several host processes share the same jobs on one database.

The contenders are recurjobs (``JobHost`` with distributed jobs) and APScheduler 4.0.0a6
(``Scheduler`` with ``SQLAlchemyDataStore`` and, on PostgreSQL, ``PsycopgEventBroker``; lease
10 s). Every run gets a private database (PostgreSQL: ``CREATE DATABASE``; MariaDB: a database
named ``recurjobs_test_b<hex>``; SQLite: a temporary file) that is dropped afterwards, so
``pg_stat_database`` counts only this run's transactions.

Timeline of one run (wall clock, all on the UTC grid of the period ``P``): the hosts import,
build their schedulers and report ready; the parent picks the first measured boundary ``b1``
far enough ahead for the hosts to write their rows (or schedules), tells every host ``go``
(all start at that instant) and measures ``n`` whole periods ``[b1, b1 + n P)``. Each run
(the job sleeps ``job_ms``) appends (job, start, end) to its host's file; CPU time is
``time.process_time()`` of each host over the window; transactions are the database's
``xact_commit + xact_rollback`` delta over the window.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import logging
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import HERE, ROOT, percentile

APS4_LEASE = timedelta(seconds=10)
NTH = 100  # the lateness of the 100th due job's start after its boundary


def host_engine(url: str, settings: Any) -> Any:
    """An engine made as a host makes it from ``url`` with these settings (the same statement
    bound, so its sessions carry the bound and no step has to set it)."""
    from recurjobs.sql import make_engine
    from recurjobs.sql._poller import heartbeat_interval

    return make_engine(url, statement_timeout=min(5.0, max(1.0, heartbeat_interval(settings))))


# ------------------------------------------------------------------- private databases
@contextlib.contextmanager
def private_database(url: str | None) -> Iterator[tuple[str, Callable[[], int | None]]]:
    """A fresh database on the server of ``url`` (None: a SQLite file), dropped afterwards.

    Yields its URL and a function returning the database's transaction count so far
    (``pg_stat_database``; None where the server has no per-database count).
    """
    from sqlalchemy import create_engine, make_url, text

    if url is None:
        folder = tempfile.mkdtemp(prefix="recurjobs-cluster-db-")
        try:
            yield f"sqlite:///{folder}/jobs.db", lambda: None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    base = make_url(url)
    backend = base.get_backend_name()
    if backend == "postgresql":
        name = f"rjbench_{secrets.token_hex(4)}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=_null_pool())
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def xacts() -> int | None:
            query = text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :n"
            )
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_stat_clear_snapshot()"))
                return int(conn.execute(query, {"n": name}).scalar_one())

        try:
            yield base.set(database=name).render_as_string(hide_password=False), xacts
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    # MySQL/MariaDB: the test account may create databases named recurjobs_test...
    name = f"{base.database}_b{secrets.token_hex(4)}"
    admin = create_engine(base, poolclass=_null_pool())
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}`"))
    try:
        yield base.set(database=name).render_as_string(hide_password=False), lambda: None
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


# ----------------------------------------------------------------------- the hosts
class _Recorder:
    """The runs of one host process and its CPU time at the window's edges."""

    def __init__(self, folder: Path, index: int) -> None:
        self.folder = folder
        self.index = index
        self.runs: list[tuple[str, float, float, float, float]] = []

    def work(self, name: str, job_ms: float) -> None:
        wall, mono = time.time(), time.monotonic()
        time.sleep(job_ms / 1000)
        self.runs.append((name, wall, time.time(), mono, time.monotonic()))

    def wait_for_go(self) -> dict[str, float]:
        (self.folder / f"ready-{self.index}").touch()
        go_file = self.folder / "go"
        while not go_file.exists():
            time.sleep(0.01)
        plan: dict[str, float] = json.loads(go_file.read_text())
        return plan

    def window(self, plan: dict[str, float], extra: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Sleep through the measured window; CPU time (and ``extra()``) at both edges."""
        time.sleep(max(0.0, plan["start"] - time.time()))
        cpu0, extra0 = time.process_time(), extra()
        time.sleep(max(0.0, plan["end"] - time.time()))
        cpu1, extra1 = time.process_time(), extra()
        return {
            "cpu": cpu1 - cpu0,
            "extra": {k: extra1[k] - extra0.get(k, 0) for k in extra1},
        }

    def save(self, result: dict[str, Any]) -> None:
        with open(self.folder / f"runs-{self.index}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            for name, start, end, mono_start, mono_end in self.runs:
                writer.writerow([name, repr(start), repr(end), repr(mono_start), repr(mono_end)])
        (self.folder / f"counts-{self.index}.json").write_text(json.dumps(result))


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().splitlines()[0][:300])


def recurjobs_host(
    url: str, index: int, out: str, jobs: int, period_s: float, job_ms: float, poll_ms: float
) -> dict[str, Any]:
    """One recurjobs host (a process of its own): the same ``jobs`` as every other host."""
    from sqlalchemy import event

    from recurjobs import CancellationToken, DistributedJob, DistributedJobSettings, JobHost
    rec = _Recorder(Path(out), index)

    class Work(DistributedJob):
        def execute(self, token: CancellationToken) -> None:
            rec.work(self.name, job_ms)

    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    warnings = _Warnings()
    logging.getLogger("recurjobs").addHandler(warnings)
    settings = DistributedJobSettings(
        poll_period=timedelta(milliseconds=poll_ms),
        delay=timedelta(0),
        max_concurrent_jobs=jobs,
    )
    engine = host_engine(url, settings)
    event.listen(engine, "before_cursor_execute", count)
    period = timedelta(seconds=period_s)
    host = JobHost(
        [Work(name=f"job-{i:04d}", period=period, align_to_clock=True) for i in range(jobs)],
        database=engine,
        distributed=settings,
    )
    if index == 0:  # the rows exist before the hosts start, as in a running cluster
        from sqlalchemy import insert

        from recurjobs.sql import JobStore

        store = JobStore(engine)
        store.create_schema()
        now_ms = int(time.time() * 1000)
        rows = [
            {"name": f"job-{i:04d}", "period_ms": round(period_s * 1000), "aligned": True}
            | {"last_run_ms": now_ms, "running": False, "due_now": False}
            for i in range(jobs)
        ]
        with engine.begin() as conn:  # one statement: JobStore.ensure writes row by row
            conn.execute(insert(store.jobs), rows)
        store.ensure(host.jobs)  # finds them all
    plan = rec.wait_for_go()
    if index == 0:
        # As in a running cluster, every job last ran in the period before b1, so each first
        # falls due at b1 (as APScheduler 4's schedules, whose first fire time is b1): rows
        # written a boundary before the hosts start would otherwise all be due at once when
        # they start, and that catch-up burst could run into the first measured period.
        from sqlalchemy import update

        from recurjobs.sql import JobStore

        table = JobStore(engine).jobs
        last_run = round((plan["b1"] - period_s / 2) * 1000)
        with engine.begin() as conn:
            conn.execute(update(table).values(last_run_ms=last_run))
    time.sleep(max(0.0, plan["go"] - time.time()))
    host.start()
    profile = _profiler(index)
    try:
        result = rec.window(plan, lambda: {"statements": statements[0]})
    finally:
        if profile is not None:
            profile()
        stopped = host.stop(timeout=30)
        engine.dispose()
    result.update(warnings=warnings.messages[:20], stopped=stopped)
    rec.save(result)
    return result


def _profiler(index: int) -> Callable[[], None] | None:
    """With ``RECURJOBS_CLUSTER_PROFILE=DIR`` set, host 0 runs under yappi (CPU clock, all
    threads) from start to stop and writes ``DIR/host-0.prof`` (pstats) and a text summary."""
    folder = os.environ.get("RECURJOBS_CLUSTER_PROFILE")
    if not folder or index != 0:
        return None
    import yappi

    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)

    def done() -> None:
        yappi.stop()
        stats = yappi.get_func_stats()
        stats.save(os.path.join(folder, "host-0.prof"), type="pstat")
        with open(os.path.join(folder, "host-0.txt"), "w") as f:
            stats.sort("tsub").print_all(out=f, columns=_PROFILE_COLUMNS)
            yappi.get_thread_stats().print_all(out=f)

    return done


_PROFILE_COLUMNS = {
    0: ("name", 90),
    1: ("ncall", 12),
    2: ("tsub", 8),
    3: ("ttot", 8),
    4: ("tavg", 8),
}

_APS4_RECORDER: _Recorder | None = None
_APS4_JOB_MS = 0.0


def aps4_work(name: str) -> None:
    """The task APScheduler 4 runs (by reference, so every host can import it)."""
    assert _APS4_RECORDER is not None
    _APS4_RECORDER.work(name, _APS4_JOB_MS)


def aps4_host(
    url: str, index: int, out: str, jobs: int, period_s: float, job_ms: float, poll_ms: float
) -> dict[str, Any]:
    """One APScheduler 4.0.0a6 host. Host 0 adds the schedules (once ``go`` names the first
    boundary); the others only run them."""
    global _APS4_RECORDER, _APS4_JOB_MS
    from apscheduler import ConflictPolicy, Scheduler
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from apscheduler.eventbrokers.local import LocalEventBroker
    from apscheduler.triggers.interval import IntervalTrigger
    from sqlalchemy import create_engine, make_url

    rec = _APS4_RECORDER = _Recorder(Path(out), index)
    _APS4_JOB_MS = job_ms
    warnings = _Warnings()
    logging.getLogger("apscheduler").addHandler(warnings)
    parsed = make_url(url)
    broker: Any
    if parsed.get_backend_name() == "postgresql":
        from apscheduler.eventbrokers.psycopg import PsycopgEventBroker

        store = SQLAlchemyDataStore(url)  # an async engine (psycopg 3)
        conninfo = (
            f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} "
            f"password={parsed.password} dbname={parsed.database}"
        )
        broker = PsycopgEventBroker(conninfo)
    else:  # no event broker of APScheduler 4 works over MySQL or SQLite
        store = SQLAlchemyDataStore(create_engine(url))
        broker = LocalEventBroker()
    scheduler = Scheduler(store, broker, lease_duration=APS4_LEASE, max_concurrent_jobs=jobs)
    with scheduler:
        # Prepare the data store (host 0 creates the tables before the others start).
        scheduler.get_schedules()
        plan = rec.wait_for_go()
        if index == 0:
            first = datetime.fromtimestamp(plan["b1"], UTC)
            for i in range(jobs):
                scheduler.add_schedule(
                    aps4_work,
                    IntervalTrigger(seconds=period_s, start_time=first),
                    id=f"job-{i:04d}",
                    args=[f"job-{i:04d}"],
                    conflict_policy=ConflictPolicy.replace,
                )
        time.sleep(max(0.0, plan["go"] - time.time()))
        scheduler.start_in_background()
        result = rec.window(plan, dict)
        scheduler.stop()
        scheduler.wait_until_stopped()
    result.update(warnings=warnings.messages[:20], stopped=True)
    rec.save(result)
    return result


# ----------------------------------------------------------------------- the parent
def _spawn(func: str, kwargs: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(HERE), env.get("PYTHONPATH", "")) if p
    )
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, str(HERE / "_common.py"), "_cluster", func, json.dumps(kwargs)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _logs(folder: Path) -> str:
    parts = []
    for log in sorted(folder.glob("log-*.txt")):
        parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


def _wait_ready(folder: Path, indexes: range, procs: list[subprocess.Popen[bytes]]) -> None:
    limit = time.monotonic() + 240
    while not all((folder / f"ready-{i}").exists() for i in indexes):
        if time.monotonic() > limit or any(p.poll() is not None for p in procs):
            raise RuntimeError("a cluster host did not get ready:\n" + _logs(folder))
        time.sleep(0.05)


def measure(
    peer: str,
    url: str | None,
    hosts: int,
    jobs: int,
    period_s: float,
    periods: int,
    job_ms: float = 50.0,
    poll_ms: float = 200.0,
) -> dict[str, Any]:
    """One cluster run of ``peer`` ("recurjobs" or "aps4") on a private database."""
    func = {"recurjobs": "recurjobs_host", "aps4": "aps4_host"}[peer]
    folder = Path(tempfile.mkdtemp(prefix="recurjobs-cluster-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with private_database(url) as (db, xacts):
            common = {"url": db, "out": str(folder), "jobs": jobs, "period_s": period_s}
            common.update(job_ms=job_ms, poll_ms=poll_ms)
            # The first host creates the tables and rows (or schedules) alone.
            first = 1
            for i in range(first):
                procs.append(_spawn(func, {**common, "index": i}, folder / f"log-{i}.txt"))
            _wait_ready(folder, range(first), procs)
            for i in range(first, hosts):
                procs.append(_spawn(func, {**common, "index": i}, folder / f"log-{i}.txt"))
            _wait_ready(folder, range(hosts), procs)
            # APScheduler's schedules are added after go (their first fire time is b1): give
            # that time before the first measured boundary; then start every host together.
            lead = 1.5 + (jobs * 0.01 if peer == "aps4" else 0.0)
            b1 = math.ceil((time.time() + 0.5 + lead) / period_s) * period_s
            plan = {"go": b1 - lead, "b1": b1, "start": b1, "end": b1 + periods * period_s}
            (folder / "go.tmp").write_text(json.dumps(plan))
            (folder / "go.tmp").rename(folder / "go")
            time.sleep(max(0.0, b1 - time.time()))
            x0 = xacts()
            time.sleep(max(0.0, plan["end"] - time.time()))
            x1 = xacts()
            for p in procs:
                p.wait(timeout=120)
            if any(p.returncode != 0 for p in procs):
                raise RuntimeError("a cluster host failed:\n" + _logs(folder))
            result = analyse(folder, plan, jobs, period_s, periods)
            window = plan["end"] - plan["start"]
            counted = x0 is not None and x1 is not None
            result["xacts_per_s"] = (x1 - x0) / window if counted else None  # type: ignore[operator]
            return result
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(folder, ignore_errors=True)


def analyse(
    folder: Path, plan: dict[str, float], jobs: int, period_s: float, periods: int
) -> dict[str, Any]:
    """Merge the hosts' files: periods run, overlaps, lateness of the 100th start, costs."""
    runs: list[tuple[str, float, float, float, float]] = []
    for path in sorted(folder.glob("runs-*.csv")):
        with open(path, newline="") as f:
            for name, *times in csv.reader(f):
                start, end, mono_start, mono_end = map(float, times)
                runs.append((name, start, end, mono_start, mono_end))
    counts = [json.loads(p.read_text()) for p in sorted(folder.glob("counts-*.json"))]

    by_job: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for name, _s, _e, mono_start, mono_end in runs:
        by_job[name].append((mono_start, mono_end))
    overlaps = 0
    for spans in by_job.values():
        spans.sort()
        latest_end = -math.inf
        for mono_start, mono_end in spans:
            if mono_start < latest_end:
                overlaps += 1
            latest_end = max(latest_end, mono_end)

    b1, end = plan["b1"], plan["end"]
    first_start: dict[tuple[str, int], float] = {}
    starts: collections.Counter[tuple[str, int]] = collections.Counter()
    for name, start, *_ in runs:
        if b1 <= start < end:
            k = int((start - b1) // period_s)
            starts[(name, k)] += 1
            offset = start - (b1 + k * period_s)
            first_start[(name, k)] = min(first_start.get((name, k), math.inf), offset)
    nth = min(NTH, jobs)
    nth_offsets: list[float] = []
    for k in range(periods):
        offsets = sorted(v for (_, kk), v in first_start.items() if kk == k)
        nth_offsets.append(offsets[nth - 1] if len(offsets) >= nth else period_s)
    window = end - b1
    return {
        "periods": jobs * periods,
        "run_share": len(first_start) / (jobs * periods),
        "overlaps": overlaps,
        "twice": sum(1 for n in starts.values() if n > 1),
        "nth_p99": percentile(nth_offsets, 99),
        "nth_p50": percentile(nth_offsets, 50),
        "cpu_per_min": sum(c["cpu"] for c in counts) / (window / 60),
        "statements_per_s": sum(c["extra"].get("statements", 0) for c in counts) / window,
        "warnings": sum(len(c["warnings"]) for c in counts),
        "first_warnings": [w for c in counts for w in c["warnings"]][:5],
    }


def first_error(text: str) -> str:
    """The first line of the last exception in a host's log, for a table cell."""
    lines = [line.strip().lstrip("|+ ").strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    found = [ln for ln in lines if "Error" in ln.split(":", 1)[0] and ":" in ln]
    line = found[-1] if found else (lines[-1] if lines else "no output")
    return line[:220].replace("|", "/")


if __name__ == "__main__":  # a manual trial: python benchmarks/_cluster.py PEER URL
    print(measure(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None, 2, 10, 2.0, 3))
