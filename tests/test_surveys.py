"""SalesOS ``/v1/nps-surveys``: survey CRUD, listing, derived NPS, roles and tenant isolation, over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import Tenant, assert_error
from conftest import TestDatabase as DatabaseFixture
from npsd.kit.models import NpsRollup

BASE = "/v1/nps-surveys"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MISSING = "0123456789abcdef01234567"


def make_survey(client: Any, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    body = {"name": "Quarterly NPS", **fields}
    r = client.post(BASE, json=body, headers=tenant.editor)
    assert r.status_code == 201, r.text
    return r.json()


def add_record(
    client: Any, tenant: Tenant, survey_id: str | None, score: int, email: str = "a@x.io", **fields: Any
) -> dict[str, Any]:
    """An answer written through Planhat's /nps, tied to the survey by campaignId."""
    body = {"email": email, "score": score, **fields}
    if survey_id is not None:
        body["campaignId"] = survey_id
    r = client.post("/nps", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------------------------------- create


def test_create_applies_documented_defaults(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant, name="Relationship Q3")
    assert re.fullmatch(r"[0-9a-f]{24}", s["id"])
    assert s["name"] == "Relationship Q3"
    assert s["description"] is None
    assert s["surveyType"] == "RELATIONSHIP"
    assert s["triggerEvent"] is None
    assert s["question"] == "How likely are you to recommend us to a friend or colleague?"
    assert s["followUpQuestion"] == "What is the most important reason for your score?"
    assert s["isActive"] is True
    assert s["language"] == "en"
    assert s["throttleDays"] == 90
    assert s["reminderAfterDays"] == 3
    assert s["thankYouMessage"] is None
    assert s["startsAt"] is None and s["endsAt"] is None
    assert ISO_Z.match(s["createdAt"]) and s["createdAt"] == s["updatedAt"]
    assert s["responseCount"] == 0
    assert s["npsScore"] is None
    got = client.get(f"{BASE}/{s['id']}", headers=tenant.viewer)
    assert got.status_code == 200
    assert got.json() == s


def test_create_with_every_field(client: Any, tenant: Tenant) -> None:
    body = {
        "name": "After onboarding",
        "description": "Sent after the onboarding call",
        "surveyType": "TRANSACTIONAL",
        "triggerEvent": "onboarding.completed",
        "question": "Would you recommend us?",
        "followUpQuestion": None,
        "isActive": False,
        "language": "pt-BR",
        "throttleDays": 0,
        "reminderAfterDays": None,
        "thankYouMessage": "Obrigado!",
        "startsAt": "2030-01-01T02:00:00+02:00",
        "endsAt": 1924992000,  # epoch seconds: 2031-01-01
    }
    r = client.post(BASE, json=body, headers=tenant.admin)
    assert r.status_code == 201, r.text
    s = r.json()
    for key in (
        "name",
        "description",
        "surveyType",
        "triggerEvent",
        "question",
        "followUpQuestion",
        "isActive",
        "language",
        "throttleDays",
        "reminderAfterDays",
        "thankYouMessage",
    ):
        assert s[key] == body[key], key
    assert s["startsAt"] == "2030-01-01T00:00:00.000Z"
    assert s["endsAt"] == "2031-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": None}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": 42}, "name"),
        ({"name": "ok", "surveyType": "EPISODIC"}, "surveyType"),
        ({"name": "ok", "isActive": "yes"}, "isActive"),
        ({"name": "ok", "isActive": None}, "isActive"),
        ({"name": "ok", "throttleDays": -1}, "throttleDays"),
        ({"name": "ok", "throttleDays": "5"}, "throttleDays"),
        ({"name": "ok", "throttleDays": 10**30}, "throttleDays"),
        ({"name": "ok", "reminderAfterDays": 0}, "reminderAfterDays"),
        ({"name": "ok", "language": "english!"}, "language"),
        ({"name": "ok", "question": ""}, "question"),
        ({"name": "ok", "startsAt": "next tuesday"}, "startsAt"),
        ({"name": "ok", "endsAt": "3000-01-01T00:00:00Z"}, "endsAt"),
        ({"name": "ok", "startsAt": "2030-02-01T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z"}, "endsAt"),
        ({"name": "ok", "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z"}, "endsAt"),
        ({"name": "ok", "colour": "blue"}, "colour"),
        ({"name": "ok", "id": "0123456789abcdef01234567"}, "id"),
        ({"name": "ok", "responseCount": 3}, "responseCount"),
    ],
)
def test_create_rejects_bad_input(client: Any, tenant: Tenant, body: dict[str, Any], field: str) -> None:
    assert_error(client.post(BASE, json=body, headers=tenant.editor), 400, field)


