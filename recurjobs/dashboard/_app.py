"""The dashboard's routes, as a Flask blueprint that ``create_app`` and the Flask extension mount.

Pages are rendered on the server (Jinja, autoescaped); a few lines of script refresh the live
part of a page every few seconds and the pages work without it. Actions are POST forms with a
CSRF token (:mod:`._csrf`), shown and accepted only when the app allows actions *and* the
``authorize`` hook returned true for this request. What a job's line says is :mod:`._lines`;
what an action does, :mod:`._actions`.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Request,
    Response,
    abort,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from recurjobs.dashboard import _actions, _csrf
from recurjobs.dashboard._chart import duration_chart
from recurjobs.dashboard._data import Dashboard
from recurjobs.dashboard._format import absolute, duration, relative, schedule_text
from recurjobs.dashboard._lines import (
    JobLine,
    cells,
    job_lines,
    next_text,
    process,
    row_next_due_ms,
    sort_key,
)
from recurjobs.sql._urls import scrub

__all__ = ["BLUEPRINT", "JobLine", "make_blueprint"]

logger = logging.getLogger("recurjobs.dashboard")

BLUEPRINT = "recurjobs_dashboard"
"""The blueprint's name (and endpoint prefix): ``request.blueprint`` inside the dashboard."""

PAGE_SIZE = 50
OUTCOMES = ("executed", "failed", "canceled", "lease_lost", "ignored", "running")
STATES = ("running", "paused", "failing", "ok")
SORTS = ("name", "next", "last", "runs", "failures")
SINCE = {
    "1h": 3_600_000,
    "24h": 86_400_000,
    "7d": 7 * 86_400_000,
    "30d": 30 * 86_400_000,
}
REFRESH_SECONDS = 5
_next_text = next_text  # tests/test_dashboard_format.py imports it from here

Authorize = Callable[[Request], bool]


class _BadParameter(Exception):
    pass


