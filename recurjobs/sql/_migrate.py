"""Add the columns a newer version needs to a table an older version created.

The jobs table gained ``paused`` and ``cron``. A host that starts on a table without them adds
them with ``ALTER TABLE ... ADD COLUMN`` before it uses the table. Only additive changes are
made (a nullable column, or one with a server default, so existing rows get a value); nothing
is ever dropped or retyped.

Several hosts starting together race to add the same column: the loser's ``ALTER`` fails
("duplicate column" on every backend). As in ``create_tables``, the columns are then inspected
again: when they are all there, another host won and all is well; otherwise the error is real
and is raised. Every ``ALTER`` runs with bounded lock waits (``_bounds``): on PostgreSQL it
needs the table's exclusive lock, and a transaction left open elsewhere must not hold up the
host's start for longer than the bound. A lock wait that ran out is raised at once; the
host's start check retries it (a transient fault) until its ``start_timeout``.
"""

from __future__ import annotations

import logging

from sqlalchemy import Column, Engine, Table, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn

from recurjobs.sql._bounds import DEFAULT_STATEMENT_TIMEOUT, bounded_waits, to_ms
from recurjobs.sql._retry import is_lock_timeout
from recurjobs.sql._shared import exclusive
from recurjobs.sql._urls import masked

__all__ = ["add_missing_columns", "exact_names", "missing_columns"]

logger = logging.getLogger("recurjobs.sql")


def missing_columns(engine: Engine, table: Table) -> list[Column[object]]:
    """The columns of ``table`` that its table in the database lacks (none when it is missing)."""
    inspector = inspect(engine)  # a fresh inspector: no cached reflection
    if not inspector.has_table(table.name):
        return []
    present = {info["name"].lower() for info in inspector.get_columns(table.name)}
    return [column for column in table.columns if column.name.lower() not in present]


def add_missing_columns(
    engine: Engine,
    table: Table,
    *,
    attempts: int = 3,
    limit_ms: int = to_ms(DEFAULT_STATEMENT_TIMEOUT),
) -> list[str]:
    """Add the columns of ``table`` missing from its database table; return the names added here.

    Safe when several hosts do it at once (see the module's docstring). A table that does not
    exist is left alone (``create_tables`` makes it whole). A missing column that could not be
    added to existing rows (primary key, or not null without a server default) is a
    ``RuntimeError``: that needs a real migration.
    """
    with exclusive(engine):  # one shared connection: no other use in between
        added: list[str] = []
        for attempt in range(1, attempts + 1):
            todo = missing_columns(engine, table)
            if not todo:
                return added
            for column in todo:
                _check_additive(table, column)
            try:
                for column in todo:
                    _add(engine, table, column, limit_ms)
                    added.append(column.name)
                    logger.info(
                        "added column %s to %s on %s", column.name, table.name, masked(engine)
                    )
            except DBAPIError as exc:
                if is_lock_timeout(exc):
                    raise  # waited out its bound: the caller tries again later, not at once
                if not missing_columns(engine, table):
                    logger.debug(
                        "columns of %s added concurrently by another host on %s",
                        table.name,
                        masked(engine),
                    )
                    return added
                if attempt == attempts:
                    raise
                logger.debug("retrying adding columns to %s after %s", table.name, exc)
        return added


def _check_additive(table: Table, column: Column[object]) -> None:
    if column.primary_key or (not column.nullable and column.server_default is None):
        raise RuntimeError(
            f"column {column.name} of {table.name} cannot be added to existing rows: "
            "it needs a migration"
        )


def _add(engine: Engine, table: Table, column: Column[object], limit_ms: int) -> None:
    """One ``ALTER TABLE ... ADD COLUMN`` in its own transaction (MySQL commits DDL at once)."""
    preparer = engine.dialect.identifier_preparer
    definition = CreateColumn(column).compile(dialect=engine.dialect)
    statement = f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {definition}"
    with engine.begin() as conn, bounded_waits(conn, limit_ms):
        conn.exec_driver_sql(statement)


def exact_names(engine: Engine, table: Table, *, limit_ms: int) -> bool:
    """On MySQL/MariaDB, give the ``name`` column of a jobs table made by an older version an
    exact (binary) collation; True when it was changed here. Those servers compare text without
    regard to case or accents by default, so "Report" and "report" were one row and one of the
    two jobs never ran. A binary collation only tells more names apart, so every existing row
    stays as it is; two hosts doing it at once both succeed (the second finds it done)."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        return False
    query = text(
        "SELECT COLLATION_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table AND COLUMN_NAME = 'name'"
    )
    with exclusive(engine):
        with engine.connect() as conn:
            collation = conn.execute(query, {"table": table.name}).scalar()
        if collation is None or str(collation).endswith("_bin"):
            return False
        preparer = engine.dialect.identifier_preparer
        statement = (
            f"ALTER TABLE {preparer.format_table(table)} MODIFY name VARCHAR(200) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
        )
        with engine.begin() as conn, bounded_waits(conn, limit_ms):
            conn.exec_driver_sql(statement)
    logger.info("jobs of %s now compare names exactly on %s", table.name, masked(engine))
    return True
