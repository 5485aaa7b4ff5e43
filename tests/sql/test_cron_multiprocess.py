"""Calendar (Cron) distributed jobs across host processes, on SQLite, PostgreSQL and MariaDB.

A ``* * * * *`` job needs real minutes to pass, so the three backends run at the same time
inside one test: two ``mp_worker.py`` hosts per backend, for three minute boundaries (about
3 min 10 s of wall time in all). In each pair one host runs with ``TZ=America/New_York`` and
the other with ``TZ=Asia/Kolkata`` (a half-hour offset), and their wall clocks are set 7 minutes
ahead and behind (time-machine), so the same run also shows that hosts whose process time zones
and clocks differ agree on the fire times and still start each run just after it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from tests.sql.test_multiprocess import Cluster, Event, executions, overlaps

pytestmark = [pytest.mark.multiprocess, pytest.mark.postgres, pytest.mark.mysql]

ZONES = {"ny": "America/New_York", "in": "Asia/Kolkata"}
SKEW_MINUTES = {"ny": 7, "in": -7}
ABBREVIATIONS = {"ny": {"EST", "EDT"}, "in": {"IST"}}
POLL_SECONDS = 5.0  # the default: the wake-up at each fire time, not the cadence, starts runs
LATENESS = 3.0  # a run starts within this of its fire time (poll latency + a busy machine)
STARTUP = 12.0  # no fire time is counted while hosts are still starting
BOUNDARIES = 3
MINUTELY = [{"name": "minutely", "cron": "* * * * *", "duration": 0.5}]


def _database(backend: str, tmp_path: Path) -> TestDatabase:
    if backend == "sqlite":
        return TestDatabase("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}", new_table_prefix())
    url = database_urls()[backend]
    if url is None:
        database_unavailable(
            f'{ENV_VARS[backend]} is not set; run: eval "$(bash scripts/test-databases.sh)"'
        )
    problem = _problem_reaching(backend, url)
    if problem is not None:
        database_unavailable(f"{backend} is unreachable: {problem}")
    return TestDatabase(backend, url, new_table_prefix())


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[dict[str, Cluster]]:
    """One cluster of worker processes per backend; workers killed and tables dropped after."""
    made: dict[str, Cluster] = {}
    for backend in ("sqlite", "postgres", "mysql"):
        directory = tmp_path / backend
        directory.mkdir()
        made[backend] = Cluster(_database(backend, directory), directory)
    yield made
    for cluster in made.values():
        cluster.kill_all()
        if cluster.db.backend != "sqlite":
            drop_tables(cluster.db)


def _boundaries(after: float, before: float) -> list[float]:
    """The minute boundaries (epoch seconds) in ``(after, before)``."""
    first = math.floor(after / 60) * 60 + 60
    return [float(b) for b in range(int(first), int(before), 60) if b < before]


def _fire_of(run: Event, boundaries: list[float]) -> float | None:
    """The fire time a run belongs to: the boundary it started within LATENESS after."""
    for boundary in boundaries:
        if boundary <= run["wall"] <= boundary + LATENESS:
            return boundary
    return None


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_two_hosts_per_backend_run_each_minute_once_whatever_their_time_zone(
    clusters: dict[str, Cluster],
) -> None:
    """Two hosts (TZ New York and Kolkata, clocks 7 min ahead and behind) per backend,
    ``* * * * *`` for three minute boundaries: exactly one run per boundary, starting just
    after it, never two for one fire time, on SQLite, PostgreSQL and MariaDB alike."""
    # No boundary may fall while the hosts start (their rows start at "now", without catch-up),
    # so the counted boundaries are exactly those after STARTUP.
    if 60 - time.time() % 60 < STARTUP:
        time.sleep(60 - time.time() % 60 + 0.5)
    spawned = time.time()
    counted_from = spawned + STARTUP
    last = _boundaries(counted_from, counted_from + 60 * BOUNDARIES + 1)[BOUNDARIES - 1]
    seconds = last + 8 - spawned
    config: dict[str, Any] = {"poll": POLL_SECONDS, "seconds": seconds, "lifetime": seconds + 5}
    for cluster in clusters.values():
        for host, zone in ZONES.items():
            skew = SKEW_MINUTES[host]
            cluster.spawn(host, MINUTELY, env={"TZ": zone}, skew_minutes=skew, **config)
    for cluster in clusters.values():
        cluster.join(seconds + 60)
    boundaries = _boundaries(counted_from, last + 1)
    assert BOUNDARIES == len(boundaries)
    for backend, cluster in clusters.items():
        started = {e["host"]: e for e in cluster.events("started")}
        zones = {h: started[h]["zone"] in ABBREVIATIONS[h] for h in ZONES}
        skews = {h: round(started[h]["wall_offset"] / 60) for h in ZONES}
        assert ({h: True for h in ZONES}, SKEW_MINUTES) == (zones, skews), started
        runs = executions(cluster, "minutely")
        lateness = [round(r["wall"] - (_fire_of(r, boundaries) or 0), 3) for r in runs]
        hosts = [r["host"] for r in runs]
        print(f"{backend}: runs on {hosts}, started {lateness} s after their fire times")
        assert boundaries == [_fire_of(r, boundaries) for r in runs], (backend, runs)
        assert [] == overlaps(runs)
        assert [] == cluster.events("thread-exception")
        assert [True, True] == [e["ended"] for e in cluster.events("stopped")]
