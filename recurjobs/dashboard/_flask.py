"""The Flask extension's mount: the dashboard inside the app, under ``RECURJOBS_DASHBOARD_PREFIX``.

The dashboard is registered as a blueprint (named ``recurjobs_dashboard``) of the app itself,
so the app's own ``before_request`` hooks (its login) run for every dashboard page, and the
``RECURJOBS_DASHBOARD_AUTHORIZE`` callable sees the app's session (``flask_login.current_user``
and the like). The CSRF tokens are signed with the app's ``SECRET_KEY`` when it has one, so the
worker processes of one deployment accept each other's forms.
"""

from __future__ import annotations

from typing import Any

__all__ = ["mount"]


def mount(app: Any, host: Any, *, allow_actions: bool) -> bool:
    """Register the dashboard on ``app`` if ``RECURJOBS_DASHBOARD_PREFIX`` is set; True if it
    did. ValueError/TypeError naming the key for a bad value."""
    from recurjobs.dashboard import dashboard_blueprint

    config = app.config
    prefix = config["RECURJOBS_DASHBOARD_PREFIX"]
    if prefix is None or prefix == "":
        return False
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix == "/":
        raise ValueError(
            f"RECURJOBS_DASHBOARD_PREFIX must be a path such as '/recurjobs', got {prefix!r}"
        )
    database = config["RECURJOBS_DATABASE_URL"]
    if not database:
        raise ValueError(
            "RECURJOBS_DASHBOARD_PREFIX needs RECURJOBS_DATABASE_URL (the dashboard reads the "
            "jobs, runs and servers tables)"
        )
    authorize = config["RECURJOBS_DASHBOARD_AUTHORIZE"]
    if authorize is not None and not callable(authorize):
        raise TypeError(
            f"RECURJOBS_DASHBOARD_AUTHORIZE must be a callable taking the request, "
            f"got {authorize!r}"
        )
    if allow_actions and authorize is None:
        raise ValueError(
            "RECURJOBS_DASHBOARD_ALLOW_ACTIONS needs RECURJOBS_DASHBOARD_AUTHORIZE, a callable "
            "taking the request and returning True for people allowed to trigger, pause and "
            "resume (e.g. lambda request: current_user.is_admin)"
        )
    secret = config.get("SECRET_KEY")
    if isinstance(secret, str | bytes) and len(secret) < 16:
        secret = None  # too short to sign with: a random per-process key instead
    blueprint = dashboard_blueprint(
        database,
        table_prefix=config["RECURJOBS_TABLE_PREFIX"],
        allow_actions=allow_actions,
        authorize=authorize,
        secret_key=secret if isinstance(secret, str | bytes) else None,
        host=host,
    )
    app.register_blueprint(blueprint, url_prefix=prefix.rstrip("/"))
    return True
