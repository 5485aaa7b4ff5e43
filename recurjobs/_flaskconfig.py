"""The ``RECURJOBS_*`` values of a Flask app's config, checked and turned into JobHost arguments.

A config is a mapping filled from Python or from ``FLASK_RECURJOBS_*`` environment variables
(``app.config.from_prefixed_env()``), so every reader takes the typed value and its text form
("true", "30s", "5"); anything else is a ValueError naming the key, raised before a host exists.
No flask here: :mod:`recurjobs.flask` is the only module that imports it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from recurjobs._clitext import parse_duration
from recurjobs._maindom import MainDom
from recurjobs._roles import ServerRole
from recurjobs._settings import DistributedJobSettings

__all__ = [
    "config_error",
    "read_duration",
    "read_flag",
    "read_int",
    "read_main_dom",
    "read_server_role",
    "read_settings",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# The DistributedJobSettings field each key sets.
_SETTINGS_KEYS = {
    "poll_period": "RECURJOBS_POLL_PERIOD",
    "delay": "RECURJOBS_DELAY",
    "max_execution_time": "RECURJOBS_MAX_EXECUTION_TIME",
    "max_concurrent_jobs": "RECURJOBS_MAX_CONCURRENT_JOBS",
    "table_prefix": "RECURJOBS_TABLE_PREFIX",
}


def config_error(key: str, value: object, expected: str) -> Any:
    raise ValueError(f"{key} must be {expected}, got {value!r}")


def read_flag(config: Any, key: str) -> bool:
    value = config[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # from_prefixed_env() turns "0"/"1" into ints
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return bool(config_error(key, value, "a bool, 0/1 or 'true'/'false'"))


def read_duration(config: Any, key: str) -> timedelta:
    value = config[key]
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return timedelta(seconds=value)
        except OverflowError:
            pass
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except (ValueError, OverflowError):
            pass
    return config_error(key, value, "a timedelta, seconds or a duration like '30s' or '5m'")  # type: ignore[no-any-return]


def read_int(config: Any, key: str) -> int:
    value = config[key]
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(config_error(key, value, "an int"))


def read_settings(config: Any) -> DistributedJobSettings:
    """The poller settings; a bad value is a ValueError or TypeError naming its key."""
    values: dict[str, Any] = {
        "poll_period": read_duration(config, "RECURJOBS_POLL_PERIOD"),
        "delay": read_duration(config, "RECURJOBS_DELAY"),
        "max_execution_time": read_duration(config, "RECURJOBS_MAX_EXECUTION_TIME"),
        "max_concurrent_jobs": read_int(config, "RECURJOBS_MAX_CONCURRENT_JOBS"),
        "table_prefix": config["RECURJOBS_TABLE_PREFIX"],
    }
    defaults = DistributedJobSettings()
    for field, value in values.items():  # one at a time, so the error names the key
        try:
            dataclasses.replace(defaults, **{field: value})
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{_SETTINGS_KEYS[field]}: {exc}") from None
    return DistributedJobSettings(**values)


def read_server_role(value: object) -> ServerRole | Callable[[], ServerRole]:
    if isinstance(value, ServerRole) or callable(value):
        return value
    if isinstance(value, str):
        for role in ServerRole:
            if value.strip().lower() in (role.value, role.name.lower()):
                return role
    names = ", ".join(r.name for r in ServerRole)
    return config_error(  # type: ignore[no-any-return]
        "RECURJOBS_SERVER_ROLE", value, f"a ServerRole, one of {names}, or a callable"
    )


def read_main_dom(value: object, config: Any) -> bool | str | MainDom:
    directory = config["RECURJOBS_MAIN_DOM_DIRECTORY"]
    if directory is not None and not (isinstance(directory, str) and directory):
        config_error("RECURJOBS_MAIN_DOM_DIRECTORY", directory, "a directory path or None")
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        value = value.strip().lower() in _TRUE
    elif isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        value = bool(value)  # from_prefixed_env() turns "0"/"1" into ints
    if value is None or value is False:
        return False
    if value is True:
        return MainDom.automatic(directory) if directory else True
    if isinstance(value, str) and value:
        return MainDom(value, directory=directory) if directory else value
    if isinstance(value, MainDom):
        return value
    return config_error(  # type: ignore[no-any-return]
        "RECURJOBS_MAIN_DOM", value, "True, False, a str key or a MainDom"
    )
