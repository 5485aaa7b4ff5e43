"""Shared plumbing for the benchmarks: result rows, statistics, isolated child processes.

How a benchmark module plugs in (``run_all.py`` finds every ``benchmarks/bench_*.py``):

* ``ORDER: int`` (optional) sorts the modules in the report; lower comes first.
* ``run(quick: bool) -> list[Row]`` runs the benchmark and returns its rows. It runs in the
  parent process and should do all measuring in children via :func:`repeat`, so threads, RSS
  and imports never leak from one measurement into the next.
* The functions :func:`repeat` calls live in the same module (or any importable one) and run in
  a fresh interpreter: ``func(**kwargs)`` returns a JSON-serialisable ``dict``.

This file is also the child's entry point: ``python _common.py MODULE FUNC JSON_KWARGS``
prints the function's result as one JSON line after :data:`_MARK`.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BACKGROUND",
    "APS3_DIR",
    "APS3_INSTALL",
    "BackgroundMeter",
    "Row",
    "Series",
    "format_table",
    "aps3_version",
    "median",
    "peer_path",
    "percentile",
    "repeat",
    "repetitions",
    "rss_bytes",
    "settle",
    "vms_bytes",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APS3_DIR = Path(sys.prefix) / "apscheduler3"
"""Where ``make bench`` installs APScheduler 3 (``pip install --no-deps --target``), the peer of
the recurring-job benchmarks. The ``bench`` extra installs APScheduler 4.0.0a6 into the
virtualenv itself (the peer of the distributed cluster); one distribution name cannot hold two
versions in one environment, so 3.x lives beside it and goes first on the ``PYTHONPATH`` of
the children of every benchmark module whose ``PEER`` is not ``"apscheduler4"``."""
APS3_INSTALL = (
    f"{sys.executable} -m pip install --no-deps --target {APS3_DIR} 'apscheduler>=3.11,<4'"
)
_MARK = "@@BENCH-RESULT@@ "
CHILD_TIMEOUT = 600.0

Series = list[float]


# ------------------------------------------------------------------------------ results
@dataclass
class Row:
    """One line of the report: a metric measured once per repetition.

    Every metric is "lower is better". ``ours`` holds recurjobs' value of each repetition,
    ``peer`` APScheduler's (``None``: no peer). ``limit`` is an absolute target for the median of
    ``ours``; ``max_ratio`` a target for ``median(ours) / median(peer)``. A row without either is
    informational.
    """

    benchmark: str
    metric: str
    unit: str
    ours: Series
    peer: Series | None = None
    limit: float | None = None
    max_ratio: float | None = None
    note: str = ""
    scale: float = 1.0  # multiply values by this for display (e.g. 1e3 for s -> ms)

    @property
    def ratio(self) -> float | None:
        if not self.peer or not self.ours:
            return None
        peer = median(self.peer)
        return math.inf if peer == 0 else median(self.ours) / peer

    @property
    def met(self) -> bool | None:
        """True/False when the row has a target, None when it is informational."""
        if self.limit is None and self.max_ratio is None:
            return None
        ok = True
        if self.limit is not None:
            ok = ok and median(self.ours) <= self.limit
        if self.max_ratio is not None:
            ratio = self.ratio
            ok = ok and ratio is not None and ratio <= self.max_ratio
        return ok

    def target_text(self) -> str:
        parts = []
        if self.limit is not None:
            parts.append(f"<= {_num(self.limit * self.scale)} {self.unit}")
        if self.max_ratio is not None:
            parts.append(f"<= {_num(self.max_ratio)} x peer")
        return ", ".join(parts) or "-"


def _num(value: float) -> str:
    if math.isinf(value):
        return "inf"
    if math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_table(rows: Sequence[Row]) -> str:
    """The markdown report: medians, recurjobs' spread, the ratio and the target check."""
    head = (
        "| benchmark | metric | recurjobs (median) | recurjobs runs (min-max) | "
        "APScheduler (median) | ratio rj/APS | target (recurjobs) | met |"
    )
    lines = [head, "|" + "---|" * 8]
    for row in rows:
        s = row.scale
        ours = f"{_num(median(row.ours) * s)} {row.unit}" if row.ours else "n/a"
        spread = (
            f"{_num(min(row.ours) * s)}-{_num(max(row.ours) * s)} (n={len(row.ours)})"
            if row.ours
            else "-"
        )
        peer = f"{_num(median(row.peer) * s)} {row.unit}" if row.peer else "-"
        ratio = row.ratio
        ratio_text = "-" if ratio is None else _num(ratio)
        met = {None: "-", True: "yes", False: "**NO**"}[row.met]
        metric = row.metric + (f" ({row.note})" if row.note else "")
        lines.append(
            f"| {row.benchmark} | {metric} | {ours} | {spread} | {peer} | {ratio_text} | "
            f"{row.target_text()} | {met} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- statistics
def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def repetitions(quick: bool) -> int:
    """How many fresh-process repetitions a benchmark makes (``BENCH_REPS`` overrides)."""
    env = os.environ.get("BENCH_REPS")
    if env:
        return max(1, int(env))
    return 1 if quick else 3


# ------------------------------------------------------------------------- child processes
def run_child(module: str, func: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run ``module.func(**kwargs)`` in a fresh interpreter and return its dict result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (*peer_path(module), str(ROOT), str(HERE), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), module, func, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            result: dict[str, Any] = json.loads(line[len(_MARK) :])
            return result
    raise RuntimeError(
        f"{module}.{func}({kwargs}) failed with exit code {proc.returncode}:\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )


def peer_path(module: str) -> list[str]:
    """Extra import path for ``module``'s children: APScheduler 3's folder unless the module
    measures APScheduler 4 (``PEER = "apscheduler4"``)."""
    peer = getattr(importlib.import_module(module), "PEER", "apscheduler3")
    return [str(APS3_DIR)] if peer != "apscheduler4" and APS3_DIR.is_dir() else []


def aps3_version() -> str:
    """The APScheduler 3 found in :data:`APS3_DIR`, or "not installed"."""
    found = sorted(APS3_DIR.glob("[Aa][Pp][Ss]cheduler-*.dist-info"))
    if not found:
        return "not installed"
    return found[-1].name.removesuffix(".dist-info").split("-")[1]


def repeat(
    module: str,
    funcs: Sequence[str],
    kwargs: dict[str, Any],
    reps: int,
    *,
    progress: Callable[[str], None] | None = None,
    together: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Run each of ``funcs`` ``reps`` times, interleaved (a, b, a, b, ...), one process each.

    Interleaving spreads background noise (other processes on the machine) over all the
    contenders instead of letting it hit one of them as a block. ``together``: the processes of
    one repetition run at the same time instead, so a drift of the machine's speed (on this
    virtual machine the same run's CPU moves by a fifth within minutes) hits both sides of a
    comparison alike; for light loads only (each side well below one core).
    """
    out: dict[str, list[dict[str, Any]]] = {f: [] for f in funcs}
    say = progress or _stderr
    groups = [list(funcs)] if together else [[f] for f in funcs]
    with ThreadPoolExecutor(len(funcs)) as pool:
        for rep in range(reps):
            for group in groups:
                with BackgroundMeter() as meter:
                    results = list(pool.map(lambda f: run_child(module, f, kwargs), group))
                for func, result in zip(group, results, strict=True):
                    out[func].append(result)
                BACKGROUND.append((module, meter.share))
                what = "+".join(group) + (" together," if len(group) > 1 else "")
                say(
                    f"  {module}.{what} rep {rep + 1}/{reps}: {meter.wall:.1f} s, "
                    f"other processes used {meter.share:.0%} of the CPUs"
                )
    return out


# ------------------------------------------------------------------------------- noise
BACKGROUND: list[tuple[str, float]] = []
"""(module, share) for every child run: the CPU share other processes used meanwhile."""


def _busy_seconds() -> float | None:
    """Machine-wide non-idle CPU time (all CPUs, including steal) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


class BackgroundMeter:
    """Measures how much CPU *other* processes used while a child benchmark ran: the
    machine-wide busy time minus the child's own CPU time, as a share of all CPUs."""

    def __enter__(self) -> BackgroundMeter:
        self._busy = _busy_seconds()
        self._child = _children_cpu()
        self._t0 = time.monotonic()
        self.wall = 0.0
        self.share = math.nan
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._t0
        busy = _busy_seconds()
        if busy is None or self._busy is None or self.wall <= 0:
            return
        others = (busy - self._busy) - (_children_cpu() - self._child)
        self.share = max(0.0, others) / (self.wall * (os.cpu_count() or 1))


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- child helpers
def rss_bytes() -> int:
    """Resident set size of this process, from /proc (psutil when /proc is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import psutil

        return int(psutil.Process().memory_info().rss)


def vms_bytes() -> int:
    """Virtual memory size of this process (address space reserved, touched or not)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import psutil

        return int(psutil.Process().memory_info().vms)


def settle(seconds: float = 0.2) -> None:
    """Collect garbage and sleep a little so freshly started threads reach their waits."""
    import gc

    gc.collect()
    time.sleep(seconds)


def _child_main(argv: list[str]) -> None:
    module, func, raw = argv
    fn = getattr(importlib.import_module(module), func)
    result = fn(**json.loads(raw))
    print(_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
