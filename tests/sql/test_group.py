"""Group commit (``recurjobs.sql._group.Grouped``): concurrent calls share batches, each gets its
own answer; and the store's finishes that use it, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest

from recurjobs.sql import JobStore
from recurjobs.sql._group import Grouped
from recurjobs.sql._retry import is_lock_timeout
from tests.dbs import TestDatabase
from tests.sql.helpers import Job, race, row, server_proxy, set_row
from tests.sql.test_locked_row import file_locked, row_locked

LEASE = timedelta(minutes=5)
BOUND = 1.0  # the statement bound of the store in the locked-row test, in seconds


class Recorder:
    """A batch function that records its batches; the first one waits for ``release``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        return [i * 10 for i in items]


def test_a_lone_call_runs_at_once_in_a_batch_of_its_own() -> None:
    """One call with nothing in flight is its own batch and gets its own answer."""
    recorder = Recorder()
    recorder.release.set()
    grouped: Grouped[int, int] = Grouped(recorder)
    assert 70 == grouped.call(7)
    assert [[7]] == recorder.batches


def test_calls_arriving_during_a_batch_share_the_next_one() -> None:
    """While one batch is in flight, five more calls queue; they all go in the next batch, and
    each caller gets the answer to its own request."""
    recorder = Recorder()
    grouped: Grouped[int, int] = Grouped(recorder)
    answers: dict[int, int] = {}

    def call(i: int) -> None:
        answers[i] = grouped.call(i)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert recorder.entered.wait(10)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 6)]
    for t in others:
        t.start()
    while len(grouped._waiting) < 5:  # every other call is queued behind the first batch
        threading.Event().wait(0.01)
    recorder.release.set()
    for t in [first, *others]:
        t.join(10)
    assert {i: i * 10 for i in range(6)} == answers
    assert [[0], [1, 2, 3, 4, 5]] == [recorder.batches[0], sorted(recorder.batches[1])]


def test_a_failing_batch_raises_in_every_caller_of_that_batch_only() -> None:
    """An exception of the batch function reaches each request of that batch; the next batch
    runs normally."""
    calls = {"n": 0}

    def batch(items: Sequence[str]) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database away")
        return [s.upper() for s in items]

    grouped: Grouped[str, str] = Grouped(batch)
    with pytest.raises(RuntimeError, match="database away"):
        grouped.call("a")
    assert "B" == grouped.call("b")


def test_the_batch_size_is_bounded_by_limit() -> None:
    """With ``limit`` 2, six requests queued behind a batch run two at a time."""
    recorder = Recorder()
    grouped: Grouped[int, int] = Grouped(recorder, limit=2)
    first = threading.Thread(target=grouped.call, args=(0,))
    first.start()
    assert recorder.entered.wait(10)
    others = [threading.Thread(target=grouped.call, args=(i,)) for i in range(1, 7)]
    for t in others:
        t.start()
    while len(grouped._waiting) < 6:
        threading.Event().wait(0.01)
    recorder.release.set()
    for t in [first, *others]:
        t.join(10)
    assert [1, 2, 2, 2] == [len(b) for b in recorder.batches]
    assert list(range(7)) == sorted(i for b in recorder.batches for i in b)


def due_rows(store: JobStore, *names: str) -> None:
    """Rows for ``names`` (period one hour), all due now."""
    store.ensure([Job(n) for n in names])
    for name in names:
        set_row(store, name, last_run_ms=store.now_ms() - 3_600_000 - 1000)


def test_finishes_at_once_are_each_fenced_on_their_own_row(store: JobStore) -> None:
    """Twelve finishes racing (ten of claims still held, two of claims taken over) each get
    their own answer: the ten rows are freed, the two new owners keep theirs."""
    names = [f"f{i:02d}" for i in range(12)]
    due_rows(store, *names)
    claims = store.try_claim_many(dict.fromkeys(names, LEASE), owner="me")
    assert claims is not None and 12 == len(claims)
    taken = {"f03", "f07"}
    for name in taken:  # another host took these over (the claim id changed)
        set_row(store, name, claim_id="x" * 32, owner="other")
    results = race(*(lambda c=c: store.finish(c) for c in claims))
    assert {c.name: c.name not in taken for c in claims} == dict(
        zip([c.name for c in claims], results, strict=True)
    )
    for name in names:
        r = row(store, name)
        assert (name in taken) == bool(r["running"]), name
        assert ("other" if name in taken else None) == r["owner"]


