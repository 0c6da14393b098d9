"""Large CSV exports on SQLite, written by worker processes (npsd.exports.parallel).

The parallel writer must produce the very bytes one reader writes, whatever the order, filters,
ties in the sort key and custom columns, and read one snapshot while records change under it.
SQLite only: it is how npsd uses a second core for an embedded database (PostgreSQL exports are
one reader). Blocks of two rows here, so every export crosses many block edges.

A test that says the workers wrote an export checks it in ``CSV_EXPORTS`` (the process's count of
who wrote each CSV export), since an export quietly written by one reader would pass any byte
comparison with one reader.
"""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import TestDatabase, _make_database, make_tenant
from npsd.app import create_app
from npsd.exports import service as export_service
from npsd.exports.parallel import CSV_EXPORTS
from npsd.kit.db import Database

pytestmark = pytest.mark.slow
PARALLEL = {"export_workers": 2, "export_parallel_rows": 20}  # blocks of 2 rows
RECORDS = 121  # every export case below has 20 rows or more, so it is the workers' to write
WORKERS = {"workers_used": 1, "single_reader": {}, "fallbacks": {}}
ALONE = {"workers_used": 0, "single_reader": {"disabled": 1}, "fallbacks": {}}  # export_workers=0


def _counts_since(before: dict[str, Any]) -> dict[str, Any]:
    """What ``CSV_EXPORTS`` counted since ``before`` (one of its snapshots)."""
    after = CSV_EXPORTS.snapshot()

    def grown(kind: str) -> dict[str, int]:
        return {k: n - before[kind].get(k, 0) for k, n in after[kind].items() if n != before[kind].get(k, 0)}

    return {
        "workers_used": after["workers_used"] - before["workers_used"],
        "single_reader": grown("single_reader"),
        "fallbacks": grown("fallbacks"),
    }


def _export(
    client: TestClient, path: str, params: dict[str, Any], headers: dict[str, str]
) -> tuple[bytes, Any]:
    """The body of one export and how ``CSV_EXPORTS`` counted it."""
    before = CSV_EXPORTS.snapshot()
    r = client.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.content, _counts_since(before)


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


# names beside the ids: hostile text in the cells SQLite finishes, across block edges
CONTACT_NAMES = {
    f"p{k}@par0.example": name for k, name in enumerate(['Ann "A", PhD', "=cmd()", "two\nlines", "-x"])
}


@pytest.fixture(scope="module")
def tenant_data(sqlite_db: TestDatabase, clients: tuple[TestClient, TestClient, Database]) -> Any:
    parallel, _, _ = clients
    tenant = make_tenant(sqlite_db)
    company = parallel.post("/companies", json={"name": "Par"}, headers=tenant.editor).json()["_id"]
    survey = parallel.post("/v1/nps-surveys", json={"name": "Par survey"}, headers=tenant.editor).json()["id"]
    for email, name in CONTACT_NAMES.items():  # the other contacts have no name
        r = parallel.post("/endusers", json={"email": email, "name": name}, headers=tenant.editor)
        assert r.status_code in (200, 201), r.text
    items = _records(RECORDS, company)
    for i, item in enumerate(items):
        if i % 2:
            item["campaignId"] = survey
    r = parallel.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200 and r.json()["created"] == RECORDS, r.text
    return tenant, company, survey


def _one_reader(reason: str) -> dict[str, Any]:
    return {"workers_used": 0, "single_reader": {reason: 1}, "fallbacks": {}}


# Which CSV exports the workers write. Only orders an index gives: without one, each block would
# sort the whole export again (``unindexed_sort``), and a nullable key leaves NULLs out of every
# block (``nullable_sort``). Those are written by one reader, as planned, and said so.
NO_INDEX = _one_reader("unindexed_sort")
NULLABLE = _one_reader("nullable_sort")


