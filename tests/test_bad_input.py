"""Bad input everywhere a user can give it: a clear error at the call, naming what was wrong.

Three tables, one test each:

- the Python API: every case raises ``TypeError`` or ``ValueError`` whose message names the
  parameter (and the value where that helps);
- the ``recurjobs`` command: every case exits with 2 and prints exactly one line on standard
  error, never a traceback;
- the Flask extension's ``RECURJOBS_*`` keys: ``init_app`` raises ``ValueError`` or
  ``TypeError`` naming the key.

A case may carry an ``xfail`` reason while a fix is pending; such cases are strict, so a fix
that lands makes the run fail until the mark is removed.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from recurjobs import (
    INFINITE,
    CancellationToken,
    DistributedJob,
    DistributedJobSettings,
    JobFailed,
    JobHost,
    MainDom,
    NextExecution,
    RecurringJob,
    ServerRole,
    Signal,
    TriggerableJob,
)
from recurjobs.cli import main
from recurjobs.flask import RecurJobs
from recurjobs.sql import DatabaseServerRoles, JobStore
from recurjobs.testing import ManualClock

SEC = timedelta(seconds=1)


class Rec(RecurringJob, TriggerableJob):
    """A triggerable recurring job that does nothing."""

    def run(self, token: CancellationToken) -> None:
        pass


class Plain(RecurringJob):
    """A recurring job that cannot be triggered."""

    def run(self, token: CancellationToken) -> None:
        pass


class Dist(DistributedJob):
    """A distributed job; name and period come from the keyword arguments."""

    def execute(self, token: CancellationToken) -> None:
        pass


class Nameless(DistributedJob):
    """A distributed job that forgot its name."""

    period = timedelta(hours=1)

    def execute(self, token: CancellationToken) -> None:
        pass


class Duck:
    """A duck-typed recurring job whose attributes a case sets."""

    def __init__(self, **attrs: object) -> None:
        self.period = timedelta(minutes=1)
        self.__dict__.update(attrs)

    def run(self, token: CancellationToken) -> None:
        pass


class OneRole(RecurringJob):
    """A recurring job whose server_roles class attribute is one role, not a collection."""

    server_roles = ServerRole.SUBSCRIBER  # type: ignore[assignment]

    def run(self, token: CancellationToken) -> None:
        pass


class DuckDist:
    """A duck-typed distributed job whose attributes a case sets."""

    def __init__(self, **attrs: object) -> None:
        self.name = "duck"
        self.period = timedelta(minutes=1)
        self.__dict__.update(attrs)

    def execute(self, token: CancellationToken) -> None:
        pass


def rec(**kwargs: Any) -> Rec:
    """A Rec with a one-minute period unless ``kwargs`` say otherwise."""
    kwargs.setdefault("period", timedelta(minutes=1))
    return Rec(**kwargs)


def call(fn: Any, *args: Any, **kwargs: Any) -> Callable[[], object]:
    """A call of ``fn`` with arguments the type checker would refuse (that is the point)."""
    return lambda: fn(*args, **kwargs)


def set_attr(target: object, name: str, value: object) -> Callable[[], object]:
    """A call that assigns ``target.name = value``."""
    return lambda: setattr(target, name, value)


def registered_twice() -> object:
    """A host given the same job instance twice."""
    job = rec()
    return JobHost([job, job])


def host() -> JobHost:
    """An unstarted host with one triggerable and one plain job."""
    return JobHost([rec(), Plain(timedelta(minutes=1))])


def store(database: Any = "sqlite://", **kwargs: Any) -> Callable[[], object]:
    """A call that builds a JobStore, disposing it if it was built after all."""

    def build() -> object:
        made = JobStore(database, **kwargs)
        made.dispose()
        return made

    return build


@dataclass(frozen=True)
class Bad:
    """One bad call: the exception it must raise and texts its message must contain."""

    id: str
    call: Callable[[], object]
    error: type[Exception]
    says: tuple[str, ...]
    xfail: str | None = None


# Why a case is an expected failure until another branch is merged (then drop the field).

NAN = math.nan
R, D, S, H, MC, DSR = Rec, Dist, DistributedJobSettings, JobHost, ManualClock, DatabaseServerRoles
API: list[Bad] = [
    # ---------------------------------------------------------------- RecurringJob
    Bad("job-period-None", call(R, None), TypeError, ("period", "None")),
    Bad("job-period-int", call(R, 5), TypeError, ("period", "5")),
    Bad("job-period-str", call(R, "5m"), TypeError, ("period", "'5m'")),
    Bad("job-period-negative", call(R, -SEC), ValueError, ("period", "negative")),
    Bad("job-period-minus-day", call(R, timedelta(days=-1)), ValueError, ("period", "days=-1")),
    Bad("job-delay-str", call(rec, delay="x"), TypeError, ("delay", "'x'")),
    Bad("job-delay-negative", call(rec, delay=-SEC), ValueError, ("delay", "negative")),
    Bad("job-delay-float", call(rec, delay=1.5), TypeError, ("delay", "1.5")),
    Bad("job-ignored-float", call(rec, ignored_delay=1.0), TypeError, ("ignored_delay", "1.0")),
    Bad("job-ignored-negative", call(rec, ignored_delay=-SEC), ValueError, ("ignored_delay",)),
    Bad("job-roles-str", call(rec, server_roles="SINGLE"), TypeError, ("server_roles", "SINGLE")),
    Bad("job-roles-int", call(rec, server_roles=5), TypeError, ("server_roles", "5")),
    Bad("job-roles-member", call(rec, server_roles=[1]), TypeError, ("server_roles", "1")),
    Bad(
        "job-roles-names",
        call(rec, server_roles=["single"]),
        TypeError,
        ("server_roles", "'single'"),
    ),
    Bad("set-period-str", set_attr(rec(), "period", "1h"), TypeError, ("period", "'1h'")),
    Bad("set-period-negative", set_attr(rec(), "period", -SEC), ValueError, ("period", "negative")),
    Bad("set-period-None", set_attr(rec(), "period", None), TypeError, ("period", "None")),
    Bad("set-ignored-None", set_attr(rec(), "ignored_delay", None), TypeError, ("ignored_delay",)),
    Bad(
        "set-ignored-negative",
        set_attr(rec(), "ignored_delay", -SEC),
        ValueError,
        ("ignored_delay",),
    ),
    Bad(
        "set-ignored-int", set_attr(rec(), "ignored_delay", 60), TypeError, ("ignored_delay", "60")
    ),
    # -------------------------------------------------------------- DistributedJob
    Bad("dist-name-int", call(D, name=5, period=SEC), TypeError, ("name", "5")),
    Bad("dist-name-empty", call(D, name="", period=SEC), ValueError, ("name", "''")),
    Bad("dist-name-long", call(D, name="x" * 201, period=SEC), ValueError, ("name", "200")),
    Bad("dist-name-missing", call(Nameless), TypeError, ("name", "None")),
    Bad("dist-period-zero", call(D, name="a", period=timedelta(0)), ValueError, ("period",)),
    Bad(
        "dist-period-infinite",
        call(D, name="a", period=INFINITE),
        ValueError,
        ("period", "INFINITE"),
    ),
    Bad("dist-period-negative", call(D, name="a", period=-SEC), ValueError, ("period", "negative")),
    Bad("dist-period-str", call(D, name="a", period="1h"), TypeError, ("period", "'1h'")),
    Bad("dist-period-missing", call(D, name="a"), TypeError, ("period", "None")),
    Bad(
        "dist-align-str",
        call(D, name="a", period=SEC, align_to_clock="yes"),
        TypeError,
        ("align_to_clock", "'yes'"),
    ),
    Bad(
        "dist-align-int",
        call(D, name="a", period=SEC, align_to_clock=1),
        TypeError,
        ("align_to_clock", "1"),
    ),
    # ------------------------------------------------------ DistributedJobSettings
    Bad(
        "settings-poll-zero", call(S, poll_period=timedelta(0)), ValueError, ("poll_period", "zero")
    ),
    Bad(
        "settings-poll-negative", call(S, poll_period=-SEC), ValueError, ("poll_period", "negative")
    ),
    Bad(
        "settings-poll-infinite",
        call(S, poll_period=INFINITE),
        ValueError,
        ("poll_period", "INFINITE"),
    ),
    Bad("settings-poll-int", call(S, poll_period=5), TypeError, ("poll_period", "5")),
    Bad(
        "settings-poll-huge",
        call(S, poll_period=timedelta(days=400)),
        ValueError,
        ("poll_period", "400"),
    ),
    Bad("settings-delay-negative", call(S, delay=-SEC), ValueError, ("delay", "negative")),
    Bad("settings-delay-infinite", call(S, delay=INFINITE), ValueError, ("delay", "INFINITE")),
    Bad("settings-delay-str", call(S, delay="1m"), TypeError, ("delay", "'1m'")),
    Bad("settings-delay-huge", call(S, delay=timedelta.max), ValueError, ("delay", "999999999")),
    Bad(
        "settings-maxexec-zero",
        call(S, max_execution_time=timedelta(0)),
        ValueError,
        ("max_execution_time",),
    ),
    Bad(
        "settings-maxexec-a-millisecond",
        call(S, max_execution_time=timedelta(milliseconds=1)),
        ValueError,
        ("max_execution_time", "at least 1 second"),
    ),
    Bad(
        "settings-maxexec-None",
        call(S, max_execution_time=None),
        TypeError,
        ("max_execution_time", "None"),
    ),
    Bad(
        "settings-maxexec-huge",
        call(S, max_execution_time=timedelta(days=10**6)),
        ValueError,
        ("max_execution_time",),
    ),
    Bad(
        "settings-jobs-zero",
        call(S, max_concurrent_jobs=0),
        ValueError,
        ("max_concurrent_jobs", "0"),
    ),
    Bad(
        "settings-jobs-negative",
        call(S, max_concurrent_jobs=-1),
        ValueError,
        ("max_concurrent_jobs", "-1"),
    ),
    Bad(
        "settings-jobs-float",
        call(S, max_concurrent_jobs=1.5),
        TypeError,
        ("max_concurrent_jobs", "1.5"),
    ),
    Bad(
        "settings-jobs-bool",
        call(S, max_concurrent_jobs=True),
        TypeError,
        ("max_concurrent_jobs", "True"),
    ),
    Bad(
        "settings-jobs-str",
        call(S, max_concurrent_jobs="2"),
        TypeError,
        ("max_concurrent_jobs", "'2'"),
    ),
    Bad("settings-prefix-empty", call(S, table_prefix=""), ValueError, ("table_prefix", "''")),
    Bad(
        "settings-prefix-digit",
        call(S, table_prefix="1abc"),
        ValueError,
        ("table_prefix", "'1abc'"),
    ),
    Bad("settings-prefix-dash", call(S, table_prefix="a-b"), ValueError, ("table_prefix", "'a-b'")),
    Bad(
        "settings-prefix-long", call(S, table_prefix="x" * 41), ValueError, ("table_prefix", "1-40")
    ),
    Bad("settings-prefix-None", call(S, table_prefix=None), TypeError, ("table_prefix", "None")),
    # --------------------------------------------------------------------- JobHost
    Bad("host-jobs-int", call(H, 5), TypeError, ("jobs", "5")),
    Bad("host-jobs-str", call(H, "abc"), TypeError, ("jobs", "'abc'")),
    Bad("host-jobs-class", call(H, [Rec]), TypeError, ("job", "class Rec")),
    Bad("host-jobs-object", call(H, [object()]), TypeError, ("job", "run(token)")),
    Bad("host-jobs-twice", registered_twice, ValueError, ("job", "already registered")),
    Bad("host-duck-period", call(H, [Duck(period="1h")]), TypeError, ("period", "'1h'")),
    Bad("host-duck-delay", call(H, [Duck(delay=-SEC)]), ValueError, ("delay", "negative")),
    Bad("host-duck-ignored", call(H, [Duck(ignored_delay=3)]), TypeError, ("ignored_delay", "3")),
    Bad(
        "host-duck-roles-one",
        call(H, [Duck(server_roles=ServerRole.SUBSCRIBER)]),
        TypeError,
        ("server_roles", "SUBSCRIBER"),
    ),
    Bad(
        "host-duck-roles-names",
        call(H, [Duck(server_roles={"SUBSCRIBER"})]),
        TypeError,
        ("server_roles", "'SUBSCRIBER'"),
    ),
    Bad(
        "host-subclass-roles",
        call(H, [OneRole(timedelta(minutes=1))]),
        TypeError,
        ("server_roles", "SUBSCRIBER"),
    ),
    Bad(
        "host-runtime-ready-argument",
        call(H, [], runtime_ready=lambda _app: True),
        TypeError,
        ("runtime_ready", "no arguments"),
    ),
    Bad(
        "host-server-role-enum-class",
        call(H, [], server_role=ServerRole),
        TypeError,
        ("server_role", "no arguments"),
    ),
    Bad("host-dist-no-database", call(H, [Dist(name="a", period=SEC)]), ValueError, ("database",)),
    Bad(
        "host-dist-same-name",
        call(H, [DuckDist(), DuckDist()], database="sqlite://"),
        ValueError,
        ("'duck'", "already registered"),
    ),
    Bad(
        "host-dist-duck-name",
        call(H, [DuckDist(name=7)], database="sqlite://"),
        TypeError,
        ("name", "7"),
    ),
    Bad("host-clock", call(H, clock=object()), TypeError, ("clock", "object")),
    Bad("host-role-str", call(H, server_role="SINGLE"), TypeError, ("server_role", "'SINGLE'")),
    Bad("host-role-int", call(H, server_role=5), TypeError, ("server_role", "5")),
    Bad("host-ready-bool", call(H, runtime_ready=True), TypeError, ("runtime_ready", "True")),
    Bad("host-maindom-int", call(H, main_dom=5), TypeError, ("main_dom", "5")),
    Bad("host-maindom-empty", call(H, main_dom=""), ValueError, ("main_dom", "''")),
    Bad("host-database-int", call(H, database=5), TypeError, ("database", "5")),
    Bad(
        "host-database-bytes",
        call(H, database=b"sqlite://"),
        TypeError,
        ("database", "b'sqlite://'"),
    ),
    Bad("host-distributed-dict", call(H, distributed={}), TypeError, ("distributed", "{}")),
    Bad(
        "host-elect-str",
        call(H, elect_server_role="yes"),
        TypeError,
        ("elect_server_role", "'yes'"),
    ),
    Bad(
        "host-elect-no-database",
        call(H, elect_server_role=True),
        ValueError,
        ("elect_server_role", "database"),
    ),
    Bad(
        "host-database-not-url",
        call(H, database="not a url"),
        ValueError,
        ("database", "not a url"),
    ),
    Bad(
        "host-database-postgres",
        call(H, database="postgres://u@h/db"),
        ValueError,
        ("database", "postgres://"),
    ),
    Bad(
        "host-database-oracle",
        call(H, database="oracle://u@h/db"),
        ValueError,
        ("database", "oracle"),
    ),
    Bad(
        "host-start-timeout-negative",
        call(H, start_timeout=-1.0),
        ValueError,
        ("start_timeout", "-1.0"),
    ),
    Bad(
        "host-start-timeout-str",
        call(H, start_timeout="10"),
        TypeError,
        ("start_timeout", "'10'"),
    ),
    Bad(
        "host-start-timeout-infinite",
        call(H, start_timeout=math.inf),
        ValueError,
        ("start_timeout", "finite", "inf"),
    ),
    Bad(
        "host-exit-timeout-negative",
        call(H, exit_timeout=-5.0),
        ValueError,
        ("exit_timeout", "-5.0"),
    ),
    Bad(
        "host-exit-timeout-nan",
        call(H, exit_timeout=NAN),
        ValueError,
        ("exit_timeout", "nan"),
    ),
    Bad("host-add-int", call(H().add, 5), TypeError, ("job", "5")),
    Bad("host-add-class", call(H().add, Rec), TypeError, ("job", "Rec")),
    Bad(
        "host-add-dist-period",
        call(H(database="sqlite://").add, DuckDist(period=0)),
        TypeError,
        ("period", "0"),
    ),
    Bad("host-stop-negative", call(H().stop, -1), ValueError, ("timeout", "-1")),
    Bad("host-stop-str", call(H().stop, "5"), TypeError, ("timeout", "'5'")),
    Bad("host-stop-nan", call(H().stop, NAN), ValueError, ("timeout", "nan")),
    # ------------------------------------------------------- triggers, subscriptions
    Bad(
        "trigger-strategy-str",
        call(host().trigger, Rec, "RESET"),
        TypeError,
        ("strategy", "'RESET'"),
    ),
    Bad(
        "trigger-next-delay-int",
        call(host().trigger, Rec, next_delay=5),
        TypeError,
        ("next_delay", "5"),
    ),
    Bad(
        "trigger-next-delay-negative",
        call(host().trigger, Rec, next_delay=-SEC),
        ValueError,
        ("next_delay", "negative"),
    ),
    Bad(
        "trigger-both",
        call(host().trigger, Rec, NextExecution.RESET, next_delay=SEC),
        ValueError,
        ("strategy", "next_delay"),
    ),
    Bad(
        "trigger-not-triggerable",
        call(host().trigger, Plain),
        TypeError,
        ("Plain", "TriggerableJob"),
    ),
    Bad("trigger-name-str", call(host().trigger, "Rec"), TypeError, ("job", "'Rec'")),
    Bad("trigger-int", call(host().trigger, 5), TypeError, ("job", "5")),
    Bad("trigger-for-int", call(host().trigger_for, 5), TypeError, ("job_class", "5")),
    Bad("trigger-for-plain", call(host().trigger_for, Plain), TypeError, ("job_class", "Plain")),
    Bad("trigger-for-instance", call(host().trigger_for, rec()), TypeError, ("job_class", "Rec")),
    Bad("trigger-distributed-int", call(host().trigger_distributed, 5), TypeError, ("name", "5")),
    Bad(
        "trigger-distributed-empty",
        call(host().trigger_distributed, ""),
        ValueError,
        ("name", "''"),
    ),
    Bad(
        "trigger-distributed-long",
        call(host().trigger_distributed, "x" * 201),
        ValueError,
        ("name", "200"),
    ),
    Bad(
        "trigger-distributed-trailing-space",
        call(host().trigger_distributed, "report "),
        ValueError,
        ("name", "end with a space"),
    ),
    Bad("subscribe-kind-int", call(host().subscribe, int, print), TypeError, ("kind", "int")),
    Bad("subscribe-handler", call(host().subscribe, JobFailed, 5), TypeError, ("handler", "5")),
    Bad("recurjobs-jobs", call(RecurJobs, jobs=5), TypeError, ("jobs", "5")),
    # ------------------------------------------------------------ CancellationToken
    Bad("token-wait-negative", call(CancellationToken().wait, -1), ValueError, ("timeout", "-1")),
    Bad("token-wait-str", call(CancellationToken().wait, "1"), TypeError, ("timeout", "'1'")),
    Bad("token-wait-bool", call(CancellationToken().wait, True), TypeError, ("timeout", "True")),
    Bad("token-wait-nan", call(CancellationToken().wait, NAN), ValueError, ("timeout", "nan")),
    Bad(
        "token-wait-negative-timedelta",
        call(CancellationToken().wait, -SEC),
        ValueError,
        ("timeout", "days=-1"),
    ),
    Bad("token-clock", call(CancellationToken, clock=5), TypeError, ("clock", "5")),
    # --------------------------------------------------------------------- MainDom
    Bad("maindom-key-int", call(MainDom, 5), TypeError, ("key", "5")),
    Bad("maindom-key-empty", call(MainDom, ""), ValueError, ("key", "''")),
    Bad("maindom-directory-int", call(MainDom, "k", directory=5), TypeError, ("directory", "5")),
    Bad(
        "maindom-directory-empty", call(MainDom, "k", directory=""), ValueError, ("directory", "''")
    ),
    Bad(
        "maindom-automatic-directory",
        call(MainDom.automatic, b"/tmp"),
        TypeError,
        ("directory", "b'/tmp'"),
    ),
    # ----------------------------------------------------------------- ManualClock
    Bad("clock-start-naive", call(MC, datetime(2026, 1, 1)), ValueError, ("start", "2026")),
    Bad("clock-start-str", call(MC, "2026-01-01"), TypeError, ("start", "'2026-01-01'")),
    Bad("advance-negative", call(MC().advance, -1), ValueError, ("delta", "-1")),
    Bad("advance-negative-timedelta", call(MC().advance, -SEC), ValueError, ("delta", "-1")),
    Bad("advance-str", call(MC().advance, "1"), TypeError, ("delta", "'1'")),
    Bad("advance-bool", call(MC().advance, True), TypeError, ("delta", "True")),
    Bad("advance-nan", call(MC().advance, NAN), ValueError, ("delta", "nan")),
    Bad("advance-inf", call(MC().advance, math.inf), ValueError, ("delta", "inf")),
    Bad(
        "advance-past-year-9999",
        call(MC().advance, timedelta(days=3_000_000)),
        ValueError,
        ("delta", "9999"),
    ),
    Bad("advance-huge-float", call(MC().advance, 1e300), ValueError, ("delta", "1e+300")),
    Bad(
        "step-wall-clock-past-year-9999",
        call(MC().step_wall_clock, timedelta.max),
        ValueError,
        ("delta", "9999"),
    ),
    Bad("waiters-count-str", call(MC().wait_for_waiters, "1"), TypeError, ("count", "'1'")),
    Bad("waiters-count-negative", call(MC().wait_for_waiters, -1), ValueError, ("count", "-1")),
    Bad("waiters-count-bool", call(MC().wait_for_waiters, True), TypeError, ("count", "True")),
    Bad("waiters-timeout-str", call(MC().wait_for_waiters, 1, "5"), TypeError, ("timeout", "'5'")),
    Bad(
        "waiters-timeout-negative",
        call(MC().wait_for_waiters, 1, -1),
        ValueError,
        ("timeout", "-1"),
    ),
    Bad("waiters-timeout-nan", call(MC().wait_for_waiters, 1, NAN), ValueError, ("timeout", "nan")),
    # ---------------------------------------------------------------------- Signal
    Bad("signal-connect-int", call(Signal().connect, 5), TypeError, ("fn", "5")),
    Bad("signal-connect-None", call(Signal().connect, None), TypeError, ("fn", "None")),
    # ------------------------------------------------------------------- sql store
    Bad("store-database-int", store(5), TypeError, ("database", "5")),
    Bad(
        "store-prefix-dash",
        store(table_prefix="bad-prefix"),
        ValueError,
        ("table_prefix", "'bad-prefix'"),
    ),
    Bad("store-prefix-int", store(table_prefix=5), TypeError, ("table_prefix", "5")),
    Bad("store-not-url", store("not a url"), ValueError, ("database", "not a url")),
    Bad("store-oracle", store("oracle://u@h/db"), ValueError, ("database", "oracle")),
    Bad("store-retry", store(retry="fast"), TypeError, ("retry", "'fast'")),
    Bad("roles-database-int", call(DSR, 5), TypeError, ("database", "5")),
    Bad(
        "roles-identity-empty", call(DSR, "sqlite://", identity=""), ValueError, ("identity", "''")
    ),
    Bad("roles-identity-int", call(DSR, "sqlite://", identity=5), TypeError, ("identity", "5")),
    Bad(
        "roles-address-long",
        call(DSR, "sqlite://", address="a" * 256),
        ValueError,
        ("address", "255"),
    ),
    Bad(
        "roles-touch-zero",
        call(DSR, "sqlite://", touch_interval=timedelta(0)),
        ValueError,
        ("touch_interval", "zero"),
    ),
    Bad(
        "roles-touch-str",
        call(DSR, "sqlite://", touch_interval="60"),
        TypeError,
        ("touch_interval", "'60'"),
    ),
    Bad(
        "roles-stale-short",
        call(DSR, "sqlite://", stale_timeout=30 * SEC),
        ValueError,
        ("stale_timeout", "touch_interval"),
    ),
    Bad(
        "roles-retention-short",
        call(DSR, "sqlite://", retention=60 * SEC),
        ValueError,
        ("retention", "stale_timeout"),
    ),
    Bad(
        "roles-prefix",
        call(DSR, "sqlite://", table_prefix="x y"),
        ValueError,
        ("table_prefix", "'x y'"),
    ),
    Bad("roles-not-url", call(DSR, "not a url"), ValueError, ("database", "not a url")),
]


def _params(cases: list[Bad]) -> list[object]:
    return [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        )
        for c in cases
    ]


@pytest.mark.parametrize("case", _params(API))
def test_api_rejects_bad_input(case: Bad) -> None:
    """The call raises the expected exception type, and its message names the parameter (and
    the value where that helps)."""
    with pytest.raises(Exception) as info:
        case.call()
    message = str(info.value)
    assert (case.error, []) == (
        case.error if isinstance(info.value, case.error) else type(info.value),
        [text for text in case.says if text not in message],
    ), message


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (call(R, -SEC), True),
        (call(rec, ignored_delay=-SEC), True),
        (call(S, poll_period=-SEC), False),
        (call(S, delay=-SEC), False),
        (call(S, max_execution_time=-SEC), False),
        (call(D, name="a", period=-SEC), False),
        (call(DSR, "sqlite://", touch_interval=-SEC), False),
    ],
    ids=[
        "job-period",
        "job-ignored-delay",
        "settings-poll",
        "settings-delay",
        "settings-max-exec",
        "distributed-period",
        "roles-touch",
    ],
)
def test_infinite_is_suggested_only_where_allowed(
    call: Callable[[], object], expected: bool
) -> None:
    """A negative duration's message suggests INFINITE only for parameters that accept it."""
    with pytest.raises(ValueError) as info:
        call()
    assert expected == ("INFINITE" in str(info.value))


