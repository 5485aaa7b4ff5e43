"""Shared fixtures: a manual clock; database fixtures come from tests/dbs.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from recurjobs.testing import ManualClock

pytest_plugins = ["tests.dbs"]


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    """A fresh ManualClock for one test."""
    yield ManualClock()
