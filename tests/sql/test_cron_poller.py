"""The distributed poller with Cron jobs: leases, the wake-up at fire times, status, hosts.

The poller runs on a ManualClock against a SQLite file (as in ``test_poller``); the database
clock is real, so rows are made due by writing ``last_attempted_run`` directly. The last tests
run real JobHosts (real clocks) on every backend.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recurjobs import Cron, DistributedJobSettings, JobHost
from recurjobs.sql import JobStore
from recurjobs.sql._fires import first_fire_after
from recurjobs.sql._rows import Poll, utc
from tests.dbs import TestDatabase
from tests.sql.helpers import Job, row, set_row, wait_until
from tests.sql.test_poller import IDLE, Harness

HOURLY = Cron("0 * * * *")
HOUR = 3_600_000


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Any]:
    """Build harnesses on demand; every poller is stopped and joined afterwards."""
    made: list[Harness] = []

    def make(*jobs: Job, **settings: Any) -> Harness:
        made.append(Harness(tmp_path, *jobs, **settings))
        return made[-1]

    yield make
    for h in made:
        h.poller.stop_claiming()
        h.poller.wait_runs(time.monotonic() + 5)
        h.poller.hand_back(time.monotonic() + 5)
        h.store.dispose()


def test_a_cron_claim_s_lease_is_the_gap_plus_max_execution_time(harness: Any) -> None:
    """An hourly job down for 3.5 hours runs once at the first poll, and its claim's lease is
    one hour (the gap after the claimed fire time) plus max_execution_time."""
    job = Job("c", HOURLY)
    h = harness(job)
    h.start()
    set_row(h.store, "c", last_attempted_run_ms=h.store.now_ms() - 3 * HOUR - HOUR // 2)
    h.past_delay()
    assert job.ran.wait(5)
    assert wait_until(lambda: not row(h.store, "c")["running"])
    assert (1, HOUR + 8_000) == (job.runs, row(h.store, "c")["lease_ms"])


def test_the_poller_wakes_just_after_the_next_fire_time(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a poll period far longer than the calendar's gap, the poller still polls again just
    after the next fire time the last poll read, not a poll period later."""
    job = Job("c", Cron("* * * * *"))
    h = harness(job, poll_period=timedelta(hours=1))
    polls: list[Poll] = []
    poll = h.store.poll

    def spy(names: Collection[str], crons: Any = None) -> Poll:
        polls.append(poll(names, crons))
        return polls[-1]

    monkeypatch.setattr(h.store, "poll", spy)
    h.start()
    # The next fire time is 1 to 2 minutes away on the database clock, however fast this runs.
    set_row(h.store, "c", last_attempted_run_ms=h.store.now_ms() + 61_000)
    h.past_delay()
    h.clock.wait_for_waiters(IDLE)
    (first,) = polls
    assert first.now_ms is not None
    wait = (first.fires_ms["c"] - first.now_ms) / 1000
    h.clock.advance(wait - 0.05)
    h.clock.wait_for_waiters(IDLE)
    before = len(polls)
    h.clock.advance(0.1)
    assert wait_until(lambda: len(polls) == 2)
    assert (1, 60 < wait <= 121) == (before, True)


def test_status_shows_a_cron_job_s_next_fire_time(harness: Any) -> None:
    """Before the first poll next_run is the first fire time after the host's now; after it,
    the fire time the poll read from the row (the database's calendar)."""
    job = Job("c", HOURLY)
    h = harness(job)
    h.start()
    (before,) = h.poller.status()
    h.past_delay()
    h.clock.wait_for_waiters(IDLE)
    (after,) = h.poller.status()
    attempted = row(h.store, "c")["last_attempted_run_ms"]
    expected = (HOURLY.next_after(h.clock.now()), utc(first_fire_after(HOURLY, attempted)))
    assert expected == (before.next_run, after.next_run)
    assert HOURLY == after.period


def _settings(db: TestDatabase, **overrides: Any) -> DistributedJobSettings:
    base: dict[str, Any] = {
        "poll_period": timedelta(milliseconds=100),
        "delay": timedelta(0),
        "max_execution_time": timedelta(seconds=5),
        "table_prefix": db.table_prefix,
    }
    return DistributedJobSettings(**(base | overrides))


@pytest.mark.timeout(60)
def test_hosts_down_across_three_fire_times_run_once_when_back(db: TestDatabase) -> None:
    """All hosts down across three fire times, then two come back: one run, not three.

    Waiting three real hours is replaced by what such an outage leaves in the table: a host
    writes the hourly job's row and stops; the row's last claim (and last run) is then moved
    3.5 hours into the past, exactly as if every host had been down since. Two hosts start;
    exactly one run follows, and none more before the next real fire time.
    """
    if 3600 - time.time() % 3600 < 15:  # keep the next real fire time out of the window
        time.sleep(3600 - time.time() % 3600 + 0.5)
    jobs = [Job("m", HOURLY) for _ in range(3)]
    store = JobStore(db.url, table_prefix=db.table_prefix)
    hosts = [JobHost([j], database=db.url, distributed=_settings(db)) for j in jobs]
    try:
        hosts[0].start()
        assert wait_until(lambda: _has_row(store, "m"))
        hosts[0].stop(10)
        down_since = store.now_ms() - 3 * HOUR - HOUR // 2
        set_row(store, "m", last_attempted_run_ms=down_since, last_run_ms=down_since)
        for host in hosts[1:]:
            host.start()
        assert wait_until(lambda: sum(j.runs for j in jobs) >= 1, 10)
        time.sleep(1.0)  # ten polls of each host: room for a wrong second run
        assert [0, 0, 1] == [jobs[0].runs, *sorted(j.runs for j in jobs[1:])]
    finally:
        for host in hosts:
            host.stop(10)
        store.dispose()


def _has_row(store: JobStore, name: str) -> bool:
    try:
        return any(r.name == name for r in store.rows())
    except Exception:  # the table is not there yet
        return False


def test_a_cron_job_runs_on_a_real_host_when_triggered(db: TestDatabase) -> None:
    """trigger_distributed runs a Cron job at once, without waiting for its fire time."""
    job = Job("y", Cron("0 0 1 1 *"))
    ran = threading.Event()
    job.body = lambda token: ran.set()
    host = JobHost([job], database=db.url, distributed=_settings(db)).start()
    try:
        assert wait_until(lambda: host.trigger_distributed("y"), 10)
        assert ran.wait(10)
        status = {s.name: s for s in host.status()}["y"]
        assert status.next_run is not None and status.next_run.year > datetime.now(UTC).year
    finally:
        host.stop(10)
    assert 1 == job.runs
