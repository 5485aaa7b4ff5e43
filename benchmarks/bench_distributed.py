"""Distributed jobs: database cost of polls and claims, and exclusive claims, on three backends.

What polling and claiming cost on SQLite, PostgreSQL and MariaDB, and whether claims stay
exclusive under contention and across processes.

Four measurements, each repetition in a fresh process (the cluster one spawns its own hosts):

* *Idle poll*: a ``JobHost`` with 10 distributed jobs that are never due (1 h period), polling
  every 50 ms on an ``Engine`` the benchmark passes as ``database=`` (made by ``make_engine``,
  as the host would make it from the URL). SQL statements are counted with SQLAlchemy's
  ``before_cursor_execute`` event; round trips are counted at the driver, where the pool's
  pre-ping and the transaction's BEGIN/COMMIT/ROLLBACK show up too (libpq's protocol trace
  for psycopg, PyMySQL's command layer, sqlite3's trace callback). ``JobStore.poll`` is
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
import itertools
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
from typing import Any, TypedDict

from _common import ROOT, Row, median, percentile, repeat, repetitions

ORDER = 70
PEER = "apscheduler4"  # the cluster's peer; see _common.APS3_DIR

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
        from sqlalchemy import Engine, event
        from sqlalchemy.pool import Pool

        self.statements: list[str] = []
        self.wire: list[str] = []
        self.dialect = engine.dialect.name
        self._trace_dir = trace_dir
        self._traces: list[_PgTrace] = []
        self._lock = threading.Lock()
        # Every engine of the process, not only ``engine``: a JobStore on MySQL/MariaDB runs
        # its single-statement steps on a twin engine of its own (recurjobs.sql._urls).
        self._listening: list[tuple[type[Engine | Pool], str, Callable[..., None]]] = [
            (Engine, "before_cursor_execute", self._on_statement),
            (Pool, "connect", self._on_connect),
        ]
        for target, name, fn in self._listening:
            event.listen(target, name, fn)

    def close(self) -> None:
        """Stop listening."""
        from sqlalchemy import event

        for target, name, fn in self._listening:
            event.remove(target, name, fn)

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
    from recurjobs.sql import JobStore

    marks: list[tuple[int, int, float]] = []
    due_names = JobStore.poll

    import _cluster

    with (
        _cluster.private_database(url) as (db, xacts),
        tempfile.TemporaryDirectory() as traces,
    ):
        x0 = xacts()
        settings = DistributedJobSettings(
            poll_period=timedelta(milliseconds=IDLE_POLL_MS),
            delay=timedelta(0),
            table_prefix=_prefix(),
        )
        engine = _cluster.host_engine(db, settings)
        meter = _Meter(engine, Path(traces))

        def marked(self: JobStore, names: Any, crons: Any = None) -> Any:
            count, wire = meter.snapshot()
            marks.append((count, wire, time.perf_counter()))
            return due_names(self, names, crons)

        JobStore.poll = marked  # type: ignore[method-assign]
        jobs = [_job(f"idle-{i}", timedelta(hours=1)) for i in range(IDLE_JOBS)]
        host = JobHost(jobs, database=engine, distributed=settings)
        try:
            host.start()
            deadline = time.monotonic() + 60 + polls * IDLE_POLL_MS / 1000
            while len(marks) < polls + 2 and time.monotonic() < deadline:
                time.sleep(IDLE_POLL_MS / 1000)
            host.stop()
        finally:
            JobStore.poll = due_names  # type: ignore[method-assign]
            host.stop()
            total_statements = len(meter.statements)
            meter.close()
            engine.dispose()
        time.sleep(0.5)  # the server counts a session's transactions when it ends
        x1 = xacts()
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
            "xacts_per_statement": None
            if x0 is None or x1 is None
            else (x1 - x0) / total_statements,
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
            meter.close()
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
def measure_cluster(peer: str, url: str | None, config: dict[str, Any]) -> dict[str, Any]:
    """One cluster run (``_cluster.measure``): its hosts are processes of their own."""
    import _cluster

    return _cluster.measure(peer, url, **config)


def measure_cluster_failure(peer: str, url: str | None, config: dict[str, Any]) -> dict[str, Any]:
    """A cluster run expected to fail (APScheduler 4 on MariaDB): the error, or the result."""
    import _cluster

    try:
        return {"ok": True, **_cluster.measure(peer, url, **config)}
    except RuntimeError as exc:
        return {"ok": False, "error": _cluster.first_error(str(exc))}


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

    idle: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    lat: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    race: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
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
    clusters = _run_clusters(urls, reps, quick)

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
                # One per poll, plus the paused-flag read every 5 s (_rowview): 1.01 at 50 ms.
                limit=1.05,
            )
        )
        rows.append(
            Row(
                name,
                f"round trips per idle poll at the driver (max {max(col(rs, 'wire_max')):.0f};"
                f" {rs[-1]['wire_what']})",
                "",
                col(rs, "wire"),
                # One round trip; psycopg prepares the statement server-side once per
                # connection (its sixth run), which shows as 1.02 here; the paused-flag read
                # every 5 s adds 0.01 at a 50 ms poll.
                limit=1.05,
            )
        )
        if rs[0].get("xacts_per_statement") is not None:
            rows.append(
                Row(
                    name,
                    "transactions per SQL statement over the host's life (pg_stat_database "
                    "xact_commit + xact_rollback / engine statements)",
                    "",
                    col(rs, "xacts_per_statement"),
                    limit=1.2,
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
    rows += _cluster_rows(clusters)
    return rows


class _Cluster(TypedDict):
    hosts: int
    jobs: int
    period_s: float
    periods: tuple[int, int]


# The cluster configurations: (hosts, jobs, period) with the periods measured (full, quick).
CLUSTERS: tuple[_Cluster, ...] = (
    {"hosts": 8, "jobs": 100, "period_s": 2.0, "periods": (6, 2)},
    {"hosts": 4, "jobs": 1000, "period_s": 10.0, "periods": (2, 1)},
)
# Which contenders run each configuration on which backend; APScheduler 4 only on PostgreSQL
# (its MariaDB store fails, recorded once; it has no event broker for SQLite).
_CLUSTER_RUNS = (
    (0, "PostgreSQL", ("recurjobs", "aps4")),
    (0, "MariaDB", ("recurjobs",)),
    (0, "SQLite file", ("recurjobs",)),
    (1, "PostgreSQL", ("recurjobs", "aps4")),
)

_ClusterKey = tuple[int, str, str]


def _run_clusters(
    urls: dict[str, str | None], reps: int, quick: bool
) -> dict[_ClusterKey, list[dict[str, Any]]]:
    """Every cluster run, ``reps`` times each, contenders alternating, one process each."""
    out: dict[_ClusterKey, list[dict[str, Any]]] = collections.defaultdict(list)
    for _ in range(reps):
        for index, label, peers in _CLUSTER_RUNS:
            if label not in urls:
                continue
            config: dict[str, Any] = dict(CLUSTERS[index])
            config["periods"] = config["periods"][1 if quick else 0]
            for peer in peers:
                kwargs = {"peer": peer, "url": urls[label], "config": config}
                server = urls[label] is not None
                out[(index, label, peer)].append(_once("measure_cluster", kwargs, server=server))
    my = urls.get("MariaDB")
    if my:  # APScheduler 4's SQLAlchemy store on MariaDB: recorded once, expected to fail
        config = {"hosts": 1, "jobs": 10, "period_s": 2.0, "periods": 1}
        kwargs = {"peer": "aps4", "url": my, "config": config}
        out[(0, "MariaDB", "aps4")].append(_once("measure_cluster_failure", kwargs, server=True))
    return out


def _cluster_rows(clusters: dict[_ClusterKey, list[dict[str, Any]]]) -> list[Row]:
    def col(rs: list[dict[str, Any]], key: str) -> list[float]:
        return [math.nan if r.get(key) is None else float(r[key]) for r in rs]

    rows: list[Row] = []
    for index, label, _peers in _CLUSTER_RUNS:
        ours = clusters.get((index, label, "recurjobs"))
        if not ours:
            continue
        peer = [r for r in clusters.get((index, label, "aps4"), []) if r.get("ok", True)] or None
        failed = [r for r in clusters.get((index, "MariaDB", "aps4"), []) if not r.get("ok", True)]
        c = CLUSTERS[index]
        periods = int(ours[0]["periods"])
        name = (
            f"distributed cluster, {label}, {c['hosts']} processes x {c['jobs']:,} jobs x "
            f"{c['period_s']:g} s (aligned, 50 ms runs), {periods // c['jobs']} periods"
        )
        if peer:
            name += (
                ", vs APScheduler 4.0.0a6 (SQLAlchemyDataStore + PsycopgEventBroker, lease 10 s)"
            )
        elif label == "MariaDB" and failed:
            name += f"; APScheduler 4.0.0a6 fails here: {failed[0]['error']}"
        elif label == "MariaDB":
            name += "; APScheduler 4.0.0a6 was not run here"
        else:
            name += "; APScheduler 4.0.0a6 has no event broker for SQLite"

        def peer_col(key: str, peer: list[dict[str, Any]] | None = peer) -> list[float] | None:
            return col(peer, key) if peer else None

        nth = min(100, c["jobs"])
        rows += [
            Row(
                name,
                f"periods run, higher is better ({periods:,} job-periods per rep)",
                "%",
                col(ours, "run_share"),
                peer_col("run_share"),
                scale=100,
            ),
            Row(
                name,
                "overlapping runs of one job",
                "",
                col(ours, "overlaps"),
                peer_col("overlaps"),
                limit=0.0,
            ),
            Row(
                name,
                "periods in which a job started twice",
                "",
                col(ours, "twice"),
                peer_col("twice"),
                limit=0.0,
            ),
            Row(
                name,
                f"start of the {nth}th due job after the period boundary, p99 over periods",
                "ms",
                col(ours, "nth_p99"),
                peer_col("nth_p99"),
                limit=0.1,
                scale=1e3,
            ),
            Row(
                name,
                "CPU time of all hosts per minute",
                "s/min",
                col(ours, "cpu_per_min"),
                peer_col("cpu_per_min"),
                max_ratio=0.2 if peer else None,
            ),
        ]
        if ours[0].get("xacts_per_s") is not None:
            rows.append(
                Row(
                    name,
                    "transactions per second (pg_stat_database xact_commit + xact_rollback)",
                    "/s",
                    col(ours, "xacts_per_s"),
                    peer_col("xacts_per_s"),
                    max_ratio=0.35 if peer else None,
                )
            )
        rows.append(
            Row(
                name,
                "SQL statements per second, all hosts (recurjobs' engine events)",
                "/s",
                col(ours, "statements_per_s"),
            )
        )
        rows.append(Row(name, "warnings logged by the hosts", "", col(ours, "warnings")))
        for r in ours + (peer or []):
            for w in r.get("first_warnings", []):
                _say(f"  cluster warning ({label}): {w}")
    return rows
