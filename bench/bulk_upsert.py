"""Benchmark: ``PUT /nps`` bulk upsert of 5,000 records through the full HTTP stack.

Creates (new e-mails, so contacts are created too), then updates of the same records by
``sourceId``. Baselines in the same run, rounds interleaved (every runner takes its turn each
round, in a rotating order, so a slow spell of the machine falls on all of them); medians:

* full schema: raw ``sqlite3`` of the same rows into the same (migrated) tables, contacts and
  records with all their indexes and triggers (no validation, roll-ups or HTTP); the update is a
  bare ``UPDATE ... WHERE org_id=? AND source_id=?``. Goals: creates >= 25,000 records/s, ratio <= 4.
* minimal (``_min`` lines): the least any store of these rows costs: one table of the record
  columns with two indexes (the id and the unique ``(org_id, source_id)``), the rows inserted by
  one raw ``executemany`` in one transaction, then updated by ``UPDATE ... WHERE org_id=? AND
  source_id=?``. Goals: create ratio <= 4, update ratio <= 5.
* floor (SQLite, no goal): the full schema's update plus what the API's semantics require of any
  implementation, raw and written as npsd writes: reading each record with its contact by
  ``sourceId`` (the roll-ups need the old values), updating the records by id in one statement
  and the contacts' latest answers. ``*_raw_*_vs_min`` lines (``raw=``, not ours) compare these
  raw baselines with the minimal one: the part of our ratio that the schema and the semantics
  take before any of our code runs. The items have no survey and their contacts no company,
  so the partial indexes of migration 0015 hold none of them: the best case for those.

Prints records/s and ``ratio=`` ours/baseline time. With ``NPSD_TEST_DATABASE_URL`` set, the
HTTP part is repeated against PostgreSQL, against raw psycopg (full schema and minimal: binary ``COPY``
for the insert, a pipelined ``executemany`` for the update).

    python bench/bulk_upsert.py
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
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


class Http:
    """Ours: ``PUT /nps`` through a real ``npsd serve``."""

    def __init__(self, url: str) -> None:
        _, token = prepare(url, SECRET)
        self._stack = ExitStack()
        base = self._stack.enter_context(server(url, SECRET))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.client = self._stack.enter_context(httpx.Client(base_url=base, headers=headers, timeout=120))
        self.client.put("/nps", content=orjson.dumps(items(999)[:100]))  # warm-up

    def create(self, r: int) -> float:
        body = orjson.dumps(items(r))
        t0 = time.perf_counter()
        resp = self.client.put("/nps", content=body)
        took = time.perf_counter() - t0
        assert resp.status_code == 200 and resp.json()["created"] == BATCH, resp.text[:500]
        return took

    def update(self, r: int) -> float:
        body = orjson.dumps(
            [{"sourceId": it["sourceId"], "score": (it["score"] + 3) % 11} for it in items(r)]
        )
        t0 = time.perf_counter()
        resp = self.client.put("/nps", content=body)
        took = time.perf_counter() - t0
        assert resp.status_code == 200 and resp.json()["updated"] == BATCH, resp.text[:500]
        return took

    def close(self) -> None:
        self._stack.close()


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


RECORD_TYPES = ["varchar"] * 4 + [
    "int2",
    "text",
    "varchar",
    "varchar",
    "timestamp",
    "int4",
    "timestamp",
    "timestamp",
]
ENDUSER_TYPES = ["varchar"] * 4 + ["bool", "bool", "int4", "timestamp", "timestamp"]


def pg_copy(conn: Any, sql: str, types: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Binary ``COPY ... FROM STDIN`` of ``rows`` (of ``types``) on a raw psycopg connection (no
    commit): psycopg's fastest insert, and how npsd inserts (text ``COPY`` costs it twice as much)."""
    with conn.cursor() as cur, cur.copy(sql + " (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def pg_timed_update(conn: Any, table: str, org_id: str, its: list[dict[str, Any]], prefix: str = "") -> float:
    """Seconds to run the baselines' update (:func:`score_updates`) as a pipelined psycopg
    ``executemany`` and commit; ``prefix`` marks the sourceIds of the baseline's own rows."""
    sql, rows = score_updates(table, org_id, [{**it, "sourceId": prefix + it["sourceId"]} for it in its])
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.executemany(sql.replace("?", "%s"), rows)
    conn.commit()
    return time.perf_counter() - t0


NOW = "2026-11-24 00:00:00.000000"


def sqlite_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class RawSqlite:
    """The same rows through raw sqlite3 ``executemany`` into the same (migrated) tables: contacts
    and records with all their indexes and the comment index's trigger (no validation, roll-ups or
    HTTP); the records in one ``INSERT ... SELECT`` over ``json_each``, as npsd writes them (as an
    ``executemany`` every row would pay for a statement journal on a table with triggers).

    ``floor``: the update also runs what any implementation of the API's semantics must: read
    each record and its contact by ``(org_id, source_id)`` (roll-ups need the old values), then
    update the records and the contacts' latest answers, all raw."""

    def __init__(self, url: str, floor: bool = False) -> None:
        self.org_id, _ = prepare(url, SECRET, org="bench-raw")
        self.conn = sqlite_connection(url.split("///", 1)[1])
        self.floor = floor

    def create(self, r: int) -> float:
        its, org_id = items(r), self.org_id
        eus = [
            (f"{r:06x}{i:018x}", org_id, it["email"], it["email"].lower(), 0, 0, 0, NOW, NOW)
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
                NOW,
                NOW,
            )
            for i, it in enumerate(its)
        ]
        return timed_transaction(
            self.conn,
            (
                'INSERT INTO enduser (id, org_id, email, email_key, "primary", archived, version, '
                "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                eus,
            ),
            (
                "INSERT INTO nps_record (id, org_id, enduser_id, email, score, comment, source, "
                "source_id, date_answered, version, created_at, updated_at) "
                "SELECT "
                + ", ".join(f"json_extract(value, '$[{k}]')" for k in range(12))
                + " FROM json_each(?)",
                [(orjson.dumps(recs).decode(),)],
            ),
        )

    def update(self, r: int) -> float:
        its = items(r)
        if not self.floor:
            return timed_transaction(self.conn, score_updates("nps_record", self.org_id, its))
        t0 = time.perf_counter()
        self.conn.execute("BEGIN IMMEDIATE")
        sids = orjson.dumps([it["sourceId"] for it in its]).decode()
        old = self.conn.execute(
            "SELECT r.source_id, r.id, r.enduser_id, r.score, r.campaign_id, r.company_id, r.source, "
            "r.date_answered, e.nps_id FROM nps_record r JOIN enduser e ON e.id = r.enduser_id "
            "WHERE r.org_id = ? AND r.source_id IN (SELECT value FROM json_each(?))",
            (self.org_id, sids),
        ).fetchall()
        by_sid = {row[0]: row for row in old}
        changes = [(by_sid[it["sourceId"]][1], self.org_id, (it["score"] + 3) % 11) for it in its]
        # as npsd writes them: the records by id and org_id, both from the JSON (so the planner
        # loops over the rows), in one statement; the contacts by executemany
        self.conn.execute(
            "UPDATE nps_record SET score = json_extract(j.value, '$[2]'), version = version + 1 "
            "FROM json_each(?) AS j WHERE nps_record.id = json_extract(j.value, '$[0]') "
            "AND nps_record.org_id = json_extract(j.value, '$[1]')",
            (orjson.dumps(changes).decode(),),
        )
        self.conn.executemany(
            "UPDATE enduser SET nps = ? WHERE id = ? AND org_id = ?",
            [
                (score, by_sid[it["sourceId"]][2], self.org_id)
                for it, (_, _, score) in zip(its, changes, strict=True)
            ],
        )
        self.conn.execute("COMMIT")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


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


