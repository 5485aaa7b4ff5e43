"""recurjobs: recurring and distributed background jobs for synchronous Python apps."""

from recurjobs._clock import Clock, SystemClock
from recurjobs._cron import Cron
from recurjobs._history import HistorySettings, RunRecord
from recurjobs._host import JobHost, JobTrigger
from recurjobs._jobs import DistributedJob, RecurringJob, Signal, TriggerableJob
from recurjobs._maindom import MainDom
from recurjobs._notifications import (
    DistributedJobClaimed,
    DistributedJobLeaseLost,
    JobCanceled,
    JobExecuted,
    JobExecuting,
    JobFailed,
    JobIgnored,
    JobNotification,
    JobStarted,
    JobStarting,
    JobStopped,
    JobStopping,
    ServerRoleChanged,
    Subscription,
)
from recurjobs._roles import IgnoreReason, ServerRole
from recurjobs._schedule import INFINITE, NextExecution
from recurjobs._settings import DistributedJobSettings
from recurjobs._status import JobStatus
from recurjobs._token import CancellationToken, JobCancelled

__version__ = "0.1.0"

__all__ = [
    "CancellationToken",
    "Clock",
    "Cron",
    "DistributedJob",
    "DistributedJobClaimed",
    "DistributedJobLeaseLost",
    "DistributedJobSettings",
    "HistorySettings",
    "INFINITE",
    "IgnoreReason",
    "JobCanceled",
    "JobCancelled",
    "JobExecuted",
    "JobExecuting",
    "JobFailed",
    "JobHost",
    "JobIgnored",
    "JobNotification",
    "JobStarted",
    "JobStarting",
    "JobStatus",
    "JobStopped",
    "JobStopping",
    "JobTrigger",
    "MainDom",
    "NextExecution",
    "RecurringJob",
    "RunRecord",
    "ServerRole",
    "ServerRoleChanged",
    "Signal",
    "Subscription",
    "SystemClock",
    "TriggerableJob",
]