@pytest.mark.parametrize(
    ("params", "rows", "writer"),
    [
        ({}, RECORDS, WORKERS),
        # long runs of ties in a time, read and bound as stored text across block edges
        ({"sort": "dateAnswered"}, RECORDS, WORKERS),
        ({"sort": "updatedAt"}, RECORDS, WORKERS),
        ({"sort": "-updatedAt"}, RECORDS, WORKERS),
        ({"scoreType": "promoter"}, 22, WORKERS),
        ({"companyId": "COMPANY"}, RECORDS, WORKERS),
        ({"since": "2026-03-02T00:00:00Z"}, 90, WORKERS),
        ({"campaignId": "SURVEY", "until": "2026-03-03T00:00:00Z"}, 30, WORKERS),
        ({"sort": "-score"}, RECORDS, NO_INDEX),
        ({"sort": "score"}, RECORDS, NO_INDEX),
        ({"sort": "email"}, RECORDS, NO_INDEX),
        ({"sort": "-createdAt"}, RECORDS, NO_INDEX),
        ({"sort": "createdAt"}, RECORDS, NO_INDEX),
        ({"sort": "_id"}, RECORDS, NO_INDEX),
        ({"sort": "dateSent"}, RECORDS, NULLABLE),
        ({"sort": "-dateSent"}, RECORDS, NULLABLE),
    ],
)
def test_workers_write_the_bytes_one_reader_writes(
    clients: tuple[TestClient, TestClient, Database],
    tenant_data: Any,
    params: dict[str, str],
    rows: int,
    writer: dict[str, Any],
) -> None:
    parallel, single, _ = clients
    tenant, company, survey = tenant_data
    named = {"COMPANY": company, "SURVEY": survey}
    query = {"format": "csv", "npsExpiryDay": 0, **{k: named.get(v, v) for k, v in params.items()}}
    ours, written = _export(parallel, "/nps/export", query, tenant.viewer)
    alone, written_alone = _export(single, "/nps/export", query, tenant.viewer)
    assert ours == alone
    assert len(list(csv.DictReader(io.StringIO(ours.decode())))) == rows
    # who wrote it: the workers where they should (not a comparison of one reader with another)
    assert written == writer
    assert written_alone == ALONE


