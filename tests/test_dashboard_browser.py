"""The dashboard in a real browser (headless Chromium) over two real host processes on PostgreSQL.

One browser, two hosts and two dashboards (``recurjobs dashboard`` processes: one with actions
on loopback, one read-only) serve the whole module. The hosts' jobs are in
``tests/apps/dashboard_host.py``; they record run history.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from recurjobs.sql._history_table import meta_table, runs_table
from recurjobs.sql._tables import create_tables
from tests.apps.dashboard_host import XSS_NAME
from tests.apps.procs import child_env, free_port, lines, python, stop_group, wait_until
from tests.browser import screenshot, start_chromium
from tests.dbs import (
    TestDatabase,
    _problem_reaching,
    database_unavailable,
    database_urls,
    drop_tables,
    new_table_prefix,
)

# The first test also pays for the module's set-up (two hosts, two dashboards, Chromium).
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.multiprocess,
    pytest.mark.slow,
    pytest.mark.timeout(180),
]

# Synthetic history of alpha-report (it runs only when triggered): what the job page charts.
SYNTHETIC_RUNS = 40
SYNTHETIC_ERROR = (
    'Traceback (most recent call last):\n  File "report.py", line 3\nOSError: <disk> full'
)


@dataclass
class Cluster:
    """The module's PostgreSQL tables, host processes and dashboards."""

    db: TestDatabase
    engine: sa.Engine
    out: Path
    actions_url: str
    readonly_url: str

    def runs_of(self, name: str) -> int:
        """How many runs of ``name`` the hosts recorded in the output file."""
        return sum(1 for line in lines(self.out) if line.startswith(f"run {name} "))

    def paused(self, name: str) -> bool:
        """The ``paused`` column of ``name``'s row."""
        with self.engine.connect() as conn:
            query = sa.text(f"SELECT paused FROM {self.db.table_prefix}jobs WHERE name = :n")
            return bool(conn.execute(query, {"n": name}).scalar_one())

    def history_count(self, name: str, since_ms: int = 0) -> int:
        """Rows of ``name`` in the runs table started at or after ``since_ms``."""
        with self.engine.connect() as conn:
            query = sa.text(
                f"SELECT count(*) FROM {self.db.table_prefix}runs "
                "WHERE job = :n AND started_ms >= :s"
            )
            return int(conn.execute(query, {"n": name, "s": since_ms}).scalar_one())


def _server_database() -> TestDatabase:
    url = database_urls()["postgres"]
    if url is None:
        database_unavailable("RECURJOBS_TEST_POSTGRES_URL is not set")
    problem = _problem_reaching("postgres", url)
    if problem is not None:
        database_unavailable(f"postgres is unreachable: {problem}")
    return TestDatabase("postgres", url, new_table_prefix())


def _seed_history(engine: sa.Engine, prefix: str) -> None:
    """The runs table (as the history writer would create it) with runs of alpha-report."""
    metadata = sa.MetaData()
    runs = runs_table(metadata, prefix)
    meta = meta_table(metadata, prefix)
    create_tables(engine, metadata)
    now = int(time.time() * 1000)
    rows = []
    for i in range(SYNTHETIC_RUNS):
        started = now - (SYNTHETIC_RUNS - i) * 3_600_000
        failed = i % 9 == 4
        rows.append(
            {
                "job": "alpha-report",
                "kind": "distributed",
                "host": "report-server:4242:0f0f0f0f",
                "claim_id": f"{i:032x}",
                "trigger": "manual" if i % 13 == 0 else "schedule",
                "started_ms": started,
                "ended_ms": started + 20_000 + (i * 7919) % 40_000,
                "outcome": "failed" if failed else "executed",
                "error": SYNTHETIC_ERROR if failed else None,
            }
        )
    with engine.begin() as conn:
        conn.execute(sa.insert(runs), rows)
        if conn.execute(sa.select(meta.c.key)).first() is None:
            conn.execute(sa.insert(meta).values(key="runs_schema", value="1"))


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _dashboard(tmp: Path, db: TestDatabase, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            python(),
            "-m",
            "recurjobs",
            "dashboard",
            "--database",
            db.url,
            "--table-prefix",
            db.table_prefix,
            "--bind",
            f"127.0.0.1:{port}",
            *extra,
        ],
        env=child_env(tmp),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: _get(url) == 200, 30, f"the dashboard at {url}")
    return proc, url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two host processes (jobs alpha-* and beta-*/hostile name) and two dashboards."""
    db = _server_database()
    tmp = tmp_path_factory.mktemp("dashboard")
    out = tmp / "runs.txt"
    engine = sa.create_engine(db.url, poolclass=NullPool)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _seed_history(engine, db.table_prefix)
        for side in ("a", "b"):
            env = child_env(
                tmp,
                DASH_DATABASE=db.url,
                DASH_PREFIX=db.table_prefix,
                DASH_SIDE=side,
                DASH_OUT=str(out),
            )
            procs.append(
                subprocess.Popen(
                    [python(), "-m", "tests.apps.dashboard_host"],
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.PIPE,
                    stderr=(tmp / f"host-{side}.log").open("wb"),
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            assert b"ready\n" == proc.stdout.readline()
        names = {"alpha-report", "alpha-fail", "beta-tick", XSS_NAME}

        def rows_present() -> bool:
            with engine.connect() as conn:
                query = sa.text(f"SELECT name FROM {db.table_prefix}jobs")
                return names <= set(conn.execute(query).scalars())

        wait_until(rows_present, 30, "the hosts' job rows")
        actions, actions_url = _dashboard(tmp, db, "--allow-actions")
        procs.append(actions)
        readonly, readonly_url = _dashboard(tmp, db)
        procs.append(readonly)
        yield Cluster(db, engine, out, actions_url, readonly_url)
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        engine.dispose()
        drop_tables(db)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module."""
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


