"""A keyed request cut short by a crash does not block its retries (#11, coordination faults).

Before: the ``pending`` mark of an ``Idempotency-Key`` outlived its server's SIGKILL, and retries
through another server got 409 for five minutes. Now the mark names its owner process and, on
PostgreSQL, that process holds an advisory lock for the key on a connection of its own: a retry
that finds the lock free (or, on SQLite, the owner process gone) takes the key over at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import TestDatabase, make_tenant
from faults import fresh_database, wait_for
from invariants import rollup_mismatches
from npsd.kit.models import IdempotencyKey, NpsRecord
from servers import ServerProcess

ITEMS = 5000  # the largest bulk write: slow enough to be killed in the middle


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fdb(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    with fresh_database(request.param) as tdb:
        yield tdb


def key_row(tdb: TestDatabase, org_id: str, key: str) -> IdempotencyKey | None:
    with tdb.db.transaction(write=False) as session:
        return session.get(IdempotencyKey, (org_id, key))


def test_a_retry_after_the_first_server_died_mid_request_runs_at_once(fdb: TestDatabase) -> None:
    tenant = make_tenant(fdb)
    key = "crash-mid-request"
    items = [{"email": f"mid{i}@example.com", "score": i % 11, "sourceId": f"mid-{i}"} for i in range(ITEMS)]
    headers = {**tenant.admin, "Idempotency-Key": key}
    secret = fdb.settings.secret_key or ""
    first, second = ServerProcess(fdb.url, secret), ServerProcess(fdb.url, secret)
    first.start(timeout=60)
    second.start(timeout=60)
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
