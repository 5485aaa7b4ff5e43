"""The schema of the run history: ``<prefix>runs`` (one row per run) and ``<prefix>meta``.

Times are BIGINT epoch milliseconds, as in the jobs table: written from the database clock for
distributed runs and from the host clock for recurring runs. A row is inserted when a run
starts with ``outcome`` NULL, and completed when it ends; a row whose host died keeps NULL
until the run's claim is taken over (then it is marked ``lease_lost``).

The indexes serve the questions operators ask: "the latest N runs of one job"
(``job, started_ms, id``), "failures since T", counted per job without reading the table
(``outcome, started_ms, job``), and "the latest N runs of any job", which is also how rows
past their age are found for pruning (``started_ms, id``). ``<prefix>meta``
holds ``runs_schema`` (the version of this layout), so a later version can migrate it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

from recurjobs._history import storable_text
from recurjobs.sql._tables import JOB_NAME

__all__ = ["RUNS_SCHEMA_VERSION", "meta_table", "runs_table"]

#: The layout version recorded in ``<prefix>meta`` under the key ``runs_schema``.
RUNS_SCHEMA_VERSION = "1"


def column_text(value: str, width: int | None = None) -> str:
    """``value`` as a text column of ``width`` characters (None: unbounded) stores it: cut to
    the width, any NUL or lone surrogate as U+FFFD (:func:`recurjobs._history.storable_text`:
    PostgreSQL text cannot hold NUL, no column holds a surrogate; every database stores the
    same). The writer and the readers both use it, so a job is found under the name it was
    written with."""
    return storable_text(value if width is None else value[:width])


def runs_table(metadata: MetaData, prefix: str) -> Table:
    """The run history table ``<prefix>runs`` in ``metadata``."""
    name = f"{prefix}runs"
    return Table(
        name,
        metadata,
        # BIGINT on the servers, INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("job", JOB_NAME, nullable=False),
        Column("kind", String(16), nullable=False),
        Column("host", String(255), nullable=False),
        Column("claim_id", String(64), nullable=True),
        Column("trigger", String(16), nullable=False),
        Column("started_ms", BigInteger, nullable=False),
        Column("ended_ms", BigInteger, nullable=True),
        Column("outcome", String(16), nullable=True),
        Column("error", Text, nullable=True),
        Index(f"{name}_job_started", "job", "started_ms", "id"),
        Index(f"{name}_outcome_started", "outcome", "started_ms", "job"),
        Index(f"{name}_started", "started_ms", "id"),
    )


def meta_table(metadata: MetaData, prefix: str) -> Table:
    """Key/value facts about the schema, ``<prefix>meta`` (``runs_schema`` = layout version)."""
    return Table(
        f"{prefix}meta",
        metadata,
        Column("key", String(64), primary_key=True),
        Column("value", String(255), nullable=False),
    )