def _choice(name: str, allowed: Iterable[str], default: str | None) -> str | None:
    value = request.args.get(name, "")
    if value == "":
        return default
    if value not in allowed:
        raise _BadParameter(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def make_blueprint(
    data: Dashboard,
    *,
    allow_actions: bool,
    authorize: Authorize | None,
    secret_key: bytes,
    host: Any = None,
) -> Blueprint:
    """The dashboard's routes over ``data``; ``host`` (a JobHost) adds its recurring jobs."""
    bp = Blueprint(BLUEPRINT, __name__, template_folder="templates")

    def may_act() -> bool:
        if not allow_actions or authorize is None:
            return False
        cached = g.get("recurjobs_may_act")
        if cached is None:
            try:
                # Only True grants actions: a hook that returns a string, a response or any
                # other truthy object by mistake does not.
                cached = authorize(request) is True
            except Exception:
                logger.exception("the dashboard's authorize hook raised; actions refused")
                cached = False
            g.recurjobs_may_act = cached
        return bool(cached)

    def local_statuses() -> list[Any]:
        if host is None:
            return []
        try:
            remote = _actions.remote_statuses(host)
            return list(host.status()) if remote is None else remote
        except Exception:
            logger.exception("host.status() raised; its recurring jobs are not shown")
            return []

    @bp.before_request
    def _csrf_cookie() -> None:
        nonce = request.cookies.get(_csrf.COOKIE)
        if not nonce or len(nonce) != 32 or not all(c in "0123456789abcdef" for c in nonce):
            g.recurjobs_new_nonce = nonce = _csrf.new_nonce()
        g.recurjobs_nonce = nonce
        g.recurjobs_script_nonce = secrets.token_urlsafe(16)

    @bp.after_request
    def _headers(response: Response) -> Response:
        new = g.get("recurjobs_new_nonce")
        if new is not None:
            response.set_cookie(
                _csrf.COOKIE,
                new,
                httponly=True,
                samesite="Strict",
                secure=request.is_secure,
                path=url_for(".jobs"),
            )
        script = g.get("recurjobs_script_nonce", "")
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            f"script-src 'nonce-{script}'; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.context_processor
    def _helpers() -> dict[str, Any]:
        return {
            "absolute": absolute,
            "relative": relative,
            "duration": duration,
            "may_act": may_act(),
            "csrf_token": _csrf.make_token(secret_key, g.get("recurjobs_nonce", "")),
            "csrf_field": _csrf.FIELD,
            "script_nonce": g.get("recurjobs_script_nonce", ""),
            "refresh_seconds": REFRESH_SECONDS,
            "refresh": True,
            "database": data.url,
            "local_actions": _actions.local_actions(host),
        }

    @bp.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError) -> tuple[str, int]:
        message = _first_line(exc, data)
        logger.warning("dashboard: database error on %s: %s", data.url, message)
        # A page that was read refreshes itself until the database answers; an action's
        # answer does not (its URL takes POSTs only).
        again = request.method == "GET"
        page = render_template(
            "recurjobs_dashboard/error.html",
            title="Database unavailable",
            message=f"The database {data.url} could not be "
            f"{'read' if again else 'changed'}: {message}",
            refresh=again,
        )
        return page, 503

    def _refused_page(exc: SQLAlchemyError, verb: str, name: str) -> tuple[str, int]:
        message = _first_line(exc, data)
        logger.warning(
            "dashboard: the database %s refused to %s %r: %s", data.url, verb, name, message
        )
        page = render_template(
            "recurjobs_dashboard/error.html",
            title="The database refused the change",
            message=(
                f"The database {data.url} refused to {verb} {name!r}: {message}. It lets "
                "the dashboard read but not write: actions need the right to update the jobs "
                "table (a database user with UPDATE on it, a database that is not read-only)."
            ),
            refresh=False,
        )
        return page, 403

    @bp.errorhandler(_BadParameter)
    def _bad_parameter(exc: _BadParameter) -> tuple[str, int]:
        page = render_template(
            "recurjobs_dashboard/error.html", title="Bad request", message=str(exc), refresh=False
        )
        return page, 400

    @bp.route("/")
    def jobs() -> str:
        query = request.args.get("q", "").strip()
        state = _choice("state", STATES, None)
        sort = _choice("sort", SORTS, "name") or "name"
        descending = _choice("order", ("asc", "desc"), "asc") == "desc"
        view = data.overview()
        lines = job_lines(view, local_statuses())
        total = len(lines)
        if query:
            lines = [line for line in lines if query.lower() in line.name.lower()]
        if state is not None:
            lines = [line for line in lines if line.state == state]
        lines.sort(key=sort_key(sort), reverse=descending)
        base = url_for(".job")
        return render_template(
            "recurjobs_dashboard/jobs.html",
            lines=[(line, cells(line, view.now_ms, base)) for line in lines],
            total=total,
            view=view,
            now=view.now_ms,
            q=query,
            state=state or "",
            sort=sort,
            order="desc" if descending else "asc",
            states=STATES,
            sorts=SORTS,
        )

    @bp.route("/job")
    def job() -> str:
        name = request.args.get("name", "")
        if not 1 <= len(name) <= 200:
            raise _BadParameter(f"name must be a job name of 1 to 200 characters, got {name!r}")
        outcome = _choice("outcome", OUTCOMES, None)
        since = _choice("since", (*SINCE, "all"), "all")
        before = _before(request.args.get("before", ""))
        now_ms, row = data.job_row(name)
        page = data.history(
            name,
            now_ms=now_ms,
            outcome=outcome,
            since_ms=None if since in (None, "all") else now_ms - SINCE[since],
            before=before,
            limit=PAGE_SIZE,
        )
        local = next((s for s in local_statuses() if s.name == name), None)
        if row is None and local is None and not page.runs and before is None and not outcome:
            abort(404)
        chart = duration_chart(page.runs, now_ms, f"Durations of the runs of {name}")
        next_ms = None if row is None else row_next_due_ms(row, now_ms)
        return render_template(
            "recurjobs_dashboard/job.html",
            name=name,
            row=row,
            local=local,
            page=page,
            chart=chart,
            now=now_ms,
            next_ms=next_ms,
            schedule=schedule_text(row.period_ms, row.cron, row.aligned) if row else "",
            outcome=outcome or "",
            since=since,
            outcomes=OUTCOMES,
            sinces=(*SINCE, "all"),
            has_history=data.schema().runs,
            before=request.args.get("before", ""),
        )

    @bp.route("/servers")
    def servers() -> str:
        view = data.overview()
        lines = job_lines(view, local_statuses())
        running: dict[str, list[JobLine]] = {}
        for line in lines:
            if line.running_on is not None:
                running.setdefault(process(line.running_on), []).append(line)
        by_server = {s.identity: running.pop(process(s.identity), []) for s in view.servers}
        others = sorted(running)
        return render_template(
            "recurjobs_dashboard/servers.html",
            view=view,
            now=view.now_ms,
            by_server=by_server,
            running=running,
            others=others,
        )

    @bp.route("/action", methods=["POST"])
    def action() -> Any:
        if not may_act():
            abort(403, "actions are disabled on this dashboard, or you may not use them")
        if _foreign(request.headers.get("Origin"), request):
            abort(403, "the request comes from another site")
        if not _csrf.token_ok(
            secret_key, request.cookies.get(_csrf.COOKIE), request.form.get(_csrf.FIELD)
        ):
            abort(403, "missing or invalid CSRF token: reload the page and try again")
        verb = request.form.get("action", "")
        name = request.form.get("name", "")
        if verb not in ("trigger", "pause", "resume") or not 1 <= len(name) <= 200:
            abort(400, "action must be trigger, pause or resume, with a job name")
        try:
            done = _actions.act(data, host, verb, name)
        except SQLAlchemyError as exc:
            if not _actions.refused(exc):
                raise  # unreachable or too slow: the 503 page
            return _refused_page(exc, verb, name)
        except _actions.SeveralNamed as exc:
            logger.warning("dashboard: %s %r refused: %s", verb, name, exc)
            abort(409, str(exc))
        logger.info(
            "dashboard: %s %r by %s: %s",
            verb,
            name,
            request.remote_addr,
            "done" if done else "unknown job",
        )
        if not done:
            abort(404, f"no job named {name!r} to {verb}")
        back = request.form.get("back", "jobs")
        target = url_for(".job", name=name) if back == "job" else url_for(".jobs")
        return redirect(target, code=303)

    @bp.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[str, int]:
        page = render_template(
            "recurjobs_dashboard/error.html",
            title=f"{exc.code} {exc.name}",
            message=exc.description or "",
            refresh=False,
        )
        return page, exc.code or 500

    return bp


def _first_line(exc: SQLAlchemyError, data: Dashboard) -> str:
    """The first line of the driver's message (the statement and parameters never), with the
    database password masked."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return scrub(detail[0] if detail else type(exc).__name__, data.engine)


def _foreign(origin: str | None, req: Request) -> bool:
    """Whether a POST's ``Origin`` header names another site than the dashboard's: another
    host or port, or a plain-http page posting to a dashboard served over https (a page a
    network attacker can write). An https page posting to a plain-http request is allowed: that
    is a TLS-terminating proxy in front of the dashboard. No header, or ``null``, is left to
    the CSRF token."""
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.netloc != req.host:
        return True
    return req.is_secure and parts.scheme != "https"


def _before(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    # ASCII digits only: int() would also take "+5", " 5", "5_0" and other scripts' digits.
    if re.fullmatch(r"[0-9]{1,19}\.[0-9]{1,19}", text) is None:
        raise _BadParameter(f"before must be <started_ms>.<id>, got {text!r}")
    started, _, ident = text.partition(".")
    key = (int(started), int(ident))
    if not all(0 <= part < 1 << 62 for part in key):
        raise _BadParameter(f"before is out of range: {text!r}")
    return key
