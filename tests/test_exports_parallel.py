"""Large CSV exports on SQLite, written by worker processes (npsd.exports.parallel).

The parallel writer must produce the very bytes one reader writes, whatever the order, filters,
ties in the sort key and custom columns, and read one snapshot while records change under it.
SQLite only: it is how npsd uses a second core for an embedded database (PostgreSQL exports are
one reader). Blocks of two rows here, so every export crosses many block edges.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import TestDatabase, _make_database, make_tenant
from npsd.app import create_app
from npsd.exports.service import _parallel_plan
from npsd.kit.db import Database
from npsd.kit.timeutil import utcnow
from npsd.records.service import ListQuery, filtered, ordered
from servers import ServerProcess

pytestmark = pytest.mark.slow
PARALLEL = {"export_workers": 2, "export_parallel_rows": 20}  # blocks of 2 rows


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabase]:
    tdb = _make_database("sqlite", tmp_path_factory.mktemp("parallel"))
    yield tdb
    tdb.db.dispose()


@pytest.fixture(scope="module")
def clients(sqlite_db: TestDatabase) -> Iterator[tuple[TestClient, TestClient, Database]]:
    """A client of an app exporting with workers, one exporting alone, on the same file."""
    dbs = []
    apps = []
    for update in (PARALLEL, {"export_workers": 0}):
        settings = sqlite_db.settings.model_copy(update=update)
        db = Database(sqlite_db.url, pool_size=5, settings=settings)
        dbs.append(db)
        apps.append(create_app(settings, db))
    with TestClient(apps[0]) as parallel, TestClient(apps[1]) as single:
        yield parallel, single, dbs[0]
    for db in dbs:
        db.dispose()


def _records(n: int, company: str | None = None) -> list[dict[str, Any]]:
    hostile = ['say "hi", then', "two\nlines", "=SUM(A1)", "-", "", "ünï ✓", ",", None]
    return [
        {
            "email": f"p{i % 13}@par{i % 3}.example",
            "score": i % 11,
            "comment": hostile[i % len(hostile)],
            "source": ["email", "web", None][i % 3],
            "sourceId": f"par-{i}",
            "cId": company,
            # a few distinct answer times only: the sort key has long runs of ties
            "dateAnswered": f"2026-03-0{1 + i % 4}T10:00:00Z",
            "dateSent": None if i % 5 else "2026-02-01T08:00:00Z",
            "custom": {"n": i, "f": i / 7, "t": hostile[(i + 1) % len(hostile)], "b": i % 2 == 0},
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tenant_data(sqlite_db: TestDatabase, clients: tuple[TestClient, TestClient, Database]) -> Any:
    parallel, _, _ = clients
    tenant = make_tenant(sqlite_db)
    company = parallel.post("/companies", json={"name": "Par"}, headers=tenant.editor).json()["_id"]
    survey = parallel.post("/v1/nps-surveys", json={"name": "Par survey"}, headers=tenant.editor).json()["id"]
    items = _records(41, company)
    for i, item in enumerate(items):
        if i % 2:
            item["campaignId"] = survey
    r = parallel.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200 and r.json()["created"] == 41, r.text
    return tenant, company, survey


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "-score"},
        {"sort": "score"},
        {"sort": "email"},
        {"sort": "-createdAt"},
        # ascending by a time with long runs of whole-second ties: block keys must round-trip as stored
        {"sort": "dateAnswered"},
        {"sort": "createdAt"},
        {"sort": "dateSent"},  # a nullable sort key: written by one reader in both apps
        {"scoreType": "promoter"},
        {"companyId": "COMPANY"},
        {"since": "2026-03-02T00:00:00Z"},
    ],
)
def test_workers_write_the_bytes_one_reader_writes(
    clients: tuple[TestClient, TestClient, Database], tenant_data: Any, params: dict[str, str]
) -> None:
    parallel, single, db = clients
    tenant, company, _ = tenant_data
    query = {
        "format": "csv",
        "npsExpiryDay": 0,
        **{k: (company if v == "COMPANY" else v) for k, v in params.items()},
    }
    ours = parallel.get("/nps/export", params=query, headers=tenant.viewer)
    alone = single.get("/nps/export", params=query, headers=tenant.viewer)
    assert ours.status_code == alone.status_code == 200, ours.text
    assert ours.content == alone.content
    rows = list(csv.DictReader(io.StringIO(ours.content.decode())))
    assert len(rows) == {"scoreType": 6, "since": 30}.get(next(iter(params), ""), 41)
    # the workers did write it where they should (not a vacuous comparison of one path with itself)
    stmt = ordered(filtered(tenant.org_id, ListQuery(expiry_days=None), utcnow()), params.get("sort"))
    assert (_parallel_plan(db, stmt) is None) == (params.get("sort") == "dateSent")


def test_survey_response_exports_agree(
    clients: tuple[TestClient, TestClient, Database], tenant_data: Any
) -> None:
    parallel, single, _ = clients
    tenant, _, survey = tenant_data
    for params in ({"format": "csv"}, {"format": "csv", "sortBy": "score", "sortOrder": "asc"}):
        path = f"/v1/nps-surveys/{survey}/responses/export"
        ours = parallel.get(path, params=params, headers=tenant.viewer)
        alone = single.get(path, params=params, headers=tenant.viewer)
        assert ours.status_code == 200, ours.text
        assert ours.content == alone.content
        assert ours.content.count(b"par-") == 20


def test_too_many_custom_keys_for_columns_agree(
    sqlite_db: TestDatabase, clients: tuple[TestClient, TestClient, Database]
) -> None:
    """Past 1,000 custom keys the export has one JSON column, written by the Python writer
    inside the parallel path's snapshot."""
    parallel, single, _ = clients
    tenant = make_tenant(sqlite_db)
    items = [
        {"email": f"wide{i}@example.com", "score": i % 11, "custom": {f"k{i}-{j}": j for j in range(30)}}
        for i in range(40)
    ]
    assert parallel.put("/nps", json=items, headers=tenant.editor).status_code == 200
    query = {"format": "csv", "npsExpiryDay": 0}
    ours = parallel.get("/nps/export", params=query, headers=tenant.viewer)
    alone = single.get("/nps/export", params=query, headers=tenant.viewer)
    assert ours.status_code == 200 and ours.content == alone.content
    assert ours.content.splitlines()[0].endswith(b",custom")