def test_create_rejects_non_object_bodies(client: Any, tenant: Tenant) -> None:
    assert_error(
        client.post(
            BASE, content=b"{not json", headers={**tenant.editor, "Content-Type": "application/json"}
        ),
        400,
    )
    assert_error(client.post(BASE, json=[{"name": "x"}], headers=tenant.editor), 400)
    assert client.get(BASE, headers=tenant.viewer).json() == []


# ------------------------------------------------------------------------------------------- update


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_update_is_partial(client: Any, tenant: Tenant, method: str) -> None:
    s = make_survey(client, tenant, description="old", thankYouMessage="thanks")
    r = client.request(
        method,
        f"{BASE}/{s['id']}",
        json={"name": "Renamed", "reminderAfterDays": None},
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    u = r.json()
    assert u["name"] == "Renamed"
    assert u["reminderAfterDays"] is None
    assert u["description"] == "old" and u["thankYouMessage"] == "thanks"
    assert u["throttleDays"] == 90 and u["surveyType"] == "RELATIONSHIP"
    assert u["createdAt"] == s["createdAt"]
    assert u["updatedAt"] >= s["updatedAt"]
    assert client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json() == u
    # clearing a nullable field
    cleared = client.request(
        method, f"{BASE}/{s['id']}", json={"description": None}, headers=tenant.editor
    ).json()
    assert cleared["description"] is None and cleared["name"] == "Renamed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"question": None}, "question"),
        ({"throttleDays": None}, "throttleDays"),
        ({"language": None}, "language"),
        ({"surveyType": None}, "surveyType"),
        ({"unknownField": 1, "name": "x"}, "unknownField"),
        ({"createdAt": "2020-01-01T00:00:00Z"}, "createdAt"),
        ({"endsAt": "2029-06-01T00:00:00Z"}, "endsAt"),  # before the stored startsAt
    ],
)
def test_update_rejects_bad_input(client: Any, tenant: Tenant, body: dict[str, Any], field: str) -> None:
    s = make_survey(client, tenant, startsAt="2030-01-01T00:00:00Z")
    assert_error(client.patch(f"{BASE}/{s['id']}", json=body, headers=tenant.editor), 400, field)
    assert_error(client.put(f"{BASE}/{s['id']}", json=body, headers=tenant.editor), 400, field)
    assert client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json() == s


def test_update_window_checked_against_stored_values(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant, endsAt="2030-01-01T00:00:00Z")
    assert_error(
        client.patch(f"{BASE}/{s['id']}", json={"startsAt": "2030-06-01T00:00:00Z"}, headers=tenant.editor),
        400,
        "endsAt",
    )
    ok = client.patch(f"{BASE}/{s['id']}", json={"startsAt": "2029-06-01T00:00:00Z"}, headers=tenant.editor)
    assert ok.status_code == 200
    assert ok.json()["startsAt"] == "2029-06-01T00:00:00.000Z"