# ---------------------------------------------------------------------------- the CLI
LONG = "x" * 201
CLI: list[tuple[str, list[str], str]] = [
    ("no-command", [], "required"),
    ("unknown-command", ["frobnicate"], "invalid choice"),
    (
        "unknown-option",
        ["status", "--database", "sqlite://", "--frob"],
        "unrecognized arguments: --frob",
    ),
    ("status-no-database", ["status"], "--database URL is required"),
    ("status-database-no-value", ["status", "--database"], "expected one argument"),
    ("status-not-url", ["status", "--database", "not a url"], "not a database URL"),
    (
        "status-port-word",
        ["status", "--database", "postgresql+psycopg://u:p@localhost:notaport/db"],
        "port",
    ),
    (
        "status-port-huge",
        ["status", "--database", "postgresql+psycopg://u:p@localhost:70000/db"],
        "70000",
    ),
    ("status-port-zero", ["status", "--database", "mysql+pymysql://u:p@localhost:0/db"], "port 0"),
    ("status-oracle", ["status", "--database", "oracle://u:p@localhost/db"], "oracle"),
    ("status-postgres", ["status", "--database", "postgres://u:p@localhost/db"], "postgresql://"),
    (
        "status-unknown-driver",
        ["status", "--database", "mysql+nosuch://u@localhost/db"],
        "unknown driver",
    ),
    ("status-unknown-dialect", ["status", "--database", "nosuchdb://x/y"], "unsupported database"),
    ("status-bracket", ["status", "--database", "postgresql://u:p@[::1/db"], "port"),
    (
        "status-sqlite-missing",
        ["status", "--database", "sqlite:////nonexistent/jobs.db"],
        "no SQLite database file",
    ),
    ("status-no-table", ["status", "--database", "sqlite://"], "no table recurjobs_jobs"),
    (
        "status-prefix-dash",
        ["status", "--database", "sqlite://", "--table-prefix", "bad-prefix"],
        "--table-prefix must be",
    ),
    (
        "status-prefix-empty",
        ["status", "--database", "sqlite://", "--table-prefix", ""],
        "--table-prefix must be",
    ),
    (
        "status-prefix-digit",
        ["status", "--database", "sqlite://", "--table-prefix", "1abc"],
        "'1abc'",
    ),
    (
        "status-prefix-long",
        ["status", "--database", "sqlite://", "--table-prefix", "p" * 41],
        "1-40",
    ),
    (
        "status-prefix-space",
        ["status", "--database", "sqlite://", "--table-prefix", "a b"],
        "'a b'",
    ),
    (
        "status-json-value",
        ["status", "--database", "sqlite://", "--json=yes"],
        "ignored explicit argument",
    ),
    ("trigger-no-name", ["trigger", "--database", "sqlite://"], "NAME"),
    ("trigger-empty-name", ["trigger", "--database", "sqlite://", ""], "NAME must be a job name"),
    ("trigger-long-name", ["trigger", "--database", "sqlite://", LONG], "1 to 200 characters"),
    ("trigger-space", ["trigger", "--database", "sqlite://", "report "], "end with a space"),
    (
        "trigger-two-names",
        ["trigger", "--database", "sqlite://", "a", "b"],
        "unrecognized arguments",
    ),
    ("trigger-oracle", ["trigger", "--database", "oracle://u@h/db", "a"], "oracle"),
    ("trigger-no-table", ["trigger", "--database", "sqlite://", "a"], "no table"),
    ("prune-nothing", ["prune", "--database", "sqlite://"], "prune needs --keep"),
    (
        "prune-older-negative",
        ["prune", "--database", "sqlite://", "--older-than", "-5m"],
        "--older-than must be a positive duration",
    ),
    ("prune-older-negative-eq", ["prune", "--database", "sqlite://", "--older-than=-5m"], "'-5m'"),
    ("prune-older-zero", ["prune", "--database", "sqlite://", "--older-than", "0"], "'0'"),
    (
        "prune-older-huge",
        ["prune", "--database", "sqlite://", "--older-than", "100000000000d"],
        "'100000000000d'",
    ),
    ("prune-older-unit", ["prune", "--database", "sqlite://", "--older-than", "7x"], "'7x'"),
    (
        "prune-older-empty",
        ["prune", "--database", "sqlite://", "--older-than", ""],
        "positive duration",
    ),
    (
        "prune-older-words",
        ["prune", "--database", "sqlite://", "--older-than", "a week"],
        "'a week'",
    ),
    (
        "prune-keep-none",
        ["prune", "--database", "sqlite://", "--keep"],
        "expected at least one argument",
    ),
    (
        "prune-keep-empty",
        ["prune", "--database", "sqlite://", "--keep", ""],
        "--keep must be a job name",
    ),
    ("prune-port", ["prune", "--database", "postgresql://u@h:-1/db", "--keep", "a"], "port"),
    ("run-no-target", ["run"], "MODULE:ATTR"),
    ("run-no-colon", ["run", "jobs"], "expected MODULE:ATTR"),
    ("run-no-module", ["run", ":host"], "expected MODULE:ATTR"),
    ("run-no-attr", ["run", "tests.apps.cli_host:"], "expected MODULE:ATTR"),
    ("run-missing-module", ["run", "tests.apps.nothing_here:host"], "cannot import"),
    ("run-missing-attr", ["run", "tests.apps.cli_host:missing"], "has no attribute missing"),
    ("run-not-a-host", ["run", "tests.apps.cli_host:not_a_host"], "is not a JobHost"),
    (
        "run-stop-timeout-negative",
        ["run", "tests.apps.cli_host:host", "--stop-timeout", "-1"],
        "--stop-timeout must be",
    ),
    (
        "run-stop-timeout-word",
        ["run", "tests.apps.cli_host:host", "--stop-timeout", "soon"],
        "'soon'",
    ),
    ("run-stop-timeout-nan", ["run", "tests.apps.cli_host:host", "--stop-timeout", "nan"], "'nan'"),
    ("run-log-level", ["run", "tests.apps.cli_host:host", "--log-level", "LOUD"], "invalid choice"),
    ("demo-seconds-negative", ["demo", "--seconds", "-3"], "--seconds must be"),
    ("demo-seconds-word", ["demo", "--seconds", "x"], "'x'"),
]


