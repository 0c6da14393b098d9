"""``/endusers`` through HTTP on both databases: create, read, list, update, delete, matching to
companies by domain, NPS roll-ups when contacts move, roles and tenancy."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conftest import Tenant, assert_error, post_nps, sqlite_plan, statements_run

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OUTPUT_KEYS = {
    "_id",
    "email",
    "name",
    "firstName",
    "lastName",
    "position",
    "phone",
    "primary",
    "archived",
    "companyId",
    "externalId",
    "sourceId",
    "custom",
    "nps",
    "npsComment",
    "npsDate",
    "npsId",
    "createdAt",
    "updatedAt",
    "__v",
}


def make_company(client: Any, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    r = client.post("/companies", json={"name": "Acme", **fields}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


def make_enduser(client: Any, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    r = client.post("/endusers", json={"email": "jane@example.com", **fields}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


def company(client: Any, tenant: Tenant, cid: str) -> dict[str, Any]:
    r = client.get(f"/companies/{cid}", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------------------------------- create


def test_create_with_every_field(client, tenant: Tenant) -> None:
    c = make_company(client, tenant)
    r = client.post(
        "/endusers",
        json={
            "email": "Jane.Doe@Example.com",
            "name": "Jane D.",
            "firstName": "Jane",
            "lastName": "Doe",
            "position": "CTO",
            "phone": "+1 555 0100",
            "primary": True,
            "archived": False,
            "companyId": c["_id"],
            "externalId": "crm-7",
            "sourceId": "hs-7",
            "custom": {"lang": "en"},
        },
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    e = r.json()
    assert set(e) == OUTPUT_KEYS
    assert e["email"] == "Jane.Doe@Example.com"  # kept as given
    assert (e["name"], e["firstName"], e["lastName"], e["position"], e["phone"]) == (
        "Jane D.",
        "Jane",
        "Doe",
        "CTO",
        "+1 555 0100",
    )
    assert (e["primary"], e["archived"], e["companyId"]) == (True, False, c["_id"])
    assert (e["externalId"], e["sourceId"], e["custom"]) == ("crm-7", "hs-7", {"lang": "en"})
    assert (e["nps"], e["npsComment"], e["npsDate"], e["npsId"]) == (None, None, None, None)
    assert e["__v"] == 0 and ISO_RE.match(e["createdAt"])
    assert client.get(f"/endusers/{e['_id']}", headers=tenant.viewer).json() == e


def test_create_defaults_and_derived_name(client, tenant: Tenant) -> None:
    e = make_enduser(client, tenant, firstName="Ann", lastName="Lee")
    assert e["name"] == "Ann Lee"
    assert (e["primary"], e["archived"], e["companyId"], e["custom"]) == (False, False, None, None)
    e2 = make_enduser(client, tenant, email="x@example.com", primary=None, archived=None)
    assert (e2["primary"], e2["archived"], e2["name"]) == (False, False, None)


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "email"),
        ({"email": None}, "email"),
        ({"email": ""}, "email"),
        ({"email": "no-at-sign"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": 5}, "email"),
        ({"email": "a\x00@b.com"}, "email"),
        ({"email": "a" * 320 + "@b.com"}, "email"),
        ({"email": "a@b.com", "primary": "yes"}, "primary"),
        ({"email": "a@b.com", "archived": 1}, "archived"),
        ({"email": "a@b.com", "companyId": "abc"}, "companyId"),
        ({"email": "a@b.com", "companyId": 3}, "companyId"),
        ({"email": "a@b.com", "companyId": "0123456789abcdef01234567"}, "companyId"),
        ({"email": "a@b.com", "custom": []}, "custom"),
        ({"email": "a@b.com", "phone": "1" * 101}, "phone"),
        ({"email": "a@b.com", "name": "n\x00"}, "name"),
        ({"email": "a@b.com", "hobby": "golf"}, "hobby"),
    ],
)
def test_create_rejects_bad_input(client, tenant: Tenant, body: dict[str, Any], field: str) -> None:
    assert_error(client.post("/endusers", json=body, headers=tenant.editor), 400, field)
    assert client.get("/endusers", headers=tenant.viewer).json() == []


def test_email_is_unique_per_org_case_insensitively(client, tenant: Tenant, other: Tenant) -> None:
    first = make_enduser(client, tenant, email="Pat@Example.com")
    body = assert_error(
        client.post("/endusers", json={"email": "pat@EXAMPLE.com"}, headers=tenant.editor), 409, "email"
    )
    assert "e-mail" in body["message"]
    assert_error(
        client.post("/endusers", json={"email": " PAT@example.com "}, headers=tenant.editor), 409, "email"
    )
    # another organization may hold the same address
    assert make_enduser(client, other, email="pat@example.com")["_id"] != first["_id"]
    # a contact created by POST /nps is the same contact
    rec = post_nps(client, tenant, "PAT@EXAMPLE.COM", 8)
    assert rec["euId"] == first["_id"]


def test_duplicate_external_and_source_ids_are_409(client, tenant: Tenant) -> None:
    make_enduser(client, tenant, email="a@x.com", externalId="e1", sourceId="s1")
    assert_error(
        client.post("/endusers", json={"email": "b@x.com", "externalId": "e1"}, headers=tenant.editor),
        409,
        "externalId",
    )
    assert_error(
        client.post("/endusers", json={"email": "b@x.com", "sourceId": "s1"}, headers=tenant.editor),
        409,
        "sourceId",
    )
    b = make_enduser(client, tenant, email="b@x.com")
    assert_error(
        client.put(f"/endusers/{b['_id']}", json={"externalId": "e1"}, headers=tenant.editor),
        409,
        "externalId",
    )


def test_read_only_fields_ignored(client, tenant: Tenant) -> None:
    e = make_enduser(
        client,
        tenant,
        _id="0123456789abcdef01234567",
        nps=10,
        npsComment="hi",
        npsDate="2020-01-01T00:00:00Z",
        npsId="x",
        __v=5,
        createdAt="old",
        updatedAt=None,
        companyName="Whatever",
    )
    assert e["_id"] != "0123456789abcdef01234567"
    assert (e["nps"], e["npsComment"], e["npsDate"], e["npsId"], e["__v"]) == (None, None, None, None, 0)


# ---------------------------------------------------------------------------------- company matching


def test_new_contact_joins_company_by_email_domain(client, tenant: Tenant) -> None:
    acme = make_company(client, tenant, domains=["acme.com"])
    other = make_company(client, tenant, name="Other", domains=["other.org"])
    assert make_enduser(client, tenant, email="Bob@ACME.com")["companyId"] == acme["_id"]
    assert make_enduser(client, tenant, email="sue@sub.acme.com")["companyId"] is None  # exact domain only
    assert make_enduser(client, tenant, email="ann@gmail.com")["companyId"] is None
    # an explicit companyId wins over the domain
    assert (
        make_enduser(client, tenant, email="eve@acme.com", companyId=other["_id"])["companyId"]
        == other["_id"]
    )
    # POST /nps creates contacts with the same rule
    rec = post_nps(client, tenant, "zed@other.org", 9)
    assert client.get(f"/endusers/{rec['euId']}", headers=tenant.viewer).json()["companyId"] == other["_id"]


def test_company_id_must_be_in_your_org(client, tenant: Tenant, other: Tenant) -> None:
    theirs = make_company(client, other)
    assert_error(
        client.post(
            "/endusers", json={"email": "a@b.com", "companyId": theirs["_id"]}, headers=tenant.editor
        ),
        400,
        "companyId",
    )
    e = make_enduser(client, tenant)
    assert_error(
        client.put(f"/endusers/{e['_id']}", json={"companyId": theirs["_id"]}, headers=tenant.editor),
        400,
        "companyId",
    )
    assert client.get(f"/endusers/{e['_id']}", headers=tenant.viewer).json()["companyId"] is None


# ------------------------------------------------------------------------------------------- keys


def test_get_put_delete_by_id_and_prefixes(client, tenant: Tenant) -> None:
    e = make_enduser(client, tenant, externalId="ext 1", sourceId="src-1")
    assert client.get("/endusers/extid-ext%201", headers=tenant.viewer).json()["_id"] == e["_id"]
    assert client.get("/endusers/srcid-src-1", headers=tenant.viewer).json()["_id"] == e["_id"]
    assert (
        client.put("/endusers/extid-ext%201", json={"position": "VP"}, headers=tenant.editor).json()[
            "position"
        ]
        == "VP"
    )
    assert client.put("/endusers/srcid-src-1", json={"phone": "1"}, headers=tenant.editor).json()["__v"] == 2
    assert client.delete("/endusers/srcid-src-1", headers=tenant.admin).json() == {
        "n": 1,
        "ok": 1,
        "deletedCount": 1,
    }
    assert_error(client.get(f"/endusers/{e['_id']}", headers=tenant.viewer), 404)
    assert_error(client.get("/endusers/extid-ext%201", headers=tenant.viewer), 404)
    assert_error(client.delete(f"/endusers/{e['_id']}", headers=tenant.admin), 404)
    assert_error(client.get("/endusers/nonsense", headers=tenant.viewer), 400, "id")
    slashed = make_enduser(client, tenant, email="s@x.com", sourceId="hub/spot/1")
    assert client.get("/endusers/srcid-hub/spot/1", headers=tenant.viewer).json()["_id"] == slashed["_id"]
    assert client.delete("/endusers/srcid-hub%2Fspot%2F1", headers=tenant.admin).status_code == 200
    assert_error(client.get("/endusers/srcid-%00", headers=tenant.viewer), 400, "id")


# ------------------------------------------------------------------------------------------ update


def test_put_partial_merge_and_version(client, tenant: Tenant) -> None:
    e = make_enduser(client, tenant, firstName="Ann", lastName="Lee", custom={"a": 1, "b": 1})
    u = client.put(
        f"/endusers/{e['_id']}", json={"lastName": "Long", "custom": {"b": 2, "c": 3}}, headers=tenant.editor
    ).json()
    assert (u["firstName"], u["lastName"], u["name"]) == ("Ann", "Long", "Ann Long")
    assert u["custom"] == {"a": 1, "b": 2, "c": 3} and u["__v"] == 1
    same = client.put(f"/endusers/{e['_id']}", json={"lastName": "Long"}, headers=tenant.editor).json()
    assert same["__v"] == 1
    u = client.put(
        f"/endusers/{e['_id']}", json={"primary": True, "archived": True}, headers=tenant.editor
    ).json()
    assert (u["primary"], u["archived"], u["__v"]) == (True, True, 2)
    assert_error(
        client.put(f"/endusers/{e['_id']}", json={"email": None}, headers=tenant.editor), 400, "email"
    )
    assert_error(
        client.put(f"/endusers/{e['_id']}", json={"email": "bad"}, headers=tenant.editor), 400, "email"
    )
    assert_error(
        client.put(f"/endusers/{e['_id']}", json={"primary": "no"}, headers=tenant.editor), 400, "primary"
    )


def test_put_email(client, tenant: Tenant) -> None:
    a = make_enduser(client, tenant, email="a@x.com")
    make_enduser(client, tenant, email="b@x.com")
    assert_error(
        client.put(f"/endusers/{a['_id']}", json={"email": "B@X.com"}, headers=tenant.editor), 409, "email"
    )
    u = client.put(f"/endusers/{a['_id']}", json={"email": "A@X.com"}, headers=tenant.editor).json()
    assert u["email"] == "A@X.com" and u["__v"] == 1
    u = client.put(f"/endusers/{a['_id']}", json={"email": "c@x.com"}, headers=tenant.editor).json()
    assert u["email"] == "c@x.com"
    found = client.get("/endusers", params={"email": "C@x.com"}, headers=tenant.viewer).json()
    assert [x["_id"] for x in found] == [a["_id"]]
    assert client.get("/endusers", params={"email": "a@x.com"}, headers=tenant.viewer).json() == []


def test_get_then_put_whole_object_round_trip(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, domains=["acme.com"])
    post_nps(client, tenant, "pat@acme.com", 6, comment="meh")
    eu = client.get("/endusers", params={"email": "pat@acme.com"}, headers=tenant.viewer).json()[0]
    assert eu["companyId"] == c["_id"] and eu["nps"] == 6 and eu["npsComment"] == "meh"
    whole = client.put(
        f"/endusers/{eu['_id']}", json={"custom": {"x": [1]}, "position": "Dev"}, headers=tenant.editor
    ).json()
    r = client.put(f"/endusers/{eu['_id']}", json=whole, headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert r.json() == whole
    whole.update(nps=10, npsComment="ignored", name="Pat")
    changed = client.put(f"/endusers/{eu['_id']}", json=whole, headers=tenant.editor).json()
    assert (changed["name"], changed["nps"], changed["npsComment"], changed["__v"]) == (
        "Pat",
        6,
        "meh",
        whole["__v"] + 1,
    )
    whole["extra"] = True
    assert_error(client.put(f"/endusers/{eu['_id']}", json=whole, headers=tenant.editor), 400, "extra")


# -------------------------------------------------------------------------------------------- list


def test_list_filters_sort_select(client, tenant: Tenant) -> None:
    a = make_company(client, tenant, name="A", domains=["a.com"])
    b = make_company(client, tenant, name="B", domains=["b.com"])
    e1 = make_enduser(client, tenant, email="zed@a.com")
    e2 = make_enduser(client, tenant, email="amy@b.com")
    e3 = make_enduser(client, tenant, email="bob@a.com")
    e4 = make_enduser(client, tenant, email="cat@none.com")
    all_ids = [e["_id"] for e in client.get("/endusers", headers=tenant.viewer).json()]
    assert all_ids == [e1["_id"], e2["_id"], e3["_id"], e4["_id"]]
    by_a = client.get("/endusers", params={"companyId": a["_id"]}, headers=tenant.viewer).json()
    assert [e["_id"] for e in by_a] == [e1["_id"], e3["_id"]]
    both = client.get(
        "/endusers", params={"companyId": f"{a['_id']}, {b['_id']}", "sort": "email"}, headers=tenant.viewer
    ).json()
    assert [e["email"] for e in both] == ["amy@b.com", "bob@a.com", "zed@a.com"]
    assert [
        e["email"]
        for e in client.get(
            "/endusers", params={"sort": "-email", "limit": 2, "offset": 1}, headers=tenant.viewer
        ).json()
    ] == ["cat@none.com", "bob@a.com"]
    assert client.get(
        "/endusers", params={"email": "BOB@A.COM", "select": "email,companyId"}, headers=tenant.viewer
    ).json() == [{"_id": e3["_id"], "email": "bob@a.com", "companyId": a["_id"]}]
    assert client.get("/endusers", params={"email": "nobody@a.com"}, headers=tenant.viewer).json() == []


def test_planhat_c_lists_one_companys_contacts(client, tenant: Tenant) -> None:
    """Planhat documents `/endusers?c=<companyId>` for one company's people; it is not ignored."""
    a = make_company(client, tenant, name="A", domains=["a.com"])
    make_company(client, tenant, name="B", domains=["b.com"])
    ann = make_enduser(client, tenant, email="ann@a.com")
    make_enduser(client, tenant, email="ben@b.com")
    make_enduser(client, tenant, email="cid@none.com")
    by_c = client.get("/endusers", params={"c": a["_id"]}, headers=tenant.viewer)
    assert by_c.status_code == 200, by_c.text
    assert [e["_id"] for e in by_c.json()] == [ann["_id"]]
    same = client.get("/endusers", params={"c": a["_id"], "companyId": a["_id"]}, headers=tenant.viewer)
    assert [e["_id"] for e in same.json()] == [ann["_id"]]
    described = client.get("/openapi.json").json()["paths"]["/endusers"]["get"]["parameters"]
    assert "c" in {p["name"] for p in described}


