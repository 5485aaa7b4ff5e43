"""Cron: a calendar schedule in a time zone, accepted wherever a period is.

Pure schedule math, no threads: :meth:`Cron.next_after` answers "when is the first fire time
strictly after this instant". Parsing and the daylight-saving rules are the ``cronsim``
package's, which follow Debian cron:

- a fire time that falls in the hour skipped when clocks go forward runs once, right after the
  jump (02:30 on the spring-forward night of a zone that jumps 02:00 -> 03:00 fires at 03:00);
- a job with a fixed minute and hour inside the repeated hour (clocks go back) runs once, at the
  first of the two instants with that wall-clock time;
- a job with a wildcard minute or hour (``*/15 * * * *``, ``0 * * * *``) runs on each real
  instant that matches, so an hourly job runs on each of the two repeated hours.

Every instant this module returns is an aware UTC ``datetime``: arithmetic on two aware datetimes
that share a ``ZoneInfo`` is wall-clock arithmetic in Python (it ignores the offset change), a
classic source of daylight-saving bugs, so we never hand one out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["Cron", "MACROS"]

#: The lower-case macros and the five-field expressions they stand for.
MACROS: Final[dict[str, str]] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}

_SECOND = timedelta(seconds=1)


def _zone(tz: object) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"tz must be a str (an IANA zone name) or a tzinfo, got {tz!r}")
    if tz.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"tz must be a known IANA time zone name, got {tz!r}") from exc


def _fields(expression: object) -> str:
    if not isinstance(expression, str):
        raise TypeError(f"expression must be a str, got {expression!r}")
    text = expression.strip()
    if text.startswith("@"):
        if text not in MACROS:
            raise ValueError(
                f"expression {expression!r} is not a known macro "
                f"(use one of {', '.join(MACROS)} or five cron fields)"
            )
        return MACROS[text]
    if len(text.split()) != 5:
        raise ValueError(
            f"expression must have exactly five fields (minute hour day-of-month month "
            f"day-of-week), got {expression!r}"
        )
    return text


class Cron:
    """A calendar schedule: a five-field cron expression (or a macro) read in the zone ``tz``.

    ``Cron("0 3 * * *", tz="Europe/Amsterdam")`` fires at 03:00 Amsterdam time every day.
    ``expression`` and ``tz`` are kept as given; two Crons with equal expression and zone are
    equal and hash alike. A bad expression or unknown zone is a ``ValueError`` here, a value of
    the wrong type a ``TypeError``.
    """

    __slots__ = ("_expression", "_fields", "_tz", "_zone")

    _expression: str
    _fields: str
    _tz: str | tzinfo
    _zone: tzinfo

    def __init__(self, expression: str, *, tz: str | tzinfo = "UTC") -> None:
        fields = _fields(expression)
        zone = _zone(tz)
        try:
            CronSim(fields, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(
                f"expression {expression!r} is not a valid cron expression: {exc}"
            ) from exc
        object.__setattr__(self, "_expression", expression)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_zone", zone)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Cron is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Cron is immutable; cannot delete {name!r}")

    @property
    def expression(self) -> str:
        """The expression as given (a macro stays a macro)."""
        return self._expression

    @property
    def tz(self) -> str | tzinfo:
        """The zone as given: a name or a ``tzinfo``."""
        return self._tz

    @property
    def zone(self) -> tzinfo:
        """The zone as a ``tzinfo`` (``datetime.UTC`` for "UTC")."""
        return self._zone

    @property
    def zone_name(self) -> str:
        """The zone's name: the IANA key, or ``str()`` of a ``tzinfo`` without one."""
        key = getattr(self._zone, "key", None)
        return key if isinstance(key, str) else str(self._zone)

    def describe(self) -> str:
        """Expression and zone for people: ``"0 3 * * * (Europe/Amsterdam)"``."""
        return f"{self._expression} ({self.zone_name})"

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after the aware instant ``t``, as an aware UTC datetime."""
        if not isinstance(t, datetime):
            raise TypeError(f"t must be a datetime, got {t!r}")
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(f"t must be an aware datetime (with a tzinfo), got {t!r}")
        start = t.astimezone(self._zone)
        while True:
            fire = next(CronSim(self._fields, start)).astimezone(UTC)
            if fire > t:
                return fire
            # A fixed-time job in a repeated (fall-back) hour: cronsim reads wall-clock times
            # without their fold, so from inside the second pass of the hour it can name the
            # first pass, which is already behind us. Ask again from there.
            start = (fire + _SECOND).astimezone(self._zone)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cron):
            return NotImplemented
        return (self._expression, self.zone_name) == (other._expression, other.zone_name)

    def __hash__(self) -> int:
        return hash((Cron, self._expression, self.zone_name))

    def __repr__(self) -> str:
        if isinstance(self._tz, str):
            return f"Cron({self._expression!r}, tz={self._tz!r})"
        return f"Cron({self._expression!r}, tz={self.zone_name!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self._expression, self._tz))


def _rebuild(expression: str, tz: str | tzinfo) -> Cron:
    return Cron(expression, tz=tz)