@pytest.mark.parametrize(("argv", "says"), [pytest.param(a, s, id=i) for i, a, s in CLI])
def test_cli_rejects_bad_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """Bad input to the command exits with 2 and prints exactly one line, no traceback."""
    monkeypatch.delenv("RECURJOBS_DATABASE_URL", raising=False)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code if isinstance(exc.code, int) else -1
    out, err = capsys.readouterr()
    assert (2, "", 1, False) == (code, out, len(err.splitlines()), "Traceback" in err), err
    assert says in err


@pytest.mark.parametrize("command", ["status", "dashboard"])
def test_cli_url_from_environment_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A bad URL from $RECURJOBS_DATABASE_URL is reported as coming from there."""
    monkeypatch.setenv("RECURJOBS_DATABASE_URL", "oracle://u:secret@h/db")
    assert 2 == main([command])
    err = capsys.readouterr().err
    assert err.startswith("recurjobs: error: $RECURJOBS_DATABASE_URL names the unsupported")
    assert "secret" not in err


def test_cli_masks_a_password_given_as_a_query_parameter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """?password=... in --database never shows in the command's error."""
    assert 1 == main(["status", "--database", "postgresql+psycopg://u@127.0.0.1:1/db?password=s3cr3t"])
    err = capsys.readouterr().err
    assert ("s3cr3t" in err, "password=***" in err) == (False, True)


