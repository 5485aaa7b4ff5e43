"""Table-driven tests of the pure schedule math (SPEC section 3), in plain minutes."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from recurjobs._schedule import NextExecution, Plan, after_run, after_trigger, initial

INF = math.inf
NONE, RESET, REPLACE = NextExecution.NONE, NextExecution.RESET, NextExecution.REPLACE


@pytest.mark.parametrize(
    ("planned", "start", "end", "period", "expected"),
    [
        pytest.param(0, 0.002, 0.1, 5, Plan(5, 0, False), id="normal-cadence"),
        pytest.param(10, 10, 10, 5, Plan(15, 10, False), id="zero-duration-run"),
        pytest.param(0, 0, 5, 5, Plan(5, 0, False), id="run-ends-exactly-on-next-tick"),
        pytest.param(0, 0, 7, 5, Plan(7, 0, True), id="overrun-one-tick-runs-once-at-once"),
        pytest.param(0, 0, 23, 5, Plan(23, 0, True), id="overrun-many-ticks-no-burst"),
        pytest.param(0, 0, 0.1, INF, Plan(INF, 0, False), id="infinite-period-waits"),
        pytest.param(0, 0, 0.1, 0, Plan(0.1, 0, True), id="zero-period-back-to-back"),
        pytest.param(10, 25, 25, 10, Plan(35, 25, False), id="started-a-period-late-re-anchors"),
        pytest.param(0, 0.5, 0.6, 1, Plan(1, 0, False), id="started-late-keeps-the-plan"),
    ],
)
def test_after_run(
    planned: float, start: float, end: float, period: float, expected: Plan
) -> None:
    """An automatic run is followed one period after its plan, or at once after an overrun."""
    assert expected == after_run(planned, start, end, period)


def test_overrun_re_anchors_at_the_catch_up_run() -> None:
    """After the one catch-up run the cadence counts from that run's start."""
    catch_up = after_run(0, 0, 7, 5)
    assert Plan(12, 7, False) == after_run(catch_up.next, catch_up.next, 7.5, 5)


def test_drift_free_cadence_ignores_wake_up_latency() -> None:
    """Late starts never accumulate: the 1000th plan is start + 999 periods."""
    plan = initial(0, 0)
    for _ in range(999):
        plan = after_run(plan.next, plan.next + 0.004, plan.next + 0.005, 0.01)
    assert 999 * 0.01 == pytest.approx(plan.next)


@pytest.mark.parametrize(
    ("plan", "period", "expected"),
    [
        pytest.param(Plan(60, 0, False), 10, Plan(10, 0, False), id="shorter-period"),
        pytest.param(Plan(60, 0, False), 90, Plan(90, 0, False), id="longer-period"),
        pytest.param(Plan(INF, 0, False), 10, Plan(10, 0, False), id="infinite-to-finite"),
        pytest.param(Plan(10, 0, False), INF, Plan(INF, 0, False), id="finite-to-infinite"),
        pytest.param(Plan(30, None, True), 5, Plan(30, None, True), id="first-delay-stays"),
        pytest.param(Plan(25, None, True), 5, Plan(25, None, True), id="next-delay-stays"),
    ],
)
def test_period_change(plan: Plan, period: float, expected: Plan) -> None:
    """A period change re-plans anchor + new period; set moments are left alone."""
    assert expected == plan.with_period(period)


