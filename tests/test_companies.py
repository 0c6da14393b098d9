"""``/companies`` through HTTP on both databases: create, read, list, update, delete, roll-ups,
roles and tenancy."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest

from conftest import Tenant, TestDatabase, assert_error, post_nps
from npsd.kit.jobs import run_pending
from npsd.kit.timeutil import iso, utcnow

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ID_RE = re.compile(r"^[0-9a-f]{24}$")
OUTPUT_KEYS = {
    "_id",
    "name",
    "domains",
    "externalId",
    "sourceId",
    "status",
    "phase",
    "description",
    "custom",
    "nps",
    "npsResponses",
    "npsUpdatedAt",
    "createdAt",
    "updatedAt",
    "__v",
}


def make_company(client: Any, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    body = {"name": "Acme", **fields}
    r = client.post("/companies", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------------------------------- create


def test_create_with_every_field(client, tenant: Tenant) -> None:
    r = client.post(
        "/companies",
        json={
            "name": "Acme Inc",
            "domains": ["acme.com", "acme.io"],
            "externalId": "crm-1",
            "sourceId": "hs-1",
            "status": "customer",
            "phase": "onboarding",
            "description": "Makes anvils",
            "custom": {"tier": "gold", "seats": 40},
        },
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    c = r.json()
    assert set(c) == OUTPUT_KEYS
    assert ID_RE.match(c["_id"])
    assert c["name"] == "Acme Inc"
    assert c["domains"] == ["acme.com", "acme.io"]
    assert (c["externalId"], c["sourceId"], c["status"], c["phase"]) == (
        "crm-1",
        "hs-1",
        "customer",
        "onboarding",
    )
    assert c["description"] == "Makes anvils"
    assert c["custom"] == {"tier": "gold", "seats": 40}
    assert c["nps"] is None and c["npsResponses"] == 0 and c["npsUpdatedAt"] is None
    assert c["__v"] == 0
    assert ISO_RE.match(c["createdAt"]) and c["createdAt"] == c["updatedAt"]
    assert client.get(f"/companies/{c['_id']}", headers=tenant.viewer).json() == c


def test_create_with_name_only_has_empty_defaults(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, name="Solo")
    assert c["domains"] == []
    assert [c[k] for k in ("externalId", "sourceId", "status", "phase", "description", "custom")] == [
        None
    ] * 6


@pytest.mark.parametrize("body", [{}, {"name": None}, {"name": ""}, {"domains": ["a.com"]}])
def test_create_requires_name(client, tenant: Tenant, body: dict[str, Any]) -> None:
    assert_error(client.post("/companies", json=body, headers=tenant.editor), 400, "name")


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", 12),
        ("name", "x" * 501),
        ("name", "bad\x00name"),
        ("name", ["a"]),
        ("externalId", 5),
        ("externalId", "a\x00b"),
        ("sourceId", "s" * 501),
        ("status", {"a": 1}),
        ("phase", True),
        ("description", 1.5),
        ("custom", "not an object"),
        ("custom", [1, 2]),
        ("custom", {"k": "nul\x00"}),
        ("domains", "acme.com"),
        ("domains", [1]),
        ("domains", ["not a domain"]),
        ("domains", ["acme"]),
        ("domains", ["http://acme.com"]),
        ("domains", ["acme.com/path"]),
        ("domains", ["-acme.com"]),
        ("domains", [f"d{i}.com" for i in range(101)]),
    ],
)
def test_create_rejects_bad_values(client, tenant: Tenant, field: str, value: Any) -> None:
    body = {"name": "Acme", field: value}
    assert_error(client.post("/companies", json=body, headers=tenant.editor), 400, field)
    assert client.get("/companies", headers=tenant.viewer).json() == []


def test_domains_are_normalized(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, domains=[" ACME.com ", "@Acme.COM", "Sub.Acme.io", "acme.com"])
    assert c["domains"] == ["acme.com", "sub.acme.io"]


def test_unknown_field_is_400_naming_it(client, tenant: Tenant) -> None:
    body = assert_error(
        client.post("/companies", json={"name": "A", "colour": "red"}, headers=tenant.editor), 400, "colour"
    )
    assert "colour" in body["message"]


def test_read_only_fields_are_ignored_on_create(client, tenant: Tenant) -> None:
    c = make_company(
        client,
        tenant,
        _id="0123456789abcdef01234567",
        nps=99,
        npsResponses=12,
        __v=7,
        createdAt="2001-01-01T00:00:00.000Z",
        updatedAt="garbage",
        npsUpdatedAt=3,
    )
    assert c["_id"] != "0123456789abcdef01234567"
    assert c["nps"] is None and c["npsResponses"] == 0 and c["__v"] == 0 and c["npsUpdatedAt"] is None
    assert not c["createdAt"].startswith("2001")


# --------------------------------------------------------------------------------------- uniqueness


def test_duplicate_external_id_is_409_naming_the_field(client, tenant: Tenant, other: Tenant) -> None:
    make_company(client, tenant, name="A", externalId="ext-1", sourceId="src-1")
    body = assert_error(
        client.post("/companies", json={"name": "B", "externalId": "ext-1"}, headers=tenant.editor),
        409,
        "externalId",
    )
    assert "externalId" in body["message"]
    assert_error(
        client.post("/companies", json={"name": "B", "sourceId": "src-1"}, headers=tenant.editor),
        409,
        "sourceId",
    )
    # the failed inserts left nothing behind and the request after them works
    assert [c["name"] for c in client.get("/companies", headers=tenant.viewer).json()] == ["A"]
    # keys are unique per organization only
    assert (
        make_company(client, other, name="B", externalId="ext-1", sourceId="src-1")["externalId"] == "ext-1"
    )


def test_update_to_a_taken_key_is_409(client, tenant: Tenant) -> None:
    make_company(client, tenant, name="A", externalId="ext-a", sourceId="src-a")
    b = make_company(client, tenant, name="B", externalId="ext-b")
    assert_error(
        client.put(f"/companies/{b['_id']}", json={"externalId": "ext-a"}, headers=tenant.editor),
        409,
        "externalId",
    )
    assert_error(
        client.put(f"/companies/{b['_id']}", json={"sourceId": "src-a", "name": "B2"}, headers=tenant.editor),
        409,
        "sourceId",
    )
    after = client.get(f"/companies/{b['_id']}", headers=tenant.viewer).json()
    assert (after["name"], after["externalId"], after["sourceId"], after["__v"]) == ("B", "ext-b", None, 0)


# ------------------------------------------------------------------------------------ read by key


def test_get_by_extid_and_srcid(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, externalId="crm 42?x&y", sourceId="hub-9")
    assert client.get("/companies/extid-crm%2042%3Fx%26y", headers=tenant.viewer).json()["_id"] == c["_id"]
    assert client.get("/companies/srcid-hub-9", headers=tenant.viewer).json()["_id"] == c["_id"]
    assert_error(client.get("/companies/extid-nope", headers=tenant.viewer), 404)
    # keys may hold slashes, sent raw or encoded; the contacts sub-path still works
    slashed = make_company(client, tenant, name="Slash", externalId="sf/001/x", domains=["slash.com"])
    assert client.get("/companies/extid-sf/001/x", headers=tenant.viewer).json()["_id"] == slashed["_id"]
    assert client.get("/companies/extid-sf%2F001%2Fx", headers=tenant.viewer).json()["_id"] == slashed["_id"]
    assert (
        client.put("/companies/extid-sf/001/x", json={"phase": "p"}, headers=tenant.editor).json()["phase"]
        == "p"
    )
    client.post("/endusers", json={"email": "a@slash.com"}, headers=tenant.editor)
    assert [
        e["email"] for e in client.get(f"/companies/{slashed['_id']}/endusers", headers=tenant.viewer).json()
    ] == ["a@slash.com"]
    assert_error(client.get(f"/companies/{slashed['_id']}/nothing", headers=tenant.viewer), 400, "id")
    assert client.delete("/companies/extid-sf/001/x", headers=tenant.admin).status_code == 200
    assert_error(client.get("/companies/srcid-nope", headers=tenant.viewer), 404)
    assert_error(client.get("/companies/0123456789abcdef01234567", headers=tenant.viewer), 404)


@pytest.mark.parametrize(
    "key",
    [
        "xyz",
        "0123456789ABCDEF01234567",
        "0123456789abcdef0123456",
        "extid",
        "%00",
        "extid-%00",
        "srcid-a%00b",
        "extid-" + "x" * 600,
    ],
)
def test_malformed_keys_are_4xx(client, tenant: Tenant, key: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = client.request(
            method, f"/companies/{key}", headers=tenant.admin, json={"name": "x"} if method == "PUT" else None
        )
        assert r.status_code in (400, 404), (method, key, r.text)
        assert_error(r, r.status_code)


# ------------------------------------------------------------------------------------------ update


def test_put_is_partial_merges_custom_and_bumps_version(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, name="Acme", status="trial", custom={"a": 1, "b": {"x": 1}})
    r = client.put(
        f"/companies/{c['_id']}", json={"phase": "live", "custom": {"b": 2, "c": 3}}, headers=tenant.editor
    )
    assert r.status_code == 200, r.text
    u = r.json()
    assert (u["name"], u["status"], u["phase"]) == ("Acme", "trial", "live")
    assert u["custom"] == {"a": 1, "b": 2, "c": 3}
    assert u["__v"] == 1
    assert u["createdAt"] == c["createdAt"] and u["updatedAt"] >= c["updatedAt"]
    u2 = client.put(f"/companies/{c['_id']}", json={"status": None}, headers=tenant.editor).json()
    assert u2["status"] is None and u2["__v"] == 2 and u2["phase"] == "live"
    assert client.get(f"/companies/{c['_id']}", headers=tenant.viewer).json() == u2


def test_put_that_changes_nothing_keeps_version(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, name="Same", custom={"a": 1})
    u = client.put(
        f"/companies/{c['_id']}", json={"name": "Same", "custom": {"a": 1}}, headers=tenant.editor
    ).json()
    assert u["__v"] == 0 and u["updatedAt"] == c["updatedAt"]


def test_put_cannot_empty_the_name(client, tenant: Tenant) -> None:
    c = make_company(client, tenant)
    assert_error(client.put(f"/companies/{c['_id']}", json={"name": ""}, headers=tenant.editor), 400, "name")
    assert_error(
        client.put(f"/companies/{c['_id']}", json={"name": None}, headers=tenant.editor), 400, "name"
    )


def test_put_by_prefix_and_domains_replace(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, externalId="e1", sourceId="s1", domains=["old.com"])
    u = client.put("/companies/extid-e1", json={"domains": ["NEW.com"]}, headers=tenant.editor).json()
    assert u["_id"] == c["_id"] and u["domains"] == ["new.com"]
    u = client.put("/companies/srcid-s1", json={"domains": None}, headers=tenant.editor).json()
    assert u["domains"] == [] and u["__v"] == 2
    # the old domain no longer routes new contacts to this company
    eu = client.post("/endusers", json={"email": "x@old.com"}, headers=tenant.editor).json()
    assert eu["companyId"] is None


def test_get_then_put_whole_object_round_trip(client, tenant: Tenant) -> None:
    """Planhat clients send back the whole object they read, read-only fields included."""
    c = make_company(
        client,
        tenant,
        domains=["acme.com"],
        externalId="x1",
        sourceId="y1",
        status="s",
        phase="p",
        description="d",
        custom={"k": [1, 2]},
    )
    post_nps(client, tenant, "pat@acme.com", 10)
    whole = client.get(f"/companies/{c['_id']}", headers=tenant.viewer).json()
    assert whole["nps"] == 100.0
    r = client.put(f"/companies/{c['_id']}", json=whole, headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert r.json() == whole  # nothing changed, so no new version
    whole["name"] = "Acme 2"
    whole["nps"] = -50  # read-only: ignored
    whole["__v"] = 99
    changed = client.put(f"/companies/{c['_id']}", json=whole, headers=tenant.editor).json()
    assert changed["name"] == "Acme 2" and changed["nps"] == 100.0 and changed["__v"] == 1
    whole["surprise"] = 1
    assert_error(client.put(f"/companies/{c['_id']}", json=whole, headers=tenant.editor), 400, "surprise")


def test_put_validates_like_post(client, tenant: Tenant) -> None:
    c = make_company(client, tenant)
    assert_error(
        client.put(f"/companies/{c['_id']}", json={"domains": ["bad domain"]}, headers=tenant.editor),
        400,
        "domains",
    )
    assert_error(
        client.put(f"/companies/{c['_id']}", json={"custom": 3}, headers=tenant.editor), 400, "custom"
    )
    assert_error(client.put(f"/companies/{c['_id']}", json=[{"name": "x"}], headers=tenant.editor), 400)


# -------------------------------------------------------------------------------------------- list


def test_list_limit_offset_sort_select(client, tenant: Tenant) -> None:
    names = ["delta", "alpha", "charlie", "echo", "bravo"]
    made = [make_company(client, tenant, name=n, custom={"i": i}) for i, n in enumerate(names)]
    url = "/companies"
    listed = client.get(url, headers=tenant.viewer).json()
    assert [c["_id"] for c in listed] == [c["_id"] for c in made]  # default: creation order
    assert listed[0] == made[0]
    assert [
        c["name"] for c in client.get(url, params={"sort": "name"}, headers=tenant.viewer).json()
    ] == sorted(names)
    assert [
        c["name"] for c in client.get(url, params={"sort": "-name"}, headers=tenant.viewer).json()
    ] == sorted(names, reverse=True)
    page = client.get(url, params={"sort": "name", "limit": 2, "offset": 1}, headers=tenant.viewer).json()
    assert [c["name"] for c in page] == ["bravo", "charlie"]
    assert client.get(url, params={"offset": 5}, headers=tenant.viewer).json() == []
    sel = client.get(
        url, params={"select": "name,npsResponses", "sort": "-name", "limit": 1}, headers=tenant.viewer
    )
    assert sel.status_code == 200, sel.text
    assert sel.json() == [{"_id": made[3]["_id"], "name": "echo", "npsResponses": 0}]
    # paging through with ties (equal names) never skips or repeats
    for _ in range(3):
        make_company(client, tenant, name="same")
    seen = []
    for offset in range(0, 8, 3):
        seen += [
            c["_id"]
            for c in client.get(
                url, params={"sort": "-name", "limit": 3, "offset": offset}, headers=tenant.viewer
            ).json()
        ]
    assert sorted(seen) == sorted(c["_id"] for c in client.get(url, headers=tenant.viewer).json())
    assert len(seen) == 8


def test_list_sorts_by_nps(client, tenant: Tenant) -> None:
    low = make_company(client, tenant, name="low", domains=["low.com"])
    high = make_company(client, tenant, name="high", domains=["high.com"])
    none = make_company(client, tenant, name="none")
    post_nps(client, tenant, "a@low.com", 0)
    post_nps(client, tenant, "a@high.com", 10)
    ids = [c["_id"] for c in client.get("/companies", params={"sort": "-nps"}, headers=tenant.viewer).json()]
    assert ids.index(high["_id"]) < ids.index(low["_id"])
    assert none["_id"] in ids


@pytest.mark.parametrize(
    "params, field",
    [
        ({"sort": "colour"}, "sort"),
        ({"sort": "-colour"}, "sort"),
        ({"sort": "-"}, "sort"),
        ({"select": "name,colour"}, "select"),
        ({"limit": 0}, "limit"),
        ({"limit": 10001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": 10**30}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"offset": 10**30}, "offset"),
        ({"offset": 2**63}, "offset"),
    ],
)
def test_list_bad_params_are_400(client, tenant: Tenant, params: dict[str, Any], field: str) -> None:
    assert_error(client.get("/companies", params=params, headers=tenant.viewer), 400, field)


def test_list_accepts_max_limit(client, tenant: Tenant) -> None:
    make_company(client, tenant)
    assert len(client.get("/companies", params={"limit": 10000}, headers=tenant.viewer).json()) == 1


# ----------------------------------------------------------------------------------------- roll-ups


def test_company_nps_rolls_up_from_its_contacts(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, domains=["acme.com"])
    for email, score in (("a@acme.com", 10), ("b@ACME.com", 9), ("c@acme.com", 0), ("d@acme.com", 7)):
        post_nps(client, tenant, email, score)
    got = client.get(f"/companies/{c['_id']}", headers=tenant.viewer).json()
    assert got["nps"] == 25.0 and got["npsResponses"] == 4  # (2 - 1) / 4
    assert ISO_RE.match(got["npsUpdatedAt"])
    # only a contact's latest answer counts
    post_nps(client, tenant, "c@acme.com", 10)
    got = client.get(f"/companies/{c['_id']}", headers=tenant.viewer).json()
    assert got["nps"] == 75.0 and got["npsResponses"] == 4
    contacts = client.get(
        f"/companies/{c['_id']}/endusers", params={"sort": "email"}, headers=tenant.viewer
    ).json()
    assert [(e["email"], e["nps"]) for e in contacts] == [
        ("a@acme.com", 10),
        ("b@ACME.com", 9),
        ("c@acme.com", 10),
        ("d@acme.com", 7),
    ]
    listed = {x["_id"]: x for x in client.get("/companies", headers=tenant.viewer).json()}
    assert listed[c["_id"]]["nps"] == 75.0 and listed[c["_id"]]["npsResponses"] == 4


def test_company_endusers_list_params_and_tenancy(client, tenant: Tenant, other: Tenant) -> None:
    c = make_company(client, tenant, domains=["acme.com"])
    make_company(client, tenant, name="Other", domains=["other.com"])
    for email in ("b@acme.com", "a@acme.com", "z@other.com"):
        client.post("/endusers", json={"email": email}, headers=tenant.editor)
    got = client.get(
        f"/companies/{c['_id']}/endusers", params={"sort": "-email", "select": "email"}, headers=tenant.viewer
    )
    assert got.status_code == 200, got.text
    assert [e["email"] for e in got.json()] == ["b@acme.com", "a@acme.com"]
    assert set(got.json()[0]) == {"_id", "email"}
    assert_error(
        client.get(f"/companies/{c['_id']}/endusers", params={"sort": "nope"}, headers=tenant.viewer),
        400,
        "sort",
    )
    assert_error(client.get(f"/companies/{c['_id']}/endusers", headers=other.admin), 404)


# ------------------------------------------------------------------------------------------ delete


def test_delete_company_without_records(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, externalId="gone", domains=["gone.com"])
    eu = client.post("/endusers", json={"email": "x@gone.com"}, headers=tenant.editor).json()
    assert eu["companyId"] == c["_id"]
    r = client.delete("/companies/extid-gone", headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"n": 1, "ok": 1, "deletedCount": 1}
    assert_error(client.get(f"/companies/{c['_id']}", headers=tenant.viewer), 404)
    assert_error(client.delete(f"/companies/{c['_id']}", headers=tenant.admin), 404)
    assert_error(client.get(f"/endusers/{eu['_id']}", headers=tenant.viewer), 404)  # its contacts go with it
    # its domain is free again
    assert (
        client.post("/endusers", json={"email": "y@gone.com"}, headers=tenant.editor).json()["companyId"]
        is None
    )


def test_delete_company_with_records_needs_cascade(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, domains=["acme.com"])
    keep = make_company(client, tenant, name="Keep", domains=["keep.com"])
    rec = post_nps(client, tenant, "a@acme.com", 9)
    kept = post_nps(client, tenant, "k@keep.com", 3)
    body = assert_error(client.delete(f"/companies/{c['_id']}", headers=tenant.admin), 409, "cascade")
    assert "NPS records" in body["message"]
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).status_code == 200
    assert_error(
        client.delete(f"/companies/{c['_id']}", params={"cascade": "maybe"}, headers=tenant.admin),
        400,
        "cascade",
    )
    assert_error(
        client.delete(f"/companies/{c['_id']}", params={"cascade": "true"}, headers=tenant.editor), 403
    )
    r = client.delete(f"/companies/{c['_id']}", params={"cascade": "true"}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"n": 1, "ok": 1, "deletedCount": 1}
    assert_error(client.get(f"/nps/{rec['_id']}", headers=tenant.viewer), 404)
    assert_error(client.get(f"/endusers/{rec['euId']}", headers=tenant.viewer), 404)
    assert [x["_id"] for x in client.get("/nps", headers=tenant.viewer).json()] == [kept["_id"]]
    k = client.get(f"/companies/{keep['_id']}", headers=tenant.viewer).json()
    assert k["nps"] == -100.0 and k["npsResponses"] == 1
    # the metrics roll-up lost the deleted answers too
    gone = client.get(
        "/v1/nps-surveys/metrics/nps", params={"companyId": c["_id"]}, headers=tenant.viewer
    ).json()
    assert gone["totalResponses"] == 0 and gone["npsScore"] is None
    everything = client.get("/v1/nps-surveys/metrics/nps", headers=tenant.viewer).json()
    assert (everything["totalResponses"], everything["npsScore"]) == (1, -100.0)


# --------------------------------------------------------------------------------- roles, tenancy


def test_roles(client, tenant: Tenant) -> None:
    c = make_company(client, tenant)
    assert_error(client.post("/companies", json={"name": "V"}, headers=tenant.viewer), 403)
    assert_error(client.put(f"/companies/{c['_id']}", json={"name": "V"}, headers=tenant.viewer), 403)
    assert_error(client.delete(f"/companies/{c['_id']}", headers=tenant.viewer), 403)
    assert_error(client.delete(f"/companies/{c['_id']}", headers=tenant.editor), 403)
    # the role is checked before the lookup: a viewer learns nothing about which ids exist
    assert_error(
        client.put("/companies/0123456789abcdef01234567", json={"name": "V"}, headers=tenant.viewer), 403
    )
    assert_error(client.delete("/companies/0123456789abcdef01234567", headers=tenant.editor), 403)
    assert client.get(f"/companies/{c['_id']}", headers=tenant.viewer).json()["name"] == "Acme"
    assert (
        client.put(f"/companies/{c['_id']}", json={"name": "E"}, headers=tenant.editor).json()["name"] == "E"
    )
    assert client.post("/companies", json={"name": "A"}, headers=tenant.admin).status_code == 200
    assert_error(client.get("/companies"), 401)
    assert_error(client.post("/companies", json={"name": "x"}), 401)


def test_other_tenant_sees_nothing(client, tenant: Tenant, other: Tenant) -> None:
    c = make_company(client, tenant, externalId="mine", sourceId="mine-src", domains=["mine.com"])
    for key in (c["_id"], "extid-mine", "srcid-mine-src"):
        assert_error(client.get(f"/companies/{key}", headers=other.admin), 404)
        assert_error(client.put(f"/companies/{key}", json={"name": "stolen"}, headers=other.admin), 404)
        assert_error(client.delete(f"/companies/{key}", params={"cascade": "true"}, headers=other.admin), 404)
    assert client.get("/companies", headers=other.admin).json() == []
    # the other tenant's contacts at the same domain are not matched to this company
    eu = client.post("/endusers", json={"email": "a@mine.com"}, headers=other.editor).json()
    assert eu["companyId"] is None
    assert client.get(f"/companies/{c['_id']}", headers=tenant.viewer).json() == c


def test_answers_leave_company_nps_when_360_days_old(client, tenant: Tenant, database: TestDatabase) -> None:
    """A company's NPS counts the last 360 days as of now: an answer that ages out is dropped by
    the job worker's upkeep without any write, while the contact keeps it as its latest."""
    company = make_company(client, tenant, name="Aging", domains=["aging.example"])
    now = utcnow()
    ages_out_at = now + timedelta(seconds=2)
    post_nps(client, tenant, "old@aging.example", 0, dateAnswered=iso(ages_out_at - timedelta(days=360)))
    post_nps(client, tenant, "new@aging.example", 10, dateAnswered=iso(now - timedelta(days=30)))

    def company_nps() -> tuple[Any, Any]:
        body = client.get(f"/companies/{company['_id']}", headers=tenant.viewer).json()
        return body["nps"], body["npsResponses"]

    run_pending(database.db)
    assert company_nps() == (0.0, 2)  # one promoter, one detractor; nothing is due yet
    time.sleep(max(0.0, (ages_out_at - utcnow()).total_seconds()) + 0.2)
    run_pending(database.db)
    assert company_nps() == (100.0, 1)
    contact = client.get("/endusers", params={"email": "old@aging.example"}, headers=tenant.viewer).json()
    assert [(c["email"], c["nps"]) for c in contact] == [("old@aging.example", 0)]
