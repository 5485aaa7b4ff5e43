"""The dashboard's pages, queries and actions on each backend, through Flask's test client.

Rows are written straight into the jobs, runs and servers tables (the layouts the hosts use),
so every page can be checked against known contents; the browser tests drive real hosts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, Request
from sqlalchemy.pool import NullPool

from recurjobs import CancellationToken, RecurringJob, TriggerableJob
from recurjobs.dashboard import create_app
from recurjobs.dashboard._counts import DAY_MS, HOUR_MS
from recurjobs.dashboard._data import Dashboard
from recurjobs.flask import RecurJobs
from recurjobs.sql._history_table import runs_table
from recurjobs.sql._servers_table import ServerTables
from recurjobs.sql._tables import jobs_table
from tests.apps.procs import free_port, wait_until
from tests.dbs import TestDatabase

HOSTILE = "<img src=x onerror=alert(1)>"


@dataclass
class Tables:
    """The tables of one test, and a connection-less engine to fill them."""

    engine: sa.Engine
    jobs: sa.Table
    runs: sa.Table
    servers: sa.Table
    leases: sa.Table
    now_ms: int

    def job(self, name: str, **values: Any) -> None:
        """Insert a jobs-table row (an hourly, idle, unpaused job unless told otherwise)."""
        row = {
            "name": name,
            "period_ms": HOUR_MS,
            "aligned": False,
            "last_run_ms": self.now_ms - 60_000,
            "running": False,
            "due_now": False,
            "paused": False,
            **values,
        }
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.jobs).values(**row))

    def run(self, job: str, started_ms: int, **values: Any) -> None:
        """Insert one finished run of ``job`` (executed, 1 s long, unless told otherwise)."""
        self.runs_bulk([{"job": job, "started_ms": started_ms, **values}])

    def runs_bulk(self, rows: list[dict[str, Any]]) -> None:
        """Insert many runs at once (same defaults as :meth:`run`)."""
        full = [
            {
                "kind": "distributed",
                "host": "h1:100:aaaa",
                "claim_id": None,
                "trigger": "schedule",
                "ended_ms": row["started_ms"] + 1000,
                "outcome": "executed",
                "error": None,
                **row,
            }
            for row in rows
        ]
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.runs), full)

    def column(self, name: str, column: str) -> Any:
        """One column of ``name``'s jobs-table row."""
        with self.engine.connect() as conn:
            query = sa.select(self.jobs.c[column]).where(self.jobs.c.name == name)
            return conn.execute(query).scalar_one()


@pytest.fixture
def tables(db: TestDatabase) -> Iterator[Tables]:
    """Empty jobs, runs, servers and leases tables under the test's prefix."""
    engine = sa.create_engine(db.url, poolclass=NullPool)
    metadata = sa.MetaData()
    jobs = jobs_table(metadata, db.table_prefix)
    runs = runs_table(metadata, db.table_prefix)
    servers = ServerTables(metadata, db.table_prefix)
    metadata.create_all(engine)
    try:
        yield Tables(engine, jobs, runs, servers.servers, servers.leases, int(time.time() * 1000))
    finally:
        engine.dispose()


def _app(db: TestDatabase, **kwargs: Any) -> Flask:
    app: Flask = create_app(db.url, table_prefix=db.table_prefix, **kwargs)
    return app


def _allow(request: Request) -> bool:
    return True


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def test_jobs_page_shows_rows_latest_runs_and_day_counts(tables: Tables, db: TestDatabase) -> None:
    """Each job's latest run, runs and failures of the last 24 h come from the runs table."""
    now = tables.now_ms
    tables.job("report")
    tables.job("sync", running=True, owner="h2:200:bbbb", last_attempted_run_ms=now - 5000)
    rows = [{"job": "report", "started_ms": now - i * 600_000} for i in range(1, 6)]
    rows[0]["outcome"] = "failed"
    rows += [{"job": "report", "started_ms": now - DAY_MS - i * 600_000} for i in range(1, 3)]
    rows += [{"job": "old-recurring", "kind": "recurring", "started_ms": now - 2 * DAY_MS}]
    tables.runs_bulk(rows)
    view = Dashboard(tables.engine, db.table_prefix).overview()
    assert {"report": 5, "old-recurring": 0} == view.runs_24h
    assert {"report": 1} == view.failures_24h
    assert "failed" == view.last_runs["report"].outcome
    html = _app(db).test_client().get("/").get_data(as_text=True)
    for name in ("report", "sync", "old-recurring"):
        assert f'data-name="{name}"' in html
    assert "on h2:200:bbbb" in html
    assert "<script nonce=" in html  # the page refreshes itself


