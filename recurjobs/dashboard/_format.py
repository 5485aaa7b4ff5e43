"""Pure text for the pages: times (relative and absolute UTC), durations, schedules, next due.

No I/O and no clock: every function takes the database's "now" (epoch milliseconds) it needs.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from recurjobs._cron import Cron

__all__ = [
    "absolute",
    "cron_of",
    "duration",
    "next_due_ms",
    "relative",
    "schedule_text",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def absolute(epoch_ms: int | None) -> str:
    """``2026-11-30 15:04:05 UTC`` (empty for None)."""
    if epoch_ms is None:
        return ""
    try:
        moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    except OverflowError:  # a stamp no datetime holds (a broken row): shown as it is
        return f"{epoch_ms} ms since 1970"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(ms: int | float) -> str:
    """A short human duration: ``850 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{ms // 1000} s" if ms % 1000 == 0 else f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _about(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 45:
        return "a few seconds" if seconds >= 5 else "a moment"
    minutes = round(seconds / 60)
    if minutes < 60:
        return "about a minute" if minutes <= 1 else f"about {minutes} minutes"
    hours = round(seconds / 3600)
    if hours < 24:
        return "about an hour" if hours <= 1 else f"about {hours} hours"
    days = round(seconds / 86400)
    return "about a day" if days <= 1 else f"about {days} days"


def relative(epoch_ms: int | None, now_ms: int) -> str:
    """``in about 12 minutes`` or ``about 3 hours ago`` (``now`` within a second)."""
    if epoch_ms is None:
        return ""
    delta = epoch_ms - now_ms
    if abs(delta) < 1000:
        return "now"
    return f"in {_about(delta)}" if delta > 0 else f"{_about(-delta)} ago"


@functools.lru_cache(maxsize=1024)
def cron_of(value: str | None) -> Cron | None:
    """The :class:`~recurjobs.Cron` of a jobs-table ``cron`` value ``"<expression>|<zone>"``;
    None for NULL or a value this version cannot read."""
    if not value:
        return None
    expression, _, zone = value.rpartition("|")
    if not expression:
        expression, zone = value, "UTC"
    try:
        return Cron(expression, tz=zone or "UTC")
    except (TypeError, ValueError):
        return None


def schedule_text(period_ms: int | None, cron: str | None, aligned: bool = False) -> str:
    """``every 5 min``, ``every 1 h (aligned to the clock)`` or
    ``cron 0 3 * * * (Europe/Paris)``."""
    if cron:
        parsed = cron_of(cron)
        expression, _, zone = cron.rpartition("|")
        if parsed is not None:
            return f"cron {parsed.describe()}"
        return f"cron {expression or cron} ({zone or 'UTC'})"
    if period_ms is None:
        return "unknown"
    text = f"every {duration(period_ms)}"
    return f"{text} (aligned to the clock)" if aligned else text


def next_due_ms(
    *,
    period_ms: int,
    aligned: bool,
    last_run_ms: int,
    last_attempted_run_ms: int | None,
    cron: str | None,
    due_now: bool,
    now_ms: int,
) -> int | None:
    """When a distributed job's row becomes due by the rules the hosts apply."""
    if due_now:
        return now_ms
    parsed = cron_of(cron)
    if cron and parsed is not None:
        base = last_attempted_run_ms if last_attempted_run_ms is not None else last_run_ms
        after = _EPOCH + timedelta(milliseconds=base)
        try:
            fire = parsed.next_after(after)
        except (OverflowError, ValueError):
            return None
        return int((fire - _EPOCH) / timedelta(milliseconds=1))
    if cron:
        return None
    if aligned:
        return (last_run_ms // period_ms + 1) * period_ms
    return last_run_ms + period_ms
