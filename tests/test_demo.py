"""The demo: double runs are counted from intervals, and a short demo runs end to end."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from recurjobs import _demo
from tests.apps.procs import child_env, python


def runs(*spans: tuple[float, float]) -> list[dict[str, Any]]:
    """Run records as the demo's workers report them."""
    return [{"worker": "A", "start": start, "end": end} for start, end in spans]


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([], 0),
        ([(0, 1), (2, 3), (4, 5)], 0),
        ([(0, 1), (1, 2)], 0),
        ([(0, 2), (1, 3)], 1),
        ([(4, 5), (0, 10), (2, 3)], 2),
    ],
)
def test_overlaps_counts_runs_starting_before_another_ended(
    spans: list[tuple[float, float]], expected: int
) -> None:
    """A run that starts before an earlier run ended is one double run; touching is not."""
    assert expected == _demo.overlaps(runs(*spans))


def test_worker_needs_database_and_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    """The hidden worker mode refuses to start without its arguments (exit 2)."""
    assert 2 == _demo.worker("A", None, None)
    assert "--worker needs --database and --seconds" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_short_demo_runs_both_parts_without_double_runs(tmp_path: Path) -> None:
    """`python -m recurjobs demo --seconds 6` runs both parts and reports 0 double runs."""
    done = subprocess.run(
        [python(), "-m", "recurjobs", "demo", "--seconds", "6"],
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=80,
    )
    out = done.stdout
    assert 0 == done.returncode, done.stderr  # stderr may hold retry warnings under load
    assert "host.trigger(Report, NextExecution.RESET) -> True" in out
    assert "double runs: 0 " in out
    summary = re.search(r"demo-sweep ran (\d+) times: worker A (\d+), worker B (\d+)", out)
    assert summary is not None
    total, a, b = (int(n) for n in summary.groups())
    assert total == a + b
    assert total >= 3
    assert total == out.count("ran demo-sweep")
