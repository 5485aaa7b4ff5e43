"""System checks: every bad ``RECURJOBS`` setting is an error in ``manage.py check``.

``recurjobs.E001`` the dict or its keys, ``E002`` JOBS, ``E003`` DATABASE, ``E004`` MAIN_DOM,
``E005`` HISTORY, ``E006`` DISTRIBUTED/TABLE_PREFIX, ``E007`` SERVER_ROLE/ELECT_SERVER_ROLE,
``E008`` AUTOSTART/CLOSE_CONNECTIONS/timeouts, ``E009`` a host that cannot be built from the
settings (a job factory raised, a distributed job without DATABASE, ...).
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_settings", "register"]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The errors of ``settings.RECURJOBS``; builds (never starts) a host to find them."""
    from django.core.checks import Error
    from django.core.exceptions import ImproperlyConfigured

    from recurjobs import django as integration

    _config, problems = integration._settings()
    if problems:
        return [Error(p.message, id=p.id) for p in problems]
    try:
        host = integration.build_host()
    except ImproperlyConfigured as exc:
        message = str(exc).removeprefix("recurjobs: recurjobs.E009: ")
        return [Error(message, id="recurjobs.E009")]
    del host
    return []


def register() -> None:
    """Register :func:`check_settings` with Django (once; ``ready()`` calls it)."""
    from django.core import checks

    checks.register(check_settings, "recurjobs")
