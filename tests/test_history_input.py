"""Bad input to the run history API fails at the call with TypeError/ValueError naming it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recurjobs import HistorySettings, JobHost
from recurjobs._history import ERROR_LIMIT, error_text
from recurjobs.sql import make_engine
from recurjobs.sql._history import read_history


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"keep": 7}, TypeError, "keep"),
        ({"keep": timedelta(0)}, ValueError, "keep"),
        ({"keep": timedelta(seconds=-1)}, ValueError, "keep"),
        ({"max_rows_per_job": 0}, ValueError, "max_rows_per_job"),
        ({"max_rows_per_job": 10**20}, ValueError, "max_rows_per_job"),
        ({"max_rows_per_job": "10"}, TypeError, "max_rows_per_job"),
        ({"max_rows_per_job": True}, TypeError, "max_rows_per_job"),
        ({"record_ignored": 1}, TypeError, "record_ignored"),
    ],
)
def test_history_settings_refuse_bad_values(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    """HistorySettings checks each field at construction."""
    with pytest.raises(error, match=words):
        HistorySettings(**kwargs)


def test_history_needs_a_database() -> None:
    """history=True without database= is a ValueError at construction."""
    with pytest.raises(ValueError, match=r"history=True needs JobHost\(database=\.\.\.\)"):
        JobHost(history=True)


@pytest.mark.parametrize("value", ["yes", 1, HistorySettings])
def test_history_must_be_a_bool_or_settings(value: object, tmp_path: Path) -> None:
    """history= takes a bool or a HistorySettings, nothing else."""
    with pytest.raises(TypeError, match="history must be a bool or a HistorySettings"):
        JobHost(database=f"sqlite:///{tmp_path / 'x.db'}", history=value)  # type: ignore[arg-type]


def test_history_call_needs_a_database() -> None:
    """host.history() on a host without a database raises RuntimeError."""
    with pytest.raises(RuntimeError, match=r"needs JobHost\(database=\.\.\.\)"):
        JobHost().history()


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"limit": 0}, ValueError, "limit"),
        ({"limit": 10_001}, ValueError, "limit"),
        ({"limit": "5"}, TypeError, "limit"),
        ({"limit": True}, TypeError, "limit"),
        ({"job": 5}, TypeError, "job"),
        ({"job": ""}, ValueError, "job"),
        ({"job": [1]}, TypeError, "job"),
        ({"job": {}}, TypeError, "job"),
    ],
)
def test_host_history_refuses_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], words: str, tmp_path: Path
) -> None:
    """host.history() checks job and limit before touching the database."""
    host = JobHost(database=f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(error, match=words):
        host.history(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"outcome": "done"}, ValueError, "outcome"),
        ({"kind": "cron"}, ValueError, "kind"),
        ({"since": "yesterday"}, TypeError, "since"),
        ({"since": datetime(2026, 1, 1)}, ValueError, "aware"),
    ],
)
def test_read_history_refuses_bad_filters(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    """read_history() checks its filters before it queries."""
    engine = make_engine("sqlite://")
    with pytest.raises(error, match=words):
        read_history(engine, "recurjobs_", **kwargs)
    with pytest.raises(ValueError, match="prefix"):
        read_history(engine, "bad prefix")
    engine.dispose()


def test_error_text_keeps_type_and_message_start_within_8_kib() -> None:
    """A huge message is cut to 8 KiB of UTF-8, keeping its type and its start."""
    try:
        raise ValueError("é" * 20_000)
    except ValueError as exc:
        text = error_text(exc)
    assert text.startswith("ValueError: éé")
    assert len(text.encode("utf-8")) <= ERROR_LIMIT
    assert "traceback cut" in text
    assert "raise ValueError" in text
