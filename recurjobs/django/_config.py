"""The ``RECURJOBS`` setting, read into the keywords of a :class:`recurjobs.JobHost`.

Every problem is a :class:`Problem` with the check id it is reported under
(``manage.py check`` shows ``recurjobs.E00n``) and a message naming the key and the value.
:func:`read` collects them all instead of stopping at the first, so one ``check`` run shows
every mistake.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from recurjobs._clitext import parse_duration
from recurjobs._host import JobHost
from recurjobs._roles import ServerRole
from recurjobs._settings import DistributedJobSettings

__all__ = ["KEYS", "Config", "Problem", "history_support", "read"]

KEYS = {
    "JOBS": "dotted paths of job classes, job instances or factories returning jobs",
    "DATABASE": "a DATABASES alias or a SQLAlchemy URL (default: none)",
    "MAIN_DOM": "True (default), False or a lock key",
    "MAIN_DOM_DIRECTORY": "where the main instance lock lives (default: the temp directory)",
    "HISTORY": "False (default), True or a dict of HistorySettings fields",
    "DISTRIBUTED": "a dict of DistributedJobSettings fields",
    "TABLE_PREFIX": "the table prefix (default recurjobs_)",
    "SERVER_ROLE": "a ServerRole, its name, or a callable returning one",
    "ELECT_SERVER_ROLE": "elect the scheduling publisher through the database",
    "START_TIMEOUT": "seconds start() waits for an unreachable database (default 10)",
    "EXIT_TIMEOUT": "seconds the stop at exit waits for running jobs (default 5)",
    "AUTOSTART": "start in serving processes (default True)",
    "CLOSE_CONNECTIONS": "close_old_connections() around every run (default True)",
    "DASHBOARD_ACTIONS": "trigger/pause/resume buttons in recurjobs.django.urls (default False)",
}
"""Every key of ``RECURJOBS`` and what it holds."""

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Problem:
    """One bad setting: the system check ``id`` and a message naming key and value."""

    id: str
    message: str

    def __str__(self) -> str:
        return f"{self.id}: {self.message}"


@dataclass
class Config:
    """The settings as read; ``entries`` are resolved but not yet instantiated."""

    entries: list[tuple[str, object]] = field(default_factory=list)
    host_kwargs: dict[str, Any] = field(default_factory=dict)
    autostart: bool = True
    close_connections: bool = True
    dashboard_actions: bool = False

    def make_jobs(self) -> list[object]:
        """New job objects from the entries (classes are instantiated, factories called)."""
        jobs: list[object] = []
        for where, obj in self.entries:
            if isinstance(obj, type):
                jobs.append(_call(where, obj))
            elif _is_job(obj):
                jobs.append(obj)
            else:
                made = _call(where, obj)  # a factory (checked callable when read)
                if _is_job(made) and not isinstance(made, type):
                    jobs.append(made)
                elif isinstance(made, Iterable) and not isinstance(made, (str, bytes)):
                    jobs.extend(made)
                else:
                    raise ValueError(f"{where} returned {made!r}, which is neither a job nor jobs")
        return jobs


def _call(where: str, fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:
        raise ValueError(f"{where}: calling {fn!r} raised {type(exc).__name__}: {exc}") from exc


def _is_job(obj: object) -> bool:
    return any(callable(getattr(obj, m, None)) for m in ("run", "execute"))


class _Reader:
    def __init__(self, raw: Mapping[str, Any], databases: Mapping[str, Any]) -> None:
        self.raw = raw
        self.databases = databases
        self.problems: list[Problem] = []

    def bad(self, check_id: str, message: str) -> None:
        self.problems.append(Problem(f"recurjobs.{check_id}", message))

    def flag(self, key: str, default: bool, check_id: str) -> bool:
        value = self.raw.get(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        self.bad(check_id, f"RECURJOBS[{key!r}] must be True or False, got {value!r}")
        return default

    def seconds(self, key: str, default: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, timedelta):
            value = value.total_seconds()
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and math.isfinite(value) and value >= 0:
            return float(value)
        self.bad("E008", f"RECURJOBS[{key!r}] must be a number of seconds >= 0, got {value!r}")
        return default


def duration(value: object) -> timedelta:
    """A timedelta, a number of seconds, or a duration text such as "30s", "5m" or "0"."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return timedelta(seconds=value)
    if isinstance(value, str):
        if value.strip() in ("0", "0s"):
            return timedelta(0)
        return parse_duration(value)
    raise TypeError(f"expected a timedelta, seconds or a duration like '30s', got {value!r}")


def history_support() -> tuple[Any, bool]:
    """``(HistorySettings or None, whether JobHost takes history=)`` of this installation."""
    import recurjobs

    settings_class = getattr(recurjobs, "HistorySettings", None)
    takes = "history" in inspect.signature(JobHost.__init__).parameters
    return settings_class, takes


