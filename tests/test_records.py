"""``/nps`` single-record endpoints and the list, through HTTP on both databases.

The seed's curl examples come first; then validation, contacts and companies, lookups by id and
``srcid-``, tenancy, roles and every list parameter.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, assert_error, iso_ms

OUTPUT_FIELDS = {
    "_id",
    "email",
    "score",
    "comment",
    "scoreType",
    "euId",
    "cId",
    "campaignId",
    "source",
    "sourceId",
    "dateSent",
    "dateReminderSent",
    "dateAnswered",
    "custom",
    "createdAt",
    "updatedAt",
    "__v",
    "nps",
    "npsComment",
    "npsDate",
    "npsSent",
    "npsId",
}


def unique_email(domain: str = "test.com") -> str:
    return f"u-{secrets.token_hex(5)}@{domain}"


def create(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    body.setdefault("email", unique_email())
    body.setdefault("score", 7)
    r = client.post("/nps", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


def company(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Acme " + secrets.token_hex(3))
    r = client.post("/companies", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


def ago(days: float) -> str:
    return iso_ms(datetime.now(UTC) - timedelta(days=days))


def parse(value: str) -> datetime:
    assert value.endswith("Z") and len(value) == len("2021-07-29T20:09:50.914Z"), value
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------- seed


def test_seed_create(client: TestClient, tenant: Tenant) -> None:
    r = client.post("/nps", json={"email": "jane@test.com", "score": 7}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == OUTPUT_FIELDS
    assert body["email"] == "jane@test.com"
    assert body["score"] == 7 and body["nps"] == 7
    assert body["scoreType"] == "passive"
    assert body["dateSent"] is None and body["npsSent"] is None
    assert body["__v"] == 0
    assert len(body["_id"]) == 24 and body["npsId"] == body["_id"]
    assert len(body["euId"]) == 24
    assert body["npsDate"] == body["dateAnswered"]


def test_seed_update_by_id(client: TestClient, tenant: Tenant) -> None:
    rec = create(client, tenant, email="jane@test.com", score=7, campaignId="60915415fc985e73734f5c02")
    r = client.put(f"/nps/{rec['_id']}", json={"score": 9, "comment": "Good product"}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["_id"] == rec["_id"]
    assert body["campaignId"] == "60915415fc985e73734f5c02"
    assert body["email"] == "jane@test.com"
    assert body["score"] == 9 and body["scoreType"] == "promoter"
    assert body["comment"] == "Good product" and body["npsComment"] == "Good product"
    assert body["euId"] == rec["euId"]
    assert body["dateAnswered"] == rec["dateAnswered"]
    assert body["__v"] == 1


def test_seed_get_by_id(client: TestClient, tenant: Tenant) -> None:
    rec = create(
        client,
        tenant,
        email="taco@trello.com",
        score=6,
        source="Planhat",
        sourceId="5f3bc3efe8cd350bb6cf715a",
        campaignId="5c3d0c38b95614b78f100c65",
        dateSent="2020-08-18T12:10:03.495Z",
        dateAnswered="2020-09-14T06:20:59.367Z",
    )
    r = client.get(f"/nps/{rec['_id']}", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == rec
    assert body["npsId"] == rec["_id"]
    assert body["npsDate"] == "2020-09-14T06:20:59.367Z"
    assert body["nps"] == 6 and body["scoreType"] == "detractor"
    assert body["npsComment"] is None and body["npsSent"] == "2020-08-18T12:10:03.495Z"
    assert body["dateSent"] == "2020-08-18T12:10:03.495Z" and body["dateReminderSent"] is None
    assert body["source"] == "Planhat" and body["sourceId"] == "5f3bc3efe8cd350bb6cf715a"
    assert body["custom"] is None


def test_seed_list_limit_offset(client: TestClient, tenant: Tenant) -> None:
    recs = [create(client, tenant, score=s, dateAnswered=ago(10 - s)) for s in (3, 5, 8)]
    r = client.get("/nps?limit=2&offset=0", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list)
    # newest answer first
    assert [x["_id"] for x in body] == [recs[2]["_id"], recs[1]["_id"]]
    assert all(set(x) == OUTPUT_FIELDS for x in body)
    r = client.get("/nps?limit=2&offset=2", headers=tenant.viewer)
    assert [x["_id"] for x in r.json()] == [recs[0]["_id"]]


def test_seed_delete(client: TestClient, tenant: Tenant) -> None:
    rec = create(client, tenant)
    r = client.delete(f"/nps/{rec['_id']}", headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"n": 1, "ok": 1, "deletedCount": 1}
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.admin).status_code == 404
    assert_error(client.delete(f"/nps/{rec['_id']}", headers=tenant.admin), 404)


def test_seed_bulk_upsert_reply(client: TestClient, tenant: Tenant) -> None:
    r = client.put(
        "/nps",
        json=[{"email": "jane@test.com", "score": 7}, {"email": "pepe@test.com", "score": 10}],
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == [
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
    assert body["created"] == 2 and body["updated"] == 0 and body["nonupdates"] == 0
    assert body["createdErrors"] == [] and body["updatedErrors"] == [] and body["updatesKeys"] == []
    assert body["modified"] == [] and body["permissionErrors"] == []
    assert body["insertsKeys"] == [{"_id": i} for i in body["upsertedIds"]]
    assert len(set(body["upsertedIds"])) == 2
    scores = {client.get(f"/nps/{i}", headers=tenant.viewer).json()["email"]: i for i in body["upsertedIds"]}
    assert set(scores) == {"jane@test.com", "pepe@test.com"}


# ------------------------------------------------------------------------------------- POST input


def test_post_requires_email_and_score(client: TestClient, tenant: Tenant) -> None:
    assert_error(client.post("/nps", json={"score": 7}, headers=tenant.editor), 400, "email")
    assert_error(client.post("/nps", json={"email": "a@b.com"}, headers=tenant.editor), 400, "score")
    assert_error(client.post("/nps", json={"email": None, "score": 7}, headers=tenant.editor), 400, "email")
    assert_error(
        client.post("/nps", json={"email": "a@b.com", "score": None}, headers=tenant.editor), 400, "score"
    )
    assert_error(client.post("/nps", json={}, headers=tenant.editor), 400)
    assert client.get("/nps", headers=tenant.viewer).json() == []


@pytest.mark.parametrize("score", [7.0, 7.5, True, False, "7", 11, -1, 10**30, [7], {"v": 7}])
def test_post_rejects_bad_scores(client: TestClient, tenant: Tenant, score: Any) -> None:
    body = assert_error(
        client.post("/nps", json={"email": "a@b.com", "score": score}, headers=tenant.editor), 400, "score"
    )
    assert "0 to 10" in body["message"] or "integer" in body["message"]
    assert client.get("/nps", headers=tenant.viewer).json() == []


@pytest.mark.parametrize("score", [0, 6, 7, 8, 9, 10])
def test_post_score_bounds_and_types(client: TestClient, tenant: Tenant, score: int) -> None:
    rec = create(client, tenant, score=score)
    assert rec["score"] == score
    assert rec["scoreType"] == ("promoter" if score >= 9 else "passive" if score >= 7 else "detractor")


@pytest.mark.parametrize(
    "email",
    [
        "",
        "jane",
        "jane@",
        "@test.com",
        "jane@@test.com",
        "jane doe@test.com",
        "jane@test",
        7,
        "a" * 400 + "@test.com",
        "jane\x00@test.com",
    ],
)
def test_post_rejects_bad_email(client: TestClient, tenant: Tenant, email: Any) -> None:
    assert_error(client.post("/nps", json={"email": email, "score": 7}, headers=tenant.editor), 400, "email")


def test_post_all_fields_round_trip(client: TestClient, tenant: Tenant) -> None:
    co = company(client, tenant)
    rec = create(
        client,
        tenant,
        email="Full@Test.com",
        score=10,
        comment="great",
        campaignId="camp-1",
        cId=co["_id"],
        source="custom-nps.com",
        sourceId="src-full",
        dateSent="2024-01-02T03:04:05.678Z",
        dateReminderSent="2024-01-03T00:00:00Z",
        dateAnswered="2024-01-04T10:00:00.5+00:00",
        custom={"plan": "gold", "seats": 12, "tags": ["a", "b"], "nested": {"x": None}},
    )
    assert rec["email"] == "Full@Test.com"
    assert rec["comment"] == "great" and rec["npsComment"] == "great"
    assert rec["campaignId"] == "camp-1" and rec["cId"] == co["_id"]
    assert rec["source"] == "custom-nps.com" and rec["sourceId"] == "src-full"
    assert rec["dateSent"] == "2024-01-02T03:04:05.678Z" == rec["npsSent"]
    assert rec["dateReminderSent"] == "2024-01-03T00:00:00.000Z"
    assert rec["dateAnswered"] == "2024-01-04T10:00:00.500Z" == rec["npsDate"]
    assert rec["custom"] == {"plan": "gold", "seats": 12, "tags": ["a", "b"], "nested": {"x": None}}
    assert rec["createdAt"] == rec["updatedAt"]
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).json() == rec


def test_post_date_answered_defaults_to_now(client: TestClient, tenant: Tenant) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    rec = create(client, tenant)
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    answered = parse(rec["dateAnswered"])
    assert before <= answered <= after
    assert parse(rec["createdAt"]) == answered
    # an explicit null also means now on create
    rec = create(client, tenant, dateAnswered=None)
    assert before <= parse(rec["dateAnswered"]) <= datetime.now(UTC) + timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2021-07-29T20:09:50.914Z", "2021-07-29T20:09:50.914Z"),
        ("2021-07-29T22:09:50.914+02:00", "2021-07-29T20:09:50.914Z"),
        ("2021-07-29T15:39:50.914-04:30", "2021-07-29T20:09:50.914Z"),
        ("2021-07-29T20:09:50.914567Z", "2021-07-29T20:09:50.914Z"),
        ("2021-07-29T20:09:50", "2021-07-29T20:09:50.000Z"),
        (1627589390, "2021-07-29T20:09:50.000Z"),
        ("1627589390", "2021-07-29T20:09:50.000Z"),
    ],
)
def test_post_dates_accept_iso_and_epoch(
    client: TestClient, tenant: Tenant, sent: Any, expected: str
) -> None:
    rec = create(client, tenant, dateAnswered=sent, dateSent=sent)
    assert rec["dateAnswered"] == expected == rec["dateSent"]
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).json()["dateAnswered"] == expected


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2021-13-01T00:00:00Z",
        "2021-07-29T25:00:00Z",
        True,
        [1],
        {"a": 1},
        "9999-01-01T00:00:00Z",
        -(10**12),
        10**20,
        "1900-01-01T00:00:00Z",
    ],
)
def test_post_rejects_bad_dates(client: TestClient, tenant: Tenant, value: Any) -> None:
    for name in ("dateAnswered", "dateSent", "dateReminderSent", "npsDate"):
        r = client.post("/nps", json={"email": "a@b.com", "score": 7, name: value}, headers=tenant.editor)
        assert_error(r, 400, name)


def test_post_unknown_field_is_named(client: TestClient, tenant: Tenant) -> None:
    body = assert_error(
        client.post("/nps", json={"email": "a@b.com", "score": 7, "colour": "red"}, headers=tenant.editor),
        400,
        "colour",
    )
    assert "colour" in body["message"]
    # python-side names of the read-only fields are not part of the API
    for name in ("id_", "version_", "id", "version"):
        assert_error(
            client.post("/nps", json={"email": "a@b.com", "score": 7, name: "x"}, headers=tenant.editor),
            400,
            name,
        )
    assert client.get("/nps", headers=tenant.viewer).json() == []


def test_post_read_only_fields_are_ignored(client: TestClient, tenant: Tenant) -> None:
    fake = "0123456789abcdef01234567"
    rec = create(
        client,
        tenant,
        score=3,
        _id=fake,
        euId=fake,
        scoreType="promoter",
        __v=42,
        createdAt="2001-01-01T00:00:00Z",
        updatedAt="nonsense",
        npsId=fake,
    )
    assert rec["_id"] != fake and rec["npsId"] == rec["_id"]
    assert rec["euId"] != fake
    assert rec["scoreType"] == "detractor"
    assert rec["__v"] == 0
    assert rec["createdAt"] != "2001-01-01T00:00:00.000Z"
    assert client.get(f"/nps/{fake}", headers=tenant.viewer).status_code == 404


def test_post_whole_object_read_back_is_accepted(client: TestClient, tenant: Tenant) -> None:
    """Planhat clients send back what they read: the full output object is valid input."""
    rec = create(client, tenant, score=8, comment="ok", custom={"a": 1})
    copy = {k: v for k, v in rec.items()}
    copy["email"] = unique_email()
    again = client.post("/nps", json=copy, headers=tenant.editor)
    assert again.status_code == 200, again.text
    assert again.json()["_id"] != rec["_id"]
    assert (
        again.json()["score"] == 8 and again.json()["comment"] == "ok" and again.json()["custom"] == {"a": 1}
    )


def test_post_legacy_aliases_map(client: TestClient, tenant: Tenant) -> None:
    r = client.post(
        "/nps",
        json={
            "email": unique_email(),
            "nps": 9,
            "npsComment": "via alias",
            "npsDate": "2023-05-06T07:08:09.123Z",
            "npsSent": "2023-05-01T00:00:00Z",
        },
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["score"] == 9 and rec["nps"] == 9 and rec["scoreType"] == "promoter"
    assert rec["comment"] == "via alias"
    assert rec["dateAnswered"] == "2023-05-06T07:08:09.123Z"
    assert rec["dateSent"] == "2023-05-01T00:00:00.000Z"
    # the modern name wins when both are sent
    rec = create(client, tenant, score=2, nps=10, comment="modern", npsComment="legacy")
    assert rec["score"] == 2 and rec["comment"] == "modern"
    # an alias is validated like its field
    assert_error(client.post("/nps", json={"email": "a@b.com", "nps": 11}, headers=tenant.editor), 400, "nps")


def test_post_bad_values_are_400(client: TestClient, tenant: Tenant) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"comment": "a\x00b"}, "comment"),
        ({"comment": 5}, "comment"),
        ({"comment": "x" * 70_000}, "comment"),
        ({"custom": [1, 2]}, "custom"),
        ({"custom": "text"}, "custom"),
        ({"custom": {"a\x00": 1}}, "custom"),
        ({"custom": {"a": "b\x00"}}, "custom"),
        ({"custom": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}}}, "custom"),
        ({"source": "s" * 201}, "source"),
        ({"sourceId": "s" * 501}, "sourceId"),
        ({"sourceId": "a\x00"}, "sourceId"),
        ({"campaignId": "c" * 65}, "campaignId"),
        ({"cId": "not-an-id"}, "cId"),
        ({"cId": 12}, "cId"),
    ]
    for extra, name in cases:
        r = client.post("/nps", json={"email": "a@b.com", "score": 7, **extra}, headers=tenant.editor)
        assert_error(r, 400, name)
    assert client.get("/nps", headers=tenant.viewer).json() == []


def test_post_values_that_cannot_be_sent_back(client: TestClient, tenant: Tenant) -> None:
    """Lone surrogates and numbers beyond 64 bits could be stored but not returned as JSON: 400, not 500."""
    headers = {**tenant.editor, "Content-Type": "application/json"}
    cases = [
        (b'{"email":"a\\ud800@b.com","score":5}', "email"),
        (b'{"email":"a@b.com","score":5,"comment":"\\udc00"}', "comment"),
        (b'{"email":"a@b.com","score":5,"sourceId":"x\\ud800"}', "sourceId"),
        (b'{"email":"a@b.com","score":5,"custom":{"k":"\\ud800"}}', "custom"),
        (b'{"email":"a@b.com","score":5,"custom":{"\\ud800":1}}', "custom"),
        (b'{"email":"a@b.com","score":5,"custom":{"n":100000000000000000000000000000}}', "custom"),
        (b'{"email":"a@b.com","score":5,"custom":{"n":[-1e30]}}', "custom"),
        (b'{"email":"a@b.com","score":5,"custom":{"n":9223372036854775808}}', "custom"),
    ]
    for raw, name in cases:
        assert_error(client.post("/nps", content=raw, headers=headers), 400, name)
        r = client.put("/nps", content=b"[" + raw + b"]", headers=headers)
        assert r.status_code in (206, 400), r.text
        if r.status_code == 206:
            assert r.json()["created"] == 0 and name in r.json()["createdErrors"][0]["error"]
    ok = create(
        client, tenant, custom={"big": 9223372036854775807, "small": -1.5e-300, "text": "\u00e9\U0001f600"}
    )
    assert ok["custom"] == {"big": 9223372036854775807, "small": -1.5e-300, "text": "\u00e9\U0001f600"}
    assert client.get(f"/nps/{ok['_id']}", headers=tenant.viewer).json()["custom"] == ok["custom"]
    assert [r["_id"] for r in client.get("/nps", headers=tenant.viewer).json()] == [ok["_id"]]


def test_post_malformed_bodies(client: TestClient, tenant: Tenant) -> None:
    headers = {**tenant.editor, "Content-Type": "application/json"}
    for raw in (b"", b"{", b"[]", b"null", b"7", b'"x"', b"\xff\xfe", b'{"email": "a@b.com", "score": 7,}'):
        r = client.post("/nps", content=raw, headers=headers)
        assert 400 <= r.status_code < 500, (raw, r.status_code, r.text)
        assert_error(r, r.status_code)


def test_post_duplicate_source_id_is_409(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    create(client, tenant, sourceId="dup-1")
    assert_error(
        client.post(
            "/nps", json={"email": "a@b.com", "score": 7, "sourceId": "dup-1"}, headers=tenant.editor
        ),
        409,
        "sourceId",
    )
    # sourceIds are per organization
    r = client.post("/nps", json={"email": "a@b.com", "score": 7, "sourceId": "dup-1"}, headers=other.editor)
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- contacts and companies


def test_enduser_found_by_email_case_insensitively(client: TestClient, tenant: Tenant) -> None:
    a = create(client, tenant, email="Mixed.Case@Example.org")
    b = create(client, tenant, email="mixed.case@EXAMPLE.ORG")
    c = create(client, tenant, email="  mixed.case@example.org ")
    assert a["euId"] == b["euId"] == c["euId"]
    assert b["email"] == "mixed.case@EXAMPLE.ORG" and c["email"] == "mixed.case@example.org"
    eu = client.get(f"/endusers/{a['euId']}", headers=tenant.viewer).json()
    assert eu["email"] == "Mixed.Case@Example.org"
    listed = client.get("/endusers?email=MIXED.case@example.org", headers=tenant.viewer).json()
    assert [e["_id"] for e in listed] == [a["euId"]]


def test_existing_enduser_is_reused(client: TestClient, tenant: Tenant) -> None:
    r = client.post("/endusers", json={"email": "known@corp.io", "name": "Known"}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    rec = create(client, tenant, email="KNOWN@corp.io")
    assert rec["euId"] == r.json()["_id"]
    assert len(client.get("/endusers", headers=tenant.viewer).json()) == 1


def test_new_enduser_joins_cid_company(client: TestClient, tenant: Tenant) -> None:
    by_domain = company(client, tenant, domains=["acme.com"])
    explicit = company(client, tenant)
    rec = create(client, tenant, email="joe@acme.com", cId=explicit["_id"])
    assert rec["cId"] == explicit["_id"]
    eu = client.get(f"/endusers/{rec['euId']}", headers=tenant.viewer).json()
    assert eu["companyId"] == explicit["_id"]
    assert by_domain["_id"] != explicit["_id"]


def test_new_enduser_joins_company_by_domain(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    company(client, other, domains=["acme.com"])  # another tenant's company never matches
    co = company(client, tenant, domains=["other.net", "acme.com"])
    rec = create(client, tenant, email="Ann@ACME.com")
    eu = client.get(f"/endusers/{rec['euId']}", headers=tenant.viewer).json()
    assert eu["companyId"] == co["_id"]
    assert rec["cId"] == co["_id"]
    # a subdomain or a look-alike is not the domain
    for email in ("bob@mail.acme.com", "carl@acme.com.evil.org", "dan@notacme.com"):
        r = create(client, tenant, email=email)
        assert client.get(f"/endusers/{r['euId']}", headers=tenant.viewer).json()["companyId"] is None
        assert r["cId"] is None


def test_new_enduser_without_company(client: TestClient, tenant: Tenant) -> None:
    rec = create(client, tenant, email="solo@nowhere.example")
    assert rec["cId"] is None
    eu = client.get(f"/endusers/{rec['euId']}", headers=tenant.viewer).json()
    assert eu["companyId"] is None and eu["email"] == "solo@nowhere.example"


def test_existing_enduser_keeps_its_company(client: TestClient, tenant: Tenant) -> None:
    first = company(client, tenant, domains=["keep.io"])
    second = company(client, tenant)
    rec = create(client, tenant, email="x@keep.io")
    assert rec["cId"] == first["_id"]
    # a later answer naming another company is filed under it, but the contact does not move
    rec2 = create(client, tenant, email="x@keep.io", cId=second["_id"])
    assert rec2["cId"] == second["_id"] and rec2["euId"] == rec["euId"]
    assert client.get(f"/endusers/{rec['euId']}", headers=tenant.viewer).json()["companyId"] == first["_id"]


def test_unknown_or_foreign_cid_is_400(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    foreign = company(client, other)
    for cid in ("0123456789abcdef01234567", foreign["_id"]):
        body = assert_error(
            client.post("/nps", json={"email": "z@z.com", "score": 7, "cId": cid}, headers=tenant.editor),
            400,
            "cId",
        )
        assert "cId" in body["message"]
    assert client.get("/nps", headers=tenant.viewer).json() == []
    assert client.get("/endusers", headers=tenant.viewer).json() == []


# --------------------------------------------------------------------------- by id and by srcid


def test_get_put_delete_by_srcid(client: TestClient, tenant: Tenant) -> None:
    slashed = create(client, tenant, sourceId="https://crm.example/42?x=1", score=4)
    r = client.get("/nps/srcid-https%3A%2F%2Fcrm.example%2F42%3Fx%3D1", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    assert r.json()["_id"] == slashed["_id"]
    rec = create(client, tenant, sourceId="crm-42 ä", score=4)
    got = client.get("/nps/srcid-crm-42 ä", headers=tenant.viewer)
    assert got.status_code == 200, got.text
    assert got.json()["_id"] == rec["_id"]
    put = client.put("/nps/srcid-crm-42 ä", json={"score": 10}, headers=tenant.editor)
    assert put.status_code == 200 and put.json()["_id"] == rec["_id"] and put.json()["score"] == 10
    assert put.json()["__v"] == 1
    d = client.delete("/nps/srcid-crm-42 ä", headers=tenant.admin)
    assert d.status_code == 200 and d.json() == {"n": 1, "ok": 1, "deletedCount": 1}
    assert_error(client.get(f"/nps/{rec['_id']}", headers=tenant.viewer), 404)
    assert_error(client.get("/nps/srcid-crm-42 ä", headers=tenant.viewer), 404)
    assert_error(client.get("/nps/srcid-", headers=tenant.viewer), 404)


def test_put_partial_update(client: TestClient, tenant: Tenant) -> None:
    rec = create(
        client,
        tenant,
        score=5,
        comment="meh",
        source="web",
        sourceId="p-1",
        campaignId="c1",
        dateSent="2024-02-01T00:00:00Z",
        dateAnswered="2024-02-02T00:00:00Z",
        custom={"a": 1, "b": {"x": 1}, "c": 3},
    )
    r = client.put(
        f"/nps/{rec['_id']}",
        json={"custom": {"b": {"y": 2}, "d": 4, "c": None}, "scoreType": "promoter"},
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    up = r.json()
    assert up["custom"] == {"a": 1, "b": {"y": 2}, "c": None, "d": 4}
    assert up["scoreType"] == "detractor" and up["score"] == 5
    assert up["__v"] == 1
    for key in (
        "email",
        "comment",
        "source",
        "sourceId",
        "campaignId",
        "dateSent",
        "dateAnswered",
        "euId",
        "cId",
        "createdAt",
    ):
        assert up[key] == rec[key], key
    assert parse(up["updatedAt"]) >= parse(rec["updatedAt"])
    r = client.put(
        f"/nps/{rec['_id']}", json={"score": 9, "comment": None, "dateSent": None}, headers=tenant.editor
    )
    up = r.json()
    assert (
        up["score"] == 9
        and up["scoreType"] == "promoter"
        and up["comment"] is None
        and up["dateSent"] is None
    )
    assert up["__v"] == 2 and up["custom"] == {"a": 1, "b": {"y": 2}, "c": None, "d": 4}
    # custom: null clears it; a later object starts afresh
    up = client.put(f"/nps/{rec['_id']}", json={"custom": None}, headers=tenant.editor).json()
    assert up["custom"] is None and up["__v"] == 3
    up = client.put(f"/nps/{rec['_id']}", json={"custom": {"z": 1}}, headers=tenant.editor).json()
    assert up["custom"] == {"z": 1} and up["__v"] == 4
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).json() == up


def test_put_without_change_keeps_version(client: TestClient, tenant: Tenant) -> None:
    rec = create(client, tenant, score=8, custom={"a": 1})
    same = client.put(
        f"/nps/{rec['_id']}", json={"score": 8, "custom": {"a": 1}, "__v": 99}, headers=tenant.editor
    )
    assert same.status_code == 200
    assert same.json() == rec
    whole = client.put(f"/nps/{rec['_id']}", json=rec, headers=tenant.editor)
    assert whole.status_code == 200, whole.text
    assert whole.json() == rec


def test_put_aliases_and_nulls(client: TestClient, tenant: Tenant) -> None:
    rec = create(client, tenant, score=8)
    up = client.put(
        f"/nps/{rec['_id']}",
        json={"nps": 2, "npsComment": "bad", "npsDate": "2024-03-03T03:03:03Z"},
        headers=tenant.editor,
    ).json()
    assert up["score"] == 2 and up["comment"] == "bad" and up["dateAnswered"] == "2024-03-03T03:03:03.000Z"
    for name in ("score", "email", "dateAnswered", "nps", "npsDate"):
        assert_error(client.put(f"/nps/{rec['_id']}", json={name: None}, headers=tenant.editor), 400, name)
    assert_error(client.put(f"/nps/{rec['_id']}", json={"score": 7.0}, headers=tenant.editor), 400, "score")
    assert_error(client.put(f"/nps/{rec['_id']}", json={"bogus": 1}, headers=tenant.editor), 400, "bogus")
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).json() == up


def test_put_email_moves_record_to_that_contact(client: TestClient, tenant: Tenant) -> None:
    co = company(client, tenant, domains=["new.io"])
    rec = create(client, tenant, email="old@old.io", score=9)
    up = client.put(f"/nps/{rec['_id']}", json={"email": "Someone@NEW.io"}, headers=tenant.editor).json()
    assert up["euId"] != rec["euId"] and up["email"] == "Someone@NEW.io"
    assert up["cId"] == co["_id"]
    new_eu = client.get(f"/endusers/{up['euId']}", headers=tenant.viewer).json()
    assert new_eu["email"] == "Someone@NEW.io" and new_eu["nps"] == 9 and new_eu["companyId"] == co["_id"]
    old_eu = client.get(f"/endusers/{rec['euId']}", headers=tenant.viewer).json()
    assert old_eu["nps"] is None and old_eu["npsId"] is None
    # case-only change keeps the contact
    up2 = client.put(f"/nps/{rec['_id']}", json={"email": "someone@new.io"}, headers=tenant.editor).json()
    assert up2["euId"] == up["euId"] and up2["email"] == "someone@new.io"


def test_put_cid_and_source_id_rules(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    co = company(client, tenant)
    foreign = company(client, other)
    a = create(client, tenant, sourceId="sa")
    create(client, tenant, sourceId="sb")
    up = client.put(f"/nps/{a['_id']}", json={"cId": co["_id"]}, headers=tenant.editor).json()
    assert up["cId"] == co["_id"]
    assert_error(
        client.put(f"/nps/{a['_id']}", json={"cId": foreign["_id"]}, headers=tenant.editor), 400, "cId"
    )
    assert_error(
        client.put(f"/nps/{a['_id']}", json={"sourceId": "sb"}, headers=tenant.editor), 409, "sourceId"
    )
    up = client.put(f"/nps/{a['_id']}", json={"sourceId": "sa2"}, headers=tenant.editor).json()
    assert up["sourceId"] == "sa2"
    assert client.get("/nps/srcid-sa2", headers=tenant.viewer).json()["_id"] == a["_id"]
    assert_error(client.get("/nps/srcid-sa", headers=tenant.viewer), 404)


def test_unknown_and_malformed_ids(client: TestClient, tenant: Tenant) -> None:
    unknown = "0123456789abcdef01234567"
    assert_error(client.get(f"/nps/{unknown}", headers=tenant.viewer), 404)
    assert_error(client.put(f"/nps/{unknown}", json={"score": 1}, headers=tenant.editor), 404)
    assert_error(client.delete(f"/nps/{unknown}", headers=tenant.admin), 404)
    assert_error(client.get("/nps/srcid-nothing", headers=tenant.viewer), 404)
    for bad in (
        "123",
        "0123456789ABCDEF01234567",
        "zzzzzzzzzzzzzzzzzzzzzzzz",
        "0123456789abcdef012345678",
        "%00",
        "a%00b",
        "srcidx",
    ):
        assert_error(client.get(f"/nps/{bad}", headers=tenant.viewer), 400, "id")
        assert_error(client.put(f"/nps/{bad}", json={"score": 1}, headers=tenant.editor), 400, "id")
        assert_error(client.delete(f"/nps/{bad}", headers=tenant.admin), 400, "id")
    for bad in ("srcid-a%00b", "srcid-" + "x" * 600):
        r = client.get(f"/nps/{bad}", headers=tenant.viewer)
        assert r.status_code in (400, 404), r.text
        assert_error(r, r.status_code)


def test_other_tenant_cannot_see_or_touch(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    rec = create(client, tenant, sourceId="mine", score=9)
    for key in (rec["_id"], "srcid-mine"):
        assert_error(client.get(f"/nps/{key}", headers=other.admin), 404)
        assert_error(client.put(f"/nps/{key}", json={"score": 0}, headers=other.admin), 404)
        assert_error(client.delete(f"/nps/{key}", headers=other.admin), 404)
    assert client.get("/nps", headers=other.admin).json() == []
    assert (
        client.get(f"/nps?companyId={rec['cId'] or '0123456789abcdef01234567'}", headers=other.admin).json()
        == []
    )
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).json() == rec


def test_roles(client: TestClient, tenant: Tenant) -> None:
    assert_error(client.post("/nps", json={"email": "v@v.com", "score": 7}, headers=tenant.viewer), 403)
    rec = create(client, tenant)
    assert_error(client.put(f"/nps/{rec['_id']}", json={"score": 1}, headers=tenant.viewer), 403)
    assert_error(client.put("/nps", json=[{"email": "v@v.com", "score": 7}], headers=tenant.viewer), 403)
    assert_error(client.delete(f"/nps/{rec['_id']}", headers=tenant.viewer), 403)
    assert_error(client.delete(f"/nps/{rec['_id']}", headers=tenant.editor), 403)
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).json() == rec
    assert len(client.get("/nps", headers=tenant.viewer).json()) == 1
    assert_error(client.get("/nps"), 401)
    assert_error(client.get(f"/nps/{rec['_id']}", headers={"Authorization": "Bearer nope"}), 401)


def test_basic_and_api_key_auth(client: TestClient, tenant: Tenant) -> None:
    import base64

    rec = create(client, tenant)
    token = tenant.tokens["viewer"]
    basic = base64.b64encode(f"{token}:".encode()).decode()
    assert (
        client.get(f"/nps/{rec['_id']}", headers={"Authorization": f"Basic {basic}"}).json()["_id"]
        == rec["_id"]
    )
    assert client.get(f"/nps/{rec['_id']}", headers={"X-API-Key": token}).json()["_id"] == rec["_id"]


# ------------------------------------------------------------------------------------------- list


def ids(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [x["_id"] for x in resp.json()]


def test_list_filters(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    c1, c2, c3 = (company(client, tenant) for _ in range(3))
    a = create(
        client, tenant, email="a@x.com", score=10, cId=c1["_id"], campaignId="camp-a", dateAnswered=ago(5)
    )
    b = create(
        client, tenant, email="b@x.com", score=7, cId=c2["_id"], campaignId="camp-b", dateAnswered=ago(4)
    )
    c = create(
        client, tenant, email="c@x.com", score=2, cId=c3["_id"], campaignId="camp-a", dateAnswered=ago(3)
    )
    d = create(client, tenant, email="A@X.com", score=0, dateAnswered=ago(2))
    create(client, other, email="a@x.com", score=10, campaignId="camp-a")
    h = tenant.viewer
    assert ids(client.get("/nps", headers=h)) == [d["_id"], c["_id"], b["_id"], a["_id"]]
    # d has no cId: it is filed under its contact's company, c1
    assert d["cId"] == c1["_id"]
    assert ids(client.get(f"/nps?companyId={c1['_id']}", headers=h)) == [d["_id"], a["_id"]]
    assert ids(client.get(f"/nps?companyId={c2['_id']},{c3['_id']}", headers=h)) == [c["_id"], b["_id"]]
    assert ids(client.get(f"/nps?companyId={c1['_id']}, {c2['_id']},", headers=h)) == [
        d["_id"],
        b["_id"],
        a["_id"],
    ]
    assert_error(client.get("/nps?companyId=nope", headers=h), 400, "companyId")
    assert ids(client.get("/nps?campaignId=camp-a", headers=h)) == [c["_id"], a["_id"]]
    assert ids(client.get("/nps?campaignId=camp-a,camp-b", headers=h)) == [c["_id"], b["_id"], a["_id"]]
    assert ids(client.get("/nps?email=a@X.com", headers=h)) == [d["_id"], a["_id"]]
    assert ids(client.get("/nps?email=nobody@x.com", headers=h)) == []
    assert ids(client.get("/nps?scoreType=promoter", headers=h)) == [a["_id"]]
    assert ids(client.get("/nps?scoreType=passive", headers=h)) == [b["_id"]]
    assert ids(client.get("/nps?scoreType=detractor", headers=h)) == [d["_id"], c["_id"]]
    assert_error(client.get("/nps?scoreType=fan", headers=h), 400, "scoreType")


def test_list_since_until_and_expiry(client: TestClient, tenant: Tenant) -> None:
    old = create(client, tenant, dateAnswered=ago(400))
    mid = create(client, tenant, dateAnswered=ago(100))
    new = create(client, tenant, dateAnswered=ago(1))
    h = tenant.viewer
    assert ids(client.get("/nps", headers=h)) == [new["_id"], mid["_id"]]
    assert ids(client.get("/nps?npsExpiryDay=360", headers=h)) == [new["_id"], mid["_id"]]
    assert ids(client.get("/nps?npsExpiryDay=30", headers=h)) == [new["_id"]]
    assert ids(client.get("/nps?npsExpiryDay=500", headers=h)) == [new["_id"], mid["_id"], old["_id"]]
    assert ids(client.get("/nps?npsExpiryDay=0", headers=h)) == [new["_id"], mid["_id"], old["_id"]]
    for bad in ("-1", "abc", "1.5"):  # no maximum: see test_query_params.py
        assert_error(client.get(f"/nps?npsExpiryDay={bad}", headers=h), 400, "npsExpiryDay")
    since = ago(200)
    assert ids(client.get("/nps", params={"since": since}, headers=h)) == [new["_id"], mid["_id"]]
    assert ids(client.get("/nps", params={"since": ago(500), "until": ago(50)}, headers=h)) == [
        mid["_id"],
        old["_id"],
    ]
    assert ids(client.get("/nps", params={"until": mid["dateAnswered"], "npsExpiryDay": 0}, headers=h)) == [
        mid["_id"],
        old["_id"],
    ]
    epoch = int((datetime.now(UTC) - timedelta(days=200)).timestamp())
    assert ids(client.get(f"/nps?since={epoch}", headers=h)) == [new["_id"], mid["_id"]]
    offset_form = (
        (datetime.now(UTC) - timedelta(days=200))
        .astimezone(__import__("datetime").timezone(timedelta(hours=5)))
        .isoformat()
    )
    assert ids(client.get("/nps", params={"since": offset_form}, headers=h)) == [new["_id"], mid["_id"]]
    assert_error(client.get("/nps", params={"since": ago(1), "until": ago(10)}, headers=h), 400, "since")
    assert_error(client.get("/nps?since=yesterday", headers=h), 400, "since")
    assert_error(client.get("/nps?until=2021-99-01", headers=h), 400, "until")
    assert_error(client.get("/nps?updatedSince=x", headers=h), 400, "updatedSince")


def test_list_updated_since(client: TestClient, tenant: Tenant) -> None:
    a = create(client, tenant, dateAnswered=ago(3))
    b = create(client, tenant, dateAnswered=ago(2))
    mark = b["updatedAt"]
    import time

    time.sleep(0.01)
    up = client.put(f"/nps/{a['_id']}", json={"score": 1}, headers=tenant.editor).json()
    assert up["updatedAt"] > mark
    got = ids(client.get("/nps", params={"updatedSince": up["updatedAt"]}, headers=tenant.viewer))
    assert got == [a["_id"]]
    got = ids(client.get("/nps", params={"updatedSince": mark}, headers=tenant.viewer))
    assert set(got) == {a["_id"], b["_id"]}
    # updatedSince also reaches answers older than the default expiry
    old = create(client, tenant, dateAnswered=ago(1000))
    got = ids(client.get("/nps", params={"updatedSince": old["updatedAt"]}, headers=tenant.viewer))
    assert old["_id"] in got


def test_list_limit_offset_bounds(client: TestClient, tenant: Tenant) -> None:
    body = [{"email": unique_email(), "score": i % 11} for i in range(150)]
    assert client.put("/nps", json=body, headers=tenant.editor).status_code == 200
    h = tenant.viewer
    assert len(ids(client.get("/nps", headers=h))) == 100
    assert len(ids(client.get("/nps?limit=10000", headers=h))) == 150
    assert len(ids(client.get("/nps?limit=1", headers=h))) == 1
    assert len(ids(client.get("/nps?offset=140", headers=h))) == 10
    assert ids(client.get("/nps?offset=150", headers=h)) == []
    assert ids(client.get("/nps?offset=100000000", headers=h)) == []
    for bad in (
        "limit=10001",
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=99999999999999999999999",
    ):
        assert_error(client.get(f"/nps?{bad}", headers=h), 400, "limit")
    for bad in ("offset=-1", "offset=x", "offset=99999999999999999999999"):
        assert_error(client.get(f"/nps?{bad}", headers=h), 400, "offset")


def test_list_sort(client: TestClient, tenant: Tenant) -> None:
    recs = [
        create(client, tenant, score=s, comment=c, dateAnswered=ago(d))
        for s, c, d in ((5, "b", 3), (9, "a", 1), (5, "c", 2), (0, "d", 4))
    ]
    h = tenant.viewer

    def order(sort: str) -> list[int]:
        idx = {r["_id"]: i for i, r in enumerate(recs)}
        return [idx[i] for i in ids(client.get(f"/nps?sort={sort}", headers=h))]

    assert order("score") == [3, 0, 2, 1]
    assert order("-score") == [1, 2, 0, 3]  # ties by _id, descending
    assert order("nps") == [3, 0, 2, 1]
    assert order("comment") == [1, 0, 2, 3]
    assert order("-npsComment") == [3, 2, 0, 1]
    assert order("dateAnswered") == [3, 0, 2, 1]
    assert order("-npsDate") == [1, 2, 0, 3]
    assert order("_id") == [0, 1, 2, 3]
    assert order("-_id") == [3, 2, 1, 0]
    assert order("scoreType") == [3, 0, 2, 1]  # detractor < passive < promoter, as the score
    for name in (
        "email",
        "euId",
        "cId",
        "campaignId",
        "source",
        "sourceId",
        "dateSent",
        "npsSent",
        "dateReminderSent",
        "custom",
        "createdAt",
        "updatedAt",
        "__v",
        "npsId",
    ):
        for prefix in ("", "-"):
            assert len(ids(client.get(f"/nps?sort={prefix}{name}", headers=h))) == 4, name
    for bad in ("bogus", "-bogus", "--score", "score,email", "", "date_answered"):
        r = client.get("/nps", params={"sort": bad}, headers=h)
        if bad == "":
            assert r.status_code == 200
        else:
            assert_error(r, 400, "sort")


def test_list_select(client: TestClient, tenant: Tenant) -> None:
    rec = create(client, tenant, score=9, comment="hi")
    h = tenant.viewer
    assert client.get("/nps?select=score,comment", headers=h).json() == [
        {"_id": rec["_id"], "score": 9, "comment": "hi"}
    ]
    assert client.get("/nps?select=npsDate", headers=h).json() == [
        {"_id": rec["_id"], "npsDate": rec["npsDate"]}
    ]
    assert client.get("/nps?select=_id", headers=h).json() == [{"_id": rec["_id"]}]
    assert client.get("/nps?select= score , __v ,", headers=h).json() == [
        {"_id": rec["_id"], "score": 9, "__v": 0}
    ]
    assert_error(client.get("/nps?select=score,password", headers=h), 400, "select")


def test_list_bad_query_values(client: TestClient, tenant: Tenant) -> None:
    create(client, tenant)
    h = tenant.viewer
    for query, name in (
        ("email=a%00b", "email"),
        ("campaignId=a%00b", "campaignId"),
        ("email=" + "e" * 400, "email"),
        ("campaignId=" + "c" * 100, "campaignId"),
        ("sort=a%00", "sort"),
        ("select=a%00", "select"),
        ("companyId=%00", "companyId"),
        ("scoreType=%00", "scoreType"),
    ):
        assert_error(client.get(f"/nps?{query}", headers=h), 400, name)


def test_paging_never_skips_or_repeats(client: TestClient, tenant: Tenant) -> None:
    same = "2024-06-01T12:00:00.000Z"
    body = [
        {"email": unique_email(), "score": i % 11, "dateAnswered": same if i % 3 else ago(i % 7)}
        for i in range(237)
    ]
    r = client.put("/nps", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    everything = set(r.json()["upsertedIds"])
    for sort in (None, "dateAnswered", "-dateAnswered", "score", "-scoreType", "comment", "cId"):
        seen: list[str] = []
        offset = 0
        while True:
            params: dict[str, Any] = {"limit": 25, "offset": offset, "npsExpiryDay": 0}
            if sort:
                params["sort"] = sort
            page = ids(client.get("/nps", params=params, headers=tenant.viewer))
            if not page:
                break
            seen.extend(page)
            offset += 25
        assert len(seen) == len(set(seen)) == 237, sort
        assert set(seen) == everything