def test_workers_write_the_names(clients: tuple[TestClient, TestClient, Database], tenant_data: Any) -> None:
    """The names of each record's contact, company and survey, in the lines the workers write."""
    parallel, _, _ = clients
    tenant, company, survey = tenant_data
    query = {"format": "csv", "npsExpiryDay": 0}
    body, written = _export(parallel, "/nps/export", query, tenant.viewer)
    assert written == WORKERS
    text = body.decode()
    assert next(csv.reader(io.StringIO(text)))[-7:-4] == ["enduserName", "companyName", "surveyName"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == RECORDS
    guarded = {"=cmd()": "'=cmd()", "-x": "'-x"}
    for row in rows:
        name = CONTACT_NAMES.get(row["email"], "")
        assert row["enduserName"] == guarded.get(name, name)
        assert row["cId"] == company and row["companyName"] == "Par"
        assert row["surveyName"] == ("Par survey" if row["campaignId"] == survey else "")
    assert {row["enduserName"] for row in rows} >= {'Ann "A", PhD', "two\nlines"}


@pytest.mark.parametrize(
    ("params", "rows", "writer"),
    [
        # newest answer first, NULLS LAST (a no-op on this NOT NULL column): the workers' keyset
        ({}, 60, WORKERS),
        ({"sortBy": "respondedAt", "sortOrder": "asc"}, 60, WORKERS),
        ({"sortBy": "updatedAt"}, 60, WORKERS),
        ({"scoreType": "detractor"}, 38, WORKERS),
        ({"hasComment": "true"}, 45, WORKERS),
        ({"q": "E"}, 15, _one_reader("few_rows")),  # below export_parallel_rows (20)
        ({"companyId": "COMPANY", "since": "2026-03-03T00:00:00Z"}, 30, WORKERS),
        ({"sortBy": "score", "sortOrder": "asc"}, 60, NO_INDEX),
        ({"sortBy": "email"}, 60, NO_INDEX),
        ({"sortBy": "createdAt", "sortOrder": "asc"}, 60, NO_INDEX),
        ({"sortBy": "id", "sortOrder": "asc"}, 60, NO_INDEX),
        ({"sortBy": "sentAt"}, 60, NULLABLE),
        ({"sortBy": "source", "sortOrder": "asc"}, 60, NULLABLE),
        ({"sortBy": "companyId"}, 60, NULLABLE),
    ],
)
def test_survey_response_exports_agree(
    clients: tuple[TestClient, TestClient, Database],
    tenant_data: Any,
    params: dict[str, str],
    rows: int,
    writer: dict[str, Any],
) -> None:
    parallel, single, _ = clients
    tenant, company, survey = tenant_data
    path = f"/v1/nps-surveys/{survey}/responses/export"
    query = {"format": "csv", **{k: (company if v == "COMPANY" else v) for k, v in params.items()}}
    ours, written = _export(parallel, path, query, tenant.viewer)
    alone, written_alone = _export(single, path, query, tenant.viewer)
    assert ours == alone
    assert len(list(csv.DictReader(io.StringIO(ours.decode())))) == rows
    assert written == writer
    assert written_alone == ALONE


def test_too_many_custom_keys_for_columns_agree(
    sqlite_db: TestDatabase,
    clients: tuple[TestClient, TestClient, Database],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past 1,000 custom keys the export has one JSON column, which SQLite cannot write: the
    Python writer writes it inside the parallel path's snapshot, a fallback that is counted and
    logged."""
    parallel, single, _ = clients
    tenant = make_tenant(sqlite_db)
    items = [
        {"email": f"wide{i}@example.com", "score": i % 11, "custom": {f"k{i}-{j}": j for j in range(30)}}
        for i in range(40)
    ]
    assert parallel.put("/nps", json=items, headers=tenant.editor).status_code == 200
    query = {"format": "csv", "npsExpiryDay": 0}
    with caplog.at_level(logging.WARNING, logger="npsd.exports"):
        ours, written = _export(parallel, "/nps/export", query, tenant.viewer)
    alone, _ = _export(single, "/nps/export", query, tenant.viewer)
    assert ours == alone
    assert ours.splitlines()[0].endswith(
        b",custom,enduserName,companyName,surveyName,tags,followUpStatus,assigneeEmail,notes"
    )
    assert written == {"workers_used": 0, "single_reader": {}, "fallbacks": {"custom_columns": 1}}
    assert [r.levelno for r in caplog.records if "(custom_columns)" in r.getMessage()] == [logging.WARNING]


@pytest.fixture
def hold_write_lock(sqlite_db: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Another connection holds the write lock for the whole test, and an export waits 0.2 s for it."""
    monkeypatch.setattr(export_service, "LOCK_TIMEOUT_MS", 200)
    writer = sqlite3.connect(sqlite_db.url.split("///", 1)[1], isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.fixture
def all_slots_taken() -> Iterator[None]:
    """As many exports as may use workers at once are using them (their slots are held)."""
    for _ in range(export_service.PARALLEL_SLOTS):
        assert export_service.PARALLEL_EXPORTS.acquire(blocking=False)
    try:
        yield
    finally:
        for _ in range(export_service.PARALLEL_SLOTS):
            export_service.PARALLEL_EXPORTS.release()


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        ("interpreter missing", "start"),  # the worker command cannot be run at all
        ("interpreter fails", "start"),  # it runs, and exits before it says it is ready
        ("slots taken", "busy"),
        ("write lock held", "lock"),
    ],
)
def test_a_fallback_to_one_reader_is_counted_and_logged(
    request: pytest.FixtureRequest,
    clients: tuple[TestClient, TestClient, Database],
    tenant_data: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cause: str,
    reason: str,
) -> None:
    """When the workers cannot take an export planned for them, one reader writes the same bytes,
    and the fallback is counted under its reason and logged as a warning naming it."""
    parallel, single, _ = clients
    tenant, _, _ = tenant_data
    query = {"format": "csv", "npsExpiryDay": 0}
    alone, _ = _export(single, "/nps/export", query, tenant.viewer)
    if cause == "interpreter missing":
        monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    elif cause == "interpreter fails":
        monkeypatch.setattr(sys, "executable", "/bin/false")
    elif cause == "slots taken":
        request.getfixturevalue("all_slots_taken")
    else:
        request.getfixturevalue("hold_write_lock")
    with caplog.at_level(logging.WARNING, logger="npsd.exports"):
        ours, written = _export(parallel, "/nps/export", query, tenant.viewer)
    assert ours == alone
    assert written == {"workers_used": 0, "single_reader": {}, "fallbacks": {reason: 1}}
    warnings = [r for r in caplog.records if r.name == "npsd.exports" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    message = warnings[0].getMessage()
    assert f"written by one reader instead of 2 workers ({reason})" in message, message


def test_one_snapshot_while_records_change(tmp_path: Path) -> None:
    """A writer rewrites every record's comment in one transaction after another while exports
    run: each export shows one generation for all its rows, never a mix of blocks from two."""
    fresh = _make_database("sqlite", tmp_path)
    tenant = make_tenant(fresh)
    settings = fresh.settings.model_copy(update=PARALLEL)
    db = Database(fresh.url, pool_size=5, settings=settings)
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
        with TestClient(create_app(settings, db), headers=tenant.editor) as client:
            assert client.put("/nps", json=_records(120)).status_code == 200
            writer = threading.Thread(target=rewrite)
            writer.start()
            seen = []
            try:
                for _ in range(8):
                    body, written = _export(client, "/nps/export", {"format": "csv", "npsExpiryDay": 0}, {})
                    assert written == WORKERS  # blocks from several processes, not one reader's
                    rows = list(csv.DictReader(io.StringIO(body.decode())))
                    assert len(rows) == 120
                    seen.append({row["comment"] for row in rows})
            finally:
                stop.set()
                writer.join(30)
    finally:
        db.dispose()
        fresh.db.dispose()
    assert generations[0] > 8  # the writer did run alongside
    assert all(len(comments) == 1 for comments in seen), [sorted(c)[:3] for c in seen if len(c) > 1]