class MinimalSqlite:
    """The same rows through raw sqlite3 ``executemany`` into a table with just two indexes."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite_connection(path)
        for sql in minimal_table_sql("rec", "TEXT", "TEXT"):
            self.conn.execute(sql)

    def create(self, r: int) -> float:
        recs = minimal_rows(r, items(r), lambda s: s.replace("T", " ").replace("Z", ".000000"), NOW)
        marks = ", ".join("?" for _ in MIN_COLUMNS)
        return timed_transaction(
            self.conn, (f"INSERT INTO rec ({', '.join(MIN_COLUMNS)}) VALUES ({marks})", recs)
        )

    def update(self, r: int) -> float:
        return timed_transaction(self.conn, score_updates("rec", "o" * 24, items(r)))

    def close(self) -> None:
        self.conn.close()


class MinimalPg:
    """The same rows through raw psycopg into a table with just two indexes: ``COPY`` (the
    fastest raw insert), then a pipelined ``executemany`` of the updates."""

    def __init__(self, base_url: str, schema: str) -> None:
        import psycopg

        self.conn = psycopg.connect(base_url, options=f"-csearch_path={schema}")
        for sql in minimal_table_sql("rec", "VARCHAR", "TIMESTAMP"):
            self.conn.execute(sql)
        self.conn.commit()

    def create(self, r: int) -> float:
        recs = minimal_rows(
            r, items(r), lambda s: dt.datetime.fromisoformat(s[:-1]), dt.datetime(2026, 11, 24)
        )
        t0 = time.perf_counter()
        pg_copy(self.conn, f"COPY rec ({', '.join(MIN_COLUMNS)}) FROM STDIN", RECORD_TYPES, recs)
        self.conn.commit()
        return time.perf_counter() - t0

    def update(self, r: int) -> float:
        return pg_timed_update(self.conn, "rec", "o" * 24, items(r))

    def close(self) -> None:
        self.conn.close()


class RawPg:
    """The same rows through raw psycopg into the same tables: ``COPY`` (as npsd inserts them),
    then a pipelined ``executemany`` of the updates."""

    def __init__(self, base_url: str, schema: str) -> None:
        import psycopg

        url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
        self.org_id, _ = prepare(url, SECRET, org="bench-baseline")
        self.conn = psycopg.connect(base_url, options=f"-csearch_path={schema}")

    def create(self, r: int) -> float:
        its, org_id, now = items(r), self.org_id, dt.datetime(2026, 11, 24)
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
        pg_copy(
            self.conn,
            'COPY enduser (id, org_id, email, email_key, "primary", archived, version, '
            "created_at, updated_at) FROM STDIN",
            ENDUSER_TYPES,
            eus,
        )
        pg_copy(
            self.conn,
            "COPY nps_record (id, org_id, enduser_id, email, score, comment, source, "
            "source_id, date_answered, version, created_at, updated_at) FROM STDIN",
            RECORD_TYPES,
            recs,
        )
        self.conn.commit()
        return time.perf_counter() - t0

    def update(self, r: int) -> float:
        return pg_timed_update(self.conn, "nps_record", self.org_id, items(r), prefix="b")

    def close(self) -> None:
        self.conn.close()


def interleaved(runners: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each runner's median create and update seconds. Round by round every runner takes its
    turn, in an order that rotates, so a slow spell of this shared machine falls on all of them
    rather than on whichever ran during it."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runners}
    names = list(runners)
    for r in range(ROUNDS):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name][0].append(runners[name].create(r))
        for name in order:
            times[name][1].append(runners[name].update(r))
    return {name: (statistics.median(c), statistics.median(u)) for name, (c, u) in times.items()}


def report(
    name: str,
    ours: float,
    base: float | None,
    goal_rate: float | None,
    goal_ratio: float | None,
    baseline_name: str = "",
    subject: str = "ours",
) -> None:
    rate = BATCH / ours
    line = f"{name} {subject}={rate:.0f}rec/s"
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
        runners: dict[str, Any] = {
            "ours": Http(f"sqlite:///{Path(tmp) / 'ours.db'}"),
            "full": RawSqlite(f"sqlite:///{Path(tmp) / 'base.db'}"),
            "floor": RawSqlite(f"sqlite:///{Path(tmp) / 'floor.db'}", floor=True),
            "minimal": MinimalSqlite(str(Path(tmp) / "minimal.db")),
        }
        try:
            t = interleaved(runners)
        finally:
            for runner in runners.values():
                runner.close()
    (c, u), (bc, bu), (_, fu), (mc, mu) = t["ours"], t["full"], t["floor"], t["minimal"]
    print(f"bulk upsert, {BATCH} items per PUT /nps, median of {ROUNDS} interleaved rounds, SQLite")
    report("bulk_create_sqlite", c, bc, 25_000, 4)
    report("bulk_update_sqlite", u, bu, None, None)
    report("bulk_create_sqlite_min", c, mc, None, 4, "raw-sqlite3-2-indexes")
    report("bulk_update_sqlite_min", u, mu, None, 5, "raw-sqlite3-2-indexes")
    # what the schema and the API's semantics cost before any of our code runs (no goal)
    report("bulk_create_sqlite_raw_full_vs_min", bc, mc, None, None, "raw-sqlite3-2-indexes", "raw")
    report("bulk_update_sqlite_raw_floor_vs_min", fu, mu, None, None, "raw-sqlite3-2-indexes", "raw")
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
            runners = {
                "ours": Http(f"{pg}{sep}options=-csearch_path%3D{schema}"),
                "full": RawPg(pg, schema),
                "minimal": MinimalPg(pg, schema),
            }
            try:
                t = interleaved(runners)
            finally:
                for runner in runners.values():
                    runner.close()
            (pc, pu), (bc, bu), (mc, mu) = t["ours"], t["full"], t["minimal"]
            report("bulk_create_postgresql", pc, bc, 25_000, 4)
            report("bulk_update_postgresql", pu, bu, None, None)
            minimal = "raw-psycopg-2-indexes"
            report("bulk_create_postgresql_min", pc, mc, None, 4, minimal)
            report("bulk_update_postgresql_min", pu, mu, None, 5, minimal)
            report("bulk_create_postgresql_raw_full_vs_min", bc, mc, None, None, minimal, "raw")
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
