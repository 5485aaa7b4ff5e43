"""The shop's jobs: one per machine (RefreshRates), one per cluster (NightlyReport)."""

from datetime import timedelta

from django.contrib.auth.models import User

from recurjobs import CancellationToken, DistributedJob, RecurringJob, TriggerableJob

refreshed = {"count": 0}


class RefreshRates(RecurringJob, TriggerableJob):
    """Every 30 seconds in each machine's main instance; POST /refresh runs it at once."""

    def __init__(self) -> None:
        super().__init__(timedelta(seconds=30), delay=timedelta(seconds=2))

    def run(self, token: CancellationToken) -> None:
        refreshed["count"] += 1


class NightlyReport(DistributedJob):
    """Once a day on one server of the cluster; uses the ORM freely."""

    name = "nightly-report"
    period = timedelta(days=1)

    def execute(self, token: CancellationToken) -> None:
        print(f"{User.objects.count()} users")