@pytest.mark.parametrize(
    ("plan", "strategy", "next_delay", "tr", "end", "expected_next"),
    [
        # SPEC's trigger table on a 60 min period, last automatic run at 0, trigger at 20.
        pytest.param(Plan(60, 0, False), NONE, None, 20, 20, 60, id="none-keeps-tick"),
        pytest.param(Plan(60, 0, False), NONE, None, 20, 70, 120, id="none-skips-overshot-tick"),
        pytest.param(Plan(60, 0, False), NONE, None, 20, 130, 130, id="none-past-two-ticks-now"),
        pytest.param(Plan(60, 0, False), RESET, None, 20, 20, 80, id="reset"),
        pytest.param(Plan(60, 0, False), RESET, None, 20, 90, 90, id="reset-overrun-now"),
        pytest.param(Plan(60, 0, False), REPLACE, None, 20, 20, 120, id="replace"),
        pytest.param(Plan(60, 0, False), REPLACE, None, 20, 125, 125, id="replace-overrun-now"),
        pytest.param(Plan(60, 0, False), NONE, 10, 20, 20, 30, id="next-delay"),
        pytest.param(Plan(60, 0, False), NONE, 10, 20, 35, 35, id="next-delay-overrun-now"),
        pytest.param(Plan(60, 0, False), NONE, INF, 20, 20, INF, id="next-delay-infinite"),
        # Initial delay of 30 min, trigger at 0.
        pytest.param(Plan(30, None, True), NONE, 5, 0, 0, 5, id="in-delay-next-delay"),
        pytest.param(Plan(30, None, True), NONE, None, 0, 0, 30, id="in-delay-none"),
        # INFINITE delay: the first trigger starts the schedule.
        pytest.param(Plan(INF, None, True), NONE, None, 20, 20, 80, id="infinite-delay-none"),
        pytest.param(Plan(INF, None, True), REPLACE, None, 20, 20, 80, id="inf-delay-replace"),
        pytest.param(Plan(INF, None, True), RESET, None, 20, 20, 80, id="infinite-delay-reset"),
        pytest.param(Plan(INF, None, True), NONE, 5, 20, 20, 25, id="inf-delay-next-delay"),
    ],
)
def test_after_trigger(
    plan: Plan,
    strategy: NextExecution,
    next_delay: float | None,
    tr: float,
    end: float,
    expected_next: float,
) -> None:
    """Each row of SPEC's trigger table gives the next automatic run it promises."""
    result = after_trigger(
        plan,
        strategy=strategy,
        next_delay=next_delay,
        triggered_at=tr,
        start=tr,
        end=end,
        period=60,
    )
    assert expected_next == result.next


@pytest.mark.parametrize(
    ("strategy", "tr", "run_end", "expected"),
    [
        # The automatic run at 0 of a 60 min job ran until run_end (past the tick at 60, so
        # a catch-up run was due); the trigger came at tr, and its run takes the catch-up's
        # place at run_end: one run there, then the table's next run, never two runs at once.
        pytest.param(NONE, 5, 70, Plan(120, 70, False), id="none-tick-60-overshot"),
        pytest.param(NONE, 62, 70, Plan(120, 70, False), id="none-trigger-after-tick"),
        pytest.param(REPLACE, 5, 70, Plan(120, 70, False), id="replace"),
        pytest.param(NONE, 5, 150, Plan(180, 150, False), id="none-two-ticks-missed"),
        pytest.param(RESET, 62, 70, Plan(122, 70, False), id="reset-counts-from-trigger"),
        pytest.param(RESET, 5, 70, Plan(130, 70, False), id="reset-waited-a-period"),
    ],
)
def test_trigger_during_an_overrun(
    strategy: NextExecution, tr: float, run_end: float, expected: Plan
) -> None:
    """A trigger that arrives during a run that overruns replaces the catch-up run."""
    catch_up = after_run(0, 0, run_end, 60)
    assert catch_up.fixed and catch_up.next == run_end
    result = after_trigger(
        catch_up,
        strategy=strategy,
        next_delay=None,
        triggered_at=tr,
        start=run_end,
        end=run_end,
        period=60,
    )
    assert expected == result


@pytest.mark.parametrize(
    ("strategy", "expected_next"),
    [pytest.param(NONE, 33, id="none"), pytest.param(REPLACE, 33, id="replace")],
)
def test_a_trigger_replaces_the_catch_up_of_a_passed_next_delay(
    strategy: NextExecution, expected_next: float
) -> None:
    """P=20: a next_delay=8 trigger at 5 whose run lasted until 25 passed its moment (13); a
    second trigger came meanwhile. Its run at 25 stands for the catch-up, and the grid is the
    moment's (13, 33, ...): next at 33, not a second run at 25."""
    passed = after_trigger(
        Plan(20, 0, False), strategy=NONE, next_delay=8, triggered_at=5, start=5, end=25,
        period=20,
    )
    assert (25, True) == (passed.next, passed.fixed)
    result = after_trigger(
        passed, strategy=strategy, next_delay=None, triggered_at=15, start=25, end=25,
        period=20,
    )
    assert expected_next == result.next


def test_a_period_changed_during_the_run_replacing_a_catch_up_counts_from_its_start() -> None:
    """P=60, run 0-70, trigger at 5; the triggered run 70-73 set the period to 8: next at
    70 + 8 = 78 (not a catch-up at 73 on the old grid)."""
    catch_up = after_run(0, 0, 70, 60)
    result = after_trigger(
        catch_up, strategy=NONE, next_delay=None, triggered_at=5, start=70, end=73, period=8,
        period_before=60,
    )
    assert Plan(78, 70, False) == result