@pytest.mark.parametrize(
    "params, field",
    [
        ({"companyId": "nope"}, "companyId"),
        ({"companyId": "0123456789abcdef01234567,x"}, "companyId"),
        ({"sort": "age"}, "sort"),
        ({"select": "age"}, "select"),
        ({"limit": -1}, "limit"),
        ({"offset": "a"}, "offset"),
        ({"email": "x" * 321}, "email"),
        ({"email": "a\x00@b.com"}, "email"),
        ({"c": "nope"}, "c"),
        ({"c": "0123456789abcdef01234567", "companyId": "0123456789abcdef01234568"}, "c"),
    ],
)
def test_list_bad_params(client, tenant: Tenant, params: dict[str, Any], field: str) -> None:
    assert_error(client.get("/endusers", params=params, headers=tenant.viewer), 400, field)


# ------------------------------------------------------------------------------------- NPS roll-ups


def test_output_carries_latest_answer(client, tenant: Tenant) -> None:
    e = make_enduser(client, tenant, email="kim@x.com")
    post_nps(client, tenant, "kim@x.com", 3, comment="old", dateAnswered="2030-01-01T00:00:00Z")
    latest = post_nps(client, tenant, "KIM@x.com", 9, comment="new", dateAnswered="2030-02-01T10:00:00.5Z")
    post_nps(client, tenant, "kim@x.com", 0, comment="older", dateAnswered="2029-01-01T00:00:00Z")
    got = client.get(f"/endusers/{e['_id']}", headers=tenant.viewer).json()
    assert (got["nps"], got["npsComment"], got["npsDate"], got["npsId"]) == (
        9,
        "new",
        "2030-02-01T10:00:00.500Z",
        latest["_id"],
    )
    client.delete(f"/nps/{latest['_id']}", headers=tenant.admin)
    got = client.get(f"/endusers/{e['_id']}", headers=tenant.viewer).json()
    assert (got["nps"], got["npsComment"]) == (3, "old")


