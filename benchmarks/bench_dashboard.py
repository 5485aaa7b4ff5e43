"""The dashboard's server time on PostgreSQL with 200 jobs and 1,000,000 history rows.

One child process loads a fresh table prefix: 200 jobs-table rows (some running, paused or on
a cron schedule) and 1,000,000 runs (``--quick``: 200,000) spread evenly over the last seven
days (each job about every two minutes, one run in 97 failed with a traceback), written by one
``INSERT ... SELECT FROM generate_series`` and then ``VACUUM ANALYZE``d, as autovacuum would
leave a table of that age. It then renders the pages through Flask's test client in the same
process (no network: the time is the server's own) and reports the median of 30 requests of
each page after three warm-up requests:

* the jobs page (``/``): every job's row, latest run, runs and failures of the last 24 h;
* a job's page (``/job?name=...``): its row, 50 runs with their errors, the SVG chart;
* informational: the very first jobs page of a fresh app, which counts the whole day once
  (later loads count only the unsettled last minutes, the window's ragged start and the rows
  written since, by primary key).

Targets: both pages <= 50 ms. The server comes from ``RECURJOBS_TEST_POSTGRES_URL`` or
``scripts/test-databases.sh``; the tables are dropped afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import ROOT, Row, repeat, repetitions

ORDER = 95

JOBS = 200
RUNS = 1_000_000
QUICK_RUNS = 200_000
SPAN_MS = 7 * 86_400_000
SAMPLES = 30
WARM_UP = 3
LIMIT_S = 0.050


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _postgres_url() -> str | None:
    url = os.environ.get("RECURJOBS_TEST_POSTGRES_URL")
    if url:
        return url
    script = ROOT / "scripts" / "test-databases.sh"
    if not script.exists():
        return None
    proc = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    for line in proc.stdout.splitlines():
        found = re.match(r"export RECURJOBS_TEST_POSTGRES_URL=(\S+)$", line.strip())
        if found:
            return found.group(1).strip("'\"")
    _say(f"  dashboard: no PostgreSQL server: {proc.stderr.strip()[-300:]}")
    return None


def _load(engine: Any, prefix: str, runs: int) -> int:
    """Create and fill the tables; return the load time's "now" (epoch ms)."""
    import sqlalchemy as sa

    from recurjobs.sql._history_table import meta_table, runs_table
    from recurjobs.sql._servers_table import ServerTables
    from recurjobs.sql._tables import jobs_table

    metadata = sa.MetaData()
    jobs = jobs_table(metadata, prefix)
    runs_t = runs_table(metadata, prefix)
    meta_table(metadata, prefix)
    ServerTables(metadata, prefix)
    metadata.create_all(engine)
    now = int(time.time() * 1000)
    rows = []
    for i in range(JOBS):
        rows.append(
            {
                "name": f"job-{i:03d}",
                "period_ms": 120_000,
                "aligned": False,
                "last_run_ms": now - (i * 600) % 120_000,
                "last_attempted_run_ms": now - (i * 600) % 120_000 - 1000,
                "last_alive_ms": now - 500,
                "lease_ms": 420_000,
                "running": i % 20 == 0,
                "owner": f"host-{i % 4}:{1000 + i % 4}:abcd" if i % 20 == 0 else None,
                "claim_id": f"{i:032x}" if i % 20 == 0 else None,
                "due_now": False,
                "paused": i % 50 == 7,
                "cron": "*/2 * * * *|Europe/Amsterdam" if i % 10 == 3 else None,
            }
        )
    error = "Traceback (most recent call last):\n" + '  File "job.py", line 9, in run\n' * 20
    fill = sa.text(
        f"INSERT INTO {runs_t.name} "
        '(job, kind, host, claim_id, "trigger", started_ms, ended_ms, outcome, error) '
        "SELECT 'job-' || lpad((g % :jobs)::text, 3, '0'), 'distributed', "
        "'host-' || (g % 4), md5(g::text), 'schedule', "
        ":start + g::bigint * :span / :n, :start + g::bigint * :span / :n + 200 + (g % 5000), "
        "CASE WHEN g % 97 = 0 THEN 'failed' ELSE 'executed' END, "
        "CASE WHEN g % 97 = 0 THEN :error || 'RuntimeError: run ' || g ELSE NULL END "
        "FROM generate_series(0, :n - 1) AS g"
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(jobs), rows)
        conn.execute(
            fill, {"jobs": JOBS, "start": now - SPAN_MS, "span": SPAN_MS, "n": runs, "error": error}
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"VACUUM ANALYZE {runs_t.name}"))
        conn.execute(sa.text(f"VACUUM ANALYZE {jobs.name}"))
    return now


def measure(url: str, runs: int) -> dict[str, Any]:
    """Child: load the tables, time the pages, drop the tables."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from recurjobs.dashboard import create_app

    prefix = f"bench_{secrets.token_hex(4)}_"
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        started = time.monotonic()
        _load(engine, prefix, runs)
        load_s = time.monotonic() - started
        client = create_app(url, table_prefix=prefix).test_client()

        cpu: list[float] = []

        def timed(path: str) -> float:
            t0, c0 = time.perf_counter(), time.process_time()
            response = client.get(path)
            elapsed = time.perf_counter() - t0
            cpu.append(time.process_time() - c0)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code}")
            return elapsed

        first = timed("/")
        results: dict[str, list[float]] = {}
        for label, path in (("jobs", "/"), ("job", "/job?name=job-007")):
            for _ in range(WARM_UP):
                timed(path)
            cpu.clear()
            results[label] = [timed(path) for _ in range(SAMPLES)]
            results[f"{label}_cpu"] = list(cpu)
        return {
            "jobs_cpu_s": statistics.median(results["jobs_cpu"]),
            "load_s": load_s,
            "first_s": first,
            "jobs_s": statistics.median(results["jobs"]),
            "job_s": statistics.median(results["job"]),
        }
    finally:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=lambda name, _: name.startswith(prefix))
        metadata.drop_all(engine)
        engine.dispose()


def run(quick: bool) -> list[Row]:
    """The dashboard rows of the report (none without PostgreSQL)."""
    url = _postgres_url()
    if url is None:
        return []
    runs = QUICK_RUNS if quick else RUNS
    got = repeat("bench_dashboard", ["measure"], {"url": url, "runs": runs}, repetitions(quick))
    results = got["measure"]
    note = f"{JOBS} jobs, {runs:,} runs, PostgreSQL"
    return [
        Row(
            "dashboard",
            "jobs page server time",
            "ms",
            [r["jobs_s"] for r in results],
            limit=LIMIT_S,
            note=note,
            scale=1e3,
        ),
        Row(
            "dashboard",
            "job page server time",
            "ms",
            [r["job_s"] for r in results],
            limit=LIMIT_S,
            note=note,
            scale=1e3,
        ),
        Row(
            "dashboard",
            "jobs page CPU time of the server process (the rest is waiting for PostgreSQL)",
            "ms",
            [r["jobs_cpu_s"] for r in results],
            note=note,
            scale=1e3,
        ),
        Row(
            "dashboard",
            "first jobs page of a fresh app (counts the whole day)",
            "ms",
            [r["first_s"] for r in results],
            note=note,
            scale=1e3,
        ),
        Row(
            "dashboard",
            "loading the history (generate_series + VACUUM ANALYZE)",
            "s",
            [r["load_s"] for r in results],
            note=note,
        ),
    ]
