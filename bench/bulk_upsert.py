"""Benchmark: ``PUT /nps`` bulk upsert of 5,000 records through the full HTTP stack.

Creates (new e-mails, so contacts are created too), then updates of the same records by
``sourceId``. Two baselines, in the same run, each the median of as many rounds:

* full schema: raw ``sqlite3`` ``executemany`` of the same rows into the same (migrated) tables,
  contacts and records with all their indexes (no validation, roll-ups or HTTP).
  Goals: creates >= 25,000 records/s, ratio <= 4.
* minimal (``_min`` lines): the least any store of these rows costs: one table of the record
  columns with two indexes (the id and the unique ``(org_id, source_id)``), the rows inserted by
  one raw ``executemany`` in one transaction, then updated by ``UPDATE ... WHERE org_id=? AND
  source_id=?``. Goals: create ratio <= 4, update ratio <= 5.

Prints records/s and ``ratio=`` ours/baseline time. With ``NPSD_TEST_DATABASE_URL`` set, the
HTTP part is repeated against PostgreSQL, against raw psycopg (full schema: pipelined
``executemany``; minimal: ``COPY`` for the insert, ``executemany`` for the update).

    python bench/bulk_upsert.py
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import prepare, server

BATCH = 5000
ROUNDS = 5
SECRET = "bench-" + secrets.token_hex(16)


def items(round_no: int, score_shift: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "email": f"user{round_no}-{i}@example{i % 50}.com",
            "score": (i + score_shift) % 11,
            "comment": f"comment {i}",
            "sourceId": f"r{round_no}-{i}",
            "source": "bench",
            "dateAnswered": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z",
        }
        for i in range(BATCH)
    ]


def http_rounds(url: str) -> tuple[list[float], list[float]]:
    _, token = prepare(url, SECRET)
    creates, updates = [], []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with server(url, SECRET) as base, httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        client.put("/nps", content=orjson.dumps(items(999)[:100]))  # warm-up
        for r in range(ROUNDS):
            body = orjson.dumps(items(r))
            t0 = time.perf_counter()
            resp = client.put("/nps", content=body)
            creates.append(time.perf_counter() - t0)
            assert resp.status_code == 200 and resp.json()["created"] == BATCH, resp.text[:500]
            body = orjson.dumps(
                [{"sourceId": it["sourceId"], "score": (it["score"] + 3) % 11} for it in items(r)]
            )
            t0 = time.perf_counter()
            resp = client.put("/nps", content=body)
            updates.append(time.perf_counter() - t0)
            assert resp.status_code == 200 and resp.json()["updated"] == BATCH, resp.text[:500]
    return creates, updates


def timed_transaction(conn: sqlite3.Connection, *steps: tuple[str, list[Any]]) -> float:
    """Seconds to run each ``(sql, rows)`` as one raw ``executemany`` in one write transaction."""
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for sql, rows in steps:
        conn.executemany(sql, rows)
    conn.execute("COMMIT")
    return time.perf_counter() - t0


def score_updates(table: str, org_id: str, its: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """The baselines' update: every record's score changed, found by (org_id, source_id)."""
    return (
        f"UPDATE {table} SET score=?, version=version+1 WHERE org_id=? AND source_id=?",
        [((it["score"] + 3) % 11, org_id, it["sourceId"]) for it in its],
    )


def baseline_rounds(url: str) -> tuple[list[float], list[float]]:
    """The same rows through raw sqlite3 executemany into the same (migrated) tables."""
    org_id, _ = prepare(url, SECRET)
    path = url.split("///", 1)[1]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    now = "2026-11-24 00:00:00.000000"
    creates, updates = [], []
    for r in range(ROUNDS):
        its = items(r)
        eus = [
            (f"{r:06x}{i:018x}", org_id, it["email"], it["email"].lower(), 0, 0, 0, now, now)
            for i, it in enumerate(its)
        ]
        recs = [
            (
                f"{r:06x}{i:018x}",
                org_id,
                eus[i][0],
                it["email"],
                it["score"],
                it["comment"],
                it["source"],
                it["sourceId"],
                it["dateAnswered"].replace("T", " ").replace("Z", ".000000"),
                0,
                now,
                now,
            )
            for i, it in enumerate(its)
        ]
        creates.append(
            timed_transaction(
                conn,
                (
                    'INSERT INTO enduser (id, org_id, email, email_key, "primary", archived, version, '
                    "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    eus,
                ),
                (
                    "INSERT INTO nps_record (id, org_id, enduser_id, email, score, comment, source, "
                    "source_id, date_answered, version, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    recs,
                ),
            )
        )
        updates.append(timed_transaction(conn, score_updates("nps_record", org_id, its)))
    conn.close()
    return creates, updates


MIN_COLUMNS = (
    "id",
    "org_id",
    "enduser_id",
    "email",
    "score",
    "comment",
    "source",
    "source_id",
    "date_answered",
    "version",
    "created_at",
    "updated_at",
)


def minimal_table_sql(name: str, text: str, stamp: str) -> list[str]:
    """The minimal baseline's table: the record columns, the id and ``(org_id, source_id)`` indexes."""
    return [
        f"CREATE TABLE {name} (id {text} PRIMARY KEY, org_id {text} NOT NULL, enduser_id {text} NOT NULL, "
        f"email {text} NOT NULL, score SMALLINT NOT NULL, comment TEXT, source {text}, source_id {text}, "
        f"date_answered {stamp} NOT NULL, version INTEGER NOT NULL, created_at {stamp} NOT NULL, "
        f"updated_at {stamp} NOT NULL)",
        f"CREATE UNIQUE INDEX {name}_source ON {name} (org_id, source_id)",
    ]


