"""Reliability across crashes: real ``npsd serve`` processes killed with SIGKILL mid-write or right
after a reply (apart from test_reliability.py so that the two files run in parallel)."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from conftest import TestDatabase, _make_database, make_tenant
from invariants import rollup_mismatches
from npsd.kit.models import NpsRecord, Survey
from servers import ServerProcess

pytestmark = pytest.mark.slow


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
