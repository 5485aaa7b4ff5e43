"""The recurjobs dashboard in your URLs, for staff users: needs the ``dashboard`` extra.

::

    urlpatterns = [
        ...,
        path("admin/jobs/", include("recurjobs.django.urls")),
    ]

Anonymous users are sent to ``LOGIN_URL``; logged-in users who are not active staff get 403.
Trigger, pause and resume buttons appear only with ``RECURJOBS["DASHBOARD_ACTIONS"] = True``.
"""

from __future__ import annotations

import importlib

from django.core.exceptions import ImproperlyConfigured
from django.urls import re_path

try:
    importlib.import_module("recurjobs.dashboard")
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImproperlyConfigured(
        f"recurjobs.django.urls needs the recurjobs dashboard ({exc}); "
        "install recurjobs[dashboard] or remove the include"
    ) from exc

from recurjobs.django._dashboard import dashboard_view

app_name = "recurjobs"
urlpatterns = [re_path(r"^(?P<rest>.*)$", dashboard_view, name="dashboard")]