# ------------------------------------------------------------------ Flask config keys
FLASK: list[tuple[str, object]] = [
    ("RECURJOBS_AUTOSTART", "maybe"),
    ("RECURJOBS_AUTOSTART", 2),
    ("RECURJOBS_AUTOSTART", None),
    ("RECURJOBS_AUTOSTART", 1.0),
    ("RECURJOBS_LOG_TO_GUNICORN", "sometimes"),
    ("RECURJOBS_LOG_TO_GUNICORN", 5),
    ("RECURJOBS_ELECT_SERVER_ROLE", "maybe"),
    ("RECURJOBS_ELECT_SERVER_ROLE", 3),
    ("RECURJOBS_ELECT_SERVER_ROLE", True),  # without RECURJOBS_DATABASE_URL
    ("RECURJOBS_MAIN_DOM", 3),
    ("RECURJOBS_MAIN_DOM", []),
    ("RECURJOBS_MAIN_DOM", ""),
    ("RECURJOBS_MAIN_DOM", 2.5),
    ("RECURJOBS_MAIN_DOM_DIRECTORY", 5),
    ("RECURJOBS_MAIN_DOM_DIRECTORY", ""),
    ("RECURJOBS_MAIN_DOM_DIRECTORY", b"/tmp"),
    ("RECURJOBS_SERVER_ROLE", "boss"),
    ("RECURJOBS_SERVER_ROLE", 5),
    ("RECURJOBS_SERVER_ROLE", None),
    ("RECURJOBS_POLL_PERIOD", "soon"),
    ("RECURJOBS_POLL_PERIOD", -5),
    ("RECURJOBS_POLL_PERIOD", 0),
    ("RECURJOBS_POLL_PERIOD", math.nan),
    ("RECURJOBS_POLL_PERIOD", math.inf),
    ("RECURJOBS_POLL_PERIOD", "0s"),
    ("RECURJOBS_POLL_PERIOD", timedelta(days=400)),
    ("RECURJOBS_POLL_PERIOD", [5]),
    ("RECURJOBS_POLL_PERIOD", True),
    ("RECURJOBS_POLL_PERIOD", 1e300),
    ("RECURJOBS_DELAY", "-1m"),
    ("RECURJOBS_DELAY", -1),
    ("RECURJOBS_DELAY", INFINITE),
    ("RECURJOBS_MAX_EXECUTION_TIME", 0),
    ("RECURJOBS_MAX_EXECUTION_TIME", "x"),
    ("RECURJOBS_MAX_EXECUTION_TIME", None),
    ("RECURJOBS_MAX_CONCURRENT_JOBS", 0),
    ("RECURJOBS_MAX_CONCURRENT_JOBS", 1.5),
    ("RECURJOBS_MAX_CONCURRENT_JOBS", "x"),
    ("RECURJOBS_MAX_CONCURRENT_JOBS", -1),
    ("RECURJOBS_MAX_CONCURRENT_JOBS", True),
    ("RECURJOBS_MAX_CONCURRENT_JOBS", ""),
    ("RECURJOBS_TABLE_PREFIX", "bad-prefix"),
    ("RECURJOBS_TABLE_PREFIX", 5),
    ("RECURJOBS_TABLE_PREFIX", ""),
    ("RECURJOBS_TABLE_PREFIX", "1abc"),
    ("RECURJOBS_TABLE_PREFIX", None),
    ("RECURJOBS_DATABASE_URL", 42),
    ("RECURJOBS_DATABASE_URL", b"sqlite://"),
    ("RECURJOBS_DATABASE_URL", "not a url"),
    ("RECURJOBS_DATABASE_URL", "oracle://u:p@h/db"),
    ("RECURJOBS_DATABASE_URL", "postgres://u:p@h/db"),
    ("RECURJOBS_DATABASE_URL", "postgresql://u:p@h:notaport/db"),
    ("RECURJOBS_DATABASE_URL", "postgresql://u:p@h:123456/db"),
]


