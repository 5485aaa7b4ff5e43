"""stop() called from a distributed run: it returns whether the host's other threads ended,
distributed runs included, and only once every token (the caller's too) is cancelled."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from recurjobs import CancellationToken, JobHost
from tests.dbs import TestDatabase
from tests.sql.helpers import Job, wait_until
from tests.sql.runhelpers import settings


@pytest.mark.parametrize(("timeout", "expected"), [(10.0, True), (0.2, False)])
def test_stop_from_a_run_waits_for_the_other_runs(
    db: TestDatabase, timeout: float, expected: bool
) -> None:
    """One run ignores its token for 1.5 s; another calls stop(timeout): True after the first
    ended (10 s), False when the deadline came first (0.2 s). The caller's token is cancelled
    by then in both cases."""
    sleeping = threading.Event()
    results: list[tuple[bool, float, bool]] = []

    def sleeper(_token: CancellationToken) -> None:
        sleeping.set()
        time.sleep(1.5)

    def stopper(token: CancellationToken) -> None:
        assert sleeping.wait(10)
        began = time.monotonic()
        ended = host.stop(timeout)
        results.append((ended, time.monotonic() - began, token.is_cancelled()))

    jobs = [
        Job("a-sleeper", timedelta(seconds=1), body=sleeper),
        Job("b-stopper", timedelta(seconds=1), body=stopper),
    ]
    host = JobHost(jobs, database=db.url, distributed=settings(db, max_concurrent_jobs=2))
    host.start()
    try:
        assert wait_until(lambda: bool(results), 20)
    finally:
        host.stop(10)
    ended, waited, cancelled = results[0]
    assert (expected, True) == (ended, cancelled)
    if expected:
        assert waited > 0.5  # it waited for the sleeper's last second
    else:
        assert waited < 1.0
