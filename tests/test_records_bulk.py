"""``PUT /nps`` bulk upsert, through HTTP on both databases."""

from __future__ import annotations

import gc
import re
import secrets
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg.adapt import PyFormat
from sqlalchemy import text

from conftest import Tenant, assert_error, sqlite_plan, statements_run
from npsd.kit.db import TextArray, TextArrayDumper
from npsd.records.fastsql import insert_many, update_many
from npsd.records.lookup import rows_by
from npsd.records.output import COLUMN_NAMES, T

SEED_KEYS = [
    "created",
    "createdErrors",
    "insertsKeys",
    "updated",
    "updatedErrors",
    "updatesKeys",
    "nonupdates",
    "modified",
    "upsertedIds",
    "permissionErrors",
]


def email() -> str:
    return f"b-{secrets.token_hex(5)}@bulk.test"


def bulk(client: TestClient, tenant: Tenant, items: Any, status: int = 200) -> dict[str, Any]:
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == SEED_KEYS
    assert body["permissionErrors"] == []
    return body


def all_records(client: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    r = client.get("/nps?limit=10000&npsExpiryDay=0&sort=_id", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def get(client: TestClient, tenant: Tenant, key: str) -> dict[str, Any]:
    r = client.get(f"/nps/{key}", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def test_creates_and_updates_in_one_batch(client: TestClient, tenant: Tenant) -> None:
    first = bulk(
        client,
        tenant,
        [{"email": "a@bulk.test", "score": 3, "sourceId": "s-a"}, {"email": "b@bulk.test", "score": 8}],
    )
    assert first["created"] == 2
    a_id, b_id = first["upsertedIds"]
    assert first["insertsKeys"] == [{"_id": a_id, "sourceId": "s-a"}, {"_id": b_id}]
    body = bulk(
        client,
        tenant,
        [
            {"sourceId": "s-a", "score": 10, "comment": "now happy"},  # update by sourceId
            {"_id": b_id, "custom": {"k": 1}},  # update by _id
            {"email": "c@bulk.test", "score": 0, "sourceId": "s-c"},  # create
            {"_id": "0123456789abcdef01234567", "email": "d@bulk.test", "score": 9},  # unknown _id: create
        ],
    )
    assert body["created"] == 2 and body["updated"] == 2 and body["nonupdates"] == 0
    assert body["modified"] == [a_id, b_id]
    assert body["updatesKeys"] == [{"sourceId": "s-a"}, {"_id": b_id}]
    c_id, d_id = body["upsertedIds"]
    assert body["insertsKeys"] == [{"_id": c_id, "sourceId": "s-c"}, {"_id": d_id}]
    a = get(client, tenant, a_id)
    assert a["score"] == 10 and a["comment"] == "now happy" and a["scoreType"] == "promoter" and a["__v"] == 1
    assert a["email"] == "a@bulk.test" and a["sourceId"] == "s-a"
    b = get(client, tenant, b_id)
    assert b["custom"] == {"k": 1} and b["score"] == 8 and b["__v"] == 1
    assert get(client, tenant, "srcid-s-c")["_id"] == c_id
    assert get(client, tenant, d_id)["email"] == "d@bulk.test"
    assert len(all_records(client, tenant)) == 4


def test_id_takes_priority_over_source_id(client: TestClient, tenant: Tenant) -> None:
    ids = bulk(
        client,
        tenant,
        [
            {"email": email(), "score": 5, "sourceId": "p-1"},
            {"email": email(), "score": 5, "sourceId": "p-2"},
        ],
    )["upsertedIds"]
    # _id names record 1; its sourceId p-9 is new, so record 1 is renamed
    body = bulk(client, tenant, [{"_id": ids[0], "sourceId": "p-9", "score": 6}])
    assert body["updated"] == 1 and body["modified"] == [ids[0]]
    assert body["updatesKeys"] == [{"_id": ids[0], "sourceId": "p-9"}]
    assert get(client, tenant, "srcid-p-9")["_id"] == ids[0]
    # _id names record 1 and sourceId names record 2: _id wins, and taking p-2 is a conflict
    body = bulk(client, tenant, [{"_id": ids[0], "sourceId": "p-2", "score": 1}], status=206)
    assert body["updated"] == 0 and body["created"] == 0
    assert [e["index"] for e in body["updatedErrors"]] == [0]
    assert "sourceId" in body["updatedErrors"][0]["error"]
    assert get(client, tenant, ids[0])["score"] == 6
    # an unknown _id falls back to the sourceId
    unknown = "0123456789abcdef01234567"
    body = bulk(client, tenant, [{"_id": unknown, "sourceId": "p-2", "score": 2}])
    assert body["updated"] == 1 and body["modified"] == [ids[1]]
    assert body["updatesKeys"] == [{"_id": unknown, "sourceId": "p-2"}]
    assert get(client, tenant, ids[1])["score"] == 2


def test_client_id_never_names_a_new_record(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    wanted = "0123456789abcdef01234567"
    body = bulk(
        client,
        tenant,
        [
            {"_id": wanted, "email": email(), "score": 7},
            {"_id": "not-even-hex", "email": email(), "score": 7},
            {"_id": 12345, "email": email(), "score": 7},
        ],
    )
    assert body["created"] == 3
    assert wanted not in body["upsertedIds"]
    assert body["insertsKeys"] == [{"_id": i} for i in body["upsertedIds"]]
    assert client.get(f"/nps/{wanted}", headers=tenant.viewer).status_code == 404
    # another tenant's _id and sourceId never match: they create records with new ids
    theirs = bulk(client, other, [{"email": email(), "score": 1, "sourceId": "shared"}])["upsertedIds"][0]
    body = bulk(
        client,
        tenant,
        [
            {"_id": theirs, "email": email(), "score": 9},
            {"sourceId": "shared", "email": email(), "score": 10},
        ],
    )
    assert body["created"] == 2 and body["updated"] == 0
    assert theirs not in body["upsertedIds"]
    assert get(client, other, theirs)["score"] == 1
    assert get(client, other, "srcid-shared")["_id"] == theirs
    assert get(client, tenant, "srcid-shared")["_id"] == body["upsertedIds"][1]
    # and an update-only item with another tenant's _id needs email and score to create
    body = bulk(client, tenant, [{"_id": theirs, "score": 0}], status=206)
    assert body["createdErrors"][0]["index"] == 0 and "email" in body["createdErrors"][0]["error"]
    assert get(client, other, theirs)["score"] == 1


def test_item_errors_are_reported_while_valid_items_apply(client: TestClient, tenant: Tenant) -> None:
    existing, existing2 = bulk(
        client, tenant, [{"email": email(), "score": 5, "sourceId": "e-1"}, {"email": email(), "score": 2}]
    )["upsertedIds"]
    items: list[Any] = [
        {"email": email(), "score": 7},  # 0 ok create
        {"email": email(), "score": 11},  # 1 bad score
        {"email": "not an email", "score": 3},  # 2 bad email
        {"score": 4},  # 3 create without email
        {"email": email()},  # 4 create without score
        "a string",  # 5 not an object
        {"email": email(), "score": 7, "colour": "red"},  # 6 unknown field
        {"sourceId": "e-1", "score": 7.5},  # 7 update with a bad score
        {"_id": existing, "cId": "0123456789abcdef01234567"},  # 8 update with an unknown company
        {"sourceId": "e-1", "comment": "fine"},  # 9 ok update
        {"email": email(), "score": True},  # 10 boolean score
        None,  # 11 null item
        {"email": email(), "score": 9, "dateAnswered": "soon"},  # 12 bad date
        {"_id": existing2, "score": None},  # 13 null score on update (matched by _id)
    ]
    body = bulk(client, tenant, items, status=206)
    assert body["created"] == 1 and body["updated"] == 1
    assert body["modified"] == [existing]
    assert body["updatesKeys"] == [{"sourceId": "e-1"}]
    created_errors = {e["index"]: e for e in body["createdErrors"]}
    updated_errors = {e["index"]: e for e in body["updatedErrors"]}
    assert sorted(created_errors) == [1, 2, 3, 4, 5, 6, 10, 11, 12]
    assert sorted(updated_errors) == [7, 8, 13]
    for errors in (created_errors, updated_errors):
        for index, err in errors.items():
            assert set(err) == {"index", "item", "error"}
            assert err["item"] == items[index]
            assert isinstance(err["error"], str) and err["error"]
    assert "score" in created_errors[1]["error"] and "email" in created_errors[2]["error"]
    assert "email" in created_errors[3]["error"] and "score" in created_errors[4]["error"]
    assert "colour" in created_errors[6]["error"] and "score" in created_errors[10]["error"]
    assert "dateAnswered" in created_errors[12]["error"]
    assert "score" in updated_errors[7]["error"] and "cId" in updated_errors[8]["error"]
    assert "score" in updated_errors[13]["error"]
    rec = get(client, tenant, existing)
    assert rec["score"] == 5 and rec["comment"] == "fine" and rec["__v"] == 1 and rec["cId"] is None
    assert get(client, tenant, existing2)["score"] == 2
    assert len(all_records(client, tenant)) == 3


def test_nonupdates_count_matched_items_that_change_nothing(client: TestClient, tenant: Tenant) -> None:
    body = bulk(
        client,
        tenant,
        [
            {
                "email": "same@bulk.test",
                "score": 6,
                "sourceId": "n-1",
                "custom": {"a": 1},
                "dateAnswered": "2024-01-01T00:00:00.123Z",
            }
        ],
    )
    rid = body["upsertedIds"][0]
    before = get(client, tenant, rid)
    body = bulk(
        client,
        tenant,
        [
            {"sourceId": "n-1", "score": 6},
            {"_id": rid, "custom": {"a": 1}, "dateAnswered": "2024-01-01T01:00:00.123+01:00"},
        ],
        status=206,
    )
    # the second names the same record as the first: an error, though it would change nothing
    assert body["nonupdates"] == 1 and body["updated"] == 0 and body["modified"] == []
    assert [e["index"] for e in body["updatedErrors"]] == [1]
    body = bulk(client, tenant, [{**before}])
    assert body["nonupdates"] == 1 and body["updated"] == 0
    assert body["updatesKeys"] == [{"_id": rid, "sourceId": "n-1"}]
    body = bulk(client, tenant, [{"_id": rid, "email": "SAME@bulk.test", "scoreType": "promoter", "__v": 9}])
    assert body["updated"] == 1 and body["nonupdates"] == 0
    after = get(client, tenant, rid)
    assert after["__v"] == 1 and after["email"] == "SAME@bulk.test" and after["euId"] == before["euId"]
    assert after["scoreType"] == "detractor"


def test_same_keyable_twice_later_one_is_an_error(client: TestClient, tenant: Tenant) -> None:
    existing = bulk(client, tenant, [{"email": email(), "score": 5, "sourceId": "k-1"}])["upsertedIds"][0]
    body = bulk(
        client,
        tenant,
        [
            {"email": email(), "score": 1, "sourceId": "k-new"},  # 0 create
            {"email": email(), "score": 2, "sourceId": "k-new"},  # 1 same new sourceId
            {"sourceId": "k-1", "score": 3},  # 2 update
            {"sourceId": "k-1", "score": 4},  # 3 same record by sourceId
            {"_id": existing, "score": 6},  # 4 same record by _id
            {"_id": "0123456789abcdef01234567", "email": email(), "score": 7},  # 5 unknown _id: create
            {"_id": "0123456789abcdef01234567", "email": email(), "score": 8},  # 6 the same _id again
        ],
        status=206,
    )
    assert body["created"] == 2 and body["updated"] == 1
    assert [e["index"] for e in body["createdErrors"]] == [1, 6]
    assert [e["index"] for e in body["updatedErrors"]] == [3, 4]
    assert "sourceId" in body["createdErrors"][0]["error"] and "_id" in body["createdErrors"][1]["error"]
    assert get(client, tenant, existing)["score"] == 3
    assert get(client, tenant, "srcid-k-new")["score"] == 1
    assert len(all_records(client, tenant)) == 3
    # an earlier item that failed does not block a later one with the same keyable
    body = bulk(
        client,
        tenant,
        [
            {"sourceId": "k-2", "score": 99, "email": email()},
            {"sourceId": "k-2", "score": 9, "email": email()},
        ],
        status=206,
    )
    assert body["created"] == 1 and [e["index"] for e in body["createdErrors"]] == [0]
    assert get(client, tenant, "srcid-k-2")["score"] == 9


def test_source_id_conflicts_inside_a_batch(client: TestClient, tenant: Tenant) -> None:
    a, b = bulk(
        client,
        tenant,
        [
            {"email": email(), "score": 5, "sourceId": "c-a"},
            {"email": email(), "score": 5, "sourceId": "c-b"},
        ],
    )["upsertedIds"]
    body = bulk(
        client,
        tenant,
        [
            {"_id": a, "sourceId": "c-b"},  # 0 takes b's sourceId: conflict
            {"_id": b, "sourceId": "c-new"},  # 1 renames b
            {"email": email(), "score": 1, "sourceId": "c-new"},  # 2 new c-new matches nothing yet: conflict
        ],
        status=206,
    )
    assert body["updated"] == 1 and body["created"] == 0
    assert [e["index"] for e in body["updatedErrors"]] == [0]
    assert [e["index"] for e in body["createdErrors"]] == [2]
    assert get(client, tenant, "srcid-c-new")["_id"] == b
    assert get(client, tenant, "srcid-c-a")["_id"] == a


def test_whole_body_errors_write_nothing(client: TestClient, tenant: Tenant) -> None:
    too_many = [{"email": f"x{i}@bulk.test", "score": 5} for i in range(5001)]
    assert_error(client.put("/nps", json=too_many, headers=tenant.editor), 400, "body")
    for body in ({"email": "a@b.com", "score": 5}, "text", 5, None):
        assert_error(client.put("/nps", json=body, headers=tenant.editor), 400, "body")
    headers = {**tenant.editor, "Content-Type": "application/json"}
    for raw in (b"", b"[", b"[{]", b"\xff"):
        assert_error(client.put("/nps", content=raw, headers=headers), 400, "body")
    assert all_records(client, tenant) == []
    assert client.get("/endusers", headers=tenant.viewer).json() == []
    empty = bulk(client, tenant, [])
    assert empty["created"] == 0 and empty["updated"] == 0 and empty["upsertedIds"] == []


def test_roles_and_tenancy(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    assert_error(client.put("/nps", json=[{"email": email(), "score": 5}], headers=tenant.viewer), 403)
    assert_error(client.put("/nps", json=[{"email": email(), "score": 5}]), 401)
    assert all_records(client, tenant) == []
    admin = client.put("/nps", json=[{"email": email(), "score": 5}], headers=tenant.admin)
    assert admin.status_code == 200 and admin.json()["created"] == 1
    assert all_records(client, other) == []


def test_company_rules_in_bulk(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    mine = client.post(
        "/companies", json={"name": "Mine", "domains": ["mine.io"]}, headers=tenant.editor
    ).json()
    theirs = client.post("/companies", json={"name": "Theirs"}, headers=other.editor).json()
    body = bulk(
        client,
        tenant,
        [
            {"email": "a@mine.io", "score": 9},  # domain match
            {"email": "b@else.io", "score": 9, "cId": mine["_id"]},  # explicit
            {"email": "c@else.io", "score": 9, "cId": theirs["_id"]},  # another tenant's company
            {"email": "d@else.io", "score": 9},  # none
            {"email": "A@MINE.io", "score": 3},  # existing contact, case-insensitive
        ],
        status=206,
    )
    assert body["created"] == 4 and [e["index"] for e in body["createdErrors"]] == [2]
    assert "cId" in body["createdErrors"][0]["error"]
    recs = [get(client, tenant, i) for i in body["upsertedIds"]]
    assert [r["cId"] for r in recs] == [mine["_id"], mine["_id"], None, mine["_id"]]
    assert recs[0]["euId"] == recs[3]["euId"]
    assert len(client.get("/endusers", headers=tenant.viewer).json()) == 3
    eu = client.get(f"/endusers/{recs[1]['euId']}", headers=tenant.viewer).json()
    assert eu["companyId"] == mine["_id"]


def test_bulk_dates_and_aliases(client: TestClient, tenant: Tenant) -> None:
    body = bulk(
        client,
        tenant,
        [
            {
                "email": email(),
                "nps": 8,
                "npsComment": "legacy",
                "npsDate": 1627589390,
                "npsSent": "2021-07-28T22:00:00-02:00",
            },
            {"email": email(), "score": 8},
        ],
    )
    a, b = (get(client, tenant, i) for i in body["upsertedIds"])
    assert a["score"] == 8 and a["comment"] == "legacy"
    assert a["dateAnswered"] == "2021-07-29T20:09:50.000Z" and a["dateSent"] == "2021-07-29T00:00:00.000Z"
    assert b["dateAnswered"] == b["createdAt"]


def test_batch_of_5000(client: TestClient, tenant: Tenant) -> None:
    items = [
        {"email": f"m{i}@bulk{i % 7}.test", "score": i % 11, "sourceId": f"big-{i}"} for i in range(5000)
    ]
    body = bulk(client, tenant, items)
    assert body["created"] == 5000 and len(set(body["upsertedIds"])) == 5000
    assert body["insertsKeys"][4999] == {"_id": body["upsertedIds"][4999], "sourceId": "big-4999"}
    records = all_records(client, tenant)
    assert len(records) == 5000
    assert sorted(r["score"] for r in records) == sorted(i % 11 for i in range(5000))
    # the same 5000 again by sourceId: half changed, half not
    again = [{"sourceId": f"big-{i}", "score": (i % 11) if i % 2 else (i + 1) % 11} for i in range(5000)]
    body = bulk(client, tenant, again)
    assert body["updated"] == 2500 and body["nonupdates"] == 2500 and body["created"] == 0
    assert len(body["updatesKeys"]) == 5000
    assert (
        get(client, tenant, "srcid-big-10")["score"] == 0
        and get(client, tenant, "srcid-big-11")["score"] == 0
    )
    assert get(client, tenant, "srcid-big-10")["__v"] == 1 and get(client, tenant, "srcid-big-11")["__v"] == 0


def test_many_different_changes_in_one_batch(client: TestClient, tenant: Tenant) -> None:
    """Updates are written grouped by what changed; past a few groups every column is written."""
    co = client.post("/companies", json={"name": "Shapes"}, headers=tenant.editor).json()["_id"]
    ids = bulk(
        client,
        tenant,
        [
            {
                "email": f"shape{i}@bulk.test",
                "score": 5,
                "sourceId": f"sh-{i}",
                "dateAnswered": "2024-01-01T00:00:00.000Z",
            }
            for i in range(12)
        ],
    )["upsertedIds"]
    changes: list[dict[str, Any]] = [
        {"score": 9},
        {"comment": "c"},
        {"campaignId": "camp"},
        {"source": "src"},
        {"sourceId": "sh-new"},
        {"dateSent": "2024-01-02T00:00:00.000Z"},
        {"dateReminderSent": "2024-01-03T00:00:00.000Z"},
        {"dateAnswered": "2024-01-04T00:00:00.000Z"},
        {"custom": {"x": 1}},
        {"cId": co},
        {"email": "moved@bulk.test"},
        {"score": 0, "comment": "both", "custom": {"y": [1, 2]}},
    ]
    body = bulk(client, tenant, [{"_id": rid, **change} for rid, change in zip(ids, changes, strict=True)])
    assert body["updated"] == 12 and body["modified"] == ids
    for rid, change in zip(ids, changes, strict=True):
        rec = get(client, tenant, rid)
        assert rec["__v"] == 1
        for key, value in change.items():
            assert rec[key] == value, (key, rec)
        untouched = {
            "score": 5,
            "comment": None,
            "campaignId": None,
            "source": None,
            "custom": None,
            "dateAnswered": "2024-01-01T00:00:00.000Z",
            "dateSent": None,
            "dateReminderSent": None,
        }
        for key, value in untouched.items():
            if key not in change:
                assert rec[key] == value, (key, rec)
    assert client.get("/nps/srcid-sh-4", headers=tenant.viewer).status_code == 404
    assert get(client, tenant, "srcid-sh-new")["_id"] == ids[4]


def test_thousands_of_keyables_by_id_and_source_id(client: TestClient, tenant: Tenant) -> None:
    """Keys are looked up in one statement however many there are (past the 900 an expanded
    IN-list once held): every record is found, by ``_id`` and by ``sourceId`` in one batch."""
    created = bulk(
        client, tenant, [{"email": email(), "score": 1, "sourceId": f"k-{i}"} for i in range(2000)]
    )["upsertedIds"]
    items = [{"_id": rid, "score": 2} for rid in created[:1000]]
    items += [{"sourceId": f"k-{i}", "score": 3} for i in range(1000, 2000)]
    body = bulk(client, tenant, items)
    assert body["updated"] == 2000 and body["created"] == 0 and body["modified"] == created
    scores = {r["_id"]: r["score"] for r in all_records(client, tenant)}
    assert [scores[rid] for rid in created] == [2] * 1000 + [3] * 1000


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_postgresql_gets_a_batch_of_keys_as_one_constant_array(
    client: TestClient, tenant: Tenant, database: Any
) -> None:
    """On PostgreSQL a batch's keys travel as one ``varchar[]`` parameter written by npsd's own
    dumper (psycopg's writes 5,000 keys element by element in Python), and the planner still
    sees them as a constant array: with a JSON array or a cast in SQL it knew neither the keys
    nor their number, and tested every key against every contact of the organization."""
    keys = [f'arr-{i}-"q"\\b,{{}} NULL' for i in range(300)]
    created = bulk(client, tenant, [{"email": email(), "score": 10, "sourceId": k} for k in keys])

    def keyed(statement: str, many: bool) -> bool:
        return "= ANY" in statement and ("email_key" in statement or "source_id" in statement)

    new_address = email()
    with statements_run(database, keyed) as statements:
        body = bulk(
            client,
            tenant,
            [{"sourceId": k, "score": i % 10} for i, k in enumerate(keys)]
            + [{"email": new_address, "score": 1}],
        )
    assert body["modified"] == created["upsertedIds"] and body["created"] == 1
    assert {s for s, _ in statements if "email_key" in s} and {s for s, _ in statements if "source_id" in s}
    with database.db.engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        assert driver.adapters.get_dumper(TextArray, PyFormat.AUTO) is TextArrayDumper
        for statement, params in statements:
            arrays = [p for p in params.values() if isinstance(p, TextArray)]
            assert len(arrays) == 1, (statement, params)
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", params))
            # the keys, a constant of the plan: not a parameter, an InitPlan or a cast made at run time
            assert re.search(r"= ANY \('\{[^']*\}'::(text|character varying)\[\]\)", plan), plan
            assert "InitPlan" not in plan, plan
    scores = {r["sourceId"]: r["score"] for r in all_records(client, tenant)}
    assert [scores[k] for k in keys] == [i % 10 for i in range(len(keys))]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_postgresql_keys_match_whatever_the_client_encoding(
    client: TestClient, tenant: Tenant, database: Any
) -> None:
    """The keys' array is encoded as the connection's client encoding says, like psycopg's own
    text: written as UTF-8 to a LATIN1 client, "é" arrived as "Ã©" and matched nothing."""
    keys = [f"clé-{i}-Übersicht" for i in range(40)]
    created = bulk(client, tenant, [{"email": email(), "score": 4, "sourceId": k} for k in keys])
    with database.db.transaction() as session:
        session.execute(text("SET LOCAL client_encoding TO 'LATIN1'"))
        found = rows_by(session, tenant.org_id, "source_id", keys, {})
    assert sorted(row["id"] for row in found.values()) == sorted(created["upsertedIds"])


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_postgresql_copy_refuses_a_number_its_column_cannot_hold(
    client: TestClient, tenant: Tenant, database: Any
) -> None:
    """Records are inserted by binary COPY, whose integers psycopg writes by keeping their low
    bytes (40000 in a smallint was stored as -25536; text COPY made the server refuse it): such
    a number is refused before anything is written, and the largest that fits is stored."""
    contact = client.post("/endusers", json={"email": email()}, headers=tenant.editor).json()["_id"]
    now = datetime(2026, 11, 29, 9, 0)
    row = {
        **dict.fromkeys(COLUMN_NAMES),
        "id": "c0ffee" + "0" * 18,
        "org_id": tenant.org_id,
        "enduser_id": contact,
        "email": "wide@number.test",
        "score": 10,
        "date_answered": now,
        "version": 0,
        "created_at": now,
        "updated_at": now,
    }
    for bad in ({"score": 40_000}, {"score": -40_000}, {"version": 2**31}):
        with pytest.raises(ValueError, match="does not fit"), database.db.transaction() as session:
            insert_many(session, T, [{**row, **bad}])
        assert client.get(f"/nps/{row['id']}", headers=tenant.viewer).status_code == 404
    with database.db.transaction() as session:
        insert_many(session, T, [{**row, "version": 2**31 - 1}])
    stored = get(client, tenant, row["id"])
    assert (stored["score"], stored["__v"]) == (10, 2**31 - 1)


def test_garbage_collection_resumes_after_a_batch(client: TestClient, tenant: Tenant) -> None:
    """A batch defers Python's cyclic garbage collection, which is process-wide, while it runs:
    it is back on afterwards, whether every item applied or some failed."""
    assert gc.isenabled()
    bulk(client, tenant, [{"email": email(), "score": 5}])
    assert gc.isenabled()
    bulk(client, tenant, [{"email": email(), "score": 5}, {"score": 99}], status=206)
    assert gc.isenabled()


TRICKY_TEXTS = [
    "quotes \" and ' and \\ backslash",
    "line\nbreak\ttab",
    "Grüße, 日本語, emoji 🎉, RTL שלום",
    "null",
    "0012",
    "1e5",
    "[1, 2]",
    '{"a": 1}',
    "",
    " padded ",
]


def test_bulk_writes_store_every_value_exactly(client: TestClient, tenant: Tenant) -> None:
    """Batches are written as one statement over the rows as JSON on SQLite: every kind of value
    comes back as sent, on creates and on updates, as a single write stores it."""
    items = [
        {
            "email": email(),
            "score": i % 11,
            "comment": text,
            "source": text or "s",
            "sourceId": f"exact-{i}-{text}",
            "dateAnswered": f"2026-0{1 + i % 9}-1{i % 9}T0{i % 10}:30:15.{i:03d}456Z",
            "dateSent": None if i % 2 else "2026-01-02T03:04:05Z",
            "custom": {
                "text": text,
                "n": i,
                "big": 2**53 + i,
                "f": 0.1 * i,
                "flag": i % 2 == 0,
                "none": None,
            },
        }
        for i, text in enumerate(TRICKY_TEXTS)
    ]
    created = bulk(client, tenant, items)
    assert created["created"] == len(items)
    single = client.post("/nps", json={**items[0], "sourceId": "exact-single"}, headers=tenant.editor)
    assert single.status_code == 200, single.text
    for item, rid in zip(items, created["upsertedIds"], strict=True):
        stored = get(client, tenant, rid)
        assert stored["comment"] == item["comment"]
        assert stored["source"] == item["source"] and stored["sourceId"] == item["sourceId"]
        assert stored["score"] == item["score"] and stored["custom"] == item["custom"]
        assert stored["dateAnswered"].startswith(item["dateAnswered"][:23])
        assert stored["dateSent"] == (item["dateSent"] and "2026-01-02T03:04:05.000Z")
    same = get(client, tenant, "srcid-exact-single")
    first = get(client, tenant, created["upsertedIds"][0])
    assert {
        k: v
        for k, v in same.items()
        if k not in ("_id", "sourceId", "createdAt", "updatedAt", "euId", "npsId")
    } == {
        k: v
        for k, v in first.items()
        if k not in ("_id", "sourceId", "createdAt", "updatedAt", "euId", "npsId")
    }

    updates = [
        {"sourceId": item["sourceId"], "comment": TRICKY_TEXTS[-1 - i], "custom": {"more": TRICKY_TEXTS[i]}}
        for i, item in enumerate(items)
    ]
    updated = bulk(client, tenant, updates)
    assert updated["updated"] == len(items)
    for item, update, rid in zip(items, updates, created["upsertedIds"], strict=True):
        stored = get(client, tenant, rid)
        assert stored["comment"] == update["comment"]
        assert stored["custom"] == {**item["custom"], **update["custom"]}
        assert stored["__v"] == 1
    r = client.get("/nps?search=emoji&npsExpiryDay=0", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    assert [x["comment"] for x in r.json()] == [TRICKY_TEXTS[2]]
    assert [x["_id"] for x in r.json()] == [created["upsertedIds"][len(items) - 3]]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the JSON statement is SQLite's
def test_one_statement_stores_what_executemany_stores(
    client: TestClient, tenant: Tenant, database: Any
) -> None:
    """The records' one-statement writes (``json_each``) store every value with the type and
    bytes a bound parameter gets: compared column by column with ``typeof`` and ``hex``, for
    inserts and for updates; a NUL, which JSON would cut, is refused rather than cut."""
    contact = client.post("/endusers", json={"email": email()}, headers=tenant.editor).json()["_id"]
    now = datetime(2026, 11, 29, 5, 30, 1, 123000)
    texts = [*TRICKY_TEXTS, "x" * 70_000, "𝄞" * 5000, "\u2028\ufeff\U0010ffff", "007", "-0", "1.50", "true"]

    def rows(prefix: str) -> list[dict[str, Any]]:
        return [
            {
                **dict.fromkeys(COLUMN_NAMES),
                "id": f"{prefix}{i:022x}",
                "org_id": tenant.org_id,
                "enduser_id": contact,
                "email": f"e{i}@x.test",
                "score": i % 11,
                "comment": text,
                "source": text[:200],
                "source_id": f"{prefix}-{i}",
                "campaign_id": text[:64] or None,
                "date_answered": now,
                "date_sent": None if i % 2 else now,
                "custom": {"t": text, "n": 2**62 + i, "f": 1 / 3, "b": i % 2 == 0, "z": None},
                "version": 0,
                "created_at": now,
                "updated_at": now,
            }
            for i, text in enumerate(texts)
        ]

    def stored(prefix: str) -> list[tuple[Any, ...]]:
        columns = [c for c in COLUMN_NAMES if c not in ("id", "source_id")]
        probes = ", ".join(f"typeof({c}), hex({c})" for c in columns)
        with database.db.engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.exec_driver_sql(
                    f"SELECT {probes} FROM nps_record WHERE id LIKE ? ORDER BY id", (f"{prefix}%",)
                )
            ]

    with database.db.transaction() as session:
        insert_many(session, T, rows("a1"))
        insert_many(session, T, rows("b2"), one_statement=True)
    assert stored("a1") == stored("b2") and len(stored("a1")) == len(texts)

    def changes(prefix: str) -> list[dict[str, Any]]:
        return [
            {**row, "comment": texts[-1 - i], "custom": {"u": texts[i]}, "score": 10 - row["score"]}
            for i, row in enumerate(rows(prefix))
        ]

    with database.db.transaction() as session:
        update_many(session, T, ("comment", "custom", "score"), ("id", "org_id"), changes("a1"))
        update_many(
            session, T, ("comment", "custom", "score"), ("id", "org_id"), changes("b2"), one_statement=True
        )
    assert stored("a1") == stored("b2")

    with pytest.raises(ValueError, match="NUL"), database.db.transaction() as session:
        insert_many(session, T, [{**rows("c3")[0], "comment": "cut\x00here"}], one_statement=True)
    assert stored("c3") == []


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the JSON statement is SQLite's
def test_one_statement_updates_look_each_record_up_by_id(
    client: TestClient, tenant: Tenant, database: Any
) -> None:
    """The bulk update's ``UPDATE ... FROM json_each`` must loop over the batch and find each
    record by its id: with the organization as a constant instead, SQLite walked the
    organization's answers for every row of the batch (5,000 rows took minutes)."""
    created = bulk(
        client, tenant, [{"email": email(), "score": 5, "sourceId": f"plan-{i}"} for i in range(40)]
    )
    with statements_run(
        database, lambda statement, _: statement.startswith("UPDATE nps_record") and "json_each" in statement
    ) as statements:
        updated = bulk(
            client, tenant, [{"sourceId": f"plan-{i}", "score": 9, "comment": "new"} for i in range(40)]
        )
    assert created["created"] == updated["updated"] == 40
    assert len(statements) == 1, statements
    plan = sqlite_plan(database, *statements[0])
    assert plan[0].startswith("SCAN j"), plan
    assert any(
        "SEARCH nps_record USING INDEX sqlite_autoindex_nps_record_1 (id=?)" in line for line in plan
    ), plan
