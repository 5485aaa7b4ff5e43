"""A new distributed job first runs at start + delay + period: its row is written at the first
poll (after the delay) with last_run = the database's now, not at start."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from recurjobs import CancellationToken
from tests.dbs import TestDatabase
from tests.sql.helpers import Job, wait_until
from tests.sql.runhelpers import settings, sql_side

DELAY = PERIOD = 2.0
POLL = 0.1


@pytest.mark.slow
def test_a_new_job_first_runs_after_delay_plus_period(db: TestDatabase) -> None:
    """With delay 2 s and period 2 s, a job without a row first runs about 4 s after start
    (never at start + period, when the row would have been written at start)."""
    starts: list[float] = []

    def body(token: CancellationToken) -> None:
        starts.append(time.monotonic())

    job = Job("fresh", timedelta(seconds=PERIOD), body=body)
    options = settings(db, delay=timedelta(seconds=DELAY), poll_period=timedelta(seconds=POLL))
    began = time.monotonic()
    with sql_side(db, job, distributed=options):
        assert wait_until(lambda: bool(starts), DELAY + PERIOD + 10)
    first = starts[0] - began
    print(f"first run {first:.2f} s after start")
    assert (True, True) == (first >= DELAY + PERIOD - 0.1, first < DELAY + PERIOD + 2.0), first
