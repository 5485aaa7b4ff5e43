"""Cron rows of the jobs table: the due guard, claims, triggers, leases and rows, on every backend.

Times are placed relative to the database clock by writing the row's columns directly
(``set_row``); a fire time ``F`` is bound the way the poller binds it. Hourly and yearly
calendars keep every test clear of the next real fire time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from recurjobs import Cron
from recurjobs.sql import JobStore
from recurjobs.sql._claims import due, stale
from recurjobs.sql._fires import (
    cron_text,
    first_fire_after,
    gap_after,
    nominal_period_ms,
    parse_cron_text,
)
from tests.sql.helpers import Job, race, row, set_row

HOURLY = Cron("0 * * * *")
YEARLY = Cron("0 0 1 1 *", tz="Asia/Kolkata")
LEASE = timedelta(minutes=1)
MINUTE, HOUR = 60_000, 3_600_000


def guard(store: JobStore, name: str, fire: int | None) -> bool:
    """Evaluate ``due(jobs, fire)`` for one row in the database (the bare guard, no claim)."""
    query = select(due(store.jobs, fire)).where(store.jobs.c.name == name)
    with store.engine.connect() as conn:
        return bool(conn.execute(query).scalar_one())


# (last_attempted_run, F, due_now, expected); times in ms relative to the database's now.
GUARD_CASES: list[tuple[int, int | None, bool, bool]] = [
    (-2 * MINUTE, -MINUTE, False, True),  # last_attempted < F <= now: due
    (-MINUTE - 1, -MINUTE, False, True),  # one millisecond before F is enough
    (-MINUTE, -MINUTE, False, False),  # claimed at F itself: that F was taken
    (-MINUTE + 1, -MINUTE, False, False),  # claimed after F: taken
    (-2 * MINUTE, MINUTE, False, False),  # F not reached yet
    (-2 * MINUTE, None, False, False),  # no fire time bound: only a trigger makes it due
    (-2 * MINUTE, None, True, True),  # triggered
    (0, MINUTE, True, True),  # triggered, whatever the calendar
]


@pytest.mark.parametrize(("attempted", "fire", "due_now", "expected"), GUARD_CASES)
def test_the_cron_guard_is_last_attempted_before_f_at_or_before_now(
    store: JobStore, attempted: int, fire: int | None, due_now: bool, expected: bool
) -> None:
    """A Cron row is due exactly when ``last_attempted_run < F <= db now`` (or triggered)."""
    store.ensure([Job("c", HOURLY)])
    now = store.now_ms()
    set_row(store, "c", last_attempted_run_ms=now + attempted, due_now=due_now)
    assert expected == guard(store, "c", None if fire is None else now + fire)


def test_a_cron_row_never_takes_the_period_rule(store: JobStore) -> None:
    """However old its last_run, a Cron row is not due by the period rule (its period_ms is
    only a nominal gap)."""
    store.ensure([Job("c", HOURLY)])
    set_row(store, "c", last_run_ms=0, period_ms=1, aligned=False)
    interval = guard(store, "c", None)
    set_row(store, "c", aligned=True)
    assert (False, False) == (interval, guard(store, "c", None))


def test_a_never_claimed_row_counts_from_last_run(store: JobStore) -> None:
    """A Cron row whose last_attempted_run is NULL counts fire times from its last_run."""
    store.ensure([Job("c", HOURLY)])
    now = store.now_ms()
    set_row(store, "c", last_attempted_run_ms=None, last_run_ms=now - 2 * MINUTE)
    assert (True, False) == (guard(store, "c", now - MINUTE), guard(store, "c", now - 3 * MINUTE))


def test_a_new_cron_row_does_not_catch_up_the_past(store: JobStore) -> None:
    """A new row starts with last_attempted_run = now: fire times before it never run, and the
    poll names its next fire time."""
    store.ensure([Job("c", HOURLY)])
    r = row(store, "c")
    poll = store.poll(["c"])
    assert poll.now_ms is not None
    assert ([], True, r["last_run_ms"]) == (
        poll.due,
        poll.now_ms - HOUR < r["last_attempted_run_ms"] <= poll.now_ms,
        r["last_attempted_run_ms"],
    )
    assert first_fire_after(HOURLY, r["last_attempted_run_ms"]) == poll.fires_ms["c"]


def test_three_missed_fire_times_give_one_claim(store: JobStore) -> None:
    """Hosts down across three fire times: the poll offers one claim (for the first missed fire
    time), it lands once, and afterwards the row is not due again."""
    store.ensure([Job("c", HOURLY)])
    down_since = store.now_ms() - 3 * HOUR - HOUR // 2
    set_row(store, "c", last_attempted_run_ms=down_since, last_run_ms=down_since)
    (found,) = store.poll(["c"]).due
    assert (first_fire_after(HOURLY, down_since), HOUR) == (found.fire_ms, found.gap_ms)
    results = race(
        *[
            lambda: store.try_claim("c", owner="h", lease=LEASE, fire_ms=found.fire_ms)
            for _ in range(3)
        ]
    )
    won = [r for r in results if r is not None]
    assert 1 == len(won), results
    store.finish(won[0])  # type: ignore[arg-type]
    assert [] == store.poll(["c"]).due


def test_the_same_fire_time_is_never_claimed_twice(store: JobStore) -> None:
    """Once a claim for F landed, a claim binding the same F fails, even after the run ended."""
    store.ensure([Job("c", HOURLY)])
    now = store.now_ms()
    set_row(store, "c", last_attempted_run_ms=now - HOUR - 1)
    fire = first_fire_after(HOURLY, now - HOUR - 1)
    first = store.try_claim("c", owner="h1", lease=LEASE, fire_ms=fire)
    assert first is not None
    store.finish(first)
    assert None is store.try_claim("c", owner="h2", lease=LEASE, fire_ms=fire)


def test_a_fire_time_in_the_future_is_refused_by_the_claim_itself(store: JobStore) -> None:
    """A claim binding an F after the database's now does not land (F <= now is checked in the
    UPDATE, not trusted from the caller's read)."""
    store.ensure([Job("c", HOURLY)])
    now = store.now_ms()
    set_row(store, "c", last_attempted_run_ms=now - 2 * HOUR)
    assert None is store.try_claim("c", owner="h", lease=LEASE, fire_ms=now + MINUTE)