def minimal_rows(r: int, its: list[dict[str, Any]], stamp: Any, now: Any) -> list[tuple[Any, ...]]:
    return [
        (
            f"{r:06x}{i:018x}",
            "o" * 24,
            f"{r:06x}{i:018x}",
            it["email"],
            it["score"],
            it["comment"],
            it["source"],
            it["sourceId"],
            stamp(it["dateAnswered"]),
            0,
            now,
            now,
        )
        for i, it in enumerate(its)
    ]


def minimal_rounds(path: str) -> tuple[list[float], list[float]]:
    """The same rows through raw sqlite3 ``executemany`` into a table with just two indexes."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for sql in minimal_table_sql("rec", "TEXT", "TEXT"):
        conn.execute(sql)
    now = "2026-11-24 00:00:00.000000"
    marks = ", ".join("?" for _ in MIN_COLUMNS)
    creates, updates = [], []
    for r in range(ROUNDS):
        its = items(r)
        recs = minimal_rows(r, its, lambda s: s.replace("T", " ").replace("Z", ".000000"), now)
        creates.append(
            timed_transaction(conn, (f"INSERT INTO rec ({', '.join(MIN_COLUMNS)}) VALUES ({marks})", recs))
        )
        updates.append(timed_transaction(conn, score_updates("rec", "o" * 24, its)))
    conn.close()
    return creates, updates


def minimal_rounds_pg(base_url: str, schema: str) -> tuple[list[float], list[float]]:
    """The same rows through raw psycopg into a table with just two indexes: ``COPY`` (the
    fastest raw insert), then a pipelined ``executemany`` of the updates."""
    import datetime as dt

    import psycopg

    now = dt.datetime(2026, 11, 24)
    creates, updates = [], []
    with psycopg.connect(base_url, options=f"-csearch_path={schema}") as conn:
        for sql in minimal_table_sql("rec", "VARCHAR", "TIMESTAMP"):
            conn.execute(sql)
        conn.commit()
        for r in range(ROUNDS):
            its = items(r)
            recs = minimal_rows(r, its, lambda s: dt.datetime.fromisoformat(s[:-1]), now)
            t0 = time.perf_counter()
            with conn.cursor() as cur, cur.copy(f"COPY rec ({', '.join(MIN_COLUMNS)}) FROM STDIN") as copy:
                for row in recs:
                    copy.write_row(row)
            conn.commit()
            creates.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE rec SET score=%s, version=version+1 WHERE org_id=%s AND source_id=%s",
                    [((it["score"] + 3) % 11, "o" * 24, it["sourceId"]) for it in its],
                )
            conn.commit()
            updates.append(time.perf_counter() - t0)
    return creates, updates


def baseline_rounds_pg(base_url: str, schema: str) -> tuple[list[float], list[float]]:
    """The same rows through raw psycopg ``executemany`` (pipelined) into the same tables."""
    import datetime as dt

    import psycopg

    url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
    org_id, _ = prepare(url, SECRET, org="bench-baseline")
    now = dt.datetime(2026, 11, 24)
    creates, updates = [], []
    with psycopg.connect(base_url, options=f"-csearch_path={schema}") as conn:
        for r in range(ROUNDS):
            its = items(r)
            eus = [
                (f"{r + 16:06x}{i:018x}", org_id, it["email"], it["email"].lower(), False, False, 0, now, now)
                for i, it in enumerate(its)
            ]
            recs = [
                (
                    f"{r + 16:06x}{i:018x}",
                    org_id,
                    eus[i][0],
                    it["email"],
                    it["score"],
                    it["comment"],
                    it["source"],
                    "b" + it["sourceId"],
                    dt.datetime.fromisoformat(it["dateAnswered"][:-1]),
                    0,
                    now,
                    now,
                )
                for i, it in enumerate(its)
            ]
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                cur.executemany(
                    'INSERT INTO enduser (id, org_id, email, email_key, "primary", archived, version, '
                    "created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    eus,
                )
                cur.executemany(
                    "INSERT INTO nps_record (id, org_id, enduser_id, email, score, comment, source, "
                    "source_id, date_answered, version, created_at, updated_at) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    recs,
                )
            conn.commit()
            creates.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE nps_record SET score=%s, version=version+1 WHERE org_id=%s AND source_id=%s",
                    [((it["score"] + 3) % 11, org_id, "b" + it["sourceId"]) for it in its],
                )
            conn.commit()
            updates.append(time.perf_counter() - t0)
    return creates, updates


def report(
    name: str,
    ours: float,
    base: float | None,
    goal_rate: float | None,
    goal_ratio: float | None,
    baseline_name: str = "",
) -> None:
    rate = BATCH / ours
    line = f"{name} ours={rate:.0f}rec/s"
    goals = []
    met = True
    if base is not None:
        ratio = ours / base
        kind = baseline_name or ("raw-psycopg" if "postgresql" in name else "raw-sqlite3")
        line += f" baseline={BATCH / base:.0f}rec/s({kind}) ratio={ratio:.2f}"
        if goal_ratio is not None:
            goals.append(f"ratio<={goal_ratio}")
            met &= ratio <= goal_ratio
    else:
        line += " baseline=-"
    if goal_rate is not None:
        goals.append(f">={goal_rate}rec/s")
        met &= rate >= goal_rate
    line += f" goal={','.join(goals) or '-'}"
    print(line + (f" met={'yes' if met else 'no'}" if goals else " met=-"))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ours_c, ours_u = http_rounds(f"sqlite:///{Path(tmp) / 'ours.db'}")
        base_c, base_u = baseline_rounds(f"sqlite:///{Path(tmp) / 'base.db'}")
        min_c, min_u = minimal_rounds(str(Path(tmp) / "minimal.db"))
    c, u = statistics.median(ours_c), statistics.median(ours_u)
    bc, bu = statistics.median(base_c), statistics.median(base_u)
    print(f"bulk upsert, {BATCH} items per PUT /nps, median of {ROUNDS} rounds, SQLite")
    report("bulk_create_sqlite", c, bc, 25_000, 4)
    report("bulk_update_sqlite", u, bu, None, None)
    report("bulk_create_sqlite_min", c, statistics.median(min_c), None, 4, "raw-sqlite3-2-indexes")
    report("bulk_update_sqlite_min", u, statistics.median(min_u), None, 5, "raw-sqlite3-2-indexes")
    pg = os.environ.get("NPSD_TEST_DATABASE_URL")
    if pg:
        from sqlalchemy import create_engine, text

        from npsd.kit.db import normalize_url

        schema = f"bench_{secrets.token_hex(4)}"
        admin = create_engine(normalize_url(pg))
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            sep = "&" if "?" in pg else "?"
            pc, pu = http_rounds(f"{pg}{sep}options=-csearch_path%3D{schema}")
            bc_pg, bu_pg = baseline_rounds_pg(pg, schema)
            mc_pg, mu_pg = minimal_rounds_pg(pg, schema)
            pc_m, pu_m = statistics.median(pc), statistics.median(pu)
            report("bulk_create_postgresql", pc_m, statistics.median(bc_pg), 25_000, 4)
            report("bulk_update_postgresql", pu_m, statistics.median(bu_pg), None, None)
            minimal = "raw-psycopg-2-indexes"
            report("bulk_create_postgresql_min", pc_m, statistics.median(mc_pg), None, 4, minimal)
            report("bulk_update_postgresql_min", pu_m, statistics.median(mu_pg), None, 5, minimal)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
