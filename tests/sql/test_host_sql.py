"""HostSql, the SQL side of a JobHost: start() checks the database before any thread starts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import make_url

from recurjobs import INFINITE, DistributedJobSettings, JobHost, ServerRole
from recurjobs.sql import DatabaseUnavailable
from recurjobs.sql._election import DatabaseServerRoles
from recurjobs.testing import ManualClock
from tests.dbs import TestDatabase
from tests.helpers import TimedJob
from tests.sql.helpers import HOUR, Job, wait_until
from tests.sql.runhelpers import SqlSide, settings


def unusable(db: TestDatabase, tmp_path: Path) -> str:
    """A URL of the test's backend that fails at once: an SQLite file in a missing directory,
    or the server's URL with a wrong password."""
    if db.backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'jobs.db'}"
    return make_url(db.url).set(password="wrong-password").render_as_string(hide_password=False)


@contextmanager
def no_new_threads() -> Iterator[Callable[[], list[str]]]:
    """Yields a function listing the recurjobs threads started since entering that still run."""
    before = {t.ident for t in threading.enumerate()}

    def left() -> list[str]:
        return [
            t.name
            for t in threading.enumerate()
            if t.ident not in before and t.name.startswith("recurjobs") and t.is_alive()
        ]

    yield left


def test_start_checks_the_database_before_starting_threads(
    db: TestDatabase, tmp_path: Path
) -> None:
    """An unusable database makes HostSql.start() raise DatabaseUnavailable naming the masked
    URL; no poller or heartbeat thread is left behind."""
    with no_new_threads() as left:
        side = SqlSide(db, Job("a", HOUR), database=unusable(db, tmp_path))
        with pytest.raises(DatabaseUnavailable) as caught:
            side.start()
        assert (None, []) == (side.sql.poller, left())
    assert "wrong-password" not in str(caught.value)
    assert make_url(db.url).host is None or str(make_url(db.url).host) in str(caught.value)


def test_a_distributed_job_whose_add_failed_can_be_added_again(tmp_path: Path) -> None:
    """add() of the first distributed job on a started host fails (the SQLite directory is
    missing): the job is not registered; once the directory exists, adding it again works and
    it runs."""
    folder = tmp_path / "later"
    fast = DistributedJobSettings(poll_period=timedelta(seconds=0.1), delay=timedelta(0))
    host = JobHost(
        [TimedJob(ManualClock(), INFINITE, delay=INFINITE)],
        database=f"sqlite:///{folder / 'jobs.db'}",
        distributed=fast,
    ).start()
    try:
        job = Job("late", timedelta(seconds=0.5))
        with pytest.raises(DatabaseUnavailable):
            host.add(job)
        assert job not in host.jobs
        folder.mkdir()
        host.add(job)
        assert job in host.jobs
        assert wait_until(lambda: job.runs >= 1, 20)
        assert host.trigger_distributed("late")
    finally:
        host.stop(10)


def test_a_start_that_fails_after_the_check_leaves_no_thread(
    db: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The election cannot start (the system is out of threads): start() raises, and the
    poller started just before is stopped again."""

    def no_thread(self: object, **_: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(DatabaseServerRoles, "start", no_thread)
    with no_new_threads() as left:
        host = JobHost([Job("a", HOUR)], database=db.url, distributed=settings(db),
                       elect_server_role=True)  # fmt: skip
        with pytest.raises(RuntimeError, match="can't start new thread"):
            host.start()
        assert ([], False) == (left(), host.running)


class BrokenRoles:
    """A server_role service whose thread cannot start."""

    def __call__(self) -> ServerRole:
        return ServerRole.SINGLE

    def start(self, **_: object) -> None:
        raise RuntimeError("can't start new thread")

    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> bool:
        return True


def test_a_start_that_fails_after_the_database_side_stops_it_again(db: TestDatabase) -> None:
    """The server_role service cannot start: start() raises, and the poller it started is
    stopped again (no recurjobs thread is left behind)."""
    with no_new_threads() as left:
        host = JobHost([Job("a", HOUR)], database=db.url, distributed=settings(db),
                       server_role=BrokenRoles())  # fmt: skip
        with pytest.raises(RuntimeError, match="can't start new thread"):
            host.start()
        assert ([], False) == (left(), host.running)