@pytest.mark.parametrize("locked", [("locked",), ("locked-a", "locked-b")])
def test_a_locked_row_fails_only_its_own_finish_in_a_group(
    db: TestDatabase, locked: tuple[str, ...]
) -> None:
    """A group of finishes whose rows are partly locked by another transaction waits out one
    bound, then each finish runs alone and each locked row waits out its own: the answers come
    within one bound per locked row plus the group's. The free rows land; the locked ones fail
    and stay claimed, and land once the lock is gone."""
    if db.backend == "sqlite":
        pytest.skip("SQLite locks the whole file: test_a_group_waiting_out_a_file_lock_...")
    store = JobStore(db.url, table_prefix=db.table_prefix, statement_timeout=BOUND)
    try:
        store.create_schema()
        names = ["free-a", *locked, "free-b"]
        due_rows(store, *names)
        claims = store.try_claim_many(dict.fromkeys(names, LEASE), owner="me")
        assert claims is not None and len(names) == len(claims)
        with contextlib.ExitStack() as locks:
            for name in locked:
                locks.enter_context(row_locked(db, store, name))
            began = time.monotonic()
            answers = dict(
                zip([c.name for c in claims], store._finishes._finish_all(claims), strict=True)
            )
            took = time.monotonic() - began
        assert took < (len(locked) + 1) * BOUND + 2.0, took
        assert (True, True) == (answers["free-a"], answers["free-b"])
        assert all(isinstance(answers[n], Exception) for n in locked)
        assert all(bool(row(store, n)["running"]) for n in locked)  # still ours: retried later
        assert all(store.finish(c) for c in claims if c.name in locked)
    finally:
        store.dispose()


def test_a_group_waiting_out_a_file_lock_fails_at_once(db: TestDatabase) -> None:
    """On SQLite a group of five finishes that waits out another writer's lock on the file
    answers after that one wait, every finish failing with the lock timeout (each is retried
    later, as any failed finish), rather than waiting it out again for each finish alone (six
    bounds in all); once the lock ends, each finish lands."""
    if db.backend != "sqlite":
        pytest.skip("servers lock rows: test_a_locked_row_fails_only_its_own_finish_in_a_group")
    store = JobStore(db.url, table_prefix=db.table_prefix, statement_timeout=BOUND)
    try:
        store.create_schema()
        names = [f"n{i}" for i in range(5)]
        due_rows(store, *names)
        claims = store.try_claim_many(dict.fromkeys(names, LEASE), owner="me")
        assert claims is not None and 5 == len(claims)
        with file_locked(db):
            began = time.monotonic()
            answers = store._finishes._finish_all(claims)
            took = time.monotonic() - began
        assert all(isinstance(a, Exception) and is_lock_timeout(a) for a in answers), answers
        assert took < 2 * BOUND + 0.5, took  # one wait (each alone: six)
        assert all(bool(row(store, n)["running"]) for n in names)
        assert [True] * 5 == [store.finish(c) for c in claims]
    finally:
        store.dispose()


@pytest.mark.timeout(60)
def test_a_group_whose_commit_reply_is_lost_frees_each_row_once(db: TestDatabase) -> None:
    """The connection of a group of finishes dies after the server applied its COMMIT, before
    the answer arrived: the retry finds the rows already free, so each finish is settled
    (answered "not ours", no error, nothing left pending) and every row is freed once, with
    last_run stamped by the lost attempt."""
    proxy = server_proxy(db)
    direct = JobStore(db.url, table_prefix=db.table_prefix)
    store = JobStore(proxy.proxied_url(db.url), table_prefix=db.table_prefix)
    try:
        direct.create_schema()
        names = ["lostreply-a", "lostreply-b", "lostreply-c"]
        due_rows(direct, *names)
        claims = direct.try_claim_many(dict.fromkeys(names, LEASE), owner="me")
        assert claims is not None and 3 == len(claims)
        before = direct.now_ms()
        store.now_ms()  # the proxied store's pool has a connection already
        proxy.lose_commit_reply(after=b"lostreply-")
        answers = store._finishes._finish_all(claims)
        assert any("lost the reply" in what for _, what in proxy.log), proxy.log
        rows = [row(direct, n) for n in names]
    finally:
        proxy.close()
        store.dispose()
        direct.dispose()
    assert [False] * 3 == answers
    assert all(
        (False, None, True) == (bool(r["running"]), r["claim_id"], r["last_run_ms"] >= before)
        for r in rows
    ), rows


def test_a_finish_that_finds_its_claim_gone_says_both_possible_causes(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """A fenced finish that matches no row is settled, and its INFO line names both ways this
    happens (another server took the claim over, or an earlier attempt landed and only its
    answer was lost), since the UPDATE cannot tell them apart."""
    from recurjobs._token import CancellationToken
    from recurjobs.sql._runs import Run, RunStats, finish_once
    from recurjobs.testing import ManualClock

    store = JobStore(db.url, table_prefix=db.table_prefix)
    try:
        store.create_schema()
        due_rows(store, "gone-claim")
        claims = store.try_claim_many({"gone-claim": LEASE}, owner="me")
        assert claims is not None and 1 == len(claims)
        assert store.finish(claims[0])  # landed once: the row is free
        run = Run(object(), claims[0], CancellationToken(ManualClock()), RunStats())
        with caplog.at_level("INFO", logger="recurjobs"):
            settled = finish_once(store, run)
    finally:
        store.dispose()
    lines = [r.getMessage() for r in caplog.records if "gone-claim" in r.getMessage()]
    assert settled
    assert 1 == len(lines), lines
    assert "taken over by another server" in lines[0]
    assert "an earlier attempt whose answer was lost" in lines[0]
