"""Job names are compared exactly on every database: MySQL and MariaDB compare text without
regard to case or accents by default, which made "Report" and "report" one row there."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from recurjobs import DistributedJob
from recurjobs.sql import JobStore
from tests.dbs import TestDatabase
from tests.sql.helpers import HOUR, Job, make_due, names
from tests.sql.test_pause_sql import make_old_table

PAIRS = ["Report", "report", "café", "cafe"]


def test_names_that_differ_in_case_or_accents_are_rows_of_their_own(store: JobStore) -> None:
    """Four names that MySQL's default collation takes for two: four rows, each claimed."""
    store.ensure([Job(name, HOUR) for name in PAIRS])
    for name in PAIRS:
        make_due(store, name)
    claimed = [store.try_claim(name, owner="h", lease=HOUR) for name in PAIRS]
    assert (sorted(PAIRS), [True] * 4) == (names(store), [c is not None for c in claimed])


def test_an_older_table_gets_exact_names_at_start(db: TestDatabase) -> None:
    """A table made by an older version (default collation on MySQL/MariaDB) compares names
    exactly once a host prepared it; its rows are kept."""
    make_old_table(db)
    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        store.check_ready(10)
        store.ensure([Job(name, HOUR) for name in PAIRS])
        assert sorted(["legacy", *PAIRS]) == names(store)
        if db.backend == "mysql":
            query = text(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
                "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = 'name'"
            )
            with store.engine.connect() as conn:
                collation = conn.execute(query, {"t": store.jobs.name}).scalar()
            assert "utf8mb4_bin" == collation
    finally:
        store.dispose()


@pytest.mark.parametrize("name", ["report ", "a  "])
def test_a_name_ending_with_a_space_is_refused(name: str) -> None:
    """MySQL and MariaDB pad text with spaces when comparing: "report " would share "report"'s
    row, so such a name is a ValueError at construction."""

    class Named(DistributedJob):
        def execute(self, token: object) -> None:
            pass

    with pytest.raises(ValueError, match="must not end with a space"):
        Named(name=name, period=timedelta(hours=1))


def test_a_trigger_by_a_name_ending_with_a_space_finds_no_row(store: JobStore) -> None:
    """JobStore.trigger("report ") is False (no row can have that name) and leaves "report"
    alone, on MySQL too, where the comparison pads with spaces."""
    store.ensure([Job("report", HOUR)])
    assert False is store.trigger("report ")
    assert [False] == [row.triggered for row in store.rows()]
