"""Fast fire-time search for :class:`recurjobs.Cron`: cronsim's field sets, searched once.

cronsim parses an expression into sets of allowed minutes, hours, days, months and weekdays,
then walks a clock forward second by second, minute by minute and hour by hour, converting
through UTC at each step: exact, but 50-200 microseconds a call. Here the same sets (read from
a parsed ``CronSim``) are searched directly on wall-clock (naive) datetimes, day by day with a
binary search inside the matching day: a few microseconds.

A naive search is the whole answer when the wall clock is regular around it: always in UTC or
a fixed offset, and for a time zone as long as no change of UTC offset lies near the instants
involved. ``Cron`` decides when that holds and falls back to cronsim otherwise, so the results
stay cronsim's to the second, daylight-saving quirks included (a test compares the two on many
random expressions, zones and instants).
"""

from __future__ import annotations

import bisect
import calendar
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

__all__ = ["Fields", "Transitions", "transitions"]

_DAY = timedelta(days=1)
_MINUTE = timedelta(minutes=1)
_LAST = -1000  # cronsim's marker for "L" (the last day of the month, or the last weekday N)
_LAST_WEEKDAY = -1001  # cronsim's marker for "LW" (the last Monday-to-Friday of the month)
_GIVE_UP_YEARS = 50  # cronsim stops looking after 50 years; so do we (the caller falls back)


def _last_weekday(year: int, month: int) -> int:
    """The day of the month of the last Monday-to-Friday of that month."""
    first, length = calendar.monthrange(year, month)
    last = (first + length - 1) % 7  # 0 = Monday ... 6 = Sunday
    return length - 2 if last == 6 else length - 1 if last == 5 else length


