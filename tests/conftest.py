"""Shared fixtures (a manual clock; database fixtures come from tests/dbs.py) and the plan for
parallel runs with pytest-xdist (``make test`` runs ``pytest -n auto``).

Parallel runs:

- ``-n auto`` means :func:`default_workers` processes, or ``PYTEST_XDIST_AUTO_NUM_WORKERS``
  when set, or none at all when every argument names single tests (``tests/x.py::test_y``):
  starting workers would cost more than it saves.
- Tests are spread with ``--dist loadgroup`` (unless ``--dist`` is given): tests marked
  ``@pytest.mark.xdist_group("name")`` run on one worker, one after another; the others go to
  whichever worker is free.
- The longest tests start first, so they do not end up as the last ones, running alone: tests
  marked ``slow`` or ``xdist_group`` (longest ``timeout`` mark first), then ``multiprocess``
  ones, then the rest.
  See :func:`pytest_collection_modifyitems`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from recurjobs.testing import ManualClock

pytest_plugins = ["tests.dbs"]

# Tests mostly wait for other processes and real database servers (the whole suite uses about
# a third of one core on average), so twice as many workers as cores keep them busy. More
# than 8 would only crowd the database servers and the timing-sensitive tests.
_WORKERS_PER_CORE = 2
_MAX_WORKERS = 8


class _PatientClock(ManualClock):
    """A ManualClock whose ``wait_for_waiters`` waits 30 real seconds by default, not 5: on a
    machine busy with other tests a thread may take seconds to reach its wait."""

    def wait_for_waiters(self, count: int, timeout: float = 30.0) -> None:
        super().wait_for_waiters(count, timeout)


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    """A fresh ManualClock for one test."""
    yield _PatientClock()


def default_workers() -> int:
    """How many xdist workers ``-n auto`` starts on this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(_MAX_WORKERS, _WORKERS_PER_CORE * cores))


def _names_single_tests(config: pytest.Config) -> bool:
    """Whether the command line selects tests by node id only (``file.py::test``)."""
    return bool(config.args) and all("::" in arg for arg in config.args)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which may not be installed
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """The number of workers for ``-n auto`` (pytest-xdist's hook; ours wins over its own)."""
    if _names_single_tests(config):
        return 0
    wanted = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()
    return int(wanted) if wanted else default_workers()


def pytest_cmdline_main(config: pytest.Config) -> None:
    """With workers, spread by ``loadgroup`` in our order. Runs after xdist's own (tryfirst)
    has read ``-n``, and before pytest's, which runs the session (this hook's first result
    ends it, so this one must not be trylast)."""
    if not getattr(config.option, "numprocesses", None):
        return
    given = config.invocation_params.args
    if config.option.dist == "load" and not any(str(a).startswith("--dist") for a in given):
        config.option.dist = "loadgroup"
    if "--loadscope-reorder" not in given:
        config.option.loadscopereorder = False  # keep the order made below


def _expected_length(item: pytest.Item) -> float:
    """A test's ``timeout`` mark in seconds: the best guess of its length there is."""
    mark = item.get_closest_marker("timeout")
    if mark is None:
        return 0.0
    seconds = mark.args[0] if mark.args else mark.kwargs.get("timeout", 0.0)
    return float(seconds or 0.0)


def _group_of(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return None
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))


def _tier(unit: list[pytest.Item]) -> int:
    """0: slow tests and groups (a group runs as one unit: it adds up); 1: other tests that
    start processes; 2: the rest."""
    if len(unit) > 1 or any(item.get_closest_marker("slow") for item in unit):
        return 0
    if any(item.get_closest_marker("multiprocess") for item in unit):
        return 1
    return 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, order the tests for the scheduler: long ones first.

    xdist hands out units (a test, or all tests of one ``xdist_group``) in this order: two to
    each worker at first, then one more whenever a worker has at most two tests queued. So a
    worker starts with units ``i`` and ``n + i``: the ``n`` longest units come first, then
    ``n`` short ones, so no long unit waits behind another; the remaining long units follow,
    then everything else in collection order. Every worker collects the same items and
    computes the same order, as xdist requires.
    """
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return  # a plain run keeps pytest's order (module fixtures are set up once)
    workers = int(workerinput.get("workercount", 1))
    units: list[list[pytest.Item]] = []
    grouped: dict[str, list[pytest.Item]] = {}
    for item in items:
        group = _group_of(item)
        if group is None:
            units.append([item])
        elif group in grouped:
            grouped[group].append(item)
        else:
            grouped[group] = [item]
            units.append(grouped[group])
    units.sort(key=lambda unit: (_tier(unit), -max(_expected_length(item) for item in unit)))
    long = [unit for unit in units if _tier(unit) < 2]
    short = [unit for unit in units if _tier(unit) == 2]
    ordered = long[:workers] + short[:workers] + long[workers:] + short[workers:]
    items[:] = [item for unit in ordered for item in unit]