def read(raw: object, databases: Mapping[str, Any]) -> tuple[Config, list[Problem]]:
    """Read ``settings.RECURJOBS``; return what could be read and every problem found."""
    config = Config()
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return config, [Problem("recurjobs.E001", f"RECURJOBS must be a dict, got {raw!r}")]
    reader = _Reader(raw, databases)
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        reader.bad(
            "E001",
            f"RECURJOBS has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(KEYS)}",
        )
    config.entries = _jobs(reader)
    kwargs = config.host_kwargs
    kwargs["database"] = _database(reader)
    kwargs["main_dom"] = _main_dom(reader)
    history = _history(reader, kwargs["database"])
    if history is not None:
        kwargs["history"] = history
    kwargs["distributed"] = _distributed(reader)
    kwargs["server_role"] = _server_role(reader)
    kwargs["elect_server_role"] = reader.flag("ELECT_SERVER_ROLE", False, "E007")
    if kwargs["elect_server_role"] and kwargs["database"] is None:
        reader.bad("E007", "RECURJOBS['ELECT_SERVER_ROLE'] is True but RECURJOBS has no DATABASE")
    kwargs["start_timeout"] = reader.seconds("START_TIMEOUT", 10.0)
    kwargs["exit_timeout"] = reader.seconds("EXIT_TIMEOUT", 5.0)
    config.autostart = reader.flag("AUTOSTART", True, "E008")
    config.close_connections = reader.flag("CLOSE_CONNECTIONS", True, "E008")
    config.dashboard_actions = reader.flag("DASHBOARD_ACTIONS", False, "E008")
    return config, reader.problems


def _jobs(reader: _Reader) -> list[tuple[str, object]]:
    from django.utils.module_loading import import_string

    value = reader.raw.get("JOBS", ())
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        reader.bad("E002", f"RECURJOBS['JOBS'] must be a list of dotted paths, got {value!r}")
        return []
    entries: list[tuple[str, object]] = []
    for i, item in enumerate(value):
        where = f"RECURJOBS['JOBS'][{i}]"
        obj: object = item
        if isinstance(item, str):
            where = f"{where} ({item!r})"
            try:
                obj = import_string(item)
            except ImportError as exc:
                reader.bad("E002", f"{where} cannot be imported: {exc}")
                continue
            except Exception as exc:  # the module itself raised while importing
                reader.bad("E002", f"{where}: importing it raised {type(exc).__name__}: {exc}")
                continue
        if isinstance(obj, type) or _is_job(obj) or callable(obj):
            entries.append((where, obj))
        else:
            reader.bad(
                "E002",
                f"{where} is {obj!r}: expected a job class, a job instance or a callable "
                "returning jobs",
            )
    return entries


def _database(reader: _Reader) -> str | None:
    from recurjobs._clistore import check_database_url
    from recurjobs.django._databases import alias_url

    value = reader.raw.get("DATABASE")
    if value is None:
        return None
    where = "RECURJOBS['DATABASE']"
    if not isinstance(value, str) or not value:
        reader.bad("E003", f"{where} must be a DATABASES alias or a URL, got {value!r}")
        return None
    try:
        url = value if "://" in value else alias_url(value, reader.databases, where)
        check_database_url(url, where)
    except (TypeError, ValueError) as exc:
        reader.bad("E003", str(exc))
        return None
    if "://" in value and _in_memory(value):
        reader.bad(
            "E003",
            f"{where} is an in-memory SQLite database ({value!r}), which other connections and "
            "processes cannot see; use a file or a server",
        )
        return None
    return url


def _in_memory(url: str) -> bool:
    from sqlalchemy import make_url

    from recurjobs.sql._shared import in_memory

    parsed = make_url(url)
    database = parsed.database or ""
    return in_memory(parsed) or (
        parsed.get_backend_name() == "sqlite"
        and (
            database.startswith("file::memory:")
            or "mode=memory" in database
            or parsed.query.get("mode") == "memory"
        )
    )


def _main_dom(reader: _Reader) -> Any:
    from recurjobs._maindom import MainDom

    value = reader.raw.get("MAIN_DOM", True)
    directory = reader.raw.get("MAIN_DOM_DIRECTORY")
    if isinstance(directory, os.PathLike):
        directory = os.fspath(directory)
    if directory is not None and not (isinstance(directory, str) and directory):
        reader.bad(
            "E004", f"RECURJOBS['MAIN_DOM_DIRECTORY'] must be a directory path, got {directory!r}"
        )
        directory = None
    if value is False or value is None:
        return False
    if value is True or (isinstance(value, str) and value):
        made = MainDom(project_key() if value is True else value, directory=directory)
        if directory is not None:
            try:
                made.check()  # the lock file can be created there
            except RuntimeError as exc:
                reader.bad("E004", f"RECURJOBS['MAIN_DOM_DIRECTORY']: {exc}")
                return False
        return made
    reader.bad("E004", f"RECURJOBS['MAIN_DOM'] must be True, False or a lock key, got {value!r}")
    return False