def test_moving_a_contact_moves_its_nps(client, tenant: Tenant) -> None:
    a = make_company(client, tenant, name="A", domains=["a.com"])
    b = make_company(client, tenant, name="B", domains=["b.com"])
    post_nps(client, tenant, "one@a.com", 10)
    post_nps(client, tenant, "two@a.com", 0)
    post_nps(client, tenant, "three@b.com", 10)
    assert (company(client, tenant, a["_id"])["nps"], company(client, tenant, a["_id"])["npsResponses"]) == (
        0.0,
        2,
    )
    assert company(client, tenant, b["_id"])["nps"] == 100.0
    two = client.get("/endusers", params={"email": "two@a.com"}, headers=tenant.viewer).json()[0]
    moved = client.put(f"/endusers/{two['_id']}", json={"companyId": b["_id"]}, headers=tenant.editor)
    assert moved.status_code == 200, moved.text
    assert moved.json()["companyId"] == b["_id"] and moved.json()["nps"] == 0
    ca, cb = company(client, tenant, a["_id"]), company(client, tenant, b["_id"])
    assert (ca["nps"], ca["npsResponses"]) == (100.0, 1)
    assert (cb["nps"], cb["npsResponses"]) == (0.0, 2)
    # its answers follow it: the record list and the per-company metrics agree with the companies
    moved_rec = client.get("/nps", params={"email": "two@a.com"}, headers=tenant.viewer).json()[0]
    assert moved_rec["cId"] == b["_id"] and moved_rec["__v"] == 1
    by_b = client.get("/nps", params={"companyId": b["_id"], "sort": "score"}, headers=tenant.viewer).json()
    assert [(r["email"], r["score"]) for r in by_b] == [("two@a.com", 0), ("three@b.com", 10)]
    assert [
        r["email"] for r in client.get("/nps", params={"companyId": a["_id"]}, headers=tenant.viewer).json()
    ] == ["one@a.com"]
    for cid, expected in ((a["_id"], (100.0, 1)), (b["_id"], (0.0, 2))):
        m = client.get("/v1/nps-surveys/metrics/nps", params={"companyId": cid}, headers=tenant.viewer)
        assert m.status_code == 200, m.text
        assert (m.json()["npsScore"], m.json()["totalResponses"]) == expected
    # out of every company
    client.put(f"/endusers/{two['_id']}", json={"companyId": None}, headers=tenant.editor)
    cb = company(client, tenant, b["_id"])
    assert (cb["nps"], cb["npsResponses"]) == (100.0, 1)
    assert client.get("/nps", params={"email": "two@a.com"}, headers=tenant.viewer).json()[0]["cId"] is None
    listed = client.get(f"/companies/{b['_id']}/endusers", headers=tenant.viewer).json()
    assert [e["email"] for e in listed] == ["three@b.com"]