def test_day_count_matches_a_plain_count_while_hours_are_remembered(
    tables: Tables, db: TestDatabase
) -> None:
    """Counting the last day by remembered whole hours gives what one plain COUNT gives."""
    now = tables.now_ms
    rows = [
        {"job": f"job-{i % 3}", "started_ms": now - i * 7 * 60_000 - 1}
        for i in range(0, 30 * 60 // 7)
    ]
    tables.runs_bulk(rows)
    data = Dashboard(tables.engine, db.table_prefix)
    first = data.overview()
    second = data.overview()  # from the remembered hours
    with tables.engine.connect() as conn:
        plain: dict[str, int] = dict(
            conn.execute(
                sa.select(tables.runs.c.job, sa.func.count())
                .where(tables.runs.c.started_ms > first.now_ms - DAY_MS)
                .group_by(tables.runs.c.job)
            ).all()
        )
    assert plain == first.runs_24h
    assert plain == second.runs_24h


def test_history_filters_and_pages(tables: Tables, db: TestDatabase) -> None:
    """A job's page shows 50 runs, an older link to the next 50, and filters by outcome/time."""
    now = tables.now_ms
    tables.job("report")
    rows = [{"job": "report", "started_ms": now - i * 60_000} for i in range(1, 121)]
    for row in rows[::10]:
        row.update(outcome="failed", error=f"Traceback\nValueError: <{row['started_ms']}>")
    tables.runs_bulk(rows)
    client = _app(db).test_client()
    html = client.get("/job?name=report").get_data(as_text=True)
    assert 50 == html.count('<tr class="run ')
    assert 50 == html.count("<rect ")
    older = re.search(r'id="older" href="([^"]+)"', html)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert 50 == second.count('<tr class="run ')
    failed = client.get("/job?name=report&outcome=failed").get_data(as_text=True)
    assert 12 == failed.count('<tr class="run ')
    assert "ValueError: &lt;" in failed
    recent = client.get("/job?name=report&since=1h").get_data(as_text=True)
    link = re.search(r'id="older" href="([^"]+)"', recent)
    assert link is not None
    rest = client.get(link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert (50, 9, False) == (
        recent.count('<tr class="run '),
        rest.count('<tr class="run '),
        'id="older"' in rest,
    )


def test_read_only_dashboard_has_no_buttons_and_refuses_posts(tables: Tables) -> None:
    """Without actions, no button or POST form appears and a POST is answered 403."""
    tables.job("report")
    db_url = str(tables.engine.url.render_as_string(hide_password=False))
    prefix = tables.jobs.name[: -len("jobs")]
    client = create_app(db_url, table_prefix=prefix).test_client()
    for path in ("/", "/job?name=report", "/servers"):
        html = client.get(path).get_data(as_text=True)
        assert "<button" not in html
        assert 'method="post"' not in html
    response = client.post("/action", data={"action": "pause", "name": "report"})
    assert 403 == response.status_code
    assert False is bool(tables.column("report", "paused"))


def test_authorize_refusing_or_raising_hides_buttons_and_refuses(
    tables: Tables, db: TestDatabase
) -> None:
    """With actions allowed, an authorize hook that returns False (or anything but True, such
    as a truthy string by mistake) or raises means read-only."""

    def boom(request: Request) -> bool:
        raise RuntimeError("auth backend down")

    tables.job("report")
    for hook in (lambda request: False, boom, lambda request: "false", lambda request: object()):
        client = _app(db, allow_actions=True, authorize=hook).test_client()
        html = client.get("/").get_data(as_text=True)
        assert "<button" not in html
        response = client.post("/action", data={"action": "pause", "name": "report"})
        assert 403 == response.status_code


def test_actions_with_token_trigger_pause_and_resume(tables: Tables, db: TestDatabase) -> None:
    """Trigger sets due_now; pause and resume set and clear paused; each redirects back."""
    tables.job("report")
    client = _app(db, allow_actions=True, authorize=_allow).test_client()
    token = _token(client.get("/").get_data(as_text=True))
    for action, column, expected in (
        ("trigger", "due_now", True),
        ("pause", "paused", True),
        ("resume", "paused", False),
    ):
        response = client.post(
            "/action", data={"action": action, "name": "report", "csrf_token": token}
        )
        assert 303 == response.status_code
        assert expected == bool(tables.column("report", column))
    missing = client.post("/action", data={"action": "pause", "name": "nope", "csrf_token": token})
    assert 404 == missing.status_code


def test_a_trigger_of_a_paused_job_is_refused(tables: Tables, db: TestDatabase) -> None:
    """A paused row is not triggered from the dashboard (it would run at once when resumed):
    the action is refused and due_now stays clear, as with recurjobs trigger."""
    tables.job("report")
    client = _app(db, allow_actions=True, authorize=_allow).test_client()
    token = _token(client.get("/").get_data(as_text=True))
    for action in ("pause", "trigger", "resume"):
        client.post("/action", data={"action": action, "name": "report", "csrf_token": token})
    assert (False, False) == (
        bool(tables.column("report", "due_now")),
        bool(tables.column("report", "paused")),
    )


def test_posts_without_a_valid_token_are_refused(tables: Tables, db: TestDatabase) -> None:
    """No token, another app's token, another cookie's token and a foreign Origin: all 403."""
    tables.job("report")
    client = _app(db, allow_actions=True, authorize=_allow).test_client()
    token = _token(client.get("/").get_data(as_text=True))
    other = _app(db, allow_actions=True, authorize=_allow).test_client()
    foreign = _token(other.get("/").get_data(as_text=True))
    form = {"action": "pause", "name": "report"}
    assert 403 == client.post("/action", data=form).status_code
    assert 403 == client.post("/action", data={**form, "csrf_token": foreign}).status_code
    signature = token.partition(".")[2]
    forged = f"{'0' * 32}.{signature}"
    assert 403 == client.post("/action", data={**form, "csrf_token": forged}).status_code
    cross = client.post(
        "/action", data={**form, "csrf_token": token}, headers={"Origin": "https://evil.test"}
    )
    assert 403 == cross.status_code
    assert False is bool(tables.column("report", "paused"))


def test_hostile_names_and_errors_are_escaped(tables: Tables, db: TestDatabase) -> None:
    """Job names, host names and error text never reach the page (or the SVG) as markup."""
    now = tables.now_ms
    tables.job(HOSTILE)
    tables.run(HOSTILE, now - 1000, host="<script>x()</script>", outcome="failed", error="<b>e</b>")
    client = _app(db).test_client()
    for path in ("/", "/job?name=" + HOSTILE, "/servers"):
        html = client.get(path).get_data(as_text=True)
        assert "<img src=x" not in html
        assert "<script>x()" not in html
        assert "<b>e</b>" not in html
    job_page = client.get("/job", query_string={"name": HOSTILE}).get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt;" in job_page
    assert "&lt;b&gt;e&lt;/b&gt;" in job_page


def test_servers_page_shows_roles_and_what_each_runs(tables: Tables, db: TestDatabase) -> None:
    """The publisher lease's holder is the publisher; a job claimed by a process shows on the
    server row of that process (same host and pid)."""
    now = tables.now_ms
    with tables.engine.begin() as conn:
        conn.execute(
            sa.insert(tables.servers),
            [
                {
                    "identity": "h1:100:1111",
                    "registered_ms": now,
                    "last_seen_ms": now,
                    "active": True,
                },
                {
                    "identity": "h2:200:2222",
                    "registered_ms": now,
                    "last_seen_ms": now,
                    "active": True,
                },
            ],
        )
        conn.execute(
            sa.insert(tables.leases).values(
                name="publisher", holder="h2:200:2222", token="t", renewed_ms=now, lease_ms=60_000
            )
        )
    tables.job("sync", running=True, owner="h1:100:9999", last_attempted_run_ms=now - 2000)
    html = _app(db).test_client().get("/servers").get_data(as_text=True)
    rows = re.findall(r'<tr class="server">(.*?)</tr>', html, flags=re.DOTALL)
    assert 2 == len(rows)
    assert "subscriber" in rows[0] and "sync" in rows[0]
    assert "publisher" in rows[1] and "sync" not in rows[1]


def test_servers_page_tells_standby_workers_from_stopped_servers(
    tables: Tables, db: TestDatabase
) -> None:
    """An inactive row seen just now is a worker that is not its machine's main instance (it
    touches without campaigning): "standby"; an inactive row unseen for ten minutes: "stopped"."""
    now = tables.now_ms
    with tables.engine.begin() as conn:
        conn.execute(
            sa.insert(tables.servers),
            [
                {"identity": "h1:1:a", "registered_ms": now, "last_seen_ms": now, "active": False},
                {
                    "identity": "h1:2:b",
                    "registered_ms": now - 900_000,
                    "last_seen_ms": now - 600_000,
                    "active": False,
                },
            ],
        )
    html = _app(db).test_client().get("/servers").get_data(as_text=True)
    rows = re.findall(r'<tr class="server">(.*?)</tr>', html, flags=re.DOTALL)
    roles = [re.findall(r"<td>(?:<span[^>]*>)?(standby|stopped)", row) for row in rows]
    assert [["standby"], ["stopped"]] == roles


def test_bad_query_parameters_answer_400_naming_them(tables: Tables, db: TestDatabase) -> None:
    """An unknown state, sort, outcome or since value, a malformed page key or a missing name
    is a 400 page naming the parameter."""
    client = _app(db).test_client()
    for path, name in (
        ("/?state=zombie", "state"),
        ("/?sort=colour", "sort"),
        ("/job?name=x&outcome=great", "outcome"),
        ("/job?name=x&since=1y", "since"),
        ("/job?name=x&before=yesterday", "before"),
        ("/job", "name"),
    ):
        response = client.get(path)
        assert (400, True) == (
            response.status_code,
            f"{name} must" in response.get_data(as_text=True),
        )


def test_missing_tables_show_empty_pages(db: TestDatabase) -> None:
    """On a database where no host has started yet, every page loads and says so."""
    if db.backend == "sqlite":
        sa.create_engine(db.url, poolclass=NullPool).connect().close()  # an empty file
    client = _app(db).test_client()
    assert "No jobs yet" in client.get("/").get_data(as_text=True)
    assert 200 == client.get("/servers").status_code
    assert 404 == client.get("/job?name=report").status_code


def test_old_jobs_table_without_pause_column(db: TestDatabase) -> None:
    """A jobs table from before pause/cron shows its jobs, offers trigger but not pause."""
    engine = sa.create_engine(db.url, poolclass=NullPool)
    try:
        metadata = sa.MetaData()
        old = jobs_table(metadata, db.table_prefix)
        old._columns.remove(old.c.paused)  # the layout of an older version
        old._columns.remove(old.c.cron)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(old).values(
                    name="legacy",
                    period_ms=60_000,
                    aligned=False,
                    last_run_ms=0,
                    running=False,
                    due_now=False,
                )
            )
    finally:
        engine.dispose()
    client = _app(db, allow_actions=True, authorize=_allow).test_client()
    html = client.get("/").get_data(as_text=True)
    assert 'data-name="legacy"' in html
    assert 'value="trigger"' in html
    assert 'value="pause"' not in html


def test_database_down_answers_503_without_the_password() -> None:
    """A database that refuses connections gives a 503 page (masked URL), not a traceback,
    that refreshes itself until the database answers."""
    url = f"postgresql+psycopg://user:s3cret-pw@127.0.0.1:{free_port()}/nothing"
    client = create_app(url).test_client()
    started = time.monotonic()
    response = client.get("/")
    assert 503 == response.status_code
    body = response.get_data(as_text=True)
    assert "s3cret-pw" not in body
    assert "Database unavailable" in body
    assert ("refreshes itself" in body, "<script" in body) == (True, True)
    assert time.monotonic() - started < 15


class Beat(RecurringJob, TriggerableJob):
    """An hourly recurring job that counts its runs."""

    def __init__(self) -> None:
        super().__init__(timedelta(hours=1))
        self.runs = 0

    def run(self, token: CancellationToken) -> None:
        self.runs += 1


def test_flask_mount_shows_the_hosts_recurring_jobs_and_obeys_the_apps_login(
    tmp_path: Any,
) -> None:
    """Mounted under a prefix, the dashboard lists the app host's recurring jobs, triggers
    them, and the app's before_request login guards its pages."""
    beat = Beat()
    app = Flask(__name__)
    app.config.update(
        RECURJOBS_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
        RECURJOBS_MAIN_DOM=False,
        RECURJOBS_DASHBOARD_PREFIX="/recurjobs",
        RECURJOBS_DASHBOARD_ALLOW_ACTIONS=True,
        RECURJOBS_DASHBOARD_AUTHORIZE=_allow,
        SECRET_KEY="a secret of the app, long enough",
    )
    logged_in = {"yes": True}

    @app.before_request
    def login() -> Any:
        return None if logged_in["yes"] else ("log in first", 401)

    ext = RecurJobs(app, jobs=[beat])
    try:
        client = app.test_client()
        html = client.get("/recurjobs/").get_data(as_text=True)
        assert 'data-name="Beat"' in html
        assert "this app" in html
        token = _token(html)
        response = client.post(
            "/recurjobs/action", data={"action": "trigger", "name": "Beat", "csrf_token": token}
        )
        assert 303 == response.status_code
        wait_until(lambda: beat.runs == 1, 10, "the triggered run")
        paused = client.post(
            "/recurjobs/action", data={"action": "pause", "name": "Beat", "csrf_token": token}
        )
        html = client.get("/recurjobs/").get_data(as_text=True)
        assert (303, True) == (paused.status_code, RecurJobs.get_host(app).status()[0].paused)
        assert 'class="badge paused"' in html and 'value="resume"' in html
        logged_in["yes"] = False
        assert 401 == client.get("/recurjobs/").status_code
    finally:
        ext.stop(app)


def test_latest_runs_follow_new_rows_and_finished_runs(tables: Tables, db: TestDatabase) -> None:
    """After the first load, a run that finishes and a new job's first run both show up."""
    now = tables.now_ms
    tables.run("x", now - 5000, outcome=None, ended_ms=None)
    data = Dashboard(tables.engine, db.table_prefix)
    assert None is data.overview().last_runs["x"].outcome
    with tables.engine.begin() as conn:
        conn.execute(
            sa.update(tables.runs).where(tables.runs.c.job == "x").values(outcome="failed")
        )
    tables.run("y", now - 1000)
    later = data.overview()
    assert ("failed", "executed") == (later.last_runs["x"].outcome, later.last_runs["y"].outcome)


def test_a_run_written_late_is_counted_although_its_bucket_was_remembered(
    tables: Tables, db: TestDatabase
) -> None:
    """A run written to the history hours after it started (a write delayed by a database
    outage, another host's clock) counts in the jobs page's runs of the last day, although
    the five-minute bucket it started in was already counted and remembered."""
    now = tables.now_ms
    tables.runs_bulk([{"job": "report", "started_ms": now - i * 600_000} for i in range(1, 140)])
    data = Dashboard(tables.engine, db.table_prefix)
    assert 139 == data.overview().runs_24h["report"]
    tables.run("report", now - 3 * HOUR_MS + 1234)  # late: its bucket settled long ago
    client = _app(db).test_client()
    client.get("/")
    tables.run("report", now - 5 * HOUR_MS + 4321)
    html = client.get("/").get_data(as_text=True)
    row = re.search(r'data-name="report".*?</tr>', html, flags=re.DOTALL)
    assert row is not None
    assert (141, True) == (data.overview().runs_24h["report"], ">141<" in row.group(0))


def test_day_counts_stay_exact_as_late_runs_join_the_remembered_buckets(
    tables: Tables, db: TestDatabase
) -> None:
    """Loads a simulated minute apart for 40 minutes, with runs written on time, hours late
    and more than a day late between them: every load's count equals a plain COUNT, and the
    late runs have joined the remembered buckets by the end (counted once, never twice)."""
    start = tables.now_ms
    names = {"job-0", "job-1", "job-2"}
    tables.runs_bulk(
        [{"job": f"job-{i % 3}", "started_ms": start - i * 7 * 60_000} for i in range(206)]
    )
    data = Dashboard(tables.engine, db.table_prefix)
    runs = tables.runs.c
    first_late = None
    for step in range(40):
        now = start + step * 60_000
        tables.run("job-0", now - 1000)
        if step % 3 == 1:
            tables.run("job-1", now - 2 * HOUR_MS - step * 60_000)
        if step % 5 == 2:
            tables.run("job-2", now - DAY_MS - HOUR_MS)  # too old to count
        with tables.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(runs.id))).scalar_one()
            if first_late is None and step == 1:
                first_late = top
            plain: dict[str, int] = dict(
                conn.execute(
                    sa.select(runs.job, sa.func.count())
                    .where(runs.started_ms > now - DAY_MS, runs.started_ms <= now)
                    .group_by(runs.job)
                ).all()
            )
            counted, _ = data.days.counts(conn, names, now, top)
        assert (step, plain) == (step, counted)
    assert first_late is not None
    assert data.days.counter._high is not None and data.days.counter._high >= first_late


