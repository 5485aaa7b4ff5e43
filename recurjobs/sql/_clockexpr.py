"""The database clock: "now" in epoch milliseconds, and exact integer division, per dialect.

Every due and stale decision compares timestamps written by the database with the database's
own "now", inside one statement, so the clocks of the application servers never matter.

Each dialect renders a value that stays the same for the whole statement, so a statement that
mentions "now" several times (in ``SET`` and in ``WHERE``) sees one instant:

- SQLite: ``julianday('now')`` is fixed for one ``sqlite3_step()`` and kept internally as whole
  milliseconds; ``ROUND`` undoes the floating-point error of the conversion.
- PostgreSQL: ``statement_timestamp()``, the start of the current statement. ``now()`` would be
  the start of the transaction (the same thing here, as every step is a one-statement
  transaction); ``clock_timestamp()`` changes while the statement runs, which would let ``SET``
  and ``WHERE`` disagree.
- MySQL/MariaDB: ``UTC_TIMESTAMP(3)``, evaluated once per statement. It is turned into epoch
  milliseconds by plain date arithmetic, so the session time zone (and its daylight saving
  gaps, which trip ``UNIX_TIMESTAMP(NOW(3))``) plays no part.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["db_now_ms", "int_div"]


class db_now_ms(FunctionElement[int]):  # noqa: N801 - reads like the SQL function it renders
    """The database's current time in whole milliseconds since the Unix epoch (BIGINT)."""

    type = BigInteger()
    inherit_cache = True
    name = "db_now_ms"


@compiles(db_now_ms)
def _now_default(element: db_now_ms, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(
        f"recurjobs has no database clock for the {compiler.dialect.name!r} dialect "
        "(supported: sqlite, postgresql, mysql/mariadb)"
    )


@compiles(db_now_ms, "sqlite")
def _now_sqlite(element: db_now_ms, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"


@compiles(db_now_ms, "postgresql")
def _now_postgresql(element: db_now_ms, compiler: SQLCompiler, **kw: Any) -> str:
    return "CAST(FLOOR(EXTRACT(EPOCH FROM statement_timestamp()) * 1000) AS BIGINT)"


@compiles(db_now_ms, "mysql")
@compiles(db_now_ms, "mariadb")
def _now_mysql(element: db_now_ms, compiler: SQLCompiler, **kw: Any) -> str:
    return "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(3)) DIV 1000)"


class int_div(FunctionElement[int]):  # noqa: N801 - reads like an SQL operator
    """``left // right`` for non-negative BIGINTs, exact on every dialect.

    SQLAlchemy renders ``//`` on MySQL as ``FLOOR(a / b)``, where ``/`` is a DECIMAL division
    rounded to ``div_precision_increment`` (4) places: just below a multiple of a period longer
    than 20 s it rounds up, a whole period early. ``DIV`` is exact. SQLite and PostgreSQL divide
    integers exactly with ``/`` (truncating, which is flooring for the non-negative values here).
    """

    type = BigInteger()
    inherit_cache = True
    name = "int_div"

    def __init__(self, left: ColumnElement[int], right: ColumnElement[int]) -> None:
        super().__init__(left, right)


def _operands(element: int_div, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    left, right = element.clauses.clauses
    return compiler.process(left, **kw), compiler.process(right, **kw)


@compiles(int_div)
def _div_default(element: int_div, compiler: SQLCompiler, **kw: Any) -> str:
    left, right = _operands(element, compiler, **kw)
    return f"(({left}) / ({right}))"


@compiles(int_div, "mysql")
@compiles(int_div, "mariadb")
def _div_mysql(element: int_div, compiler: SQLCompiler, **kw: Any) -> str:
    left, right = _operands(element, compiler, **kw)
    return f"(({left}) DIV ({right}))"