def test_answers_given_for_another_company_stay_when_the_contact_moves(client, tenant: Tenant) -> None:
    a = make_company(client, tenant, name="A", domains=["a.com"])
    b = make_company(client, tenant, name="B")
    c = make_company(client, tenant, name="C")
    own = post_nps(client, tenant, "pat@a.com", 9)
    about_c = post_nps(client, tenant, "pat@a.com", 2, cId=c["_id"], dateAnswered="2020-01-01T00:00:00Z")
    client.put(f"/endusers/{own['euId']}", json={"companyId": b["_id"]}, headers=tenant.editor)
    assert client.get(f"/nps/{own['_id']}", headers=tenant.viewer).json()["cId"] == b["_id"]
    kept = client.get(f"/nps/{about_c['_id']}", headers=tenant.viewer).json()
    assert (kept["cId"], kept["__v"]) == (c["_id"], 0)
    assert company(client, tenant, a["_id"])["npsResponses"] == 0


def test_delete_contact_with_records_needs_cascade(client, tenant: Tenant) -> None:
    c = make_company(client, tenant, domains=["acme.com"])
    r1 = post_nps(client, tenant, "a@acme.com", 10)
    post_nps(client, tenant, "b@acme.com", 0)
    body = assert_error(client.delete(f"/endusers/{r1['euId']}", headers=tenant.admin), 409, "cascade")
    assert "NPS records" in body["message"]
    assert company(client, tenant, c["_id"])["npsResponses"] == 2
    assert_error(
        client.delete(f"/endusers/{r1['euId']}", params={"cascade": "true"}, headers=tenant.editor), 403
    )
    r = client.delete(f"/endusers/{r1['euId']}", params={"cascade": "true"}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"n": 1, "ok": 1, "deletedCount": 1}
    assert_error(client.get(f"/nps/{r1['_id']}", headers=tenant.viewer), 404)
    got = company(client, tenant, c["_id"])
    assert (got["nps"], got["npsResponses"]) == (-100.0, 1)
    # a contact without records goes without cascade
    e = make_enduser(client, tenant, email="quiet@acme.com")
    assert client.delete(f"/endusers/{e['_id']}", headers=tenant.admin).status_code == 200
    # and the address can be used again: a new contact, new NPS
    assert post_nps(client, tenant, "a@acme.com", 9)["euId"] != r1["euId"]