def _read_only_dashboard(db: TestDatabase, tables: Tables) -> Any:
    """The database argument of a dashboard whose database may only read the test's tables:
    SQLite opened read-only (``mode=ro``); on PostgreSQL the tables' owner (the test's user)
    has revoked its own right to write them; MariaDB/MySQL sessions in read-only transactions."""
    if db.backend == "sqlite":
        with tables.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # as the hosts leave the file
        return f"sqlite:///file:{sa.make_url(db.url).database}?mode=ro&uri=true"
    if db.backend == "postgres":
        with tables.engine.begin() as conn:
            for table in (tables.jobs, tables.runs, tables.servers, tables.leases):
                conn.execute(
                    sa.text(f"REVOKE INSERT, UPDATE, DELETE ON {table.name} FROM CURRENT_USER")
                )
        return db.url
    return sa.create_engine(
        db.url,
        poolclass=NullPool,
        connect_args={"init_command": "SET SESSION TRANSACTION READ ONLY"},
    )


def test_an_action_the_database_refuses_is_a_clear_403_not_an_outage(
    tables: Tables, db: TestDatabase
) -> None:
    """A database user without write rights pressing an action button gets a 403 page saying
    the database refused the change, with the driver's first line and the password masked,
    not the 503 "Database unavailable" page; the pages still read, and nothing changes."""
    tables.job("report")
    database = _read_only_dashboard(db, tables)
    try:
        client = create_app(
            database, table_prefix=db.table_prefix, allow_actions=True, authorize=_allow
        ).test_client()
        page = client.get("/")
        token = _token(page.get_data(as_text=True))
        response = client.post(
            "/action", data={"action": "pause", "name": "report", "csrf_token": token}
        )
    finally:
        if isinstance(database, sa.Engine):
            database.dispose()
    body = response.get_data(as_text=True)
    password = sa.make_url(db.url).password
    driver_says = {"sqlite": "readonly", "postgres": "permission denied", "mysql": "READ ONLY"}
    assert (200, 403) == (page.status_code, response.status_code)
    assert "The database refused the change" in body and "Database unavailable" not in body
    assert ("refreshes itself" in body, "<script" in body) == (False, False)  # a POST's answer
    assert driver_says[db.backend] in body and "update the jobs table" in body
    assert not password or f":{password}@" not in body
    assert False is bool(tables.column("report", "paused"))