@pytest.mark.parametrize(
    ("key", "value"), [pytest.param(k, v, id=f"{k[10:]}={v!r}") for k, v in FLASK]
)
def test_flask_config_rejects_bad_values(tmp_path: Path, key: str, value: object) -> None:
    """``init_app`` raises ValueError or TypeError naming the key; with autostart on (the
    default), no host is stored and no thread started."""
    app = Flask("bad_config")
    app.config.update(RECURJOBS_MAIN_DOM=False, RECURJOBS_LOG_TO_GUNICORN=False)
    app.config[key] = value
    before = set(threading.enumerate())
    with pytest.raises((ValueError, TypeError)) as info:
        RecurJobs(app, jobs=[Plain(timedelta(hours=1))])
    started = [t.name for t in set(threading.enumerate()) - before]
    assert (True, {}, []) == (
        key in str(info.value),
        app.extensions.get("recurjobs", {}),
        started,
    ), str(info.value)


def test_counts() -> None:
    """The tables hold at least 110 distinct bad inputs (issue 9 asks for 100)."""
    ids = [c.id for c in API] + [i for i, _, _ in CLI] + [f"{k}={v!r}" for k, v in FLASK]
    assert (True, len(ids)) == (len(ids) >= 110, len(set(ids)))


@pytest.mark.parametrize("timeout", [math.inf, 1e20, timedelta.max], ids=["inf", "1e20", "max"])
def test_huge_timeouts_mean_no_limit(timeout: float | timedelta) -> None:
    """A timeout beyond the platform's longest wait waits without limit instead of overflowing."""
    token = CancellationToken()
    timer = threading.Timer(0.05, token.cancel)
    timer.start()
    try:
        assert True is token.wait(timeout)
    finally:
        timer.cancel()
    with JobHost([rec()]) as running:
        assert True is running.stop(timeout)  # type: ignore[arg-type]


class _NoWait:
    def now(self) -> datetime:
        return datetime.now()

    def monotonic(self) -> float:
        return 0.0


class _DuckClock(_NoWait):
    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)


def test_a_token_checks_its_clock_every_time_even_after_a_good_one() -> None:
    """The clock check is remembered per class that has all three methods, so a class that
    lacks one is refused however many good clocks came before, and an instance whose class
    passed is accepted without the protocol walk."""
    for _ in range(3):
        assert not CancellationToken(_DuckClock()).is_cancelled()
        for bad in (_NoWait(), object(), 5):
            with pytest.raises(TypeError, match="clock must provide"):
                CancellationToken(bad)  # type: ignore[arg-type]
    from recurjobs._clock import _CLOCK_CLASSES

    assert (True, False) == (_DuckClock in _CLOCK_CLASSES, _NoWait in _CLOCK_CLASSES)