def test_a_triggered_run_that_starts_at_the_tick_stands_for_it() -> None:
    """P=60: a run 0-60 ends exactly at the tick 60 and a NONE trigger waited: one run at 60
    (the triggered one), next at 120, never two runs at the same moment."""
    plan = after_run(0, 0, 60, 60)
    assert Plan(60, 0, False) == plan
    result = after_trigger(
        plan, strategy=NONE, next_delay=None, triggered_at=5, start=60, end=60, period=60
    )
    assert 120 == result.next


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        pytest.param(INF, Plan(INF, 75, False), id="period-now-infinite-waits"),
        pytest.param(120, Plan(195, 75, False), id="period-raised-no-tick-missed"),
        pytest.param(0, Plan(75, 75, False), id="period-now-zero-back-to-back"),
    ],
)
def test_a_catch_up_replaced_after_a_period_change(period: float, expected: Plan) -> None:
    """The run at 0 of a 60 min job lasted until 75 and a trigger came meanwhile; the period
    changed (without a signal) before the triggered run at 75 ended: never a second run at
    once; with no tick of the new period missed, the plan counts from the triggered run."""
    catch_up = after_run(0, 0, 75, 60)
    result = after_trigger(
        catch_up,
        strategy=NONE,
        next_delay=None,
        triggered_at=5,
        start=75,
        end=75,
        period=period,
    )
    assert expected == result


@pytest.mark.parametrize(
    ("strategy", "next_delay", "expected"),
    [
        pytest.param(NONE, None, 35, id="none"),
        pytest.param(REPLACE, None, 35, id="replace"),
        pytest.param(RESET, None, 35, id="reset"),
        pytest.param(NONE, 30, 50, id="next-delay-is-a-set-moment"),
    ],
)
def test_period_change_after_a_trigger_counts_from_the_triggered_run(
    strategy: NextExecution, next_delay: float | None, expected: float
) -> None:
    """Last automatic run at 0 of a 60 min job, triggered run at 20, period set to 15 at 25:
    the wait is re-planned from the last start (20), except for a next_delay's set moment."""
    plan = after_trigger(
        Plan(60, 0, False),
        strategy=strategy,
        next_delay=next_delay,
        triggered_at=20,
        start=20,
        end=20,
        period=60,
    )
    assert expected == plan.with_period(15).next


@pytest.mark.parametrize("strategy", [NONE, RESET, REPLACE])
def test_infinite_period_trigger_keeps_waiting(strategy: NextExecution) -> None:
    """With an INFINITE period a trigger never plans an automatic run."""
    result = after_trigger(
        Plan(INF, 0, False), strategy=strategy, next_delay=None, triggered_at=20, start=20,
        end=21, period=INF,
    )
    assert INF == result.next


def test_next_delay_then_normal_period() -> None:
    """After a next_delay run the normal period resumes from that run: 30, then 90."""
    plan = after_trigger(
        Plan(60, 0, False), strategy=NONE, next_delay=10, triggered_at=20, start=20, end=20,
        period=60,
    )
    assert [30, 90] == [plan.next, after_run(plan.next, plan.next, plan.next, 60).next]


def test_infinite_next_delay_restarts_schedule_on_next_trigger() -> None:
    """After next_delay=INFINITE the following trigger starts the schedule afresh."""
    waiting = after_trigger(
        Plan(60, 0, False), strategy=NONE, next_delay=INF, triggered_at=20, start=20, end=20,
        period=60,
    )
    again = after_trigger(
        waiting, strategy=NONE, next_delay=None, triggered_at=100, start=100, end=100, period=60
    )
    assert 160 == again.next


def test_initial_plan() -> None:
    """The first run comes delay after start; an INFINITE delay plans none."""
    assert (3.0, INF) == (initial(0, 3).next, initial(0, INF).next)


@pytest.mark.parametrize("module", ["_schedule.py"])
def test_pure_modules_import_no_threads_or_sql(module: str) -> None:
    """The schedule math imports neither threading nor sqlalchemy (layering guard)."""
    source = (Path(__file__).parent.parent / "recurjobs" / module).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert set() == imported & {"threading", "sqlalchemy", "time", "recurjobs"}


def test_importing_recurjobs_does_not_import_sqlalchemy() -> None:
    """Apps with only recurring jobs never load SQLAlchemy: the SQL side is imported lazily."""
    import subprocess
    import sys

    code = "import sys, recurjobs, recurjobs.testing; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "False" == out.stdout.strip(), out.stderr
