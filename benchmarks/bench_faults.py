"""Fault-injection soak: host processes under network faults, kill -9 and SIGSTOP.

Per backend (PostgreSQL, MariaDB), ``--workers`` host processes (``tests/sql/fault_worker.py``:
a JobHost with 6 distributed jobs of period 2-3 s, ``max_execution_time`` 3 s, poll 0.5 s,
runs of 0.1-1.5 s) reach the database through one loopback ``FaultProxy`` each
(``tests/faultproxy.py``); two more jobs run 2-6 s, past ``max_execution_time``, so they live on
heartbeats. For ``--seconds`` a chaos loop picks, every 2-6 s at random:

* reset every connection of one worker's proxy or of all of them;
* stall one or all proxies for ``--stall`` s (10): bytes held, then delivered;
* refuse one or all for ``--refuse`` s (30): listener closed, open connections reset;
* hold one claim's COMMIT on one proxy for ``--stall`` s: the claimed row stays locked, as when
  a host pauses between UPDATE and COMMIT (other hosts claiming that row wait on the lock);
* ``kill -9`` a worker and start a replacement 0-2 s later;
* ``SIGSTOP`` a worker for 1-3 s (shorter than a lease minus a heartbeat), then ``SIGCONT``;
* ``SIGSTOP`` a worker for 1-3 s past the longest lease: another host takes over while it is
  frozen (reported apart); once awake, its run must end within 0.5 s;
* SIGTERM a worker (``host.stop(10)``) and start a replacement once it exited.

Then a quiet phase (longest ``period + max_execution_time + 2 x poll`` plus 3 s), then SIGTERM to
all. The shared run log is checked for: overlapping runs of one job, the longest wait of each
job after the faults stopped (promise: ``period + max_execution_time + 2 x poll``), thread
deaths, and ``stop()`` durations (promise: within its timeout + 2 s). The hosts record run
history; afterwards no run (job and claim id) may have two rows in it, and each row of a host no
fault touched must match a logged run (start and end within 1 s); every run of a host whose final
``stop()`` returned True must have its row.

Usage::

    .venv/bin/python benchmarks/bench_faults.py                     # both backends, 180 s each
    .venv/bin/python benchmarks/bench_faults.py --backend mysql --seconds 60 --seed 7

Prints one table row per backend and writes the details (fault timeline, gaps, overlaps, lease
losses, stop() calls) to ``--out`` (default: a temporary directory, named at the end). Exits 1
when a promise was broken. ``run_all.py`` runs it too (``--quick``: 30 s per backend).
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import Row  # noqa: E402

from tests.dbs import ENV_VARS, TestDatabase, database_urls, drop_tables  # noqa: E402
from tests.sql.fault_soak import FAULT_KINDS, Report, SoakConfig, reanalyse, run_soak  # noqa: E402

ORDER = 90
BACKENDS = ("postgres", "mysql")


def _urls() -> dict[str, str]:
    """The servers' URLs: the environment's, else what scripts/test-databases.sh exports."""
    found = {b: u for b, u in database_urls().items() if b in BACKENDS and u}
    if len(found) == len(BACKENDS):
        return found
    script = ROOT / "scripts" / "test-databases.sh"
    proc = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    exported = dict(re.findall(r"export (\w+)=(\S+)", proc.stdout))
    for backend, variable in ENV_VARS.items():
        if backend not in found and exported.get(variable):
            found[backend] = exported[variable].strip("'\"")
    return found


def soak(backend: str, url: str, **options: Any) -> Report:
    """One soak on ``backend``; its tables are dropped afterwards."""
    prefix = f"fault_{secrets.token_hex(4)}_"
    directory = Path(options.pop("directory"))
    config = SoakConfig(
        backend=backend, url=url, table_prefix=prefix, directory=directory / backend, **options
    )
    print(
        f"soak {backend}: {config.seconds:g} s of faults, {config.workers} workers, "
        f"seed {config.seed}, logs in {config.directory}",
        file=sys.stderr,
        flush=True,
    )
    try:
        return run_soak(config)
    finally:
        try:
            drop_tables(TestDatabase(backend, url, prefix))
        except Exception as exc:  # a leftover uniquely prefixed table harms nobody
            print(f"could not drop {prefix}* on {backend}: {exc}", file=sys.stderr)


def table(reports: list[Report]) -> str:
    """A markdown table: one row per backend."""
    rows = [r.summary_row() for r in reports]
    if not rows:
        return "(no backend ran)"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row[h] for h in head) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--seconds", type=float, default=180.0, help="chaos phase per backend")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--stall", type=float, default=10.0, help="length of a stall (s)")
    parser.add_argument("--refuse", type=float, default=30.0, help="length of a refusal (s)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds to inject (default: all of {','.join(FAULT_KINDS)})",
    )
    parser.add_argument("--seed", type=int, default=None, help="chaos seed (default: random)")
    parser.add_argument("--out", type=Path, default=None, help="directory for logs and details")
    parser.add_argument(
        "--reanalyse",
        action="store_true",
        help="analyse the soaks kept in --out again (same --seconds/--workers/...) instead",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.workers < 1:
        parser.error("--seconds must be > 0 and --workers >= 1")
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = sorted(set(faults) - set(FAULT_KINDS))
    if unknown or not faults:
        parser.error(f"--faults: unknown kind(s) {unknown}; choose from {', '.join(FAULT_KINDS)}")
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_faults_"))
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    if args.reanalyse:
        if args.out is None:
            parser.error("--reanalyse needs --out DIR")
        return _reanalyse(args, backends, faults)
    urls = _urls()
    reports = []
    for backend in backends:
        if backend not in urls:
            print(f"{backend}: no database URL ({ENV_VARS[backend]}); skipped", file=sys.stderr)
            continue
        began = time.monotonic()
        report = soak(
            backend,
            urls[backend],
            directory=out,
            seconds=args.seconds,
            workers=args.workers,
            stall_seconds=args.stall,
            refuse_seconds=args.refuse,
            seed=seed,
            faults=faults,
        )
        details = report.details()
        (out / backend / "details.txt").write_text(details + "\n")
        print(f"soak {backend} done in {time.monotonic() - began:.0f} s", file=sys.stderr)
        if report.broken:
            print(details, file=sys.stderr)
        reports.append(report)
    print(table(reports))
    print(f"\nseed {seed}; details in {out}/<backend>/details.txt")
    broken = [b for r in reports for b in r.broken]
    return 1 if broken or not reports else 0


def _reanalyse(args: argparse.Namespace, backends: tuple[str, ...], faults: tuple[str, ...]) -> int:
    reports = []
    for backend in backends:
        directory = args.out / backend
        if not (directory / "soak.json").exists():
            continue
        config = SoakConfig(
            backend=backend,
            url="",
            table_prefix="",
            directory=directory,
            seconds=args.seconds,
            workers=args.workers,
            stall_seconds=args.stall,
            refuse_seconds=args.refuse,
            seed=args.seed or 0,
            faults=faults,
        )
        report = reanalyse(config)
        (directory / "details.txt").write_text(report.details() + "\n")
        reports.append(report)
    print(table(reports))
    return 1 if any(r.broken for r in reports) or not reports else 0


def run(quick: bool) -> list[Row]:
    """For run_all.py: one soak per backend (30 s of faults with --quick, else 180 s)."""
    urls = _urls()
    rows: list[Row] = []
    out = Path(tempfile.mkdtemp(prefix="bench_faults_"))
    for backend in BACKENDS:
        if backend not in urls:
            continue
        seconds = 30.0 if quick else 180.0
        report = soak(
            backend,
            urls[backend],
            directory=out,
            seconds=seconds,
            workers=4,
            stall_seconds=10.0,
            refuse_seconds=10.0 if quick else 30.0,
            seed=secrets.randbelow(10**6),
        )
        (out / backend / "details.txt").write_text(report.details() + "\n")
        name = f"faults, {backend}, 4 hosts, {seconds:g} s of faults"
        worst = max((g[0] / g[1] for g in report.gaps.values()), default=float("nan"))
        stop_max = max((s[1] for s in report.stops), default=float("nan"))
        rows += [
            Row(name, "overlapping runs of one job", "", [float(len(report.overlaps))], limit=0),
            Row(name, "longest wait after the faults / promised bound", "", [worst], limit=1.0),
            Row(
                name,
                "jobs idle past their bound while one row was locked",
                "",
                [float(len(report.lock_stalls))],
                limit=0,
            ),
            Row(
                name,
                "leases lost by hosts no fault touched",
                "",
                [float(sum(1 for x in report.lost if x[3]))],
                limit=0,
            ),
            Row(name, "thread deaths", "", [float(len(report.deaths))], limit=0),
            Row(
                name,
                "runs recorded twice in the history (job and claim id in two rows)",
                "",
                [float(len(report.history_twice))],
                limit=0,
            ),
            Row(
                name,
                "longest stop(10)",
                "s",
                [stop_max],
                limit=report.config.stop_timeout + 2,
            ),
        ]
    return rows


if __name__ == "__main__":
    sys.exit(main())
