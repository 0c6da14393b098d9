"""Benchmark: ``GET /nps?limit=10000`` through the full HTTP stack on SQLite.

Baseline, in the same run: a raw ``sqlite3`` fetch of the same 10,000 rows (same columns, same
order) plus JSON encoding of them as objects. Prints both times and ``ratio=`` ours/baseline.
Goal: ratio <= 3.

    python bench/list.py
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import prepare, server

N = 10_000
ROUNDS = 7
SECRET = "bench-" + secrets.token_hex(16)
COLUMNS = (
    "id, email, score, comment, enduser_id, company_id, campaign_id, source, source_id, date_sent, "
    "date_reminder_sent, date_answered, custom, created_at, updated_at, version"
)


def seed(client: httpx.Client) -> None:
    for part in range(0, N, 5000):
        body = [
            {
                "email": f"user{i}@example{i % 40}.com",
                "score": i % 11,
                "comment": f"comment number {i}",
                "sourceId": f"s{i}",
                "source": "bench",
                "custom": {"plan": "pro", "seats": i % 50},
                "dateAnswered": f"2026-{1 + i % 10:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            }
            for i in range(part, part + 5000)
        ]
        r = client.put("/nps", content=orjson.dumps(body))
        assert r.status_code == 200, r.text[:300]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'list.db'}"
        org_id, token = prepare(url, SECRET)
        headers = {"Authorization": f"Bearer {token}"}
        ours = []
        with server(url, SECRET) as base, httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            seed(client)
            client.get("/nps", params={"limit": 100})
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                r = client.get("/nps", params={"limit": N, "npsExpiryDay": 0})
                body = r.content
                ours.append(time.perf_counter() - t0)
                assert r.status_code == 200 and len(orjson.loads(body)) == N
        base_times = []
        conn = sqlite3.connect(url.split("///", 1)[1])
        names = [c.strip() for c in COLUMNS.split(",")]
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM nps_record WHERE org_id=? "
                "ORDER BY date_answered DESC, id DESC LIMIT ?",
                (org_id, N),
            ).fetchall()
            encoded = json.dumps([dict(zip(names, row, strict=True)) for row in rows]).encode()
            base_times.append(time.perf_counter() - t0)
            assert len(rows) == N and encoded
        conn.close()
    o, b = statistics.median(ours), statistics.median(base_times)
    ratio = o / b
    print(
        f"list_10000_sqlite ours={o * 1000:.1f}ms baseline={b * 1000:.1f}ms(raw-sqlite3+json) ratio={ratio:.2f} "
        f"goal=ratio<=3 met={'yes' if ratio <= 3 else 'no'}"
    )


if __name__ == "__main__":
    main()
