"""Headless Chromium for the dashboard's browser tests (Debian's ``chromium`` and
``chromium-driver``, installed by ``scripts/test-browser.sh``, which ``make test`` runs).

A missing browser skips the test on a developer's machine and fails it under ``CI=true``.
Chromium starts with every background service off: this machine has no internet, and without
these flags Chromium keeps retrying refused connections.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.dbs import under_ci

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
# The docs' screenshots are written only when asked (RECURJOBS_SCREENSHOTS=1), so a test run
# does not rewrite tracked images in the work tree; otherwise they go to a temporary directory.
SCREENSHOTS = (
    Path(__file__).resolve().parents[1] / "docs" / "img"
    if os.environ.get("RECURJOBS_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / f"recurjobs-screenshots-{os.getuid()}"
)


def browser_unavailable(reason: str) -> None:
    """Skip, or fail under CI (where a browser test that cannot run is an error)."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: browser tests never skip)", pytrace=False)
    pytest.skip(reason)


def start_chromium(profile: Path) -> Any:
    """A Selenium driver on a fresh headless Chromium whose profile lives in ``profile``."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        browser_unavailable("selenium is not installed (pip install -e '.[test]')")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        browser_unavailable(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing: run bash scripts/test-browser.sh"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver: Any, name: str) -> Path:
    """Save the current page as ``dashboard-<name>.png`` in ``SCREENSHOTS`` (``docs/img``, committed
    and shown in the docs, when ``RECURJOBS_SCREENSHOTS=1``)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    return path