@pytest.mark.slow  # waits out the 5 s statement bound
@pytest.mark.timeout(30)
def test_an_action_on_a_locked_row_answers_503_within_the_bound(
    tables: Tables, db: TestDatabase
) -> None:
    """While another session's open transaction holds the job's row (a ``psql`` left open),
    the pages still answer at once and an action on that row answers 503 "Database
    unavailable" within the 5 s bound plus margin, instead of hanging; nothing changes."""
    tables.job("report")
    if db.backend == "sqlite":
        with tables.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # as the hosts leave the file
    client = _app(db, allow_actions=True, authorize=_allow).test_client()
    token = _token(client.get("/").get_data(as_text=True))
    holder = tables.engine.connect()
    try:
        holding = holder.begin()
        holder.execute(
            sa.update(tables.jobs).where(tables.jobs.c.name == "report").values(due_now=True)
        )
        page = client.get("/")
        started = time.monotonic()
        response = client.post(
            "/action", data={"action": "pause", "name": "report", "csrf_token": token}
        )
        waited = time.monotonic() - started
        holding.rollback()
    finally:
        holder.close()
    assert (200, 503) == (page.status_code, response.status_code)
    body = response.get_data(as_text=True)
    assert ("Database unavailable" in body, "could not be changed" in body) == (True, True)
    assert ("refreshes itself" in body, "<script" in body) == (False, False)  # a POST's answer
    assert waited < 5 + 5  # the bound, and a generous margin for a loaded machine
    assert (False, False) == (
        bool(tables.column("report", "paused")),
        bool(tables.column("report", "due_now")),
    )


