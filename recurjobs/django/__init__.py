"""The Django integration: one :class:`recurjobs.JobHost` per process, from ``settings.RECURJOBS``.

::

    INSTALLED_APPS = [..., "recurjobs.django"]
    RECURJOBS = {
        "JOBS": ["shop.jobs.PruneCarts", "shop.jobs.NightlyReport"],
        "DATABASE": "default",              # a DATABASES alias, or a SQLAlchemy URL
    }

The host starts in serving processes only (runserver's child, WSGI/ASGI workers,
``manage.py recurjobs run``), never in ``migrate``, ``shell``, tests or other commands; see
:mod:`recurjobs.django._launch` and docs/django.md. It stops at interpreter exit. Bad
settings are ``ImproperlyConfigured`` errors, also shown by ``manage.py check`` as
``recurjobs.E001`` ... ``recurjobs.E009``.

From a view: ``recurjobs.django.get_host().trigger(MyJob)`` (forwarded to the machine's main
instance when this worker is not it).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from recurjobs._host import JobHost

__all__ = ["build_host", "database_url", "get_host", "launch_context", "start", "stop"]

logger = logging.getLogger("recurjobs.django")

_lock = threading.Lock()
_host: JobHost | None = None


def _settings() -> tuple[Any, list[Any]]:
    from django.conf import settings

    from recurjobs.django import _config

    return _config.read(getattr(settings, "RECURJOBS", None), settings.DATABASES)


def _improperly_configured(problems: list[Any]) -> Exception:
    from django.core.exceptions import ImproperlyConfigured

    lines = "\n".join(f"  {p}" for p in problems)
    return ImproperlyConfigured(f"recurjobs: bad RECURJOBS setting:\n{lines}")  # type: ignore[no-any-return]


def build_host(**overrides: Any) -> JobHost:
    """A new, unstarted host built from ``settings.RECURJOBS``.

    ``overrides`` replace JobHost keywords the settings give, e.g. in a test:
    ``build_host(clock=ManualClock(), main_dom=False)``. Raises ``ImproperlyConfigured``
    listing every bad setting, or naming what JobHost refused.
    """
    import inspect

    from django.core.exceptions import ImproperlyConfigured

    from recurjobs.django._connections import close_connections_around_runs

    known = set(inspect.signature(JobHost.__init__).parameters) - {"self", "jobs"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"build_host() got unknown JobHost keyword(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    config, problems = _settings()
    if problems:
        raise _improperly_configured(problems)
    kwargs = {**config.host_kwargs, **overrides}
    try:
        host = JobHost(config.make_jobs(), **kwargs)
    except (TypeError, ValueError) as exc:
        if any(name in str(exc) for name in overrides):
            raise  # the caller's override, not a setting
        raise ImproperlyConfigured(f"recurjobs: recurjobs.E009: RECURJOBS: {exc}") from exc
    if config.close_connections:
        close_connections_around_runs(host)
    return host


def get_host() -> JobHost:
    """This process's host (built from the settings at the first call; started only in
    serving processes)."""
    global _host
    with _lock:
        if _host is None:
            _host = build_host()
        return _host


def start() -> JobHost:
    """Start this process's host now (with ``AUTOSTART: False``, e.g. from a server hook)."""
    host = get_host()
    if not host.running:
        host.start()
        logger.info(
            "recurjobs host started with %d job(s) in process %d", len(host.jobs), os.getpid()
        )
    return host


def stop(timeout: float = 30.0) -> bool:
    """Stop this process's host (see :meth:`recurjobs.JobHost.stop`); True when none runs."""
    with _lock:
        host = _host
    return True if host is None else host.stop(timeout)


def launch_context() -> str:
    """``"serve"``, ``"watcher"``, ``"command"`` or ``"test"``: what this process is."""
    from recurjobs.django._launch import launch_context as decide

    return decide()


def database_url(alias_or_url: str) -> str:
    """The SQLAlchemy URL recurjobs uses for a ``DATABASES`` alias (a URL is returned as is)."""
    from django.conf import settings

    from recurjobs.django._databases import alias_url

    if not isinstance(alias_or_url, str):
        raise TypeError(f"alias_or_url must be a str, got {alias_or_url!r}")
    if "://" in alias_or_url:
        return alias_or_url
    return alias_url(alias_or_url, settings.DATABASES, "alias_or_url")


def _reset_for_tests() -> None:
    """Forget this process's host (stopping it first); for tests of this module."""
    global _host
    with _lock:
        host, _host = _host, None
    if host is not None:
        host.stop(5.0)