def test_a_triggered_cron_job_is_claimed_and_its_claim_counts(store: JobStore) -> None:
    """A trigger makes a Cron row due at once; its claim moves last_attempted_run, so fire
    times missed before it are not run again."""
    store.ensure([Job("c", HOURLY)])
    now = store.now_ms()
    set_row(store, "c", last_attempted_run_ms=now - 3 * HOUR - HOUR // 2)
    store.trigger("c")
    (found,) = store.poll(["c"]).due
    claim = store.try_claim("c", owner="h", lease=LEASE, fire_ms=found.fire_ms)
    assert claim is not None
    store.finish(claim)
    after = row(store, "c")
    assert ([], False, True) == (
        store.poll(["c"]).due,
        after["due_now"],
        after["last_attempted_run_ms"] >= now,
    )


def test_a_triggered_row_whose_fire_time_has_not_come_is_claimed_without_one(
    store: JobStore,
) -> None:
    """Triggered before its next fire time: the poll offers it with no F and the gap between
    the next two fire times for its lease."""
    store.ensure([Job("y", YEARLY)])
    store.trigger("y")
    (found,) = store.poll(["y"]).due
    assert ("y", None, True) == (found.name, found.fire_ms, found.gap_ms is not None)
    assert found.gap_ms is not None and 365 * 24 * HOUR <= found.gap_ms <= 366 * 24 * HOUR
    assert store.try_claim("y", owner="h", lease=LEASE) is not None


# (owner silent for, in ms past the lease, expected stale)
STALE_CASES = [(-5_000, False), (5_000, True)]


@pytest.mark.parametrize(("past_lease", "expected"), STALE_CASES)
def test_a_cron_claim_goes_stale_after_its_gap_plus_max_execution_time(
    store: JobStore, past_lease: int, expected: bool
) -> None:
    """The lease of a Cron claim is the gap after its fire time plus max_execution_time: the
    row is taken over only once its owner was silent for longer than that."""
    store.ensure([Job("c", HOURLY)])
    now = store.now_ms()
    set_row(store, "c", last_attempted_run_ms=now - 2 * HOUR)
    (found,) = store.poll(["c"]).due
    assert found.gap_ms is not None
    lease = timedelta(milliseconds=found.gap_ms) + timedelta(minutes=5)
    claim = store.try_claim("c", owner="h1", lease=lease, fire_ms=found.fire_ms)
    assert claim is not None
    lease_ms = row(store, "c")["lease_ms"]
    set_row(store, "c", last_alive_ms=store.now_ms() - lease_ms - past_lease)
    query = select(stale(store.jobs)).where(store.jobs.c.name == "c")
    with store.engine.connect() as conn:
        is_stale = bool(conn.execute(query).scalar_one())
    assert (HOUR + 5 * MINUTE, expected) == (lease_ms, is_stale)


def test_ensure_writes_the_calendar_and_a_nominal_period(store: JobStore) -> None:
    """A Cron row holds "<expression>|<zone>" in cron and the gap between its next two fire
    times in period_ms; rows() reads the Cron back with its next fire time."""
    store.ensure([Job("y", YEARLY)])
    r = row(store, "y")
    (shown,) = store.rows()
    assert ("0 0 1 1 *|Asia/Kolkata", False, YEARLY) == (r["cron"], r["aligned"], shown.cron)
    assert r["period_ms"] == nominal_period_ms(YEARLY, r["last_attempted_run_ms"])
    expected = first_fire_after(YEARLY, r["last_attempted_run_ms"])
    assert expected == round(shown.next_due.timestamp() * 1000)


def test_switching_schedules_rewrites_the_row_and_restarts_the_calendar(store: JobStore) -> None:
    """Period -> Cron sets cron and restarts last_attempted_run from now (no catch-up); the
    same Cron again changes nothing; Cron -> period clears cron."""
    store.ensure([Job("j", timedelta(minutes=5))])
    set_row(store, "j", last_attempted_run_ms=0)
    store.ensure([Job("j", HOURLY)])
    switched = row(store, "j")
    set_row(store, "j", last_attempted_run_ms=1)
    store.ensure([Job("j", HOURLY)])
    again = row(store, "j")["last_attempted_run_ms"]
    store.ensure([Job("j", timedelta(minutes=5))])
    back = row(store, "j")
    assert ("0 * * * *|UTC", True, 1) == (
        switched["cron"],
        switched["last_attempted_run_ms"] > 0,
        again,
    )
    assert (None, 300_000) == (back["cron"], back["period_ms"])


def test_a_period_row_is_unaffected_by_a_bound_fire_time(store: JobStore) -> None:
    """The Cron term never makes a period row due: a period row not yet due stays not due."""
    store.ensure([Job("p", timedelta(hours=1))])
    now = store.now_ms()
    assert False is guard(store, "p", now - MINUTE)


def test_the_cron_column_round_trips() -> None:
    """cron_text and parse_cron_text are inverse; an unreadable value parses to None."""
    values: list[Any] = [cron_text(YEARLY), "0 3 * * *|No/Such_Zone", "nonsense", None]
    assert [YEARLY, None, None, None] == [parse_cron_text(v) for v in values]


GAPS = [
    (Cron("* * * * *"), MINUTE),
    (Cron("0 * * * *"), HOUR),
    (Cron("0 3 * * *", tz="Europe/Amsterdam"), 24 * HOUR),
]


@pytest.mark.parametrize(("cron", "expected"), GAPS)
def test_the_gap_after_a_fire_time(cron: Cron, expected: int) -> None:
    """gap_after names the distance from a fire time to the next one."""
    fire = first_fire_after(cron, 1_700_000_000_000)
    assert expected == gap_after(cron, fire)


def test_the_gap_across_a_daylight_saving_change_is_the_real_one() -> None:
    """03:00 Amsterdam on the eve of the spring-forward night: the gap is 23 real hours."""
    cron = Cron("0 3 * * *", tz="Europe/Amsterdam")
    eve = first_fire_after(cron, 1_711_700_000_000)  # 2024-03-29 08:13 UTC -> 03-30 03:00 CET
    assert 23 * HOUR == gap_after(cron, eve)


def test_a_calendar_this_host_cannot_read_falls_back_to_its_own(store: JobStore) -> None:
    """A cron column naming a zone unknown here: the poll uses the Cron this host declared for
    the job, and without one the row is due only when triggered."""
    store.ensure([Job("c", HOURLY)])
    now = store.now_ms()
    set_row(store, "c", cron="0 * * * *|No/Such_Zone", last_attempted_run_ms=now - 2 * HOUR)
    with_own = [d.fire_ms for d in store.poll(["c"], {"c": HOURLY}).due]
    assert ([first_fire_after(HOURLY, now - 2 * HOUR)], []) == (with_own, store.poll(["c"]).due)