def test_host_status_raising_in_the_flask_mount_leaves_out_only_the_apps_jobs(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When the mounting app's host.status() raises, the jobs and servers pages still answer
    with the database's jobs, leave out the app's recurring jobs, and log why."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    engine = sa.create_engine(url, poolclass=NullPool)
    metadata = sa.MetaData()
    jobs = jobs_table(metadata, "recurjobs_")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(jobs).values(
                name="report",
                period_ms=HOUR_MS,
                aligned=False,
                last_run_ms=0,
                running=False,
                due_now=False,
                paused=False,
            )
        )
    engine.dispose()
    app = Flask(__name__)
    app.config.update(
        RECURJOBS_DATABASE_URL=url,
        RECURJOBS_MAIN_DOM=False,
        RECURJOBS_DASHBOARD_PREFIX="/recurjobs",
    )
    ext = RecurJobs(app, jobs=[Beat()])
    try:
        client = app.test_client()
        assert 'data-name="Beat"' in client.get("/recurjobs/").get_data(as_text=True)

        def broken() -> Any:
            raise RuntimeError("status is broken")

        monkeypatch.setattr(RecurJobs.get_host(app), "status", broken)
        with caplog.at_level("ERROR", logger="recurjobs.dashboard"):
            jobs_page = client.get("/recurjobs/")
            servers_page = client.get("/recurjobs/servers")
        html = jobs_page.get_data(as_text=True)
        assert (200, 200) == (jobs_page.status_code, servers_page.status_code)
        assert ('data-name="report"' in html, 'data-name="Beat"' in html) == (True, False)
        assert any("host.status() raised" in r.getMessage() for r in caplog.records)
    finally:
        ext.stop(app)


