"""Reliability under concurrency and crashes, against real ``npsd serve`` processes."""

from __future__ import annotations

import random
import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import TestDatabase, make_tenant
from invariants import rollup_mismatches
from npsd.kit.models import Enduser, NpsRecord
from servers import ServerProcess

pytestmark = pytest.mark.slow


def run_all(threads: list[threading.Thread]) -> None:
    """Start the client threads together and wait for every one (at most 5 minutes each)."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)


def test_concurrent_bulk_upserts_with_overlapping_source_ids(database: TestDatabase) -> None:
    """8 clients upsert overlapping sourceIds at once: no 5xx, no duplicates, exact counts and roll-ups."""
    tenant = make_tenant(database)
    server = ServerProcess(database.url, database.settings.secret_key or "")
    server.start()
    pool = [f"src-{i}" for i in range(400)]
    rng = random.Random(7)
    plans = [[rng.sample(pool, 120) for _ in range(6)] for _ in range(8)]
    sent_scores: dict[str, set[int]] = {}
    lock = threading.Lock()
    replies: list[tuple[int, dict[str, Any]]] = []
    errors: list[str] = []

    def client_run(batches: list[list[str]], seed: int) -> None:
        local = random.Random(seed)
        with httpx.Client(base_url=server.base_url, headers=tenant.editor, timeout=120) as client:
            for sids in batches:
                items = []
                for sid in sids:
                    score = local.randint(0, 10)
                    n = int(sid.split("-")[1])
                    items.append(
                        {
                            "sourceId": sid,
                            "email": f"person{n % 150}@example{n % 7}.com",
                            "score": score,
                            "dateAnswered": f"2026-0{1 + n % 9}-1{n % 10}T10:00:00Z",
                        }
                    )
                    with lock:
                        sent_scores.setdefault(sid, set()).add(score)
                try:
                    r = client.put("/nps", json=items)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                with lock:
                    replies.append(
                        (
                            r.status_code,
                            r.json()
                            if r.headers.get("content-type", "").startswith("application/json")
                            else {"raw": r.text},
                        )
                    )

    threads = [threading.Thread(target=client_run, args=(plans[i], i)) for i in range(8)]
    try:
        run_all(threads)
    finally:
        server.stop()
    assert errors == []
    assert len(replies) == 48
    assert all(status == 200 for status, _ in replies), [r for r in replies if r[0] != 200][:2]
    created = sum(body["created"] for _, body in replies)
    touched = sum(body["created"] + body["updated"] + body["nonupdates"] for _, body in replies)
    assert touched == 48 * 120
    with database.db.transaction(write=False) as s:
        rows = s.execute(
            select(NpsRecord.source_id, NpsRecord.score).where(NpsRecord.org_id == tenant.org_id)
        ).all()
        dup_emails = s.execute(
            select(Enduser.email_key, func.count())
            .where(Enduser.org_id == tenant.org_id)
            .group_by(Enduser.email_key)
            .having(func.count() > 1)
        ).all()
    assert len(rows) == len({sid for sid, _ in rows}) == len(sent_scores) == created
    assert all(score in sent_scores[sid] for sid, score in rows)
    assert dup_emails == []
    assert rollup_mismatches(database.db, tenant.org_id) == []


def test_concurrent_single_creates_are_each_answered_for_themselves(database: TestDatabase) -> None:
    """16 clients POST /nps at once (group commit shares their transactions): every request gets its
    own record or its own 409, sourceIds stay unique, and the roll-ups are exact."""
    tenant = make_tenant(database)
    server = ServerProcess(database.url, database.settings.secret_key or "")
    server.start()
    outcomes: list[tuple[str, int, dict[str, Any]]] = []
    lock = threading.Lock()

    def client_run(worker: int) -> None:
        with httpx.Client(base_url=server.base_url, headers=tenant.editor, timeout=60) as client:
            for i in range(25):
                shared = f"shared-{i}"  # every client tries to claim the same 25 sourceIds
                for sid, email in (
                    (shared, f"c{worker}-{i}@example{i % 3}.com"),
                    (f"own-{worker}-{i}", f"own{worker}-{i}@example.com"),
                ):
                    r = client.post(
                        "/nps", json={"email": email, "score": (worker + i) % 11, "sourceId": sid}
                    )
                    with lock:
                        outcomes.append((sid, r.status_code, r.json()))

    threads = [threading.Thread(target=client_run, args=(w,)) for w in range(16)]
    try:
        run_all(threads)
    finally:
        server.stop()
    assert len(outcomes) == 16 * 25 * 2
    assert {status for _, status, _ in outcomes} <= {200, 409}
    winners: dict[str, list[dict[str, Any]]] = {}
    for sid, status, body in outcomes:
        if status == 200:
            assert body["sourceId"] == sid
            winners.setdefault(sid, []).append(body)
        else:
            assert body["details"][0]["field"] == "sourceId"
    assert all(len(bodies) == 1 for bodies in winners.values())
    assert len(winners) == 25 + 16 * 25  # each shared sourceId once, every own one
    with database.db.transaction(write=False) as s:
        stored = {
            sid: rid
            for sid, rid in s.execute(
                select(NpsRecord.source_id, NpsRecord.id).where(NpsRecord.org_id == tenant.org_id)
            )
        }
    assert stored == {sid: bodies[0]["_id"] for sid, bodies in winners.items()}
    assert rollup_mismatches(database.db, tenant.org_id) == []


def test_many_keyed_writes_at_once_all_get_their_answer(database: TestDatabase) -> None:
    """300 writes carrying Idempotency-Keys at once against one server, then 300 reads: every one
    is answered (no 5xx, no time-out) and a key sent 60 times applies once.

    Waiting happens in the event loop, never in a worker thread (kit/db.py ``serialized``). When
    claims waited for SQLite's lock in threads, or PostgreSQL sessions for a pooled connection or
    an organization's advisory lock, every thread ended up waiting while the holders needed a
    thread to commit: 500s ("database is locked", "QueuePool limit reached") and stalls of minutes.
    """
    import asyncio

    tenant = make_tenant(database)
    server = ServerProcess(database.url, database.settings.secret_key or "")
    server.start()

    async def run() -> list[tuple[int, int, str | None]]:
        limits = httpx.Limits(max_connections=400)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=limits) as client:
            survey = (await client.post("/v1/nps-surveys", json={"name": "s"}, headers=tenant.admin)).json()

            async def one(i: int) -> tuple[int, int, str | None]:
                kind = i % 5
                headers = {**tenant.admin, "Idempotency-Key": "same" if kind == 1 else f"k{i}"}
                if kind in (0, 1):
                    email = "same@example.com" if kind == 1 else f"a{i}@example.com"
                    r = await client.post("/nps", json={"email": email, "score": 5}, headers=headers)
                elif kind == 2:
                    body = [{"email": f"b{i}@example.com", "score": 3, "sourceId": f"s{i}"}]
                    r = await client.put("/nps", json=body, headers=headers)
                elif kind == 3:
                    r = await client.patch(
                        f"/v1/nps-surveys/{survey['id']}", json={"name": f"n{i}"}, headers=headers
                    )
                else:
                    body = {"recipients": [{"email": f"i{i}@example.com"}]}
                    r = await client.post(
                        f"/v1/nps-surveys/{survey['id']}/invitations", json=body, headers=headers
                    )
                return kind, r.status_code, r.headers.get("idempotent-replayed")

            written = await asyncio.gather(*(one(i) for i in range(300)))
        # The reads open connections of their own: a connection that sat idle past the server's
        # keep-alive while the slowest writes finished may be closed by the server just as the
        # client reuses it, which HTTP/1.1 allows and no server can prevent.
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=limits) as client:
            reads = await asyncio.gather(
                *(client.get("/nps", params={"limit": 10}, headers=tenant.viewer) for _ in range(300))
            )
            return [*written, *((-1, r.status_code, None) for r in reads)]

    try:
        results = asyncio.run(run())
    except httpx.TransportError as error:
        # the server's log says whether it closed the connection (header timeout, an error) or
        # not; stopped first, so that its last lines are in
        server.stop()
        try:
            what = f"{error.request.method} {error.request.url.path}"
        except RuntimeError:  # no request attached
            what = "a request"
        raise AssertionError(f"{what}: {error!r}; the server's log:\n{server.output()[-4000:]}") from error
    finally:
        server.stop()
    assert [r for r in results if r[1] >= 500] == []
    assert {status for kind, status, _ in results if kind == -1} == {200}
    assert {status for kind, status, _ in results if kind != 1} == {200}
    same = [(status, replayed) for kind, status, replayed in results if kind == 1]
    assert {status for status, _ in same} <= {200, 409}  # 409: the first was still running
    assert sum(1 for status, replayed in same if status == 200 and replayed is None) == 1
    with database.db.transaction(write=False) as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(NpsRecord)
                .where(NpsRecord.org_id == tenant.org_id, NpsRecord.email == "same@example.com")
            )
            == 1
        )
