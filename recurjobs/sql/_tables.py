"""The schema: one ``<prefix>jobs`` table, built per prefix, created idempotently.

All timestamps are BIGINT epoch milliseconds written by the database clock (``_clockexpr``), so
every backend keeps millisecond precision and compares plain integers.
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    false,
    inspect,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import DBAPIError

from recurjobs.sql._bounds import DEFAULT_STATEMENT_TIMEOUT, bounded_waits, to_ms
from recurjobs.sql._shared import exclusive
from recurjobs.sql._urls import masked

__all__ = ["JOB_NAME", "create_tables", "jobs_table"]

logger = logging.getLogger("recurjobs.sql")


JOB_NAME = String(200).with_variant(
    mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)
"""A job's name as a column: 200 characters, compared exactly. MySQL and MariaDB compare text
without regard to case or accents by default ("Report" and "report" would be one row)."""


def jobs_table(metadata: MetaData, prefix: str) -> Table:
    """The distributed jobs table ``<prefix>jobs`` in ``metadata``: one row per job name."""
    return Table(
        f"{prefix}jobs",
        metadata,
        Column("name", JOB_NAME, primary_key=True),
        # The schedule, as the hosts that run the job last declared it.
        Column("period_ms", BigInteger, nullable=False),
        Column("aligned", Boolean, nullable=False, default=False),
        # When the last run ended (the finish stamp), or when the row was created.
        Column("last_run_ms", BigInteger, nullable=False),
        # When the job was last claimed (informational, as in the model system).
        Column("last_attempted_run_ms", BigInteger, nullable=True),
        # The owner's last sign of life: the claim or its latest heartbeat.
        Column("last_alive_ms", BigInteger, nullable=True),
        # How long a claim lives without a heartbeat (period + max_execution_time of the owner,
        # fixed at claim time so owner and takers agree on it).
        Column("lease_ms", BigInteger, nullable=True),
        Column("running", Boolean, nullable=False, default=False),
        Column("owner", String(255), nullable=True),
        Column("claim_id", String(64), nullable=True),
        # Set by trigger_distributed: due at the next poll whatever the schedule says.
        Column("due_now", Boolean, nullable=False, default=False),
        # Paused cluster-wide: never claimed until resumed (a running claim finishes).
        # The server default lets an older table gain the column (``_migrate``) and lets hosts
        # of an older version, which do not know it, still insert rows.
        Column("paused", Boolean, nullable=False, default=False, server_default=false()),
        # A calendar schedule, "<expression>|<zone name>", or NULL for a period.
        Column("cron", String(255), nullable=True),
    )


def create_tables(
    engine: Engine,
    metadata: MetaData,
    *,
    attempts: int = 3,
    limit_ms: int = to_ms(DEFAULT_STATEMENT_TIMEOUT),
) -> None:
    """Create the tables of ``metadata`` that are missing; safe when hosts race to do it.

    ``checkfirst`` skips tables that exist; when another host creates one between our check and
    our ``CREATE TABLE`` the database refuses ours ("already exists", or a duplicate key in
    PostgreSQL's catalogue). Then the check runs again: if the tables are there now, the other
    host won and all is well; otherwise the error is real and is raised. Lock waits are bounded
    by ``limit_ms`` (``_bounds``).
    """
    with exclusive(engine):  # one shared connection: no other use in between
        for attempt in range(1, attempts + 1):
            try:
                with engine.begin() as conn, bounded_waits(conn, limit_ms):
                    metadata.create_all(conn, checkfirst=True)
                return
            except DBAPIError as exc:
                if _all_exist(engine, metadata):
                    logger.debug(
                        "tables created concurrently by another host on %s", masked(engine)
                    )
                    return
                if attempt == attempts:
                    raise
                logger.debug("retrying table creation on %s after %s", masked(engine), exc)


def _all_exist(engine: Engine, metadata: MetaData) -> bool:
    try:
        names = set(inspect(engine).get_table_names())
    except DBAPIError:
        return False
    return all(table.name in names for table in metadata.sorted_tables)
