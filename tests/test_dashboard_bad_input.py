"""Bad input to the dashboard: create_app, the CLI command and the Flask mount's config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from recurjobs._dashboard_cli import is_loopback, parse_bind
from recurjobs.cli import main
from recurjobs.dashboard import create_app
from recurjobs.flask import RecurJobs


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"database": 42}, TypeError, "database"),
        ({"database": b"sqlite://"}, TypeError, "database"),
        ({"table_prefix": "bad prefix!"}, ValueError, "prefix"),
        ({"allow_actions": "yes"}, TypeError, "allow_actions"),
        ({"authorize": "admin"}, TypeError, "authorize"),
        ({"secret_key": 12}, TypeError, "secret_key"),
        ({"secret_key": "short"}, ValueError, "secret_key"),
    ],
)
def test_create_app_rejects(kwargs: dict[str, Any], error: type[Exception], names: str) -> None:
    """Each bad argument raises at the call, naming the parameter."""
    arguments: dict[str, Any] = {"database": "sqlite://", **kwargs}
    with pytest.raises(error) as raised:
        create_app(**arguments)
    assert names in str(raised.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:9000", ("::1", 9000))],
)
def test_parse_bind(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT and [IPv6]:PORT parse."""
    assert expected == parse_bind(text)


@pytest.mark.parametrize("text", ["8080", "host:", "host:http", "host:0", "host:70000", ":80"])
def test_parse_bind_rejects(text: str) -> None:
    """A bind without host or with a bad port is a ValueError naming --bind."""
    with pytest.raises(ValueError, match="--bind"):
        parse_bind(text)


def test_loopback_addresses() -> None:
    """Loopback names and addresses are told from the rest."""
    assert [True, True, True, False, False] == [
        is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "example.org")
    ]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["dashboard", *argv])
    return code, capsys.readouterr().err


def test_cli_refuses_actions_on_a_public_address_without_authorize(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--allow-actions on a non-loopback bind without --authorize exits 2 explaining why."""
    (tmp_path / "jobs.db").touch()
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    code, err = _run(capsys, "--database", url, "--bind", "0.0.0.0:8080", "--allow-actions")
    assert 2 == code
    assert "needs --authorize MODULE:FUNCTION" in err


def test_cli_bad_bind_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --bind that is not HOST:PORT is a usage error (exit 2) naming --bind."""
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", "--database", f"sqlite:///{tmp_path / 'jobs.db'}", "--bind", "nowhere"])
    assert 2 == exited.value.code
    assert "--bind must be HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--authorize", "tests.apps:nothing"], "only matters with --allow-actions"),
        (["--allow-actions", "--authorize", "nomodule_xyz:f"], "--authorize nomodule_xyz:f"),
        (["--allow-actions", "--authorize", "no-colon"], "MODULE:FUNCTION"),
    ],
)
def test_cli_bad_authorize_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Bad --authorize values exit 2 with one line naming them."""
    (tmp_path / "jobs.db").touch()
    code, err = _run(capsys, "--database", f"sqlite:///{tmp_path / 'jobs.db'}", *argv)
    assert (2, True) == (code, message in err)


def test_cli_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A server that refuses connections exits 1 with the URL masked."""
    code, err = _run(capsys, "--database", "postgresql+psycopg://u:pw-123@127.0.0.1:1/x")
    assert 1 == code
    assert "cannot reach" in err and "pw-123" not in err


@pytest.mark.parametrize(
    ("config", "error", "key"),
    [
        ({"RECURJOBS_DASHBOARD_PREFIX": "recurjobs"}, ValueError, "RECURJOBS_DASHBOARD_PREFIX"),
        (
            {"RECURJOBS_DASHBOARD_PREFIX": "/jobs", "RECURJOBS_DATABASE_URL": None},
            ValueError,
            "RECURJOBS_DATABASE_URL",
        ),
        ({"RECURJOBS_DASHBOARD_ALLOW_ACTIONS": True}, ValueError, "RECURJOBS_DASHBOARD_AUTHORIZE"),
        ({"RECURJOBS_DASHBOARD_AUTHORIZE": "admins"}, TypeError, "RECURJOBS_DASHBOARD_AUTHORIZE"),
    ],
)
def test_flask_mount_rejects(
    tmp_path: Path, config: dict[str, Any], error: type[Exception], key: str
) -> None:
    """A bad dashboard setting fails init_app, naming its key."""
    app = Flask(__name__)
    app.config.update(
        RECURJOBS_AUTOSTART=False,
        RECURJOBS_MAIN_DOM=False,
        RECURJOBS_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
        RECURJOBS_DASHBOARD_PREFIX="/recurjobs",
    )
    app.config.update(config)
    with pytest.raises(error) as raised:
        RecurJobs(app, jobs=[])
    assert key in str(raised.value)


def test_create_app_refuses_an_sqlite_file_that_does_not_exist(tmp_path: Path) -> None:
    """A URL naming a missing SQLite file is a ValueError naming the parameter and the path,
    and no empty database file is left behind (the CLI refuses the same path)."""
    missing = tmp_path / "missing.db"
    with pytest.raises(ValueError) as raised:
        create_app(f"sqlite:///{missing}")
    message = str(raised.value)
    assert (True, True, False) == ("database" in message, str(missing) in message, missing.exists())


def test_create_app_opens_an_existing_sqlite_file_and_memory(tmp_path: Path) -> None:
    """An existing SQLite file and an in-memory database are accepted as before."""
    (tmp_path / "jobs.db").touch()
    for url in (f"sqlite:///{tmp_path / 'jobs.db'}", "sqlite://"):
        assert 200 == create_app(url).test_client().get("/").status_code
