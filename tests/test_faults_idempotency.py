"""A keyed request cut short by a crash does not block its retries (#11, coordination faults).

Before: the ``pending`` mark of an ``Idempotency-Key`` outlived its server's SIGKILL, and retries
through another server got 409 for five minutes. Now the mark names its owner process and, on
PostgreSQL, that process holds an advisory lock for the key on a connection of its own: a retry
that finds the lock free (or, on SQLite, the owner process gone) takes the key over at once.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from conftest import TestDatabase, assert_error, make_tenant
from faults import fresh_database, wait_for
from invariants import rollup_mismatches
from npsd.app import create_app
from npsd.kit.db import normalize_url
from npsd.kit.idempotency import _start_time, lock_name, owner_id
from npsd.kit.models import IdempotencyKey, NpsRecord
from npsd.kit.timeutil import utcnow
from servers import ServerProcess

ITEMS = 5000  # the largest bulk write: slow enough to be killed in the middle


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fdb(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    with fresh_database(request.param) as tdb:
        yield tdb


@pytest.fixture(scope="module")
def fclient(fdb: TestDatabase) -> Iterator[TestClient]:
    with TestClient(create_app(fdb.settings, fdb.db), raise_server_exceptions=False) as c:
        yield c


def pending_key(tdb: TestDatabase, org_id: str, key: str, body: bytes, owner: str) -> None:
    """A ``pending`` mark as a first request of process ``owner`` leaves it."""
    now = utcnow()
    with tdb.db.transaction() as session:
        session.add(
            IdempotencyKey(
                org_id=org_id,
                key=key,
                method="POST",
                path="/nps",
                body_hash=hashlib.sha256(body).hexdigest(),
                status="pending",
                created_at=now,
                expires_at=now + timedelta(days=1),
                owner=owner,
            )
        )


def test_a_pending_key_is_taken_over_only_once_its_owner_is_dead(
    fdb: TestDatabase, fclient: TestClient
) -> None:
    tenant = make_tenant(fdb)
    body = orjson.dumps({"email": "owner@example.com", "score": 7})
    headers = {**tenant.editor, "Content-Type": "application/json"}
    # a process that ran a first request and died (it exited; its parent reaped it)
    gone = subprocess.Popen(["true"])
    gone.wait(30)
    dead = f"{socket.gethostname()}:{gone.pid}:"
    pending_key(fdb, tenant.org_id, "dead-owner", body, dead)
    r = fclient.post("/nps", content=body, headers={**headers, "Idempotency-Key": "dead-owner"})
    assert r.status_code == 200, r.text  # taken over at once, no five-minute wait
    row = key_row(fdb, tenant.org_id, "dead-owner")
    assert row is not None and row.status == "done" and row.owner == owner_id()

    # a first request still running elsewhere: 409 for as long as its owner lives
    if fdb.kind == "postgresql":  # the owner holds the key's lock on a connection of its own
        holder = create_engine(normalize_url(fdb.url), poolclass=NullPool).connect()
        holder.execute(
            text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"),
            {"k": lock_name(tenant.org_id, "live-owner")},
        )
        holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
        live = "another-machine:4242:1"
    else:  # the owner is a live process of this machine: the test runner's parent
        holder = None
        live = f"{socket.gethostname()}:{os.getppid()}:{_start_time(os.getppid()) or ''}"
    pending_key(fdb, tenant.org_id, "live-owner", body, live)
    r = fclient.post("/nps", content=body, headers={**headers, "Idempotency-Key": "live-owner"})
    assert_error(r, 409, "Idempotency-Key")
    if holder is not None:  # the owner's connection dies with its process: the lock goes with it
        holder.close()
        # closing returns before the server's backend has ended (and let go of the lock); on a
        # loaded machine the request below could come first
        wait_for(lambda: not advisory_locks_of(fdb, holder_pid), 30, "the owner's backend to end")
        r = fclient.post("/nps", content=body, headers={**headers, "Idempotency-Key": "live-owner"})
        assert r.status_code == 200, r.text


def advisory_locks_of(tdb: TestDatabase, pid: int) -> int:
    with tdb.db.transaction(write=False) as session:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = :pid"
        return int(session.execute(text(query), {"pid": pid}).scalar_one())


def key_row(tdb: TestDatabase, org_id: str, key: str) -> IdempotencyKey | None:
    with tdb.db.transaction(write=False) as session:
        return session.get(IdempotencyKey, (org_id, key))


@pytest.fixture(scope="module")
def pgdb() -> Iterator[TestDatabase]:
    with fresh_database("postgresql") as tdb:
        yield tdb


def test_a_retry_after_the_first_server_died_mid_request_runs_at_once(pgdb: TestDatabase) -> None:
    """PostgreSQL, where several servers serve one database: kill one mid-request, retry on the other."""
    fdb = pgdb
    tenant = make_tenant(fdb)
    key = "crash-mid-request"
    items = [{"email": f"mid{i}@example.com", "score": i % 11, "sourceId": f"mid-{i}"} for i in range(ITEMS)]
    headers = {**tenant.admin, "Idempotency-Key": key}
    secret = fdb.settings.secret_key or ""
    first, second = ServerProcess(fdb.url, secret), ServerProcess(fdb.url, secret)
    starting = [threading.Thread(target=s.start, kwargs={"timeout": 90}) for s in (first, second)]
    for t in starting:
        t.start()
    for t in starting:
        t.join(120)
    outcome: dict[str, Any] = {}

    def send_first() -> None:
        try:
            with httpx.Client(base_url=first.base_url, timeout=120) as client:
                outcome["reply"] = client.put("/nps", json=items, headers=headers)
        except httpx.HTTPError as exc:  # the server died under it: what a client sees
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=send_first)
        thread.start()
        pending = wait_for(
            lambda: (row := key_row(fdb, tenant.org_id, key)) is not None and row, 60, "the key's claim"
        )
        assert pending.status == "pending" and pending.owner is not None
        first.kill()  # mid-request: claimed, not answered
        thread.join(30)
        assert "reply" not in outcome, "the first request finished before the kill; make it slower"
        assert (row := key_row(fdb, tenant.org_id, key)) is not None and row.status == "pending"
        started = time.monotonic()
        with httpx.Client(base_url=second.base_url, timeout=120) as client:
            retry = client.put("/nps", json=items, headers=headers)
        took = time.monotonic() - started
        print(f"the retry of a killed {ITEMS}-item keyed PUT answered 200 in {took:.1f} s")
        assert retry.status_code == 200, retry.text  # not 409 "still being processed"
        assert retry.headers.get("idempotent-replayed") is None  # it ran: the first never finished
        assert retry.json()["created"] == ITEMS
        with httpx.Client(base_url=second.base_url, timeout=120) as client:
            replay = client.put("/nps", json=items, headers=headers)
        assert replay.status_code == 200 and replay.headers.get("idempotent-replayed") == "true"
        assert replay.json() == retry.json()
    finally:
        first.kill()
        second.kill()
    assert took < 60, took  # at once: no waiting out a five-minute stale mark
    done = key_row(fdb, tenant.org_id, key)
    assert done is not None and done.status == "done"
    with fdb.db.transaction(write=False) as session:
        records = session.scalar(
            select(func.count()).select_from(NpsRecord).where(NpsRecord.org_id == tenant.org_id)
        )
        source_ids = session.scalar(
            select(func.count(func.distinct(NpsRecord.source_id))).where(NpsRecord.org_id == tenant.org_id)
        )
    assert records == source_ids == ITEMS  # applied exactly once
    assert rollup_mismatches(fdb.db, tenant.org_id) == []
