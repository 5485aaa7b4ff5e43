"""The recurjobs dashboard (a WSGI app) served from Django views, to staff users only.

Django authenticates: anonymous users are sent to ``LOGIN_URL``, logged-in users who are not
active staff get 403. The request is then handed to the dashboard's WSGI app with
``SCRIPT_NAME`` set to where the URLs were included, and its answer turned into a Django
response. Actions (trigger, pause, resume) are off unless ``RECURJOBS["DASHBOARD_ACTIONS"]``
is True; the dashboard's own CSRF token protects them, so the view is exempt from Django's.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import sys
import threading
from typing import Any

__all__ = ["dashboard_view"]

_lock = threading.Lock()
_app: Any = None


def _dashboard_app() -> Any:
    global _app
    with _lock:
        if _app is None:
            _app = _make_app()
        return _app


def _make_app() -> Any:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from recurjobs.django import _settings, get_host

    dashboard: Any = importlib.import_module("recurjobs.dashboard")  # the dashboard extra

    host = get_host()
    if not isinstance(host.database, str):
        raise ImproperlyConfigured(
            "recurjobs.django.urls: the dashboard reads the database; set RECURJOBS['DATABASE']"
        )
    config, _problems = _settings()
    actions = config.dashboard_actions
    # Every worker process must sign the dashboard's CSRF tokens alike: derive the key from
    # the project's SECRET_KEY (never the key itself).
    secret = hashlib.sha256(b"recurjobs-dashboard\0" + str(settings.SECRET_KEY).encode()).digest()
    # The blueprint, as the Flask mount uses it, not create_app(): an SQLite file that does
    # not exist yet is the host's to create (a job process may start after the web workers),
    # not a configuration error answered with a 500 on every request.
    blueprint = dashboard.dashboard_blueprint(
        host.database,
        table_prefix=host.settings.table_prefix,
        allow_actions=actions,
        authorize=(lambda request: True) if actions else None,  # Django checked staff already
        secret_key=secret,
    )
    from flask import Flask

    app = Flask("recurjobs.dashboard")
    app.register_blueprint(blueprint)
    return app


def _environ(request: Any, rest: str) -> dict[str, Any]:
    """The WSGI environ for the dashboard: mounted at the part of the path before ``rest``."""
    environ = dict(getattr(request, "environ", None) or request.META)
    body = request.body
    path = request.path  # SCRIPT_NAME of the Django app included
    mount = path[: len(path) - len(rest)] if rest and path.endswith(rest) else path
    environ.update(
        {
            "SCRIPT_NAME": mount.rstrip("/"),
            "PATH_INFO": "/" + rest,
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.errors": environ.get("wsgi.errors", sys.stderr),
            "wsgi.url_scheme": request.scheme,
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
    )
    environ.setdefault("SERVER_NAME", request.get_host().split(":")[0])
    environ.setdefault("SERVER_PORT", request.get_port())
    return environ


def _to_login(request: Any) -> Any:
    """A redirect to ``LOGIN_URL`` that comes back here (``?next=``)."""
    from urllib.parse import quote

    from django.conf import settings
    from django.http import HttpResponseRedirect
    from django.shortcuts import resolve_url

    login = resolve_url(settings.LOGIN_URL)
    separator = "&" if "?" in login else "?"
    back = quote(request.get_full_path(), safe="/")
    return HttpResponseRedirect(f"{login}{separator}next={back}")


def dashboard_view(request: Any, rest: str = "") -> Any:
    """Serve one dashboard request to active staff users."""
    from django.core.exceptions import ImproperlyConfigured
    from django.http import HttpResponse, HttpResponseForbidden

    user = getattr(request, "user", None)
    if user is None:
        raise ImproperlyConfigured(
            "recurjobs.django.urls needs django.contrib.auth's AuthenticationMiddleware"
        )
    if not (user.is_active and user.is_staff):
        if user.is_authenticated:
            return HttpResponseForbidden("staff only")
        return _to_login(request)
    answer: dict[str, Any] = {}
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"], answer["headers"] = status, headers
        return written.append

    result = _dashboard_app()(_environ(request, rest), start_response)
    try:
        body = b"".join([*written, *result])
    finally:
        close = getattr(result, "close", None)
        if callable(close):
            close()
    response = HttpResponse(body, status=int(answer["status"].split(" ", 1)[0]))
    for name, value in answer["headers"]:
        if name.lower() == "set-cookie":
            response.cookies.load(value)
        elif name.lower() != "content-length":
            response[name] = value
    return response


dashboard_view.csrf_exempt = True  # type: ignore[attr-defined]
