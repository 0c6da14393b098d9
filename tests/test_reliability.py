"""Reliability under concurrency and crashes, against real ``npsd serve`` processes."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import TestDatabase, _make_database, make_tenant
from invariants import rollup_mismatches
from npsd.kit.models import Enduser, NpsRecord, Survey
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


def test_sigkill_during_bulk_upserts_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Kill -9 the server at random moments while batches stream in; after each restart the file is
    sound, every acknowledged batch is whole, no batch is partly present and roll-ups are exact.
    (The embedded SQLite file is what a crash can hurt; PostgreSQL brings its own WAL.)"""
    fresh = _make_database("sqlite", tmp_path)
    tenant = make_tenant(fresh)
    server = ServerProcess(fresh.url, fresh.settings.secret_key or "")
    rng = random.Random(11)
    acknowledged: set[int] = set()
    attempted: set[int] = set()
    batch_size = 50
    next_batch = 0
    kills = 0
    try:
        while kills < 20:
            server.start()
            stop = threading.Event()

            def stream(stop: threading.Event = stop) -> None:
                nonlocal next_batch
                with httpx.Client(base_url=server.base_url, headers=tenant.editor, timeout=30) as client:
                    while not stop.is_set():
                        b = next_batch
                        next_batch += 1
                        items = [
                            {
                                "sourceId": f"b{b}-{i}",
                                "email": f"c{(b * 7 + i) % 300}@example.com",
                                "score": (b + i) % 11,
                            }
                            for i in range(batch_size)
                        ]
                        attempted.add(b)
                        try:
                            r = client.put("/nps", json=items)
                        except httpx.HTTPError:
                            return
                        if r.status_code == 200 and r.json()["created"] == batch_size:
                            acknowledged.add(b)

            t = threading.Thread(target=stream)
            t.start()
            time.sleep(rng.uniform(0.05, 0.8))
            server.kill()
            kills += 1
            stop.set()
            t.join(30)
    finally:
        server.kill()
    path = fresh.url.split("///", 1)[1]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts: dict[int, int] = {}
        for (sid,) in conn.execute("SELECT source_id FROM nps_record WHERE org_id = ?", (tenant.org_id,)):
            b = int(sid[1:].split("-")[0])
            counts[b] = counts.get(b, 0) + 1
    finally:
        conn.close()
    assert kills >= 20
    assert len(acknowledged) > 0
    missing = [b for b in acknowledged if counts.get(b) != batch_size]
    assert missing == [], f"acknowledged batches not whole: {missing[:5]}"
    partial = {b: n for b, n in counts.items() if n != batch_size}
    assert partial == {}, f"partly applied batches: {partial}"
    assert set(counts) <= attempted
    assert rollup_mismatches(fresh.db, tenant.org_id) == []
    fresh.db.dispose()


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


@pytest.mark.parametrize("route", ["post-nps", "bulk-put", "survey"])
def test_idempotent_reply_survives_a_kill_right_after_it_is_sent(database: TestDatabase, route: str) -> None:
    """The server is killed (-9) the moment the client has the reply: a retry with the same
    Idempotency-Key after the restart replays that reply and applies nothing twice. The reply
    is stored in the same transaction as the request's writes, so no crash falls between them."""
    tenant = make_tenant(database)
    server = ServerProcess(database.url, database.settings.secret_key or "")
    requests = {
        "post-nps": (
            "POST",
            "/nps",
            lambda n: {"email": f"kill{n}@example.com", "score": n % 11, "sourceId": f"kill-{n}"},
        ),
        "bulk-put": (
            "PUT",
            "/nps",
            lambda n: [
                {"email": f"bulk{n}-{i}@example.com", "score": i % 11, "sourceId": f"bulk-{n}-{i}"}
                for i in range(20)
            ],
        ),
        "survey": ("POST", "/v1/nps-surveys", lambda n: {"name": f"Survey {n}"}),
    }
    method, path, body_of = requests[route]
    rounds = 2  # before the fix, every round failed
    try:
        for n in range(rounds):
            server.start()
            headers = {**tenant.admin, "Idempotency-Key": f"crash-{route}-{n}"}
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                first = client.request(method, path, json=body_of(n), headers=headers)
            server.kill()  # before the server can do anything after sending the reply
            assert first.status_code in (200, 201), first.text
            server.start()
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                again = client.request(method, path, json=body_of(n), headers=headers)
            server.stop()
            assert again.status_code == first.status_code, again.text
            assert again.headers.get("idempotent-replayed") == "true"
            assert again.json() == first.json()
    finally:
        server.kill()
    with database.db.transaction(write=False) as s:
        records = s.scalar(
            select(func.count()).select_from(NpsRecord).where(NpsRecord.org_id == tenant.org_id)
        )
        surveys = s.scalar(select(func.count()).select_from(Survey).where(Survey.org_id == tenant.org_id))
    assert records == {"post-nps": rounds, "bulk-put": 20 * rounds, "survey": 0}[route]
    assert surveys == (rounds if route == "survey" else 0)


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
        # the server's log says whether it closed the connection (header timeout, an error) or not
        raise AssertionError(f"{error!r}; the server's log:\n{server.output()[-4000:]}") from error
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
