"""The Django app ``recurjobs.django``: registers the system checks, starts the host when the
process serves (see :mod:`recurjobs.django._launch`)."""

from __future__ import annotations

import logging

from django.apps import AppConfig

__all__ = ["RecurJobsConfig"]

logger = logging.getLogger("recurjobs.django")


class RecurJobsConfig(AppConfig):  # type: ignore[misc]
    """``INSTALLED_APPS += ["recurjobs.django"]``; its label is ``recurjobs``."""

    name = "recurjobs.django"
    label = "recurjobs"
    verbose_name = "recurjobs"

    def ready(self) -> None:
        from recurjobs import django as integration
        from recurjobs.django import checks
        from recurjobs.django._launch import SERVE, launch_context

        checks.register()
        where = launch_context()
        if where != SERVE:
            logger.debug("recurjobs host not started: this is a %s process", where)
            return
        config, problems = integration._settings()
        if problems:
            raise integration._improperly_configured(problems)
        if not config.autostart:
            logger.debug("recurjobs host not started: RECURJOBS['AUTOSTART'] is False")
            return
        integration.start()