def test_worker_processes_sharing_a_secret_key_accept_each_others_forms(
    tables: Tables, db: TestDatabase
) -> None:
    """Two dashboard apps (two worker processes behind one address) with the same secret_key
    accept each other's forms; with different keys the other refuses with 403 "reload the
    page" and nothing changes."""
    tables.job("report")
    secret = "one secret for every worker of this dashboard"
    first = _app(db, allow_actions=True, authorize=_allow, secret_key=secret).test_client()
    token = _token(first.get("/").get_data(as_text=True))
    form = {"action": "pause", "name": "report", "csrf_token": token}
    stranger = _app(db, allow_actions=True, authorize=_allow, secret_key="x" * 16).test_client()
    stranger.set_cookie("recurjobs_csrf", token.partition(".")[0])  # the browser's cookie
    refused = stranger.post("/action", data=form)
    assert (403, True, False) == (
        refused.status_code,
        "reload the page" in refused.get_data(as_text=True),
        bool(tables.column("report", "paused")),
    )
    sibling = _app(db, allow_actions=True, authorize=_allow, secret_key=secret).test_client()
    sibling.set_cookie("recurjobs_csrf", token.partition(".")[0])
    accepted = sibling.post("/action", data=form)
    assert (303, True) == (accepted.status_code, bool(tables.column("report", "paused")))


