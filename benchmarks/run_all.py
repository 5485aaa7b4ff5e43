"""Run the recurjobs benchmarks and print a markdown table of medians.

    .venv/bin/python benchmarks/run_all.py            # everything, >= 3 repetitions each
    .venv/bin/python benchmarks/run_all.py --quick    # one short repetition: smoke test
    .venv/bin/python benchmarks/run_all.py --only lateness --only trigger
    .venv/bin/python benchmarks/run_all.py --list

Every ``benchmarks/bench_*.py`` module is discovered and run in ``ORDER`` (then name). A module
exposes ``run(quick: bool) -> list[Row]`` (see ``_common.py``); every single measurement runs
in a fresh child process, and APScheduler 3 (``BackgroundScheduler``) is measured alongside
where it has an equivalent. Progress goes to stderr, the table to stdout. The exit status is 2
when a benchmark crashed, and 1 with ``--strict`` when a recurjobs target is missed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.insert(1, str(HERE.parent))

from _common import (  # noqa: E402
    APS3_DIR,
    APS3_INSTALL,
    BACKGROUND,
    Row,
    aps3_version,
    format_table,
    repetitions,
)


def discover() -> list[ModuleType]:
    """Every ``bench_*.py`` beside this file, sorted by its ``ORDER`` then its name."""
    modules = [importlib.import_module(p.stem) for p in sorted(HERE.glob("bench_*.py"))]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 1000), m.__name__))


def short(module: ModuleType) -> str:
    return module.__name__.removeprefix("bench_")


def select(modules: list[ModuleType], only: list[str]) -> list[ModuleType]:
    if not only:
        return modules
    wanted = {w.removeprefix("bench_").removesuffix(".py") for o in only for w in o.split(",")}
    unknown = wanted - {short(m) for m in modules}
    if unknown:
        known = ", ".join(short(m) for m in modules)
        raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; known: {known}")
    return [m for m in modules if short(m) in wanted]


def versions() -> str:
    def version(dist: str) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v

        try:
            return v(dist)
        except PackageNotFoundError:
            return "not installed"

    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"recurjobs {version('recurjobs')}, APScheduler {aps3_version()} (recurring peer), "
        f"APScheduler {version('apscheduler')} (distributed peer), "
        f"psutil {version('psutil')}"
    )


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def background_summary() -> str:
    """One line on noise: the CPU share other processes took while each benchmark ran."""
    by_module: dict[str, list[float]] = {}
    for module, share in BACKGROUND:
        if share == share:  # not NaN
            by_module.setdefault(module.removeprefix("bench_"), []).append(share)
    if not by_module:
        return "CPU used by other processes: not measurable here"
    parts = [
        f"{name} {statistics.median(v):.0%} (max {max(v):.0%})" for name, v in by_module.items()
    ]
    return "CPU used by other processes during the runs, median (max): " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="one short repetition of each benchmark (smoke test)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (repeatable or comma-separated; "
        "with or without the bench_ prefix)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a recurjobs target is missed"
    )
    args = parser.parse_args(argv)

    modules = discover()
    if args.list:
        for m in modules:
            doc = (m.__doc__ or "").strip().splitlines()
            print(f"{short(m):20} {doc[0] if doc else ''}")
        return 0
    chosen = select(modules, args.only)
    if not APS3_DIR.is_dir():
        print(
            f"APScheduler 3 (the recurring jobs' peer) is not in {APS3_DIR}; its columns "
            f"will fail. Install it with: {APS3_INSTALL}",
            file=sys.stderr,
        )

    started = time.monotonic()
    load_before = load_average()
    rows: list[Row] = []
    crashed: list[str] = []
    reps = repetitions(args.quick)
    for module in chosen:
        print(f"== {short(module)} ({reps} repetition(s))", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            rows.extend(module.run(args.quick))
        except Exception:
            traceback.print_exc()
            crashed.append(short(module))
        print(f"   {short(module)} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)

    mode = "quick" if args.quick else "full"
    print(
        f"recurjobs benchmarks, {mode} mode, medians of {reps} fresh-process run(s) each; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(versions())
    print(f"load average (1/5/15 min) before: {load_before}; after: {load_average()}")
    print()
    print(format_table(rows))
    print()
    print(background_summary())
    missed = [f"{r.benchmark} / {r.metric}" for r in rows if r.met is False]
    print(
        f"{len(rows)} rows in {time.monotonic() - started:.0f} s; "
        f"targets missed: {len(missed)}; crashed: {', '.join(crashed) or 'none'}"
    )
    for miss in missed:
        print(f"- missed: {miss}")
    if crashed:
        return 2
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
