"""The type checker guards triggering: only TriggerableJob classes type-check (SPEC 3).

One mypy run checks every snippet (each mypy start costs many CPU seconds), so the tests share
it and stay on one xdist worker. It took over 150 s of wall time on a machine busy with other
tests, hence the long timeouts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.xdist_group("mypy"), pytest.mark.slow]

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

# Snippet module name -> the extra line it ends with.
SNIPPETS = {
    "snippet_ok": "",
    "snippet_trigger": "host.trigger(Plain)",
    "snippet_trigger_for": "host.trigger_for(Plain)",
}


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Snippet module name -> mypy's error lines about it, from one strict run over all."""
    directory = tmp_path_factory.mktemp("typing")
    paths = []
    for name, bad in SNIPPETS.items():
        path = directory / f"{name}.py"
        path.write_text(textwrap.dedent(SNIPPET.format(bad=bad)))
        paths.append(str(path))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file=", *paths],
        capture_output=True, text=True, timeout=420,
        preexec_fn=lambda: os.nice(10),  # CPU-bound: let timing-sensitive tests go first
    )  # fmt: skip
    errors: dict[str, list[str]] = {name: [] for name in SNIPPETS}
    for line in result.stdout.splitlines():
        name = Path(line.split(":", 1)[0]).stem
        if name in errors and ": error:" in line:
            errors[name].append(line)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy itself failed
    return errors


@pytest.mark.timeout(480)
def test_correct_trigger_calls_type_check(mypy_errors: dict[str, list[str]]) -> None:
    """Triggering a TriggerableJob class, directly or through trigger_for, type-checks."""
    assert [] == mypy_errors["snippet_ok"]


@pytest.mark.timeout(480)
@pytest.mark.parametrize("name", ["snippet_trigger", "snippet_trigger_for"])
def test_triggering_a_job_without_the_mixin_is_a_type_error(
    mypy_errors: dict[str, list[str]], name: str
) -> None:
    """Triggering a job class that lacks TriggerableJob is rejected by mypy."""
    errors = mypy_errors[name]
    assert 1 == len(errors), errors
    assert 'Value of type variable "TJ"' in errors[0]