def project_key() -> str:
    """The default main instance key: machine, settings module and where it was loaded from.

    Every process of one project on one machine (runserver, each gunicorn worker,
    ``manage.py recurjobs run``) gets the same key, whatever its working directory or
    command, so only one of them runs the recurring jobs.
    """
    import socket
    import sys

    module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    loaded = getattr(sys.modules.get(module), "__file__", None) or ""
    where = os.path.realpath(loaded) if loaded else os.getcwd()
    return "\n".join(("recurjobs-django", socket.gethostname(), module, where))


def _history(reader: _Reader, database: str | None) -> object | None:
    value = reader.raw.get("HISTORY", False)
    if value is False or value is None:
        return None
    where = "RECURJOBS['HISTORY']"
    settings_class, takes = history_support()
    if settings_class is None or not takes:
        reader.bad(
            "E005",
            f"{where} is set, but the installed recurjobs has no run history "
            "(JobHost(history=...)); upgrade recurjobs or remove the key",
        )
        return None
    if database is None and reader.raw.get("DATABASE") is None:
        reader.bad("E005", f"{where} needs RECURJOBS['DATABASE'] (the runs table lives there)")
        return None
    if value is True:
        return True
    if not isinstance(value, Mapping):
        reader.bad("E005", f"{where} must be True, False or a dict, got {value!r}")
        return None
    made: object | None = _dataclass_from(reader, "E005", where, settings_class, value)
    return made


def _distributed(reader: _Reader) -> DistributedJobSettings:
    where = "RECURJOBS['DISTRIBUTED']"
    value = reader.raw.get("DISTRIBUTED", {})
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        reader.bad("E006", f"{where} must be a dict, got {value!r}")
        value = {}
    values = dict(value)
    prefix = reader.raw.get("TABLE_PREFIX")
    if prefix is not None:
        if "table_prefix" in values and values["table_prefix"] != prefix:
            reader.bad(
                "E006",
                f"RECURJOBS['TABLE_PREFIX'] ({prefix!r}) and {where}['table_prefix'] "
                f"({values['table_prefix']!r}) disagree; give one",
            )
        values["table_prefix"] = prefix
    made = _dataclass_from(reader, "E006", where, DistributedJobSettings, values)
    return made if made is not None else DistributedJobSettings()


def _dataclass_from(
    reader: _Reader, check_id: str, where: str, kind: Any, values: Mapping[str, Any]
) -> Any:
    """``kind(**values)``, durations converted, each bad field reported with its key."""
    fields = {f.name: f for f in dataclasses.fields(kind)}
    defaults = kind()
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            reader.bad(
                check_id,
                f"{where} has the unknown key {key!r}; known keys: {', '.join(fields)}",
            )
            continue
        given = value
        if isinstance(getattr(defaults, key), timedelta) and not isinstance(value, bool):
            try:
                value = duration(value)
            except (TypeError, ValueError, OverflowError) as exc:
                reader.bad(check_id, f"{where}[{key!r}]: {exc}")
                continue
        try:
            dataclasses.replace(defaults, **{key: value})
        except (TypeError, ValueError) as exc:
            message = str(exc).replace(repr(value), repr(given))  # the value as written
            reader.bad(check_id, f"{where}[{key!r}]: {message}")
            continue
        converted[key] = value
    try:
        return kind(**converted)
    except (TypeError, ValueError) as exc:
        reader.bad(check_id, f"{where}: {exc}")
        return None


def _server_role(reader: _Reader) -> ServerRole | Callable[[], ServerRole]:
    value = reader.raw.get("SERVER_ROLE", ServerRole.SINGLE)
    if isinstance(value, ServerRole):
        return value
    if isinstance(value, str):
        for role in ServerRole:
            if value.strip().lower() in (role.value, role.name.lower()):
                return role
        if "." in value:
            from django.utils.module_loading import import_string

            try:
                found = import_string(value)
            except ImportError as exc:
                reader.bad("E007", f"RECURJOBS['SERVER_ROLE'] cannot be imported: {exc}")
                return ServerRole.SINGLE
            if callable(found):
                return found  # type: ignore[no-any-return]
    elif callable(value):
        return value  # type: ignore[no-any-return]
    names = ", ".join(r.name for r in ServerRole)
    reader.bad(
        "E007",
        f"RECURJOBS['SERVER_ROLE'] must be a ServerRole ({names}), its name, or a callable "
        f"returning one, got {value!r}",
    )
    return ServerRole.SINGLE
