"""Fire times of Cron rows in the jobs table: pure math on database epoch milliseconds.

No threads, no SQL, no clock reads: every function takes the instants it needs (read from the
database by the caller) and answers with epoch milliseconds, so the same inputs give the same
answer on every host, whatever its time zone or the skew of its clock.

The due rule of a Cron row: a fire time ``F`` passed with ``last_attempted_run < F <= now``.
:func:`first_fire_after` gives the earliest candidate, ``F = next fire time after
last_attempted_run``; the row is due when ``F <= now``. Several missed fire times are one
run: the claim sets ``last_attempted_run`` to now, past all of them.

The ``cron`` column holds ``"<expression>|<zone name>"`` (:func:`cron_text`); hosts read the
schedule from the row, as they read ``period_ms`` for period rows, so the hosts that last
declared the job decide its calendar for the whole cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from recurjobs._cron import Cron

__all__ = [
    "CRON_TEXT_MAX",
    "cron_text",
    "first_fire_after",
    "gap_after",
    "next_fire",
    "nominal_period_ms",
    "parse_cron_text",
]

CRON_TEXT_MAX = 255
"""The width of the ``cron`` column."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def cron_text(cron: Cron) -> str:
    """What the ``cron`` column holds for ``cron``: ``"<expression>|<zone name>"``."""
    return f"{cron.expression}|{cron.zone_name}"


@lru_cache(maxsize=1024)
def parse_cron_text(text: str | None) -> Cron | None:
    """The Cron a ``cron`` column value stands for; None for NULL or a value this host cannot
    read (an unknown zone in its tz database, a hand edit): the caller then falls back to the
    job it declared itself."""
    if not text or "|" not in text:
        return None
    expression, zone = text.rsplit("|", 1)
    try:
        return Cron(expression, tz=zone)
    except (TypeError, ValueError):
        return None


def _utc(epoch_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def _ms(t: datetime) -> int:
    return (t - _EPOCH) // _MS


@lru_cache(maxsize=4096)
def first_fire_after(cron: Cron, after_ms: int) -> int:
    """The first fire time of ``cron`` strictly after the instant ``after_ms`` (epoch ms).

    Cached: a poll asks this for every free Cron row, and a row's ``last_attempted_run`` only
    changes when the row is claimed, so an idle host's polls are dictionary look-ups.
    """
    return _ms(cron.next_after(_utc(after_ms)))


def gap_after(cron: Cron, fire_ms: int) -> int:
    """Milliseconds from the fire time ``fire_ms`` to the next one: what stands in for the
    period in a Cron claim's lease (``gap + max_execution_time``)."""
    return first_fire_after(cron, fire_ms) - fire_ms


@lru_cache(maxsize=8192)
def next_fire(text: str, after_ms: int) -> tuple[int, int] | None:
    """For a ``cron`` column value and a ``last_attempted_run``: the first fire time after it
    and the gap from there to the next one; None when this host cannot read the value.

    Keyed by plain values (a poll calls it for every free Cron row; an idle row is a dictionary
    hit), as ``last_attempted_run`` only changes when the row is claimed.
    """
    cron = parse_cron_text(text)
    if cron is None:
        return None
    fire = first_fire_after(cron, after_ms)
    return fire, gap_after(cron, fire)


def nominal_period_ms(cron: Cron, now_ms: int) -> int:
    """The gap between the first two fire times after ``now_ms``: the ``period_ms`` written for
    a Cron row (shown by status tools; no due or stale rule of a Cron row reads it)."""
    return gap_after(cron, first_fire_after(cron, now_ms))
