"""Text for people: durations typed on a command line, tables and JSON of job records."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from recurjobs._cron import Cron
from recurjobs._schedule import INFINITE
from recurjobs._status import JobStatus

__all__ = [
    "database_table",
    "format_duration",
    "format_schedule",
    "format_table",
    "history_table",
    "parse_duration",
    "status_table",
    "to_json",
]

_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"1h30m"``, ``"45s"``, ``"250ms"`` or plain seconds (``"90"``).

    Raises ValueError for anything else, including zero and negative durations.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {text!r}")
    value = text.strip().lower()
    total = 0.0
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        total = float(value)
    elif value and re.fullmatch(f"(?:{_PART.pattern})+", value):
        total = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    else:
        raise ValueError(f"expected a duration like 7d, 12h, 30m, 45s or 1h30m, got {text!r}")
    if total <= 0:
        raise ValueError(f"a duration must be greater than zero, got {text!r}")
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"a duration must be shorter than a million days, got {text!r}") from None


def format_duration(value: timedelta | None) -> str:
    """A short human form: ``"5m"``, ``"1h30m"``, ``"250ms"``, ``"never"`` for INFINITE."""
    if value is None:
        return "-"
    if value == INFINITE:
        return "never"
    ms = round(value / timedelta(milliseconds=1))
    if ms == 0:
        return "0s"
    if ms % 1000:
        return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms}ms"
    seconds, parts = ms // 1000, []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def format_schedule(value: timedelta | Cron | None) -> str:
    """A period as :func:`format_duration` shows it; a calendar as ``0 3 * * * (Europe/Paris)``."""
    if isinstance(value, Cron):
        return value.describe()
    return format_duration(value)


def _when(value: datetime | None, now: datetime) -> str:
    """``2026-01-01 12:00:03 (3s ago)`` in UTC; ``-`` for None."""
    if value is None:
        return "-"
    delta = value - now
    step = timedelta(seconds=round(abs(delta.total_seconds())))
    relative = "now" if step < timedelta(seconds=1) else format_duration(step)
    if relative != "now":
        relative = f"in {relative}" if delta > timedelta(0) else f"{relative} ago"
    return f"{value:%Y-%m-%d %H:%M:%S} ({relative})"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, headers first."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def status_table(records: Sequence[JobStatus]) -> str:
    """A table of ``JobHost.status()`` records (``paused`` as the next run of a paused job)."""
    if not records:
        return "no jobs registered"
    now = datetime.now(UTC)
    headers = "NAME|KIND|PERIOD|NEXT RUN (UTC)|LAST START (UTC)|LAST OUTCOME|RUNS|FAILURES|RUNNING"
    rows = [
        [
            r.name,
            r.kind,
            format_schedule(r.period),
            "paused" if getattr(r, "paused", False) else _when(r.next_run, now),
            _when(r.last_start, now),
            r.last_outcome or "-",
            str(r.runs),
            str(r.failures),
            "yes" if r.running else "no",
        ]
        for r in records
    ]
    return format_table(headers.split("|"), rows)


def database_table(rows: Sequence[Any]) -> str:
    """A table of ``JobStore.rows()``: name, period, last run, running, owner, next due
    (``paused`` for a paused job)."""
    if not rows:
        return "no distributed jobs in the database yet"
    headers = ["NAME", "PERIOD", "LAST RUN (UTC)", "RUNNING", "OWNER", "NEXT DUE (UTC)"]
    lines = []
    for r in rows:
        running = ("yes (stale)" if r.stale else "yes") if r.running else "no"
        due = "now (triggered)" if r.triggered else _when(r.next_due, r.database_now)
        if getattr(r, "paused", False):
            due = "paused"
        lines.append(
            [
                r.name,
                # A Cron row (the jobs table's cron column) shows its expression and zone.
                format_schedule(getattr(r, "cron", None) or r.period),
                _when(r.last_run, r.database_now),
                running,
                r.owner or "-",
                due,
            ]
        )
    return format_table(headers, lines)


def history_table(records: Sequence[Any]) -> str:
    """A table of ``RunRecord`` s: newest first, one line each, errors by their first line."""
    if not records:
        return "no runs recorded"
    headers = ["STARTED (UTC)", "JOB", "KIND", "OUTCOME", "DURATION", "TRIGGER", "HOST", "ERROR"]
    lines = []
    for r in records:
        error = (r.error or "-").splitlines()[0][:80] if r.error else "-"
        lines.append(
            [
                f"{r.started_at:%Y-%m-%d %H:%M:%S.%f}"[:-3],
                r.job,
                r.kind,
                r.outcome,
                format_duration(r.duration) if r.duration is not None else "-",
                r.trigger,
                r.host,
                error,
            ]
        )
    return format_table(headers, lines)


def to_json(record: Any) -> dict[str, object]:
    """A dataclass record as a JSON-ready dict: ISO times, durations in seconds, enum values."""

    def plain(value: object) -> object:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, timedelta):
            return None if value == INFINITE else value.total_seconds()
        if isinstance(value, Cron):
            return value.describe()
        if isinstance(value, enum.Enum):
            return value.value
        return value

    return {f.name: plain(getattr(record, f.name)) for f in dataclasses.fields(record)}
