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

``next_after`` searches cronsim's parsed field sets itself (``_cronmath``) and asks cronsim
only near a change of UTC offset, where its rules are subtle: same answers, a few microseconds
instead of a hundred.

Every instant this module returns is an aware UTC ``datetime``: arithmetic on two aware datetimes
that share a ``ZoneInfo`` is wall-clock arithmetic in Python (it ignores the offset change), a
classic source of daylight-saving bugs, so we never hand one out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from recurjobs._cronmath import Fields, Transitions, transitions

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
_MINUTE = timedelta(minutes=1)
# Around a fire time found by the fast search, this much on either side must be free of UTC
# offset changes for the answer to be cronsim's (cronsim steps back to the start of the hour).
_MARGIN_S = 2 * 3600.0


# A fixed offset as ``str(datetime.timezone(offset))`` writes it: "UTC+02:00", "UTC-09:30".
_OFFSET = re.compile(r"UTC([+-])(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{6}))?)?")


def _zone(tz: object) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"tz must be a str (an IANA zone name) or a tzinfo, got {tz!r}")
    if tz.upper() == "UTC":
        return UTC
    offset = _OFFSET.fullmatch(tz)
    if offset is not None:
        sign, hours, minutes, secs, micros = offset.groups()
        delta = timedelta(
            hours=int(hours),
            minutes=int(minutes),
            seconds=int(secs or 0),
            microseconds=int(micros or 0),
        )
        if delta < timedelta(hours=24):
            return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # OSError: a directory of the zone database ("Europe"), a name too long for a path
        raise ValueError(
            f"tz must be a known IANA time zone name (or a fixed offset such as 'UTC+02:00'), "
            f"got {tz!r}"
        ) from exc


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

    __slots__ = (
        "_expression",
        "_fast",
        "_fields",
        "_fixed_time",
        "_transitions",
        "_tz",
        "_zone",
    )

    _expression: str
    _fields: str
    _tz: str | tzinfo
    _zone: tzinfo
    _fast: Fields | None
    _fixed_time: bool
    _transitions: Transitions | None

    def __init__(self, expression: str, *, tz: str | tzinfo = "UTC") -> None:
        fields = _fields(expression)
        zone = _zone(tz)
        try:
            sim = CronSim(fields, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(
                f"expression {expression!r} is not a valid cron expression: {exc}"
            ) from exc
        try:
            fast: Fields | None = Fields(sim)
        except (AttributeError, TypeError, ValueError):  # a cronsim we do not know: ask it
            fast = None
        minute, hour = fields.split()[:2]
        # cronsim's (Debian cron's) rule: a fixed minute and hour are read on the wall clock
        # (a skipped time runs right after the jump, a repeated one once); anything else runs
        # on real instants.
        fixed_time = not minute.startswith("*") and not hour.startswith("*")
        object.__setattr__(self, "_fixed_time", fixed_time)
        object.__setattr__(self, "_fast", fast)
        object.__setattr__(self, "_transitions", None if zone in (None, UTC) else transitions(zone))
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
        """The zone's name: the IANA key; ``"UTC"`` or ``"UTC+02:00"`` for a fixed offset (a
        ``datetime.timezone``, whatever its own name); else ``str()`` of the ``tzinfo``."""
        key = getattr(self._zone, "key", None)
        if isinstance(key, str):
            return key
        if isinstance(self._zone, timezone):
            return str(timezone(self._zone.utcoffset(None)))
        return str(self._zone)

    def _zone_key(self) -> object:
        """What makes two zones the same here: the IANA key, a fixed offset, or the tzinfo."""
        key = getattr(self._zone, "key", None)
        if isinstance(key, str) or isinstance(self._zone, timezone):
            return self.zone_name
        return self._zone

    def describe(self) -> str:
        """Expression and zone for people: ``"0 3 * * * (Europe/Amsterdam)"``."""
        return f"{self._expression} ({self.zone_name})"

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after the aware instant ``t``, as an aware UTC datetime.

        A ``ValueError`` naming the calendar when there is none (within 50 years, or before
        year 10000).
        """
        if not isinstance(t, datetime):
            raise TypeError(f"t must be a datetime, got {t!r}")
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(f"t must be an aware datetime (with a tzinfo), got {t!r}")
        try:
            fire = self._search(t)
        except (OverflowError, ValueError):  # searched past year 9999; cronsim tells below
            fire = None
        if fire is None:
            fire = self._cronsim(t)
        if fire is None:
            raise ValueError(f"{self.describe()} has no fire time after {t!r} before year 10000")
        return fire

    def _search(self, t: datetime) -> datetime | None:
        """The fast answer, or None when only cronsim can tell."""
        fast, zone, changes = self._fast, self._zone, self._transitions
        if fast is None:
            return None
        if changes is None:  # UTC: the wall clock is regular
            found = fast.next_naive(t.astimezone(UTC).replace(tzinfo=None))
            return None if found is None else found.replace(tzinfo=UTC)
        found = fast.next_naive(t.astimezone(zone).replace(tzinfo=None))
        if found is None:
            return None
        at = found.replace(tzinfo=zone).timestamp()
        if self._fixed_time:
            # A wall-clock search (cronsim's too): exact unless the wall time found is near an
            # offset change, where it may be skipped or repeated.
            if not changes.any_between(at - _MARGIN_S, at + _MARGIN_S):
                return datetime.fromtimestamp(at, UTC)
            return self._fixed_time_near_a_change(t)
        # Real instants: exact unless an offset change lies between t and the fire time.
        if changes.any_between(t.timestamp() - _MARGIN_S, at + _MARGIN_S):
            return None
        return datetime.fromtimestamp(at, UTC)

    def _fixed_time_near_a_change(self, t: datetime) -> datetime | None:
        """A fixed time near an offset change: a time skipped by the change moves to the first
        minute that exists; a repeated time counts once, at its first pass."""
        fast, zone = self._fast, self._zone
        assert fast is not None
        local = t.astimezone(zone).replace(tzinfo=None)
        while True:
            found = fast.next_naive(local)
            if found is None:
                return None
            while _skipped(found, zone):
                found += _MINUTE
            fire = found.replace(tzinfo=zone).astimezone(UTC)
            if fire > t:
                return fire
            local = (fire + _SECOND).astimezone(zone).replace(tzinfo=None)

    def _cronsim(self, t: datetime) -> datetime | None:
        """cronsim's own answer (slow: near offset changes, or for what the search gave up);
        None when the next fire time would be after year 9999."""
        try:
            start = t.astimezone(self._zone)
        except OverflowError:
            if t.year < 9999:  # before year 1 in the zone: not a calendar that ran out
                raise
            return None
        while True:
            try:
                fire = next(CronSim(self._fields, start)).astimezone(UTC)
            except StopIteration:
                raise ValueError(
                    f"{self.describe()} has no fire time within 50 years after {t!r}"
                ) from None
            except (OverflowError, ValueError):  # datetime's "year 10000 is out of range"
                return None
            if fire > t:
                return fire
            # A fixed-time job in a repeated (fall-back) hour: cronsim reads wall-clock times
            # without their fold, so from inside the second pass of the hour it can name the
            # first pass, which is already behind us. Ask again from there.
            try:
                start = (fire + _SECOND).astimezone(self._zone)
            except OverflowError:
                return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cron):
            return NotImplemented
        return (self._expression, self._zone_key()) == (other._expression, other._zone_key())

    def __hash__(self) -> int:
        return hash((Cron, self._expression, self._zone_key()))

    def __repr__(self) -> str:
        if isinstance(self._tz, str):
            return f"Cron({self._expression!r}, tz={self._tz!r})"
        return f"Cron({self._expression!r}, tz={self.zone_name!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self._expression, self._tz))


def _rebuild(expression: str, tz: str | tzinfo) -> Cron:
    return Cron(expression, tz=tz)


def _skipped(wall: datetime, zone: tzinfo) -> bool:
    """Whether the naive wall time does not exist in ``zone`` (skipped when clocks go forward)."""
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall
