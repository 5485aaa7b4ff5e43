"""Run history values: :class:`HistorySettings`, :class:`RunRecord`, and error text.

The moving parts live elsewhere: ``_historyrec`` turns a host's notifications into queued
records, ``sql/_historywriter`` writes them from one thread, ``sql/_history`` holds the SQL
(writing, reading, pruning) and ``sql/_historyhost`` ties them to a :class:`~recurjobs.JobHost`.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recurjobs._validate import duration

__all__ = [
    "ERROR_LIMIT",
    "KINDS",
    "OUTCOMES",
    "PRUNE_JOB_NAME",
    "HistorySettings",
    "RunRecord",
    "attach",
    "error_text",
    "history_settings",
]

PRUNE_JOB_NAME = "recurjobs.history.prune"
"""The distributed job a host with history registers to prune the table (once per cluster)."""

ERROR_LIMIT = 8192
"""Bytes of UTF-8 an error text may take in the table."""

KINDS = ("recurring", "distributed")
OUTCOMES = ("executed", "failed", "canceled", "lease_lost", "ignored")
# A bound that every database's integers hold (the pruning query offsets by it).
_MOST_ROWS_PER_JOB = 1_000_000_000
_HEAD_LIMIT = 2048  # bytes of "Type: message" kept when the text must be cut
_LONGEST_KEEP = timedelta(days=36500)


@dataclass(frozen=True)
class HistorySettings:
    """How a host records its runs (``JobHost(..., history=HistorySettings(...))``).

    ``keep``: rows older than this are pruned. ``max_rows_per_job``: at most this many rows of
    one job are kept (the newest). ``record_ignored``: also record runs a gate ignored (outcome
    ``"ignored"``); off by default, since a gated job is ignored at every period.
    """

    keep: timedelta = timedelta(days=7)
    max_rows_per_job: int = 1000
    record_ignored: bool = False

    def __post_init__(self) -> None:
        duration(self.keep, "keep", infinite=False, zero=False, maximum=_LONGEST_KEEP)
        rows = self.max_rows_per_job
        if isinstance(rows, bool) or not isinstance(rows, int):
            raise TypeError(f"max_rows_per_job must be an int, got {rows!r}")
        if not 1 <= rows <= _MOST_ROWS_PER_JOB:
            raise ValueError(
                f"max_rows_per_job must be between 1 and {_MOST_ROWS_PER_JOB:_}, got {rows!r}"
            )
        if not isinstance(self.record_ignored, bool):
            raise TypeError(f"record_ignored must be a bool, got {self.record_ignored!r}")


@dataclass(frozen=True)
class RunRecord:
    """One run of one job, as the history table keeps it.

    ``kind`` is ``"recurring"`` or ``"distributed"``; ``host`` the identity of the server that
    ran it; ``started_at``/``ended_at`` aware UTC datetimes (from the host's clock for
    recurring runs, from the database's clock for distributed ones); ``ended_at`` is None while
    the run goes on, or when its host died before it ended. ``outcome`` is ``"executed"``,
    ``"failed"``, ``"canceled"``, ``"lease_lost"``, ``"ignored"``, or ``"running"`` for a row
    without an outcome yet. ``trigger`` is ``"schedule"`` or ``"manual"``. ``error`` holds the
    exception type, message and traceback of a failed run (at most 8 KiB of UTF-8).
    ``claim_id`` is the claim of a distributed run (None for recurring runs).
    """

    job: str
    kind: str
    host: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    trigger: str
    error: str | None
    claim_id: str | None = None

    @property
    def duration(self) -> timedelta | None:
        """How long the run took (None while it has no end)."""
        return None if self.ended_at is None else self.ended_at - self.started_at


def history_settings(value: object) -> HistorySettings | None:
    """``JobHost(history=...)``: False/None (off), True (defaults) or a HistorySettings."""
    if value is None or value is False:
        return None
    if value is True:
        return HistorySettings()
    if isinstance(value, HistorySettings):
        return value
    raise TypeError(f"history must be a bool or a HistorySettings, got {value!r}")


def attach(host: Any, value: object) -> Any:
    """The history of ``host`` for ``JobHost(history=value)``, or None when it is off.

    Registers the pruning job with the host; needs ``database`` (ValueError otherwise).
    """
    settings = history_settings(value)
    if settings is None:
        return None
    if host.database is None:
        raise ValueError(f"history={value!r} needs JobHost(database=...)")
    from recurjobs.sql._historyhost import HostHistory  # an app without history never loads it

    return HostHistory(host, settings)


# What no database column can hold: NUL (PostgreSQL text refuses it) and lone surrogates
# (not UTF-8 at all: ``os.listdir`` gives them for undecodable file names).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """``value`` with NUL and lone surrogates as U+FFFD, so every database stores it alike."""
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    return _UNSTORABLE.sub("\ufffd", value)


def error_text(error: BaseException | traceback.TracebackException) -> str:
    """``Type: message``, then the traceback, in at most :data:`ERROR_LIMIT` bytes of UTF-8.

    When it must be cut, the type and the start of the message are kept (up to 2 KiB), then as
    much of the end of the traceback (the innermost frames) as fits.
    """
    info = (
        error
        if isinstance(error, traceback.TracebackException)
        else traceback.TracebackException.from_exception(error)
    )
    kind = info.exc_type.__qualname__ if info.exc_type is not None else "Exception"
    module = info.exc_type.__module__ if info.exc_type is not None else "builtins"
    if module not in ("builtins", "__main__"):
        kind = f"{module}.{kind}"
    message = str(info)
    head = f"{kind}: {message}" if message else kind
    body = "".join(info.format())
    # Measured as stored: a NUL (1 byte) is stored as U+FFFD (3 bytes).
    head = storable_text(head)
    text = storable_text(f"{head}\n\n{body}".rstrip("\n"))
    if len(text.encode("utf-8")) <= ERROR_LIMIT:
        return text
    # Too long: the type and the start of the message, then the innermost frames.
    head = _cut_bytes(head, _HEAD_LIMIT, keep_start=True)
    marker = "\n\n[... traceback cut to fit 8 KiB ...]\n"
    stack = storable_text("".join(info.stack.format()).rstrip("\n"))
    room = ERROR_LIMIT - len(head.encode("utf-8")) - len(marker.encode("utf-8"))
    return head + marker + _cut_bytes(stack, max(0, room), keep_start=False)


def _cut_bytes(text: str, limit: int, *, keep_start: bool) -> str:
    """The first (or last) ``limit`` bytes of ``text`` in UTF-8, on a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    part = data[:limit] if keep_start else data[len(data) - limit :]
    return part.decode("utf-8", "ignore")
