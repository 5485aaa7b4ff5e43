"""A short fault-injection soak per server backend: the cluster keeps its promises under faults.

Three ``fault_worker.py`` host processes reach the database through loopback proxies. First one
host's claim COMMIT is held for 10 s with nothing else going on (the claimed row stays locked:
the other jobs must still be claimed); then a seeded chaos loop resets connections, stalls (5 s)
and refuses (8 s) them, holds COMMITs, kills (-9), pauses (SIGSTOP) and restarts hosts, for
``RECURJOBS_FAULT_SECONDS`` (default 25) seconds in all; then a quiet phase.
``benchmarks/bench_faults.py`` is the long version (4 hosts, 3 minutes, 10 s stalls, 30 s
refusals). See ``tests/sql/fault_soak.py`` for what is checked and how.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dbs import (
    ENV_VARS,
    TestDatabase,
    _problem_reaching,
    database_unavailable,
    database_urls,
    drop_tables,
    new_table_prefix,
)
from tests.sql.fault_soak import Report, SoakConfig, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

SECONDS = float(os.environ.get("RECURJOBS_FAULT_SECONDS", "25"))
SEED = int(os.environ.get("RECURJOBS_FAULT_SEED", "20261130"))


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def server_db(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    """A private table prefix on the PostgreSQL or MariaDB test server, dropped afterwards."""
    backend: str = request.param
    url = database_urls()[backend]
    if url is None:
        database_unavailable(f"{ENV_VARS[backend]} is not set")
    problem = _problem_reaching(backend, url)
    if problem is not None:
        database_unavailable(f"{backend} is unreachable: {problem}")
    database = TestDatabase(backend, url, new_table_prefix())
    yield database
    drop_tables(database)


def _soak(db: TestDatabase, directory: Path) -> Report:
    return run_soak(
        SoakConfig(
            backend=db.backend,
            url=db.url,
            table_prefix=db.table_prefix,
            directory=directory,
            seconds=SECONDS,
            workers=3,
            stall_seconds=5.0,
            refuse_seconds=8.0,
            chaos_interval=(1.5, 4.0),
            opening=("lockhold",),
            seed=SEED,
        )
    )


@pytest.mark.timeout(180)
def test_a_cluster_under_faults_keeps_its_promises(server_db: TestDatabase, tmp_path: Path) -> None:
    """No overlapping runs, no job waiting past its bound after the faults, no lease lost by a
    healthy host, other jobs claimed while one row is locked, no thread death, and every stop()
    returned within its timeout, and the history holds each run once, as it happened, while
    hosts and links failed at random."""
    report = _soak(server_db, tmp_path)
    details = report.details()
    print(details)
    assert len(report.faults) >= 3, details  # the opening hold and chaos faults were injected
    assert sum(len(r) for r in report.runs.values()) >= 20, details  # and jobs ran meanwhile
    assert [] == report.overlaps, details
    assert {} == {job: gap for job, gap in report.gaps.items() if gap[0] > gap[1]}, details
    assert [] == report.lock_stalls, details
    assert [] == [lost for lost in report.lost if lost[3]], details  # lost by healthy hosts
    assert [] == report.deaths, details
    assert [] == report.hung, details
    assert [] == [s for s in report.stops if s[1] > report.config.stop_timeout + 2], details
    assert report.history_rows, details  # the hosts recorded their runs
    assert [] == report.history_twice, details
    assert [] == report.history_strays, details  # each row is a run that happened, as it did
    assert [] == report.history_missing, details  # a host that stopped cleanly lost no record
    assert [] == report.broken, details