def test_toggle_flips_is_active(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    off = client.post(f"{BASE}/{s['id']}/toggle", headers=tenant.editor)
    assert off.status_code == 200, off.text
    assert off.json()["isActive"] is False
    assert off.json()["name"] == s["name"]
    assert client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json()["isActive"] is False
    on = client.post(f"{BASE}/{s['id']}/toggle", headers=tenant.editor)
    assert on.json()["isActive"] is True


# ------------------------------------------------------------------------------------------- derived


def test_response_count_and_nps_follow_records(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    other_survey = make_survey(client, tenant, name="Other")
    for i, score in enumerate([10, 9, 8, 7, 6, 0]):
        add_record(client, tenant, s["id"], score, email=f"p{i}@x.io")
    add_record(client, tenant, other_survey["id"], 10, email="z@x.io")
    add_record(client, tenant, None, 0, email="nobody@x.io")  # no survey: counts nowhere here
    got = client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json()
    assert got["responseCount"] == 6
    assert got["npsScore"] == round(100 * (2 - 2) / 6, 1) == 0.0
    listed = {x["id"]: x for x in client.get(BASE, headers=tenant.viewer).json()}
    assert listed[s["id"]]["responseCount"] == 6 and listed[s["id"]]["npsScore"] == 0.0
    assert (
        listed[other_survey["id"]]["responseCount"] == 1 and listed[other_survey["id"]]["npsScore"] == 100.0
    )
    # an update through /nps moves the figures: the 0 becomes a 10 -> (3 - 1) / 6
    rec = client.get("/nps", params={"campaignId": s["id"], "npsExpiryDay": 0}, headers=tenant.viewer)
    zero = next(x for x in rec.json() if x["score"] == 0)
    assert client.put(f"/nps/{zero['_id']}", json={"score": 10}, headers=tenant.editor).status_code == 200
    assert client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json()["npsScore"] == round(100 * 2 / 6, 1)
    # moving a record to the other survey moves its count
    assert (
        client.put(
            f"/nps/{zero['_id']}", json={"campaignId": other_survey["id"]}, headers=tenant.editor
        ).status_code
        == 200
    )
    assert client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json()["responseCount"] == 5
    moved = client.get(f"{BASE}/{other_survey['id']}", headers=tenant.viewer).json()
    assert moved["responseCount"] == 2 and moved["npsScore"] == 100.0


def test_other_tenant_records_with_same_campaign_id_do_not_count(
    client: Any, tenant: Tenant, other: Tenant
) -> None:
    s = make_survey(client, tenant)
    add_record(client, other, s["id"], 0)
    got = client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json()
    assert got["responseCount"] == 0 and got["npsScore"] is None


# ------------------------------------------------------------------------------------------- list


def test_list_pages_with_total_header(client: Any, tenant: Tenant, other: Tenant) -> None:
    ids = [make_survey(client, tenant, name=f"S{i}")["id"] for i in range(5)]
    make_survey(client, other, name="not mine")
    seen: list[str] = []
    for page in (1, 2, 3):
        r = client.get(BASE, params={"page": page, "limit": 2}, headers=tenant.viewer)
        assert r.status_code == 200
        assert r.headers["X-Total-Count"] == "5"
        assert len(r.json()) == (2 if page < 3 else 1)
        seen += [x["id"] for x in r.json()]
    assert seen == list(reversed(ids))  # newest first by default
    beyond = client.get(BASE, params={"page": 4, "limit": 2}, headers=tenant.viewer)
    assert beyond.json() == [] and beyond.headers["X-Total-Count"] == "5"
    default = client.get(BASE, headers=tenant.viewer).json()
    assert len(default) == 5


def test_list_sort_and_filters(client: Any, tenant: Tenant) -> None:
    b = make_survey(client, tenant, name="bravo", description="Enterprise 100% customers")
    make_survey(client, tenant, name="Alpha", isActive=False)
    c = make_survey(client, tenant, name="charlie", surveyType="TRANSACTIONAL", description="SMB")
    for score in (10, 10):
        add_record(client, tenant, c["id"], score)
    add_record(client, tenant, b["id"], 0)

    def names(**params: Any) -> list[str]:
        r = client.get(BASE, params=params, headers=tenant.viewer)
        assert r.status_code == 200, r.text
        return [x["name"] for x in r.json()]

    assert names(sortBy="name", sortOrder="asc") == ["Alpha", "bravo", "charlie"]
    assert names(sortBy="name", sortOrder="DESC") == ["charlie", "bravo", "Alpha"]
    assert names(sortBy="createdAt", sortOrder="asc") == ["bravo", "Alpha", "charlie"]
    assert names(sortBy="responseCount", sortOrder="desc") == ["charlie", "bravo", "Alpha"]
    assert names(sortBy="npsScore", sortOrder="desc") == ["charlie", "bravo", "Alpha"]  # no answers: last
    assert names(sortBy="npsScore", sortOrder="asc") == ["bravo", "charlie", "Alpha"]
    assert names(isActive="false") == ["Alpha"]
    assert names(isActive="true", sortBy="name", sortOrder="asc") == ["bravo", "charlie"]
    assert names(surveyType="TRANSACTIONAL") == ["charlie"]
    assert names(q="ALPH") == ["Alpha"]
    assert names(q="enterprise") == ["bravo"]  # description
    assert names(q="100%") == ["bravo"]
    assert names(q="%") == ["bravo"]  # a literal percent sign, not a wildcard
    assert names(q="zzz") == []
    r = client.get(BASE, params={"q": "smb", "limit": 1}, headers=tenant.viewer)
    assert r.headers["X-Total-Count"] == "1"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": "abc"}, "page"),
        ({"page": 10**12}, "page"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sortBy": "password"}, "sortBy"),
        ({"sortOrder": "sideways"}, "sortOrder"),
        ({"isActive": "maybe"}, "isActive"),
        ({"surveyType": "OTHER"}, "surveyType"),
        ({"q": "a\x00b"}, "q"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_list_rejects_bad_parameters(client: Any, tenant: Tenant, params: dict[str, Any], field: str) -> None:
    assert_error(client.get(BASE, params=params, headers=tenant.viewer), 400, field)


# ------------------------------------------------------------------------------------------- delete


def test_delete_removes_survey_responses_and_rollups(
    client: Any, tenant: Tenant, database: DatabaseFixture
) -> None:
    s = make_survey(client, tenant)
    keep = make_survey(client, tenant, name="keep")
    old = add_record(client, tenant, keep["id"], 9, email="jo@x.io", dateAnswered="2024-01-01T00:00:00Z")
    add_record(client, tenant, s["id"], 2, email="jo@x.io", dateAnswered="2024-02-01T00:00:00Z")
    add_record(client, tenant, s["id"], 8, email="al@x.io")
    enduser = client.get(f"/endusers/{old['euId']}", headers=tenant.viewer).json()
    assert enduser["nps"] == 2  # the latest answer is the one to the doomed survey

    assert_error(client.delete(f"{BASE}/{s['id']}", headers=tenant.editor), 403)
    assert client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).status_code == 200
    r = client.delete(f"{BASE}/{s['id']}", headers=tenant.admin)
    assert r.status_code == 204
    assert r.content == b""
    assert_error(client.get(f"{BASE}/{s['id']}", headers=tenant.viewer), 404)
    assert_error(client.delete(f"{BASE}/{s['id']}", headers=tenant.admin), 404)
    assert (
        client.get("/nps", params={"campaignId": s["id"], "npsExpiryDay": 0}, headers=tenant.viewer).json()
        == []
    )
    remaining = client.get("/nps", params={"npsExpiryDay": 0}, headers=tenant.viewer).json()
    assert [x["_id"] for x in remaining] == [old["_id"]]
    assert client.get(f"/endusers/{old['euId']}", headers=tenant.viewer).json()["nps"] == 9
    assert client.get(f"{BASE}/{keep['id']}", headers=tenant.viewer).json()["responseCount"] == 1
    with database.db.transaction(write=False) as session:
        left = session.scalar(
            select(func.count())
            .select_from(NpsRollup)
            .where(NpsRollup.org_id == tenant.org_id, NpsRollup.survey_id == s["id"])
        )
    assert left == 0


# ------------------------------------------------------------------------------------------- access


def test_unknown_malformed_and_foreign_ids(client: Any, tenant: Tenant, other: Tenant) -> None:
    s = make_survey(client, tenant)
    path = f"{BASE}/{s['id']}"
    calls = [
        ("GET", path, None),
        ("PATCH", path, {"name": "x"}),
        ("PUT", path, {"name": "x"}),
        ("DELETE", path, None),
        ("POST", f"{path}/toggle", None),
        ("GET", f"{path}/responses", None),
        ("POST", f"{path}/responses", {"email": "a@x.io", "score": 5}),
        ("GET", f"{path}/responses/export?format=csv", None),
    ]
    for method, url, body in calls:
        assert_error(client.request(method, url, json=body, headers=other.admin), 404)
        missing = url.replace(s["id"], MISSING)
        assert_error(client.request(method, missing, json=body, headers=tenant.admin), 404)
        bad = url.replace(s["id"], "not-an-id")
        assert_error(client.request(method, bad, json=body, headers=tenant.admin), 400, "id")
    assert client.get(BASE, headers=other.viewer).json() == []
    # nothing of the other tenant's attempts landed
    got = client.get(path, headers=tenant.viewer).json()
    assert got == s


def test_roles(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    path = f"{BASE}/{s['id']}"
    assert_error(client.post(BASE, json={"name": "x"}, headers=tenant.viewer), 403)
    assert_error(client.patch(path, json={"name": "x"}, headers=tenant.viewer), 403)
    assert_error(client.put(path, json={"name": "x"}, headers=tenant.viewer), 403)
    assert_error(client.post(f"{path}/toggle", headers=tenant.viewer), 403)
    assert_error(
        client.post(f"{path}/responses", json={"email": "a@x.io", "score": 5}, headers=tenant.viewer), 403
    )
    assert_error(client.delete(path, headers=tenant.viewer), 403)
    assert_error(client.get(BASE), 401)
    assert_error(client.get(path), 401)
    api_key = {"X-API-Key": tenant.tokens["viewer"]}
    assert client.get(path, headers=api_key).json()["name"] == s["name"]


def test_openapi_documents_every_survey_route(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    paths = {p: v for p, v in spec["paths"].items() if p.startswith(BASE + "/{id}") or p == BASE}
    expected = {
        BASE: {"get": "200", "post": "201"},
        BASE + "/{id}": {"get": "200", "patch": "200", "put": "200", "delete": "204"},
        BASE + "/{id}/toggle": {"post": "200"},
        BASE + "/{id}/responses": {"get": "200", "post": "201"},
        BASE + "/{id}/responses/export": {"get": "200"},
        BASE + "/{id}/invitations": {"get": "200", "post": "200"},
        BASE + "/{id}/link": {"get": "200"},
        BASE + "/{id}/reminders": {"post": "200"},
    }
    assert {p: set(v) for p, v in paths.items()} == {p: set(v) for p, v in expected.items()}
    for path, methods in expected.items():
        for method, status in methods.items():
            responses = paths[path][method]["responses"]
            assert status in responses, (path, method)
            if status != "204":
                assert responses[status]["content"], (path, method)
            assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    list_200 = paths[BASE]["get"]["responses"]["200"]
    assert "X-Total-Count" in list_200["headers"]
    assert list_200["content"]["application/json"]["schema"]["items"]["$ref"].endswith("/SurveyRead")


# ------------------------------------------------------------------------------------------- races


def test_concurrent_toggles_and_deletes_stay_consistent(client: Any, tenant: Tenant) -> None:
    """Writers on one survey queue on its row: 8 toggles flip 8 times; of 4 deletes one wins, no 500."""
    from concurrent.futures import ThreadPoolExecutor

    s = make_survey(client, tenant)
    path = f"{BASE}/{s['id']}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        toggles = list(
            pool.map(lambda _: client.post(f"{path}/toggle", headers=tenant.editor).status_code, range(8))
        )
    assert toggles == [200] * 8
    assert client.get(path, headers=tenant.viewer).json()["isActive"] is True
    for i in range(3):
        assert (
            client.post(
                f"{path}/responses", json={"email": f"r{i}@x.io", "score": 9}, headers=tenant.editor
            ).status_code
            == 201
        )

    def race(i: int) -> int:
        if i % 2:
            return client.delete(path, headers=tenant.admin).status_code
        return client.post(
            f"{path}/responses", json={"email": f"late{i}@x.io", "score": 1}, headers=tenant.editor
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(race, range(8)))
    deletes = [st for i, st in enumerate(statuses) if i % 2]
    assert sorted(deletes) == [204, 404, 404, 404]
    assert all(st in (201, 404) for i, st in enumerate(statuses) if not i % 2)
    # every answer that was accepted went with the survey: none is left behind
    assert (
        client.get("/nps", params={"campaignId": s["id"], "npsExpiryDay": 0}, headers=tenant.viewer).json()
        == []
    )