def test_one_snapshot_while_records_change(tmp_path: Path) -> None:
    """A writer rewrites every record's comment in one transaction after another while exports
    run: each export shows one generation for all its rows, never a mix of blocks from two."""
    fresh = _make_database("sqlite", tmp_path)
    tenant = make_tenant(fresh)
    server = ServerProcess(
        fresh.url, fresh.settings.secret_key or "", NPSD_EXPORT_WORKERS="2", NPSD_EXPORT_PARALLEL_ROWS="20"
    )
    stop = threading.Event()
    generations = [0]

    def rewrite() -> None:
        conn = sqlite3.connect(fresh.url.split("///", 1)[1], timeout=30, isolation_level=None)
        try:
            while not stop.is_set():
                generations[0] += 1
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "UPDATE nps_record SET comment = ? WHERE org_id = ?",
                    (f"gen-{generations[0]}", tenant.org_id),
                )
                conn.execute("COMMIT")
                time.sleep(0.002)  # a busy writer, not one that never lets go of the lock
        finally:
            conn.close()

    try:
        server.start()
        with httpx.Client(base_url=server.base_url, headers=tenant.editor, timeout=60) as client:
            assert client.put("/nps", json=_records(120)).status_code == 200
            writer = threading.Thread(target=rewrite)
            writer.start()
            seen = []
            try:
                for _ in range(8):
                    r = client.get("/nps/export", params={"format": "csv", "npsExpiryDay": 0})
                    assert r.status_code == 200
                    rows = list(csv.DictReader(io.StringIO(r.text)))
                    assert len(rows) == 120
                    seen.append({row["comment"] for row in rows})
            finally:
                stop.set()
                writer.join(30)
    finally:
        server.stop()
        fresh.db.dispose()
    assert generations[0] > 8  # the writer did run alongside
    assert all(len(comments) == 1 for comments in seen), [sorted(c)[:3] for c in seen if len(c) > 1]
