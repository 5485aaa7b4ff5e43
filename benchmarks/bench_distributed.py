"""Distributed jobs: database cost of polls and claims, and exclusive claims, on three backends.

What polling and claiming cost on SQLite, PostgreSQL and MariaDB, and whether claims stay
exclusive under contention and across processes.

Four measurements, each repetition in a fresh process (the cluster one spawns its own hosts):

* *Idle poll*: a ``JobHost`` with 10 distributed jobs that are never due (1 h period), polling
  every 50 ms on an ``Engine`` the benchmark passes as ``database=`` (made by ``make_engine``,
  as the host would make it from the URL). SQL statements are counted with SQLAlchemy's
  ``before_cursor_execute`` event; round trips are counted at the driver, where the pool's
  pre-ping and the transaction's BEGIN/COMMIT/ROLLBACK show up too (libpq's protocol trace
  for psycopg, PyMySQL's command layer, sqlite3's trace callback). ``JobStore.due_names`` is
  wrapped in the child to mark where each poll starts, so every poll is counted exactly.
* *Claim latency*: one ``JobStore.try_claim`` of a due row, then its ``finish``, 200 times
  (20 untimed first) round-robin over 20 rows with a 1 ms period (so each is due again).
* *Contended claims*: 16 threads, each with its own ``JobStore`` and engine (so its own
  connection), claim random rows of 8 due jobs (1 ms period, so a finished row is due again
  at once) for a few seconds and finish each claim at once. A double claim is a claim
  taken while another thread held the row: seen either in-process (a shared owner map) or in
  the database (the earlier owner's fenced ``finish`` then matches no row).
* *Cluster*: 8 host processes, each a ``JobHost`` with the same 100 jobs (1 s period, aligned to
  the clock, each run sleeps 10 ms), on PostgreSQL for 60 s (``--quick``: 10 s), with
  ``poll_period=200 ms``, ``delay=0``, ``max_concurrent_jobs=100``. Every run is
  written to a per-process file as (job, host, start, end); afterwards the files are merged:
  overlapping runs of one job, UTC seconds (periods) in which a job started (on time) or
  started twice, and statements (and round trips) per second summed over the hosts.

The database servers come from ``RECURJOBS_TEST_POSTGRES_URL`` / ``RECURJOBS_TEST_MYSQL_URL``,
or ``scripts/test-databases.sh`` when those are unset. Each run uses its own table prefix
(``bench_<hex>_``) and drops its table afterwards.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import itertools
import json
import logging
import math
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from _common import HERE, ROOT, Row, median, percentile, repeat, repetitions

ORDER = 70

IDLE_JOBS = 10
IDLE_POLL_MS = 50
CLAIM_ROWS = 20
CLAIM_WARM_UP = 20
CONTENDED_THREADS = 16
CONTENDED_ROWS = 8
CLUSTER_HOSTS = 8
CLUSTER_JOBS = 100
CLUSTER_POLL_MS = 200
CLUSTER_JOB_MS = 10
CLUSTER_WARM_UP = 3.0
LEASE = timedelta(minutes=5)

_OUTAGE_TEXT = (
    "connection refused",
    "could not connect",
    "can't connect",
    "server closed the connection",
    "terminating connection",
    "lost connection",
    "the database system is shutting down",
    "the database system is starting up",
)


# ------------------------------------------------------------------------------ helpers
def _prefix() -> str:
    return f"bench_{secrets.token_hex(4)}_"


@contextlib.contextmanager
def _database(url: str | None) -> Iterator[str]:
    """``url``, or (None) a fresh SQLite file in a temporary directory removed afterwards."""
    if url is not None:
        yield url
        return
    folder = tempfile.mkdtemp(prefix="recurjobs-bench-")
    try:
        yield f"sqlite:///{folder}/jobs.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _job(name: str, period: timedelta, aligned: bool = False, body: Any = None) -> Any:
    from recurjobs import CancellationToken, DistributedJob

    class BenchJob(DistributedJob):
        def execute(self, token: CancellationToken) -> None:
            if body is not None:
                body(self.name)

    return BenchJob(name=name, period=period, align_to_clock=aligned)


def _label(sql: str | bytes) -> str:
    """A short name for a statement as sent: its verb, or "ping" for a pool pre-ping."""
    if isinstance(sql, bytes):
        sql = sql.decode(errors="replace")
    text = " ".join(sql.split()).upper()
    if text in ("SELECT 1", ";", ""):
        return "ping"
    return text.split(" ", 1)[0]


_PG_PARSE = re.compile(rb' "([^"]*)" "(\S+)')
_PG_BIND = re.compile(rb' "[^"]*" "([^"]*)"')


class _PgTrace:
    """One psycopg connection's libpq protocol trace, read incrementally.

    Round trips are the frontend's simple ``Query`` messages and the ``Sync`` that ends each
    extended-protocol statement (Parse/Bind/Describe/Execute/Sync). libpq flushes the trace
    whenever it sends, so everything a finished call sent is in the file.
    """

    def __init__(self, path: Path, dbapi_connection: Any) -> None:
        import psycopg

        # The descriptor is handed to libpq (fdopen) and deliberately never closed: libpq keeps
        # writing to it until the connection is gone, and a reused number would get its output.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        dbapi_connection.pgconn.trace(fd)
        dbapi_connection.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        self._reader = open(path, "rb")  # noqa: SIM115 - read as the trace grows
        self._partial = b""
        self._names: dict[bytes, str] = {}
        self._current = "SQL"

    def drain(self, out: list[str]) -> None:
        data = self._partial + self._reader.read()
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.startswith(b"F\t"):
                continue
            parts = line.split(b"\t", 3)
            if len(parts) < 3:
                continue
            kind, rest = parts[2], parts[3] if len(parts) > 3 else b""
            if kind == b"Query":
                out.append(_label(rest.strip()[1:-1]))
            elif kind == b"Parse":
                m = _PG_PARSE.match(rest)
                if m:
                    self._names[m.group(1)] = self._current = _label(m.group(2))
            elif kind == b"Bind":
                m = _PG_BIND.match(rest)
                if m:
                    self._current = self._names.get(m.group(1), self._current)
            elif kind == b"Sync":
                out.append(self._current)


class _Meter:
    """What an engine sends: SQL statements (``before_cursor_execute``) and driver round trips.

    ``statements`` and ``wire`` are lists of labels in the order sent (``list.append`` is
    atomic, so any thread may add). Round trips include what SQLAlchemy does outside cursor
    execution: the pool's pre-ping and the transaction's BEGIN, COMMIT and ROLLBACK.
    """

    def __init__(self, engine: Any, trace_dir: Path | None = None) -> None:
        from sqlalchemy import event

        self.statements: list[str] = []
        self.wire: list[str] = []
        self.dialect = engine.dialect.name
        self._trace_dir = trace_dir
        self._traces: list[_PgTrace] = []
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._on_statement)
        event.listen(engine, "connect", self._on_connect)

    def _on_statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(_label(statement))

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        if self.dialect == "sqlite":
            dbapi_connection.set_trace_callback(lambda sql: self.wire.append(_label(sql)))
        elif self.dialect == "postgresql" and self._trace_dir is not None:
            with self._lock:
                path = self._trace_dir / f"pq-{len(self._traces)}.trace"
                self._traces.append(_PgTrace(path, dbapi_connection))
        elif self.dialect in ("mysql", "mariadb"):
            send = dbapi_connection._execute_command
            wire = self.wire

            def counted(command: int, sql: Any) -> Any:
                wire.append("ping" if command == 14 else _label(sql) if command == 3 else "cmd")
                return send(command, sql)

            dbapi_connection._execute_command = counted

    def snapshot(self) -> tuple[int, int]:
        """(statements, round trips) sent so far."""
        with self._lock:
            for trace in self._traces:
                trace.drain(self.wire)
        return len(self.statements), len(self.wire)


def _common_sequence(seqs: list[tuple[str, ...]]) -> str:
    if not seqs:
        return "none"
    seq, _ = collections.Counter(seqs).most_common(1)[0]
    return " + ".join(seq) if seq else "nothing"


# ----------------------------------------------------------------------- 1. idle polls
def measure_idle(url: str | None, polls: int) -> dict[str, Any]:
    from recurjobs import DistributedJobSettings, JobHost
    from recurjobs.sql import JobStore, make_engine

    marks: list[tuple[int, int, float]] = []
    due_names = JobStore.due_names

    with _database(url) as db, tempfile.TemporaryDirectory() as traces:
        engine = make_engine(db)
        meter = _Meter(engine, Path(traces))

        def marked(store: JobStore, names: Any) -> list[str]:
            count, wire = meter.snapshot()
            marks.append((count, wire, time.perf_counter()))
            return due_names(store, names)

        JobStore.due_names = marked  # type: ignore[method-assign]
        prefix = _prefix()
        jobs = [_job(f"idle-{i}", timedelta(hours=1)) for i in range(IDLE_JOBS)]
        settings = DistributedJobSettings(
            poll_period=timedelta(milliseconds=IDLE_POLL_MS),
            delay=timedelta(0),
            table_prefix=prefix,
        )
        host = JobHost(jobs, database=engine, distributed=settings)
        try:
            host.start()
            deadline = time.monotonic() + 60 + polls * IDLE_POLL_MS / 1000
            while len(marks) < polls + 2 and time.monotonic() < deadline:
                time.sleep(IDLE_POLL_MS / 1000)
            host.stop()
        finally:
            JobStore.due_names = due_names  # type: ignore[method-assign]
            host.stop()
            JobStore(engine, table_prefix=prefix).jobs.drop(engine, checkfirst=True)
            engine.dispose()
        # Cycle i runs from the start of poll i to the start of poll i+1 (skip the first,
        # which follows the start-up writes). Everything sent in between belongs to poll i.
        cycles = list(itertools.pairwise(marks[1:]))[:polls]
        if len(cycles) < polls:
            raise RuntimeError(f"only {len(cycles)} idle polls were seen, wanted {polls}")
        stmt_counts = [b[0] - a[0] for a, b in cycles]
        wire_counts = [b[1] - a[1] for a, b in cycles]
        return {
            "statements": sum(stmt_counts) / len(cycles),
            "statements_max": max(stmt_counts),
            "wire": sum(wire_counts) / len(cycles),
            "wire_max": max(wire_counts),
            "what": _common_sequence([tuple(meter.statements[a[0] : b[0]]) for a, b in cycles]),
            "wire_what": _common_sequence([tuple(meter.wire[a[1] : b[1]]) for a, b in cycles]),
            "polls": len(cycles),
            "server": ".".join(map(str, engine.dialect.server_version_info or ())),
        }


# --------------------------------------------------------------------- 2. claim latency
def measure_claims(url: str | None, claims: int) -> dict[str, Any]:
    from recurjobs.sql import JobStore

    with _database(url) as db, tempfile.TemporaryDirectory() as traces:
        store = JobStore(db, table_prefix=_prefix())
        meter = _Meter(store.engine, Path(traces))
        names = [f"claim-{i}" for i in range(CLAIM_ROWS)]
        claim_s: list[float] = []
        both_s: list[float] = []
        misses = 0
        try:
            store.create_schema()
            store.ensure([_job(n, timedelta(milliseconds=1)) for n in names])
            time.sleep(0.01)  # rows are created with last_run = now: due 1 ms later
            before = meter.snapshot()
            for i in range(CLAIM_WARM_UP + claims):
                name = names[i % CLAIM_ROWS]
                while True:
                    t0 = time.perf_counter()
                    claim = store.try_claim(name, owner="bench", lease=LEASE)
                    t1 = time.perf_counter()
                    if claim is not None:
                        break
                    misses += 1  # not due yet (the row was finished under 1 ms ago)
                    time.sleep(0.002)
                if not store.finish(claim):
                    raise RuntimeError(f"finish of an uncontended claim of {name} matched no row")
                t2 = time.perf_counter()
                if i >= CLAIM_WARM_UP:
                    claim_s.append(t1 - t0)
                    both_s.append(t2 - t0)
            after = meter.snapshot()
        finally:
            store.jobs.drop(store.engine, checkfirst=True)
            store.dispose()
        won = CLAIM_WARM_UP + claims
        return {
            "claim_p50": percentile(claim_s, 50),
            "claim_p99": percentile(claim_s, 99),
            "both_p50": percentile(both_s, 50),
            "both_p99": percentile(both_s, 99),
            "misses": misses,
            "statements_per_claim_and_finish": (after[0] - before[0] - misses) / won,
            "wire_per_claim_and_finish": (after[1] - before[1]) / won,
        }


# ------------------------------------------------------------------- 3. contended claims
def measure_contended(url: str | None, seconds: float) -> dict[str, Any]:
    from recurjobs.sql import JobStore

    with _database(url) as db:
        prefix = _prefix()
        setup = JobStore(db, table_prefix=prefix)
        setup.create_schema()
        names = [f"race-{i}" for i in range(CONTENDED_ROWS)]
        setup.ensure([_job(n, timedelta(milliseconds=1)) for n in names])
        stores = [JobStore(db, table_prefix=prefix) for _ in range(CONTENDED_THREADS)]
        lock = threading.Lock()
        holder: dict[str, int | None] = dict.fromkeys(names)
        wins = [0] * CONTENDED_THREADS
        attempts = [0] * CONTENDED_THREADS
        overlaps = [0]
        fenced_out = [0]
        errors: list[str] = []
        start = threading.Barrier(CONTENDED_THREADS + 1)
        stop_at = [math.inf]

        def racer(index: int) -> None:
            store = stores[index]
            rng = random.Random(index)
            owner = f"thread-{index}"
            store.now_ms()  # open this thread's connection before the race
            start.wait()
            while time.perf_counter() < stop_at[0]:
                name = rng.choice(names)
                try:
                    claim = store.try_claim(name, owner=owner, lease=LEASE)
                    attempts[index] += 1
                    if claim is None:
                        continue
                    with lock:
                        if holder[name] is not None:
                            overlaps[0] += 1
                        holder[name] = index
                    wins[index] += 1
                    with lock:  # released before the finish is sent: no false overlap
                        if holder[name] == index:
                            holder[name] = None
                    if not store.finish(claim):
                        fenced_out[0] += 1  # someone overwrote our claim while we held it
                except Exception as exc:  # recorded; a racer never dies silently
                    errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

        threads = [
            threading.Thread(target=racer, args=(i,), daemon=True) for i in range(CONTENDED_THREADS)
        ]
        try:
            for t in threads:
                t.start()
            start.wait()
            t0 = time.perf_counter()
            stop_at[0] = t0 + seconds
            for t in threads:
                t.join(seconds + 60)
            elapsed = time.perf_counter() - t0
            running = [r.name for r in setup.rows() if r.running]
        finally:
            setup.jobs.drop(setup.engine, checkfirst=True)
            for s in [setup, *stores]:
                s.dispose()
        if running:
            errors.append(f"rows still running after the race: {running}")
        return {
            "claims_per_s": sum(wins) / elapsed,
            "attempts_per_s": sum(attempts) / elapsed,
            "double_claims": overlaps[0] + fenced_out[0],
            "overlaps": overlaps[0],
            "fenced_out": fenced_out[0],
            "errors": len(errors),
            "first_errors": errors[:5],
            "min_thread_wins": min(wins),
        }


# ------------------------------------------------------------------------- 4. cluster
def _instrument_store(counts: dict[str, int], lock: threading.Lock) -> None:
    """Count the JobStore calls of this process by kind (claims split into won and lost)."""
    from recurjobs.sql import JobStore

    def counted(method: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            key = kind if kind != "claim" else ("claims won" if result else "claims lost")
            with lock:
                counts[key] = counts.get(key, 0) + 1
            return result

        return wrapper

    for name, kind in (
        ("due_names", "polls"),
        ("try_claim", "claim"),
        ("finish", "finishes"),
        ("heartbeat", "heartbeats"),
        ("release", "releases"),
    ):
        setattr(JobStore, name, counted(getattr(JobStore, name), kind))


class _WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().splitlines()[0][:300])


def cluster_worker(
    url: str, index: int, prefix: str, out: str, seconds: float, jobs: int
) -> dict[str, Any]:
    """One host of the cluster (a process of its own): run until ``go + seconds``."""
    from recurjobs import DistributedJobSettings, JobHost
    from recurjobs.sql import make_engine

    folder = Path(out)
    (folder / f"trace-{index}").mkdir()
    engine = make_engine(url)
    meter = _Meter(engine, folder / f"trace-{index}")
    counts: dict[str, int] = {}
    lock = threading.Lock()
    _instrument_store(counts, lock)
    warnings = _WarningCounter()
    logging.getLogger("recurjobs").addHandler(warnings)
    runs: list[tuple[str, float, float, float, float]] = []

    def body(name: str) -> None:
        wall, mono = time.time(), time.monotonic()
        time.sleep(CLUSTER_JOB_MS / 1000)
        runs.append((name, wall, time.time(), mono, time.monotonic()))

    settings = DistributedJobSettings(
        poll_period=timedelta(milliseconds=CLUSTER_POLL_MS),
        delay=timedelta(0),
        max_concurrent_jobs=jobs,
        table_prefix=prefix,
    )
    host = JobHost(
        [_job(f"job-{i:03d}", timedelta(seconds=1), True, body) for i in range(jobs)],
        database=engine,
        distributed=settings,
    )
    (folder / f"ready-{index}").touch()
    go_file = folder / "go"
    while not go_file.exists():
        time.sleep(0.01)
    go = float(go_file.read_text())
    snaps: list[tuple[float, int, int, dict[str, int]]] = []

    def snap() -> None:
        count, wire = meter.snapshot()
        with lock:
            snaps.append((time.time(), count, wire, dict(counts)))

    time.sleep(max(0.0, go - time.time()))
    host.start()
    try:
        time.sleep(max(0.0, go + CLUSTER_WARM_UP - time.time()))
        snap()
        time.sleep(max(0.0, go + seconds - time.time()))
        snap()
    finally:
        stopped = host.stop(timeout=30)
        engine.dispose()
    with open(folder / f"runs-{index}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["job", "host", "start", "end", "mono_start", "mono_end"])
        for name, start, end, mono_start, mono_end in runs:
            writer.writerow([name, index, repr(start), repr(end), repr(mono_start), repr(mono_end)])
    (t0, c0, w0, k0), (t1, c1, w1, k1) = snaps
    result = {
        "window": t1 - t0,
        "statements": c1 - c0,
        "wire": w1 - w0,
        "calls": {k: k1.get(k, 0) - k0.get(k, 0) for k in k1},
        "warnings": warnings.messages,
        "stopped": stopped,
    }
    (folder / f"counts-{index}.json").write_text(json.dumps(result))
    return result


def _spawn(func: str, kwargs: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(HERE), env.get("PYTHONPATH", "")) if p
    )
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, str(HERE / "_common.py"), __name__, func, json.dumps(kwargs)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
        )


def measure_cluster(url: str, seconds: float) -> dict[str, Any]:
    """Start the hosts together, let them run, merge their run files and check them."""
    from recurjobs.sql import JobStore

    prefix = _prefix()
    folder = Path(tempfile.mkdtemp(prefix="recurjobs-cluster-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(CLUSTER_HOSTS):
            kwargs = {
                "url": url,
                "index": i,
                "prefix": prefix,
                "out": str(folder),
                "seconds": seconds,
                "jobs": CLUSTER_JOBS,
            }
            procs.append(_spawn("cluster_worker", kwargs, folder / f"log-{i}.txt"))
        limit = time.monotonic() + 180
        while not all((folder / f"ready-{i}").exists() for i in range(CLUSTER_HOSTS)):
            if time.monotonic() > limit or any(p.poll() is not None for p in procs):
                raise RuntimeError("a cluster host did not get ready:\n" + _logs(folder))
            time.sleep(0.05)
        go = time.time() + 1.0
        (folder / "go.tmp").write_text(repr(go))
        (folder / "go.tmp").rename(folder / "go")
        for p in procs:
            p.wait(timeout=seconds + 180)
        if any(p.returncode != 0 for p in procs):
            raise RuntimeError("a cluster host failed:\n" + _logs(folder))
        return _analyse(folder, go, seconds)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        with contextlib.suppress(Exception):
            store = JobStore(url, table_prefix=prefix)
            store.jobs.drop(store.engine, checkfirst=True)
            store.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def _logs(folder: Path) -> str:
    parts = []
    for log in sorted(folder.glob("log-*.txt")):
        parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


def _analyse(folder: Path, go: float, seconds: float) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("runs-*.csv")):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                runs.append(
                    {
                        "job": r["job"],
                        "host": int(r["host"]),
                        "start": float(r["start"]),
                        "end": float(r["end"]),
                        "mono_start": float(r["mono_start"]),
                        "mono_end": float(r["mono_end"]),
                    }
                )
    counts = [json.loads(p.read_text()) for p in sorted(folder.glob("counts-*.json"))]

    # Double runs: two runs of one job overlapping in time (CLOCK_MONOTONIC is system-wide).
    by_job: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in runs:
        by_job[r["job"]].append(r)
    overlapping = 0
    for job_runs in by_job.values():
        job_runs.sort(key=lambda r: r["mono_start"])
        latest_end = -math.inf
        for r in job_runs:
            if r["mono_start"] < latest_end:
                overlapping += 1
            latest_end = max(latest_end, r["mono_end"])

    # Periods: the UTC seconds wholly inside [go + warm-up, go + seconds], per job.
    first, last = math.ceil(go + CLUSTER_WARM_UP), math.floor(go + seconds)
    periods = range(first, last)
    starts: dict[tuple[str, int], int] = collections.Counter(
        (r["job"], math.floor(r["start"])) for r in runs if first <= r["start"] < last
    )
    on_time = sum(1 for job in by_job for k in periods if starts.get((job, k)))
    expected = CLUSTER_JOBS * len(periods)
    twice = sum(1 for n in starts.values() if n > 1)
    offsets = [r["start"] - math.floor(r["start"]) for r in runs if first <= r["start"] < last]
    per_host = collections.Counter(r["host"] for r in runs if first <= r["start"] < last)

    statements = sum(c["statements"] / c["window"] for c in counts)
    wire = sum(c["wire"] / c["window"] for c in counts)
    calls: dict[str, float] = collections.defaultdict(float)
    for c in counts:
        for kind, n in c["calls"].items():
            calls[kind] += n / c["window"]
    warnings = [w for c in counts for w in c["warnings"]]
    return {
        "runs": len(runs),
        "double_runs": overlapping,
        "periods": expected,
        "on_time_share": on_time / expected if expected else math.nan,
        "periods_twice": twice,
        "start_offset_p50": percentile(offsets, 50),
        "start_offset_p99": percentile(offsets, 99),
        "statements_per_s": statements,
        "wire_per_s": wire,
        "calls_per_s": dict(calls),
        "runs_per_host": [per_host.get(i, 0) for i in range(CLUSTER_HOSTS)],
        "warnings": len(warnings),
        "first_warnings": warnings[:5],
        "all_stopped": all(c["stopped"] for c in counts),
    }


# --------------------------------------------------------------------------- driver
def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _server_urls() -> dict[str, str | None]:
    """Backend label -> URL (None: a temporary SQLite file; missing: not available)."""
    pg = os.environ.get("RECURJOBS_TEST_POSTGRES_URL")
    my = os.environ.get("RECURJOBS_TEST_MYSQL_URL")
    if not (pg and my):
        found = _start_servers()
        pg, my = (
            pg or found.get("RECURJOBS_TEST_POSTGRES_URL"),
            my or found.get("RECURJOBS_TEST_MYSQL_URL"),
        )
    urls: dict[str, str | None] = {"SQLite file": None}
    if pg:
        urls["PostgreSQL"] = pg
    else:
        _say("  distributed: no PostgreSQL server; its rows are left out")
    if my:
        urls["MariaDB"] = my
    else:
        _say("  distributed: no MySQL/MariaDB server; its rows are left out")
    return urls


def _start_servers() -> dict[str, str]:
    """Run scripts/test-databases.sh (starts or finds the servers); the URLs it exports."""
    script = ROOT / "scripts" / "test-databases.sh"
    if not script.exists():
        return {}
    proc = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        _say(f"  distributed: {script.name} failed: {proc.stderr.strip()[-500:]}")
    found = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"export (\w+)=(\S+)$", line.strip())
        if m:
            found[m.group(1)] = m.group(2).strip("'\"")
    return found


def _looks_like_outage(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _OUTAGE_TEXT)


def _once(func: str, kwargs: dict[str, Any], *, server: bool) -> dict[str, Any]:
    """One fresh-process run of ``func``; a run hit by a database outage is run again.

    Other test suites on the machine briefly stop PostgreSQL; such a run measures the outage,
    not the library, so it is repeated (at most twice) once the server is back.
    """
    for attempt in range(3):
        try:
            result = repeat(__name__, [func], kwargs, 1, progress=_say)[func][0]
        except RuntimeError as exc:
            if not server or attempt == 2 or not _looks_like_outage(str(exc)):
                raise
            _say(f"  {func}: the database server was unreachable; retrying after it is back")
        else:
            warned = result.get("first_warnings", [])
            if not (server and attempt < 2 and any(_looks_like_outage(w) for w in warned)):
                return result
            _say(f"  {func}: the hosts logged connection failures ({warned[0]}); run again")
        time.sleep(15)
        _start_servers()
    raise AssertionError("unreachable")


def run(quick: bool) -> list[Row]:
    reps = repetitions(quick)
    urls = _server_urls()
    polls = 40 if quick else 100
    claims = 100 if quick else 200
    race_s = 2.0 if quick else 5.0
    cluster_s = 10.0 if quick else 60.0

    idle: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    lat: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    race: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    cluster: list[dict[str, Any]] = []
    for _ in range(reps):
        for label, url in urls.items():
            server = url is not None
            idle[label].append(_once("measure_idle", {"url": url, "polls": polls}, server=server))
            lat[label].append(
                _once("measure_claims", {"url": url, "claims": claims}, server=server)
            )
            race[label].append(
                _once("measure_contended", {"url": url, "seconds": race_s}, server=server)
            )
    pg = urls.get("PostgreSQL")
    if pg:
        for _ in range(reps):
            cluster.append(_once("measure_cluster", {"url": pg, "seconds": cluster_s}, server=True))

    def col(rs: list[dict[str, Any]], key: str) -> list[float]:
        return [float(r[key]) for r in rs]

    rows: list[Row] = []
    for label in urls:
        rs = idle[label]
        version = f" {rs[0]['server']}" if rs[0]["server"] else ""
        name = f"distributed idle poll, {label}{version}, {IDLE_JOBS} jobs, poll {IDLE_POLL_MS} ms"
        most = max(col(rs, "statements_max"))
        rows.append(
            Row(
                name,
                f"SQL statements per idle poll (engine events; max {most:.0f}; {rs[-1]['what']})",
                "",
                col(rs, "statements"),
                limit=1.0,
            )
        )
        rows.append(
            Row(
                name,
                f"round trips per idle poll at the driver (max {max(col(rs, 'wire_max')):.0f};"
                f" {rs[-1]['wire_what']})",
                "",
                col(rs, "wire"),
            )
        )
    for label in urls:
        rs = lat[label]
        name = f"distributed claim latency, {label}, {claims} claims"
        per = median(col(rs, "statements_per_claim_and_finish"))
        trips = median(col(rs, "wire_per_claim_and_finish"))
        rows += [
            Row(name, "try_claim p50", "ms", col(rs, "claim_p50"), scale=1e3),
            Row(name, "try_claim p99", "ms", col(rs, "claim_p99"), scale=1e3),
            Row(
                name,
                f"try_claim + finish p50 ({per:.2f} statements, {trips:.2f} round trips)",
                "ms",
                col(rs, "both_p50"),
                scale=1e3,
            ),
            Row(name, "try_claim + finish p99", "ms", col(rs, "both_p99"), scale=1e3),
        ]
    for label in urls:
        rs = race[label]
        name = (
            f"distributed contended claims, {label}, {CONTENDED_THREADS} threads x "
            f"{CONTENDED_ROWS} rows, {race_s:g} s"
        )
        errors = sum(r["errors"] for r in rs)
        rows += [
            Row(
                name,
                f"successful claims per second, higher is better (attempts/s "
                f"{median(col(rs, 'attempts_per_s')):,.0f}; errors {errors})",
                "/s",
                col(rs, "claims_per_s"),
            ),
            Row(
                name,
                "double claims (in-process overlap or fenced finish lost)",
                "",
                col(rs, "double_claims"),
                limit=0.0,
            ),
        ]
        for r in rs:
            for e in r["first_errors"]:
                _say(f"  contended {label}: {e}")
    if cluster:
        name = (
            f"distributed cluster, PostgreSQL, {CLUSTER_HOSTS} processes x {CLUSTER_JOBS} jobs "
            f"(1 s, aligned), {cluster_s:g} s"
        )
        calls: dict[str, float] = collections.defaultdict(float)
        for r in cluster:
            for kind, v in r["calls_per_s"].items():
                calls[kind] += v / len(cluster)
        breakdown = ", ".join(f"{k} {v:,.0f}/s" for k, v in sorted(calls.items()) if v >= 0.5)
        hosts = cluster[-1]["runs_per_host"]
        periods = int(median(col(cluster, "periods")))
        rows += [
            Row(
                name,
                "double runs (overlapping runs of one job)",
                "",
                col(cluster, "double_runs"),
                limit=0.0,
            ),
            Row(
                name,
                "periods in which a job started twice",
                "",
                col(cluster, "periods_twice"),
                limit=0.0,
            ),
            Row(
                name,
                f"share of periods run on time, higher is better ({periods:,} job-periods)",
                "%",
                col(cluster, "on_time_share"),
                scale=100,
            ),
            Row(
                name,
                "start within its period, p50",
                "ms",
                col(cluster, "start_offset_p50"),
                scale=1e3,
            ),
            Row(
                name,
                "start within its period, p99",
                "ms",
                col(cluster, "start_offset_p99"),
                scale=1e3,
            ),
            Row(
                name,
                f"SQL statements per second, all hosts ({breakdown})",
                "/s",
                col(cluster, "statements_per_s"),
            ),
            Row(
                name,
                "round trips per second at the driver, all hosts",
                "/s",
                col(cluster, "wire_per_s"),
            ),
            Row(
                name,
                f"warnings logged by the hosts (runs per host, last rep: "
                f"{min(hosts)}-{max(hosts)})",
                "",
                col(cluster, "warnings"),
            ),
        ]
        for r in cluster:
            for w in r["first_warnings"]:
                _say(f"  cluster warning: {w}")
    return rows
