"""The type checker guards triggering: only TriggerableJob classes type-check (SPEC 3)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SNIPPET = """
from datetime import timedelta
from recurjobs import CancellationToken, JobHost, RecurringJob, TriggerableJob

class Plain(RecurringJob):
    def run(self, token: CancellationToken) -> None: ...

class Manual(RecurringJob, TriggerableJob):
    def run(self, token: CancellationToken) -> None: ...

host = JobHost([Plain(timedelta(minutes=1)), Manual(timedelta(minutes=1))])
ok: bool = host.trigger(Manual)
ok = host.trigger_for(Manual).trigger()
{bad}
"""


def _mypy(tmp_path: Path, bad: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(SNIPPET.format(bad=bad)))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file=",
         str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _snippet_errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if "snippet.py" in line and "error" in line]


@pytest.mark.timeout(180)
def test_correct_trigger_calls_type_check(tmp_path: Path) -> None:
    """Triggering a TriggerableJob class, directly or through trigger_for, type-checks."""
    result = _mypy(tmp_path, "")
    assert [] == _snippet_errors(result)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("bad", ["host.trigger(Plain)", "host.trigger_for(Plain)"])
def test_triggering_a_job_without_the_mixin_is_a_type_error(tmp_path: Path, bad: str) -> None:
    """Triggering a job class that lacks TriggerableJob is rejected by mypy."""
    errors = _snippet_errors(_mypy(tmp_path, bad))
    assert 1 == len(errors)
    assert 'Value of type variable "TJ"' in errors[0]