@pytest.mark.parametrize(
    "before", ["+5.1", " 5.1", "5.1 ", "5_0.1", "\u0665.1", "5.\uff11", "5.1\n", "-5.1", "5."]
)
def test_the_paging_key_takes_ascii_digits_only(before: str, tmp_path: Any) -> None:
    """A ``before`` key with a sign, spaces, underscores or another script's digits (all of
    which int() takes) is a 400 naming ``before``, like any other malformed key."""
    (tmp_path / "jobs.db").touch()
    client = create_app(f"sqlite:///{tmp_path / 'jobs.db'}").test_client()
    response = client.get("/job", query_string={"name": "report", "before": before})
    assert (400, True) == (
        response.status_code,
        "before must be" in response.get_data(as_text=True),
    )


def test_an_origin_differing_in_scheme_is_refused_on_https(
    tables: Tables, db: TestDatabase
) -> None:
    """On a dashboard served over https, a POST whose Origin is the same host over plain http
    (a page a network attacker can write) is refused with 403; the https Origin is accepted,
    and so is an https Origin on a plain-http request (a TLS-terminating proxy in front)."""
    tables.job("report")
    client = _app(db, allow_actions=True, authorize=_allow).test_client()
    token = _token(client.get("/", base_url="https://localhost").get_data(as_text=True))
    form = {"action": "pause", "name": "report", "csrf_token": token}

    def post(origin: str, base_url: str) -> int:
        response = client.post("/action", data=form, headers={"Origin": origin}, base_url=base_url)
        return response.status_code

    assert 403 == post("http://localhost", "https://localhost")
    assert False is bool(tables.column("report", "paused"))
    assert 303 == post("https://localhost", "https://localhost")
    assert 303 == post("https://localhost", "http://localhost")
    assert True is bool(tables.column("report", "paused"))