def _by() -> Any:
    from selenium.webdriver.common.by import By

    return By


def _job_row(browser: Any, name: str) -> Any:
    """The jobs page's row of ``name`` (found by its link text, so any name works)."""
    by = _by()
    for row in browser.find_elements(by.CSS_SELECTOR, "#jobs tr.job"):
        if row.find_element(by.CSS_SELECTOR, "a.job-link").text == name:
            return row
    return None


def _open(browser: Any, url: str, selector: str) -> None:
    by = _by()
    browser.get(url)
    wait_until(lambda: browser.find_elements(by.CSS_SELECTOR, selector), 20, selector)


def _no_alert(browser: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        browser.switch_to.alert  # noqa: B018 - the property raises when there is no alert
    except NoAlertPresentException:
        return True
    return False


def _job_url(base: str, name: str, **params: str) -> str:
    return base + "job?" + urllib.parse.urlencode({"name": name, **params})


def test_jobs_page_lists_the_jobs_of_both_host_processes(browser: Any, cluster: Cluster) -> None:
    """The jobs page shows the distributed jobs of both hosts, each once."""
    _open(browser, cluster.actions_url, "#jobs tr.job")
    by = _by()
    shown = [a.text for a in browser.find_elements(by.CSS_SELECTOR, "#jobs a.job-link")]
    expected = sorted(["alpha-fail", "alpha-report", "beta-tick", XSS_NAME])
    assert expected == sorted(name for name in shown if name in expected)
    assert "distributed" == _job_row(browser, "beta-tick").find_elements(by.TAG_NAME, "td")[1].text


def test_hostile_job_name_renders_as_text(browser: Any, cluster: Cluster) -> None:
    """A job named like an HTML tag with a script shows as text, runs no script, adds no image."""
    _open(browser, cluster.actions_url, "#jobs tr.job")
    by = _by()
    row = _job_row(browser, XSS_NAME)
    assert row is not None
    assert [] == browser.find_elements(by.CSS_SELECTOR, "#jobs img")
    assert _no_alert(browser)
    row.find_element(by.CSS_SELECTOR, "a.job-link").click()
    wait_until(lambda: browser.find_elements(by.ID, "job-name"), 20, "the job page")
    assert XSS_NAME == browser.find_element(by.ID, "job-name").text
    assert XSS_NAME in browser.title
    assert [] == browser.find_elements(by.CSS_SELECTOR, "main img")
    assert _no_alert(browser)


def test_job_page_shows_chart_claim_and_traceback(browser: Any, cluster: Cluster) -> None:
    """A job's page charts its runs, shows its row and schedule, and opens a failure's
    traceback."""
    by = _by()
    _open(browser, _job_url(cluster.actions_url, "alpha-report"), "#history tr.run")
    bars = browser.find_elements(by.CSS_SELECTOR, "svg.chart rect")
    assert SYNTHETIC_RUNS == len(bars)
    facts = browser.find_element(by.ID, "row").text
    assert "every 1 h" in facts
    screenshot(browser, "job")
    failure = browser.find_elements(by.CSS_SELECTOR, "#history details.traceback")[0]
    failure.find_element(by.TAG_NAME, "summary").click()
    shown = failure.find_element(by.TAG_NAME, "pre").text
    assert "OSError: <disk> full" == shown.splitlines()[-1]


def test_failing_job_of_a_host_shows_its_traceback(browser: Any, cluster: Cluster) -> None:
    """A job that raises in a host process shows the exception in its history."""
    by = _by()
    wait_until(lambda: cluster.history_count("alpha-fail") > 0, 30, "a recorded failure")
    _open(
        browser,
        _job_url(cluster.actions_url, "alpha-fail", outcome="failed"),
        "#history details.traceback",
    )
    failure = browser.find_element(by.CSS_SELECTOR, "#history details.traceback")
    failure.find_element(by.TAG_NAME, "summary").click()
    assert "RuntimeError: boom: the <b>report</b> server said no" in failure.text


def _click_action(browser: Any, cluster: Cluster, name: str, action: str) -> None:
    """Click ``action`` on ``name``'s row and wait for the page the POST leads to.

    The page before the click has the same rows, so waiting for rows alone could return
    before the action reached the server: wait until the clicked row is gone first.
    """
    by = _by()
    _open(browser, cluster.actions_url, "#jobs tr.job")
    row = _job_row(browser, name)
    row.find_element(by.CSS_SELECTOR, f"button[value='{action}']").click()
    wait_until(lambda: _stale(row), 20, "the page after the action")
    wait_until(lambda: browser.find_elements(by.CSS_SELECTOR, "#jobs tr.job"), 20, "the reload")


def _stale(element: Any) -> bool:
    """Whether ``element`` belongs to a page the browser has left.

    Asked while the old page is being replaced, chromedriver may answer "Node with given id
    does not belong to the document" (a plain WebDriverException) instead of the stale
    element error: the element is gone either way.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def test_trigger_button_makes_a_host_run_the_job(browser: Any, cluster: Cluster) -> None:
    """Trigger now on a job due in an hour makes one of the hosts run it at its next poll."""
    before = cluster.runs_of("alpha-report")
    clicked_ms = int(time.time() * 1000) - 1000
    _click_action(browser, cluster, "alpha-report", "trigger")
    wait_until(lambda: cluster.runs_of("alpha-report") > before, 30, "the triggered run")
    assert before + 1 == cluster.runs_of("alpha-report")
    wait_until(
        lambda: cluster.history_count("alpha-report", clicked_ms) > 0, 30, "the run in history"
    )
    by = _by()
    _open(browser, _job_url(cluster.actions_url, "alpha-report"), "#history tr.run")
    first = browser.find_element(by.CSS_SELECTOR, "#history tr.run")
    assert "report-server" not in first.text  # the host's run, newer than the seeded ones


def test_pause_button_stops_claims_and_resume_restarts_them(browser: Any, cluster: Cluster) -> None:
    """Pause sets the row's paused flag (the hosts then stop claiming it); Resume clears it."""
    by = _by()
    wait_until(lambda: cluster.runs_of("beta-tick") > 0, 30, "beta-tick running")
    _click_action(browser, cluster, "beta-tick", "pause")
    assert cluster.paused("beta-tick")
    row = _job_row(browser, "beta-tick")
    assert "paused" in row.find_element(by.CSS_SELECTOR, ".badge.paused").text
    assert [] != row.find_elements(by.CSS_SELECTOR, "button[value='resume']")
    screenshot(browser, "jobs")
    time.sleep(2.0)  # a run claimed just before the pause may still finish
    paused_count = cluster.runs_of("beta-tick")
    time.sleep(3.0)  # three periods and fifteen polls: no claim may happen
    assert paused_count == cluster.runs_of("beta-tick")
    _click_action(browser, cluster, "beta-tick", "resume")
    assert not cluster.paused("beta-tick")
    resumed_from = cluster.runs_of("beta-tick")
    wait_until(lambda: cluster.runs_of("beta-tick") > resumed_from, 30, "runs after resume")


def test_read_only_dashboard_has_no_buttons_and_refuses_posts(
    browser: Any, cluster: Cluster
) -> None:
    """Without actions no button or POST form is rendered, and a POST is answered 403."""
    by = _by()
    _open(browser, cluster.readonly_url, "#jobs tr.job")
    assert [] == browser.find_elements(by.TAG_NAME, "button")
    assert [] == browser.find_elements(by.CSS_SELECTOR, "form[method='post']")
    _open(browser, _job_url(cluster.readonly_url, "alpha-report"), "#history tr.run")
    assert [] == browser.find_elements(by.TAG_NAME, "button")
    body = urllib.parse.urlencode({"action": "pause", "name": "alpha-report"}).encode()
    request = urllib.request.Request(cluster.readonly_url + "action", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert 403 == refused.value.code
    assert not cluster.paused("alpha-report")


def test_post_without_csrf_token_is_refused(browser: Any, cluster: Cluster) -> None:
    """A same-origin POST carrying the cookie but no form token is answered 403, changing
    nothing."""
    _open(browser, cluster.actions_url, "#jobs tr.job")
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch("action", {method: "POST", credentials: "same-origin",
            headers: {"Content-Type": "application/x-www-form-urlencoded"},
            body: "action=pause&name=alpha-report"}).then(r => done(r.status), e => done(-1));
        """
    )
    assert 403 == status
    assert not cluster.paused("alpha-report")


def test_servers_page_shows_both_hosts_and_the_publisher(browser: Any, cluster: Cluster) -> None:
    """The servers page lists the two host processes, exactly one of them as publisher."""
    by = _by()
    _open(browser, cluster.actions_url + "servers", "#servers tr.server")

    def roles() -> list[str]:
        browser.refresh()
        rows = browser.find_elements(by.CSS_SELECTOR, "#servers tr.server")
        found = [row.find_elements(by.TAG_NAME, "td")[2].text for row in rows]
        return found if sorted(found) == ["publisher", "subscriber"] else []

    assert ["publisher", "subscriber"] == sorted(wait_until(roles, 30, "both servers' roles"))
    screenshot(browser, "servers")
