"""Fixtures of the SQL tests: a JobStore with its table created, on every backend of ``db``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from recurjobs.sql import JobStore
from tests.dbs import TestDatabase


@pytest.fixture
def store(db: TestDatabase) -> Iterator[JobStore]:
    """A JobStore on the test's database and prefix, table created, disposed afterwards."""
    store = JobStore(db.url, table_prefix=db.table_prefix)
    store.create_schema()
    yield store
    store.dispose()


@pytest.fixture
def store_for(db: TestDatabase) -> Iterator[Callable[[], JobStore]]:
    """Make JobStores on the test's database lazily (the table may not exist yet)."""
    made: list[JobStore] = []

    def make() -> JobStore:
        made.append(JobStore(db.url, table_prefix=db.table_prefix))
        return made[-1]

    yield make
    for s in made:
        s.dispose()