# --------------------------------------------------------------------------------- roles, tenancy


def test_roles(client, tenant: Tenant) -> None:
    e = make_enduser(client, tenant)
    assert_error(client.post("/endusers", json={"email": "v@x.com"}, headers=tenant.viewer), 403)
    assert_error(client.put(f"/endusers/{e['_id']}", json={"name": "V"}, headers=tenant.viewer), 403)
    assert_error(client.delete(f"/endusers/{e['_id']}", headers=tenant.viewer), 403)
    assert_error(client.delete(f"/endusers/{e['_id']}", headers=tenant.editor), 403)
    assert (
        client.put(f"/endusers/{e['_id']}", json={"name": "E"}, headers=tenant.editor).json()["name"] == "E"
    )
    assert client.get(f"/endusers/{e['_id']}", headers=tenant.viewer).json()["name"] == "E"
    assert_error(client.get(f"/endusers/{e['_id']}"), 401)


def test_other_tenant_sees_nothing(client, tenant: Tenant, other: Tenant) -> None:
    c = make_company(client, tenant, domains=["mine.com"])
    e = make_enduser(client, tenant, email="me@mine.com", externalId="x", sourceId="y")
    for key in (e["_id"], "extid-x", "srcid-y"):
        assert_error(client.get(f"/endusers/{key}", headers=other.admin), 404)
        assert_error(client.put(f"/endusers/{key}", json={"name": "stolen"}, headers=other.admin), 404)
        assert_error(client.delete(f"/endusers/{key}", params={"cascade": "true"}, headers=other.admin), 404)
    assert client.get("/endusers", headers=other.viewer).json() == []
    assert client.get("/endusers", params={"email": "me@mine.com"}, headers=other.viewer).json() == []
    assert client.get("/endusers", params={"companyId": c["_id"]}, headers=other.viewer).json() == []
    assert client.get(f"/endusers/{e['_id']}", headers=tenant.viewer).json() == e


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # PostgreSQL plans with statistics
def test_moving_a_contact_reads_only_its_own_answers(client: Any, tenant: Tenant, database: Any) -> None:
    """A contact without a company keeps its answers' company null, which no index holds
    (migration 0015): the move must find them through the contact, not walk the organization's
    answers. Every statement over ``nps_record`` during the move is planned by SQLite here."""
    jane = make_enduser(client, tenant, email="mover@example.com")
    for score in (3, 9):
        post_nps(client, tenant, "mover@example.com", score)
    post_nps(client, tenant, "someone.else@example.com", 5)
    acme = make_company(client, tenant)

    def over_records(statement: str, many: bool) -> bool:
        return "nps_record" in statement and not many and not statement.lstrip().upper().startswith("INSERT")

    with statements_run(database, over_records) as statements:
        r = client.put(f"/endusers/{jane['_id']}", json={"companyId": acme["_id"]}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    moved = [s for s in statements if "company_id IS NULL" in s[0]]
    assert moved, statements  # the move's read and update of the contact's company-less answers
    for statement, params in moved:
        plan = " / ".join(sqlite_plan(database, statement, params))
        assert "ix_nps_record_enduser (enduser_id=?)" in plan, (statement, plan)
    answers = client.get(f"/nps?companyId={acme['_id']}", headers=tenant.viewer).json()
    assert sorted(a["score"] for a in answers) == [3, 9]
    assert company(client, tenant, acme["_id"])["nps"] == 100  # its one contact, latest answer a 9
