"""Run history: what recording costs the runs, how fast the writer drains, how fast it reads.

* history on vs off: 200 recurring jobs every 100 ms (2,000 runs/s) for a window; lateness
  p99 of the runs (start minus planned start) and the process's CPU time. With history on,
  every run is one record, written by one thread in batches. The "off" and "on" processes of
  a repetition run at the same time. Targets: p99 at most +10 %, CPU at most +15 % of the run
  without history.
* writer throughput: records queued at once, drained into PostgreSQL (target >= 2,000/s).
* ``history --job X --limit 100`` with 1,000,000 rows in the table (100,000 with --quick),
  bulk-loaded with COPY: the median time of ``read_history`` on a warm connection (<= 20 ms).

The database is ``RECURJOBS_BENCH_DATABASE_URL``, else ``RECURJOBS_TEST_POSTGRES_URL`` (``eval
"$(bash scripts/test-databases.sh)"``), else an SQLite file (the PostgreSQL rows are skipped).
Tables get a unique prefix and are dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from datetime import timedelta
from typing import Any

from _common import Row, median, percentile, repeat, repetitions

ORDER = 60
JOBS = 200
PERIOD = 0.1
DELAY = 1.0


def _database() -> str:
    url = os.environ.get("RECURJOBS_BENCH_DATABASE_URL") or os.environ.get(
        "RECURJOBS_TEST_POSTGRES_URL"
    )
    if url:
        return url
    return f"sqlite:///{tempfile.mkdtemp(prefix='bench-history-')}/h.db"


def _drop(url: str, prefix: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=lambda name, _: name.startswith(prefix))
        metadata.drop_all(engine)
    finally:
        engine.dispose()


def measure_runs(history: bool, duration: float, url: str) -> dict[str, Any]:
    """Lateness and CPU of 200 jobs x 100 ms, with or without history."""
    from recurjobs import (
        CancellationToken,
        DistributedJobSettings,
        JobHost,
        JobStarting,
        RecurringJob,
    )

    class Probe(RecurringJob):
        def __init__(self) -> None:
            super().__init__(timedelta(seconds=PERIOD), delay=timedelta(seconds=DELAY))
            self.starts: list[float] = []

        def run(self, token: CancellationToken) -> None:
            self.starts.append(time.monotonic())

    prefix = f"b{secrets.token_hex(3)}_"
    probes = [Probe() for _ in range(JOBS)]
    settings = DistributedJobSettings(table_prefix=prefix)
    host = JobHost(probes, database=url, distributed=settings, history=history)
    bases: dict[int, float] = {}
    host.subscribe(JobStarting, lambda n: bases.__setitem__(id(n.job), time.monotonic()))
    host.start()
    window_start = time.monotonic() + DELAY
    time.sleep(DELAY)
    cpu0 = time.process_time()
    time.sleep(duration)
    cpu = time.process_time() - cpu0
    window_end = time.monotonic()
    host.stop()
    written = len(host.history(limit=10_000)) if history else 0
    _drop(url, prefix)
    late: list[float] = []
    for probe in probes:
        first = bases[id(probe)] + DELAY
        for k, start in enumerate(probe.starts):
            plan = first + k * PERIOD
            if window_start <= plan <= window_end:
                late.append(start - plan)
    return {
        "p99": percentile(late, 99),
        "cpu": cpu / duration,
        "runs": len(late),
        "written": written,
    }


def measure_off(duration: float, url: str) -> dict[str, Any]:
    """:func:`measure_runs` without history (a child process of its own)."""
    return measure_runs(False, duration, url)


def measure_on(duration: float, url: str) -> dict[str, Any]:
    """:func:`measure_runs` with history (a child process of its own)."""
    return measure_runs(True, duration, url)


def measure_writer(records: int, url: str) -> dict[str, Any]:
    """Records per second from a full queue into the table."""
    from recurjobs._historyrec import HistoryQueue
    from recurjobs.sql import JobStore
    from recurjobs.sql._history import HistoryTables
    from recurjobs.sql._historywriter import HistoryWriter

    prefix = f"b{secrets.token_hex(3)}_"
    tables = HistoryTables(prefix)
    store = JobStore(url, table_prefix=prefix)
    tables.metadata.create_all(store.engine)
    queue = HistoryQueue(records)
    now = round(time.time() * 1000)
    for i in range(records):
        queue.put((f"job{i % 200}", "schedule", now, now + 3, "executed"))
    writer = HistoryWriter(queue=queue, store=store, tables=tables, host="bench")
    started = time.monotonic()
    writer.start()
    writer.close(None)
    elapsed = time.monotonic() - started
    store.dispose()
    _drop(url, prefix)
    return {"rate": writer.written / elapsed, "written": writer.written}


def measure_read(rows: int, url: str) -> dict[str, Any]:
    """Median time of the latest 100 runs of one job, with ``rows`` rows in the table."""
    import sqlalchemy as sa

    from recurjobs.sql._history import HistoryTables, read_history

    prefix = f"b{secrets.token_hex(3)}_"
    tables = HistoryTables(prefix)
    engine = sa.create_engine(url)
    tables.metadata.create_all(engine)
    now = round(time.time() * 1000)
    load = time.monotonic()
    raw: Any = engine.raw_connection()
    try:
        columns = "job, kind, host, trigger, started_ms, ended_ms, outcome"
        with raw.cursor() as cur, cur.copy(f"COPY {prefix}runs ({columns}) FROM STDIN") as copy:
            for i in range(rows):
                start = now - (rows - i) * 10
                copy.write_row(
                    (
                        f"job{i % 1000}",
                        "recurring",
                        "bench",
                        "schedule",
                        start,
                        start + 3,
                        "failed" if i % 50 == 0 else "executed",
                    )
                )
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ANALYZE {prefix}runs")
    loaded = time.monotonic() - load
    from recurjobs.sql import make_engine
    from recurjobs.sql._history import history_query

    reader = make_engine(url)  # as the host and the CLI read: session-bounded, pooled
    times: list[float] = []
    for i in range(30):
        began = time.perf_counter()
        found = read_history(reader, prefix, job=f"job{(i * 37) % 1000}", limit=100)
        times.append(time.perf_counter() - began)
        assert len(found) == 100
    query = history_query(tables.runs, job="job5", limit=100)
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN ANALYZE {sql}")]
    server = float(plan[-1].split(":")[1].split()[0]) / 1000  # "Execution Time: 0.123 ms"
    reader.dispose()
    engine.dispose()
    _drop(url, prefix)
    return {"median": median(times[5:]), "p99": max(times[5:]), "load": loaded, "server": server}


def run(quick: bool) -> list[Row]:
    url = _database()
    reps = repetitions(quick)
    duration = 3.0 if quick else 10.0
    name = f"history, {JOBS} jobs x {int(PERIOD * 1000)} ms, {duration:g} s"
    # Off and on run at the same time, each in a process of its own, so a slower minute of the
    # machine hits both sides alike (run one after the other, the same side's CPU moved by a
    # fifth between repetitions). Each side uses about a tenth of a core.
    both = repeat(
        __name__,
        ["measure_off", "measure_on"],
        {"duration": duration, "url": url},
        reps,
        together=True,
    )
    res = {False: both["measure_off"], True: both["measure_on"]}
    off_p99 = median([r["p99"] for r in res[False]])
    off_cpu = median([r["cpu"] for r in res[False]])
    rows = [
        Row(name, "lateness p99, history off", "ms", [r["p99"] for r in res[False]], scale=1e3),
        Row(
            name,
            "lateness p99, history on",
            "ms",
            [r["p99"] for r in res[True]],
            limit=off_p99 * 1.10,
            scale=1e3,
            note="target: off + 10 %",
        ),
        Row(name, "CPU, history off", "% of a core", [r["cpu"] for r in res[False]], scale=100),
        Row(
            name,
            "CPU, history on",
            "% of a core",
            [r["cpu"] for r in res[True]],
            limit=off_cpu * 1.15,
            scale=100,
            note=f"target: off + 15 %; {median([r['written'] for r in res[True]]):.0f} rows shown",
        ),
        Row(
            name,
            "CPU per recorded run, on minus off, same repetition (informational)",
            "us",
            # CPU is a fraction of a core over the window: (on - off) core-seconds per second,
            # divided by the runs recorded per second, is the history's cost of one run.
            [
                (on["cpu"] - off["cpu"]) / (on["runs"] / duration)
                for off, on in zip(res[False], res[True], strict=True)
            ],
            scale=1e6,
            note="absolute cost of recording and writing one run",
        ),
    ]
    if not url.startswith("postgresql"):
        return rows
    writer = repeat(
        __name__, ["measure_writer"], {"records": 20_000 if quick else 100_000, "url": url}, reps
    )["measure_writer"]
    rate = [r["rate"] for r in writer]
    rows.append(
        Row(
            "history writer, PostgreSQL",
            "records/s (inverse: s per 1000)",
            "s",
            [1000.0 / r for r in rate],
            limit=0.5,
            note=f"{median(rate):,.0f} records/s; target >= 2,000/s",
        )
    )
    table_rows = 100_000 if quick else 1_000_000
    read = repeat(__name__, ["measure_read"], {"rows": table_rows, "url": url}, reps)
    rows.append(
        Row(
            f"history --job X --limit 100, {table_rows:,} rows",
            "median",
            "ms",
            [r["median"] for r in read["measure_read"]],
            limit=0.020,
            scale=1e3,
            note=f"bulk load {median([r['load'] for r in read['measure_read']]):.1f} s; server "
            f"time {median([r['server'] for r in read['measure_read']]) * 1e3:.2f} ms",
        )
    )
    return rows
