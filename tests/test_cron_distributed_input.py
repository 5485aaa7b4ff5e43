"""DistributedJob with a Cron: what is accepted, and a clear error for what is not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from recurjobs import CancellationToken, Cron, DistributedJob, JobHost

DAILY = Cron("0 3 * * *", tz="Europe/Amsterdam")


class KeywordJob(DistributedJob):
    """Everything from the constructor's keywords."""

    def execute(self, token: CancellationToken) -> None:
        """Nothing to do."""


class ClassStyleJob(DistributedJob):
    """The model's style: name and schedule as class attributes."""

    name = "nightly"
    period = DAILY

    def execute(self, token: CancellationToken) -> None:
        """Nothing to do."""


class DuckJob:
    """Not a DistributedJob subclass, but shaped like one."""

    def __init__(self, period: object, align_to_clock: object = False) -> None:
        self.name = "duck"
        self.period = period
        self.align_to_clock = align_to_clock

    def execute(self, token: CancellationToken) -> None:
        """Nothing to do."""


def test_a_cron_is_accepted_as_a_distributed_job_s_period_in_every_style() -> None:
    """Keyword, class-attribute and duck-typed distributed jobs take a Cron for period."""
    keyword = KeywordJob(name="k", period=DAILY)
    host = JobHost([keyword, ClassStyleJob(), DuckJob(DAILY)], database="sqlite://")
    assert [DAILY, DAILY, DAILY] == [getattr(j, "period") for j in host.jobs]  # noqa: B009


MINUTES, HOURS = ",".join(map(str, range(60))), ",".join(map(str, range(24)))
LONG = Cron(f"{MINUTES} {HOURS} {','.join(map(str, range(1, 32)))} * *")  # 300 characters
CASES: list[tuple[str, Callable[[], object], type[Exception], tuple[str, ...]]] = [
    (
        "align-with-cron",
        lambda: KeywordJob(name="k", period=DAILY, align_to_clock=True),
        ValueError,
        ("align_to_clock", "Cron('0 3 * * *'"),
    ),
    (
        "duck-align-with-cron",
        lambda: JobHost([DuckJob(DAILY, align_to_clock=True)], database="sqlite://"),
        ValueError,
        ("align_to_clock", "Cron("),
    ),
    (
        "cron-as-a-string",
        lambda: KeywordJob(name="k", period="0 3 * * *"),  # type: ignore[arg-type]
        TypeError,
        ("period", "'0 3 * * *'"),
    ),
    (
        "cron-too-long-to-store",
        lambda: KeywordJob(name="k", period=LONG),
        ValueError,
        ("period", "255"),
    ),
    (
        "duck-zero-period-still-refused",
        lambda: JobHost([DuckJob(timedelta(0))], database="sqlite://"),
        ValueError,
        ("period",),
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_distributed_cron_input_is_refused_at_the_call(
    make: Callable[[], object], error: type[Exception], words: tuple[str, ...]
) -> None:
    """Each bad combination raises the expected error naming the parameter and value."""
    with pytest.raises(error) as raised:
        make()
    message = str(raised.value)
    assert [True] * len(words) == [w in message for w in words], message