def test_a_history_table_made_anew_is_counted_afresh(tmp_path: Any) -> None:
    """When the history's highest id drops below what the remembered buckets hold (the table
    emptied and its ids restarted, as SQLite's do), the day is counted afresh, not from the
    remembered buckets of the old rows."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'jobs.db'}", poolclass=NullPool)
    runs = runs_table(sa.MetaData(), "recurjobs_")
    runs.create(engine)
    now = int(time.time() * 1000)
    row = {"kind": "distributed", "host": "h", "trigger": "schedule", "outcome": "executed"}
    with engine.begin() as conn:
        conn.execute(
            sa.insert(runs),
            [{**row, "job": "report", "started_ms": now - i * 600_000} for i in range(1, 140)],
        )
    data = Dashboard(engine, "recurjobs_")
    assert 139 == data.overview().runs_24h["report"]
    with engine.begin() as conn:
        conn.execute(sa.delete(runs))
        conn.execute(
            sa.insert(runs),
            [{**row, "job": "report", "started_ms": now - i * HOUR_MS} for i in range(1, 4)],
        )
    assert 3 == data.overview().runs_24h["report"]
    engine.dispose()


@pytest.mark.slow  # waits out the 5 s statement bound
@pytest.mark.timeout(30)
def test_a_page_waiting_on_a_table_lock_answers_503_within_the_bound(
    tables: Tables, db: TestDatabase
) -> None:
    """While another session holds the jobs table locked against readers (a migration's
    ``LOCK TABLE``, MariaDB's ``LOCK TABLES ... WRITE``), the jobs page answers 503 "Database
    unavailable" within the 5 s bound plus margin instead of hanging, and refreshes itself;
    on SQLite, whose readers never wait in WAL mode, even an exclusive transaction leaves the
    page answering 200."""
    tables.job("report")
    if db.backend == "sqlite":
        with tables.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # as the hosts leave the file
    client = _app(db).test_client()
    assert 200 == client.get("/").status_code  # the schema is known before the lock
    lock = {
        "sqlite": "BEGIN EXCLUSIVE",
        "postgres": f"LOCK TABLE {tables.jobs.name} IN ACCESS EXCLUSIVE MODE",
        "mysql": f"LOCK TABLES {tables.jobs.name} WRITE",
    }[db.backend]
    holder = tables.engine.connect()
    try:
        if db.backend == "postgres":
            holder.begin()
        holder.exec_driver_sql(lock)
        started = time.monotonic()
        page = client.get("/")
        waited = time.monotonic() - started
    finally:
        if db.backend == "mysql":
            holder.exec_driver_sql("UNLOCK TABLES")
        elif db.backend == "sqlite":
            holder.exec_driver_sql("ROLLBACK")
        holder.rollback()
        holder.close()
    body = page.get_data(as_text=True)
    expected = 200 if db.backend == "sqlite" else 503
    assert (expected, expected == 503, expected == 503) == (
        page.status_code,
        "Database unavailable" in body,
        "refreshes itself" in body,
    )
    assert waited < 5 + 5  # the bound, and a generous margin for a loaded machine
    assert 200 == client.get("/").status_code
