"""Argument checks shared by the public API: clear errors at the call, naming the parameter."""

from __future__ import annotations

import inspect
import math
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from recurjobs._cron import Cron
from recurjobs._schedule import INFINITE

T = TypeVar("T")


def duration(
    value: object,
    name: str,
    *,
    infinite: bool = True,
    zero: bool = True,
    maximum: timedelta | None = None,
) -> timedelta:
    """Check that ``value`` is a usable duration and return it.

    ``INFINITE`` passes when ``infinite`` is true; zero passes when ``zero`` is true; any other
    negative value is rejected, and so is a value above ``maximum`` when one is given. Messages
    mention ``INFINITE`` only where it is allowed.
    """
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, got {value!r}")
    if value == INFINITE:
        if infinite:
            return value
        raise ValueError(f"{name} cannot be INFINITE here, got {value!r}")
    if value < timedelta(0):
        hint = " (use INFINITE for never)" if infinite else ""
        raise ValueError(f"{name} must not be negative{hint}, got {value!r}")
    if not zero and value == timedelta(0):
        raise ValueError(f"{name} must be greater than zero, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum!r}, got {value!r}")
    return value


def schedule(
    value: object, name: str = "period", *, infinite: bool = True, zero: bool = True
) -> timedelta | Cron:
    """Check a period: a :class:`Cron`, or a duration as :func:`duration` accepts it."""
    if isinstance(value, Cron):
        return value
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta or a recurjobs.Cron, got {value!r}")
    return duration(value, name, infinite=infinite, zero=zero)


_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}\Z")


def table_prefix(value: object, name: str = "table_prefix") -> str:
    """Check a table prefix: 1-40 identifier characters, so it is safe in any SQL dialect."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r}")
    if not _PREFIX.match(value):
        raise ValueError(
            f"{name} must be 1-40 letters, digits or underscores, not starting with a digit, "
            f"got {value!r}"
        )
    return value


def seconds_or_none(value: object, name: str) -> float | None:
    """Turn a timeout given as seconds, a timedelta or None into float seconds or None.

    Infinity, and anything longer than the longest wait the platform supports (about 292
    years), means "no limit" (None), so a huge timeout waits instead of overflowing.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(f"{name} must be a number of seconds, a timedelta or None, got {value!r}")
    if isinstance(value, timedelta):
        if value == INFINITE:
            return None
        seconds = value.total_seconds()
    else:
        seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return None if seconds > threading.TIMEOUT_MAX else seconds


def seconds(value: object, name: str, *, infinite: bool = False) -> float:
    """A number of seconds, at least zero (``JobHost``'s start and exit timeouts); with
    ``infinite``, infinity (or longer than a wait can last) is allowed and kept as ``inf``."""
    if value is None:
        raise TypeError(f"{name} must be a number of seconds, got None")
    number = seconds_or_none(value, name)
    if number is None:
        if infinite:
            return math.inf
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return number


def database(value: object) -> object:
    """Check ``JobHost(database=...)``: None, an SQLAlchemy Engine or a database URL string."""
    if value is not None and not isinstance(value, str) and not _is_engine(value):
        raise TypeError(f"database must be a URL string or an SQLAlchemy Engine, got {value!r}")
    if isinstance(value, str):
        # Imported here: an app without a database never loads SQLAlchemy.
        from recurjobs.sql._urls import check_url

        check_url(value)
    return value


def _is_engine(value: object) -> bool:
    return type(value).__name__ == "Engine" and hasattr(value, "dialect")


def instance(value: object, kind: type[T], name: str) -> T:
    """Return ``value`` if it is a ``kind``, else raise a TypeError naming ``name``."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, got {value!r}")
    return value


def no_argument_callable(value: object, name: str, what: str = "") -> Callable[[], object]:
    """Return ``value`` if it can be called with no arguments, else raise a TypeError naming
    ``name``. (A callable whose signature Python cannot tell, a builtin, passes.)"""
    if not callable(value):
        raise TypeError(f"{name} must be a callable{what}, got {value!r}")
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return value
    try:
        signature.bind()
    except TypeError as exc:
        raise TypeError(
            f"{name} must be a callable{what} taking no arguments, got {value!r} ({exc})"
        ) from None
    return value


def job_name_text(value: object, name: str = "name") -> str:
    """A distributed job's name as a row holds it: a str of 1 to 200 characters that does not
    end with a space (MySQL and MariaDB compare text padded with spaces, so such a name would
    find the row of the name without it). ``TypeError``/``ValueError`` naming ``name``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r}")
    if not 1 <= len(value) <= 200:
        raise ValueError(f"{name} must be 1 to 200 characters, got {value!r}")
    if value.endswith(" "):
        raise ValueError(f"{name} must not end with a space, got {value!r}")
    return value