class Fields:
    """The allowed values of one expression, ready for searching.

    Built from a ``CronSim``'s parsed sets (``minutes``, ``hours``, ``days``, ``months``,
    ``weekdays``, ``day_and``): weekdays are kept with Sunday as 0 (cronsim accepts 0 and 7).
    """

    __slots__ = (
        "by_dom",
        "day_and",
        "dom",
        "dom_last",
        "dom_last_weekday",
        "dow",
        "dow_last",
        "dow_nth",
        "hour_set",
        "hours",
        "minutes",
        "months",
    )

    def __init__(self, sim: Any) -> None:
        if set(sim.seconds) != {0}:
            raise ValueError("only five-field expressions (second 0) are searched here")
        self.minutes: tuple[int, ...] = tuple(sorted(sim.minutes))
        self.hours: tuple[int, ...] = tuple(sorted(sim.hours))
        self.hour_set = frozenset(self.hours)
        self.months = frozenset(sim.months)
        days = set(sim.days)
        self.dom_last = _LAST in days
        self.dom_last_weekday = _LAST_WEEKDAY in days
        self.dom = frozenset(d for d in days if d > 0)
        dow: set[int] = set()
        dow_last: set[int] = set()
        dow_nth: set[tuple[int, int]] = set()
        for item in sim.weekdays:
            if isinstance(item, tuple):
                weekday, which = item
                if which == _LAST:
                    dow_last.add(weekday % 7)
                else:
                    dow_nth.add((weekday % 7, which))
            else:
                dow.add(item % 7)
        self.dow, self.dow_last, self.dow_nth = (
            frozenset(dow),
            frozenset(dow_last),
            frozenset(dow_nth),
        )
        self.day_and = bool(sim.day_and)
        if not (self.minutes and self.hours and self.months):
            raise ValueError("an empty field")
        # Days chosen by day of month alone (the common case: "*" or a list of days, with any
        # day of the week): the next matching day is a binary search, not a walk.
        every_weekday = self.dow == frozenset(range(7))
        self.by_dom: tuple[int, ...] | None = None
        if self.day_and and every_weekday and not (self.dom_last or self.dom_last_weekday):
            self.by_dom = tuple(sorted(self.dom))

    def _dom(self, d: date) -> bool:
        if d.day in self.dom:
            return True
        if self.dom_last_weekday and d.day >= 26 and d.day == _last_weekday(d.year, d.month):
            return True
        return self.dom_last and d.day >= 28 and d.day == calendar.monthrange(d.year, d.month)[1]

    def _dow(self, d: date) -> bool:
        weekday = d.isoweekday() % 7  # Sunday = 0
        if weekday in self.dow:
            return True
        if weekday in self.dow_last and d.day + 7 > calendar.monthrange(d.year, d.month)[1]:
            return True
        return bool(self.dow_nth) and (weekday, (d.day + 6) // 7) in self.dow_nth

    def day_matches(self, d: date) -> bool:
        """Whether the date matches (day of month AND/OR day of week, as Debian cron)."""
        if self.day_and:
            return self._dom(d) and self._dow(d)
        return self._dom(d) or self._dow(d)

    def _in_day(self, hour: int, minute: int) -> tuple[int, int] | None:
        """The first allowed (hour, minute) at or after the given one on a matching day."""
        minutes = self.minutes
        if hour in self.hour_set:
            i = bisect.bisect_left(minutes, minute)
            if i < len(minutes):
                return hour, minutes[i]
        j = bisect.bisect_right(self.hours, hour)
        if j < len(self.hours):
            return self.hours[j], minutes[0]
        return None

    def next_naive(self, after: datetime) -> datetime | None:
        """The first matching whole minute strictly after the naive ``after``.

        None when there is none within cronsim's 50 years (the caller then asks cronsim).
        """
        start = after.replace(second=0, microsecond=0) + _MINUTE
        day, hour, minute = start.date(), start.hour, start.minute
        give_up = after.year + _GIVE_UP_YEARS
        while day.year <= give_up:
            if day.month not in self.months:
                day = self._next_month(day)
                hour = minute = 0
                continue
            if self.by_dom is not None:
                i = bisect.bisect_left(self.by_dom, day.day)
                length = calendar.monthrange(day.year, day.month)[1]
                if i == len(self.by_dom) or self.by_dom[i] > length:
                    day = self._next_month(day)
                    hour = minute = 0
                    continue
                if self.by_dom[i] != day.day:
                    day = day.replace(day=self.by_dom[i])
                    hour = minute = 0
            elif not self.day_matches(day):
                day += _DAY
                hour = minute = 0
                continue
            found = self._in_day(hour, minute)
            if found is not None:
                return datetime(day.year, day.month, day.day, found[0], found[1])
            day += _DAY
            hour = minute = 0
        return None

    def _next_month(self, day: date) -> date:
        """The first day of the next allowed month after ``day``'s."""
        year, month = day.year, day.month
        for _ in range(12):
            month += 1
            if month == 13:
                year, month = year + 1, 1
            if month in self.months:
                break
        return date(year, month, 1)


class Transitions:
    """The instants at which one zone's UTC offset changes, found year by year on demand.

    Each year is sampled every three hours and every change is narrowed down to the second;
    two offset changes less than three hours apart that cancel out would be missed (no zone
    has any). Safe to share between threads: the covered span and its changes are replaced
    together by one assignment, never changed in place.
    """

    _STEP = 3 * 3600

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        # (first covered year, last covered year, epoch seconds of the changes in them), and
        # the same span in epoch seconds for the quick check.
        self._known: tuple[int, int, tuple[float, ...]] | None = None
        self._span: tuple[float, float, tuple[float, ...]] = (0.0, 0.0, ())
        self._years: dict[int, list[float]] = {}

    def _offset(self, ts: float) -> timedelta | None:
        return datetime.fromtimestamp(ts, self._zone).utcoffset()

    def _year(self, year: int) -> list[float]:
        found = self._years.get(year)
        if found is None:
            found = self._years.setdefault(year, self._sample(year))
        return found

    def _sample(self, year: int) -> list[float]:
        begin = datetime(year, 1, 1, tzinfo=UTC).timestamp()
        end = datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()
        changes: list[float] = []
        ts, offset = begin, self._offset(begin)
        while ts < end:
            nxt = min(ts + self._STEP, end)
            nxt_offset = self._offset(nxt)
            if nxt_offset != offset:
                low, high = ts, nxt  # offset(low) differs from offset(high): narrow it down
                while high - low > 1:
                    mid = (low + high) // 2
                    if self._offset(mid) == offset:
                        low = mid
                    else:
                        high = mid
                changes.append(high)
            ts, offset = nxt, nxt_offset
        return changes

    def _cover(self, first: int, last: int) -> tuple[float, float, tuple[float, ...]]:
        known = self._known
        lo, hi = (first, last) if known is None else (min(first, known[0]), max(last, known[1]))
        changes = tuple(sorted({c for year in range(lo, hi + 1) for c in self._year(year)}))
        self._known = (lo, hi, changes)
        begin = datetime(lo, 1, 1, tzinfo=UTC).timestamp()
        end = datetime(hi + 1, 1, 1, tzinfo=UTC).timestamp()
        self._span = (begin, end, changes)
        return self._span

    def any_between(self, lo: float, hi: float) -> bool:
        """Whether the UTC offset changes anywhere between the epoch seconds ``lo`` and ``hi``."""
        begin, end, changes = self._span
        if not begin <= lo <= hi < end:
            first = datetime.fromtimestamp(lo, UTC).year
            last = datetime.fromtimestamp(hi, UTC).year
            if last - first > 2:
                return True  # a long search: let cronsim do it
            begin, end, changes = self._cover(first, last)
        i = bisect.bisect_left(changes, lo)
        return i < len(changes) and changes[i] <= hi


_transitions: dict[tzinfo, Transitions] = {}


def transitions(zone: tzinfo) -> Transitions:
    """The shared :class:`Transitions` of ``zone``."""
    found = _transitions.get(zone)
    if found is None:
        found = _transitions.setdefault(zone, Transitions(zone))
    return found
