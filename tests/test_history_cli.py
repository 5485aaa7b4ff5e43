"""`recurjobs history` and `flask recurjobs history` show the run history table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from recurjobs import JobHost
from recurjobs.cli import main
from recurjobs.flask import RecurJobs
from recurjobs.sql import JobStore
from recurjobs.sql._history import HistoryTables

NOW = 1_780_000_000_000


def _database(tmp_path: Path) -> str:
    """A SQLite file with a jobs table and three runs of two jobs."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    store = JobStore(url)
    store.create_schema()
    tables = HistoryTables("recurjobs_")
    tables.metadata.create_all(store.engine)
    rows: list[dict[str, object]] = [
        {"job": "a", "kind": "recurring", "host": "h1", "claim_id": None, "trigger": "manual",
         "started_ms": NOW, "ended_ms": NOW + 250, "outcome": "executed", "error": None},
        {"job": "b", "kind": "distributed", "host": "h2", "claim_id": "c1",
         "trigger": "schedule", "started_ms": NOW + 1000, "ended_ms": NOW + 1500,
         "outcome": "failed", "error": "KeyError: 'x'\n\nTraceback ..."},
        {"job": "a", "kind": "recurring", "host": "h1", "claim_id": None, "trigger": "schedule",
         "started_ms": NOW + 2000, "ended_ms": None, "outcome": None, "error": None},
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(sa.insert(tables.runs), rows)
    store.dispose()
    return url


def test_cli_history_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table lists runs newest first; --job and --limit filter; --json uses field names."""
    url = _database(tmp_path)
    assert 0 == main(["history", "--database", url])
    lines = capsys.readouterr().out.splitlines()
    assert ["STARTED", "a", "b", "a"] == [line.split()[0 if i == 0 else 2] for i, line in
                                          enumerate(lines)]  # fmt: skip
    assert "KeyError: 'x'" in lines[2]
    assert 0 == main(["history", "--database", url, "--job", "a", "--limit", "1", "--json"])
    [record] = json.loads(capsys.readouterr().out)
    assert {
        "job": "a", "kind": "recurring", "host": "h1", "started_at": "2026-05-28T20:26:42+00:00",
        "ended_at": None, "outcome": "running", "trigger": "schedule", "error": None,
        "claim_id": None,
    } == record  # fmt: skip


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--limit", "0"], "--limit must be"), (["--limit", "x"], "--limit must be")],
)
def test_cli_history_refuses_bad_input(
    tmp_path: Path, args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad options exit with 2 and one line naming the option."""
    url = _database(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["history", "--database", url, *args])
    assert 2 == exited.value.code
    assert words in capsys.readouterr().err


def test_flask_history_command(tmp_path: Path) -> None:
    """`flask recurjobs history --job b --json` reads the app's database."""
    url = _database(tmp_path)
    app = Flask("history_app")
    app.config.update(
        RECURJOBS_MAIN_DOM=False, RECURJOBS_AUTOSTART=False, RECURJOBS_DATABASE_URL=url,
        RECURJOBS_HISTORY=True,
    )  # fmt: skip
    RecurJobs(app)
    host = app.extensions["recurjobs"]
    assert isinstance(host, JobHost)
    result = app.test_cli_runner().invoke(args=["recurjobs", "history", "--job", "b", "--json"])
    assert 0 == result.exit_code, result.output
    assert [("b", "failed", "c1")] == [
        (r["job"], r["outcome"], r["claim_id"]) for r in json.loads(result.output)
    ]
    table = app.test_cli_runner().invoke(args=["recurjobs", "history"])
    assert 4 == len(table.output.splitlines())


def test_flask_history_command_creates_no_sqlite_file(tmp_path: Path) -> None:
    """Before the app's host has created its SQLite file, `flask recurjobs history` says there
    are no runs and leaves no file behind (the table and --json alike)."""
    path = tmp_path / "not-yet.db"
    app = Flask("history_app")
    app.config.update(
        RECURJOBS_MAIN_DOM=False, RECURJOBS_AUTOSTART=False, RECURJOBS_DATABASE_URL=f"sqlite:///{path}",
        RECURJOBS_HISTORY=True,
    )  # fmt: skip
    RecurJobs(app)
    table = app.test_cli_runner().invoke(args=["recurjobs", "history"])
    assert (0, "no runs recorded\n") == (table.exit_code, table.output)
    as_json = app.test_cli_runner().invoke(args=["recurjobs", "history", "--json"])
    assert (0, []) == (as_json.exit_code, json.loads(as_json.output))
    assert not path.exists()
