"""Responses of a survey: list with NPS breakdown, filters, adding an answer, export, over HTTP."""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import Tenant, assert_error

BASE = "/v1/nps-surveys"
RESPONSE_FIELDS = {
    "id",
    "surveyId",
    "enduserId",
    "companyId",
    "email",
    "score",
    "category",
    "comment",
    "source",
    "sourceId",
    "sentAt",
    "respondedAt",
    "createdAt",
    "updatedAt",
    "custom",
}
SCORES = [10, 9, 8, 7, 6, 0]


def make_survey(client: Any, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    r = client.post(BASE, json={"name": "Onboarding", **fields}, headers=tenant.editor)
    assert r.status_code == 201, r.text
    return r.json()


def seed(client: Any, tenant: Tenant, survey_id: str, company_id: str | None = None) -> list[dict[str, Any]]:
    """Six answers through /nps, answered on Jan 1..6 2024 with scores 10, 9, 8, 7, 6, 0."""
    out = []
    for i, score in enumerate(SCORES):
        body: dict[str, Any] = {
            "email": f"User{i}@Example.com",
            "score": score,
            "campaignId": survey_id,
            "dateAnswered": f"2024-01-0{i + 1}T12:00:00Z",
            "source": "email" if i % 2 else "web",
            "comment": ["Great support", "", None, "slow ONBOARDING", "meh", "terrible support"][i],
        }
        if company_id and i < 3:
            body["cId"] = company_id
        r = client.post("/nps", json=body, headers=tenant.editor)
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def adjusted(p: int, m: int, d: int) -> tuple[float, float]:
    """Centre and 95% half-width of the adjusted Wald interval of DESIGN.md §5, computed
    independently: pseudo-counts 0.75 / 1.5 / 0.75 added to detractors / passives / promoters."""
    n = p + m + d + 3
    pp, dd = (p + 0.75) / n, (d + 0.75) / n
    return 100 * (pp - dd), 196 * math.sqrt((pp + dd - (pp - dd) ** 2) / n)


def expected_moe(p: int, m: int, d: int) -> float:
    return round(adjusted(p, m, d)[1], 1)


def expected_interval(p: int, m: int, d: int) -> list[float]:
    centre, half = adjusted(p, m, d)
    return [round(max(centre - half, -100), 1), round(min(centre + half, 100), 1)]


def get(client: Any, tenant: Tenant, survey_id: str, **params: Any) -> dict[str, Any]:
    r = client.get(f"{BASE}/{survey_id}/responses", params=params, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------------------------------- list


def test_breakdown_of_known_scores(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    seed(client, tenant, s["id"])
    body = get(client, tenant, s["id"])
    b = body["breakdown"]
    moe = expected_moe(2, 2, 2)
    assert moe == 51.1  # ñ = 9, p̃ = d̃ = 2.75/9: 196·sqrt((5.5/9)/9)
    assert b == {
        "total": 6,
        "promoters": 2,
        "passives": 2,
        "detractors": 2,
        "promoterPercentage": 33.3,
        "passivePercentage": 33.3,
        "detractorPercentage": 33.3,
        "npsScore": round(100 * (2 - 2) / 6, 1),
        "averageScore": round(sum(SCORES) / 6, 2),
        "distribution": [1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
        "marginOfError": moe,
        "confidenceInterval": expected_interval(2, 2, 2),
        "lowSample": True,
    }
    assert b["averageScore"] == 6.67 and b["confidenceInterval"] == [-51.1, 51.1]
    assert body["pagination"] == {"page": 1, "limit": 20, "total": 6}
    assert [r["score"] for r in body["responses"]] == list(reversed(SCORES))  # newest answer first


def test_breakdown_covers_all_pages(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    seed(client, tenant, s["id"])
    seen = []
    for page in (1, 2, 3):
        body = get(client, tenant, s["id"], page=page, limit=2)
        assert len(body["responses"]) == 2
        assert body["breakdown"]["total"] == 6 and body["breakdown"]["npsScore"] == 0.0
        assert body["pagination"] == {"page": page, "limit": 2, "total": 6}
        seen += [r["id"] for r in body["responses"]]
    assert len(set(seen)) == 6
    beyond = get(client, tenant, s["id"], page=9, limit=2)
    assert beyond["responses"] == [] and beyond["breakdown"]["total"] == 6


def test_response_shape(client: Any, tenant: Tenant) -> None:
    company = client.post("/companies", json={"name": "Acme"}, headers=tenant.editor).json()
    s = make_survey(client, tenant)
    records = seed(client, tenant, s["id"], company["_id"])
    body = get(client, tenant, s["id"], sortBy="respondedAt", sortOrder="asc")
    first = body["responses"][0]
    assert set(first) == RESPONSE_FIELDS
    rec = records[0]
    assert first == {
        "id": rec["_id"],
        "surveyId": s["id"],
        "enduserId": rec["euId"],
        "companyId": company["_id"],
        "email": "User0@Example.com",
        "score": 10,
        "category": "PROMOTER",
        "comment": "Great support",
        "source": "web",
        "sourceId": None,
        "sentAt": None,
        "respondedAt": "2024-01-01T12:00:00.000Z",
        "createdAt": rec["createdAt"],
        "updatedAt": rec["updatedAt"],
        "custom": None,
    }
    assert [r["category"] for r in body["responses"]] == [
        "PROMOTER",
        "PROMOTER",
        "PASSIVE",
        "PASSIVE",
        "DETRACTOR",
        "DETRACTOR",
    ]


def test_empty_survey_breakdown(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    body = get(client, tenant, s["id"])
    assert body == {
        "responses": [],
        "breakdown": {
            "total": 0,
            "promoters": 0,
            "passives": 0,
            "detractors": 0,
            "promoterPercentage": None,
            "passivePercentage": None,
            "detractorPercentage": None,
            "npsScore": None,
            "averageScore": None,
            "distribution": [0] * 11,
            "marginOfError": None,
            "confidenceInterval": None,
            "lowSample": True,
        },
        "pagination": {"page": 1, "limit": 20, "total": 0},
    }


def test_large_unanimous_sample_is_not_low(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    items = [{"email": f"p{i}@x.io", "score": 10 if i % 4 else 9, "campaignId": s["id"]} for i in range(40)]
    assert client.put("/nps", json=items, headers=tenant.editor).status_code == 200
    b = get(client, tenant, s["id"], limit=1)["breakdown"]
    assert b["total"] == 40 and b["promoters"] == 40 and b["promoterPercentage"] == 100.0
    # adjusted Wald, not the plain "100 ± 0": ñ = 43, p̃ = 40.75/43, d̃ = 0.75/43, margin 9.44 (under
    # 10, so with 40 answers the sample is not low), interval centred on 100·40/43 = 93.02
    assert b["npsScore"] == 100.0 and b["marginOfError"] == expected_moe(40, 0, 0) == 9.4
    assert b["confidenceInterval"] == expected_interval(40, 0, 0) == [83.6, 100.0]
    assert b["lowSample"] is False
    assert b["distribution"][9:] == [10, 30] and b["averageScore"] == 9.75


def test_sorting(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    seed(client, tenant, s["id"])
    asc = get(client, tenant, s["id"], sortBy="score", sortOrder="asc")["responses"]
    assert [r["score"] for r in asc] == sorted(SCORES)
    desc = get(client, tenant, s["id"], sortBy="score")["responses"]
    assert [r["score"] for r in desc] == sorted(SCORES, reverse=True)
    by_email = get(client, tenant, s["id"], sortBy="email", sortOrder="asc")["responses"]
    assert [r["email"] for r in by_email] == [f"User{i}@Example.com" for i in range(6)]


def test_filters_narrow_list_and_breakdown(client: Any, tenant: Tenant) -> None:
    company = client.post("/companies", json={"name": "Acme"}, headers=tenant.editor).json()
    s = make_survey(client, tenant)
    seed(client, tenant, s["id"], company["_id"])

    def scores(**params: Any) -> list[int]:
        body = get(client, tenant, s["id"], sortBy="respondedAt", sortOrder="asc", **params)
        assert body["breakdown"]["total"] == len(body["responses"]) == body["pagination"]["total"]
        assert sum(body["breakdown"]["distribution"]) == body["breakdown"]["total"]
        return [r["score"] for r in body["responses"]]

    assert scores(scoreType="promoter") == [10, 9]
    assert scores(scoreType="PASSIVE") == [8, 7]
    assert scores(scoreType="detractor") == [6, 0]
    assert scores(since="2024-01-03T00:00:00Z") == [8, 7, 6, 0]
    assert scores(until="2024-01-02T12:00:00Z") == [10, 9]
    assert scores(since="2024-01-02T00:00:00+01:00", until="2024-01-04") == [9, 8]
    assert scores(since=int(datetime(2024, 1, 5, tzinfo=UTC).timestamp())) == [6, 0]
    assert scores(companyId=company["_id"]) == [10, 9, 8]
    assert scores(email="user3@EXAMPLE.com") == [7]
    assert scores(q="support") == [10, 0]
    assert scores(q="onboarding") == [7]
    assert scores(hasComment="true") == [10, 7, 6, 0]
    assert scores(hasComment="false") == [9, 8]
    assert scores(q="support", scoreType="detractor") == [0]
    assert scores(q="%") == []
    filtered = get(client, tenant, s["id"], scoreType="detractor")["breakdown"]
    assert filtered["npsScore"] == -100.0 and filtered["averageScore"] == 3.0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-45"}, "until"),
        ({"since": "2024-02-01", "until": "2024-01-01"}, "since"),
        ({"since": "3000-01-01T00:00:00Z"}, "since"),
        ({"scoreType": "fan"}, "scoreType"),
        ({"companyId": "acme"}, "companyId"),
        ({"sortBy": "password"}, "sortBy"),
        ({"sortOrder": "random"}, "sortOrder"),
        ({"page": 0}, "page"),
        ({"page": 10**12}, "page"),
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"hasComment": "perhaps"}, "hasComment"),
        ({"q": "bad\x00"}, "q"),
        ({"email": "a\x00@x.io"}, "email"),
    ],
)
def test_list_rejects_bad_parameters(client: Any, tenant: Tenant, params: dict[str, Any], field: str) -> None:
    s = make_survey(client, tenant)
    assert_error(client.get(f"{BASE}/{s['id']}/responses", params=params, headers=tenant.viewer), 400, field)
    export = client.get(
        f"{BASE}/{s['id']}/responses/export", params={"format": "csv", **params}, headers=tenant.viewer
    )
    if field not in ("page", "limit"):
        assert_error(export, 400, field)


def test_other_tenant_records_are_not_responses(client: Any, tenant: Tenant, other: Tenant) -> None:
    s = make_survey(client, tenant)
    r = client.post("/nps", json={"email": "x@y.io", "score": 0, "campaignId": s["id"]}, headers=other.editor)
    assert r.status_code == 200
    assert get(client, tenant, s["id"])["breakdown"]["total"] == 0
    assert_error(client.get(f"{BASE}/{s['id']}/responses", headers=other.viewer), 404)


# ------------------------------------------------------------------------------------------- add


def test_add_response_is_an_nps_record(client: Any, tenant: Tenant) -> None:
    company = client.post("/companies", json={"name": "Acme"}, headers=tenant.editor).json()
    s = make_survey(client, tenant)
    r = client.post(
        f"{BASE}/{s['id']}/responses",
        json={
            "email": "Jane@Acme.io",
            "score": 9,
            "comment": "Lovely",
            "source": "in-app",
            "sourceId": "ticket-1",
            "companyId": company["_id"],
            "custom": {"plan": "pro"},
            "sentAt": "2024-03-01T09:00:00+01:00",
        },
        headers=tenant.editor,
    )
    assert r.status_code == 201, r.text
    resp = r.json()
    assert set(resp) == RESPONSE_FIELDS
    assert resp["surveyId"] == s["id"] and resp["score"] == 9 and resp["category"] == "PROMOTER"
    assert resp["email"] == "Jane@Acme.io" and resp["comment"] == "Lovely" and resp["source"] == "in-app"
    assert resp["sourceId"] == "ticket-1" and resp["companyId"] == company["_id"]
    assert resp["custom"] == {"plan": "pro"} and resp["sentAt"] == "2024-03-01T08:00:00.000Z"
    answered = datetime.fromisoformat(resp["respondedAt"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - answered) < timedelta(hours=1)
    # the same answer, seen through Planhat's /nps
    rec = client.get(f"/nps/{resp['id']}", headers=tenant.viewer).json()
    assert rec["campaignId"] == s["id"] and rec["score"] == 9 and rec["euId"] == resp["enduserId"]
    assert client.get("/nps/srcid-ticket-1", headers=tenant.viewer).json()["_id"] == resp["id"]
    # and in the survey's figures and list
    got = client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json()
    assert got["responseCount"] == 1 and got["npsScore"] == 100.0
    assert [x["id"] for x in get(client, tenant, s["id"])["responses"]] == [resp["id"]]
    enduser = client.get(f"/endusers/{resp['enduserId']}", headers=tenant.viewer).json()
    assert enduser["nps"] == 9 and enduser["email"].lower() == "jane@acme.io"


def test_add_response_minimal_and_respondedat(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    r = client.post(
        f"{BASE}/{s['id']}/responses",
        json={"email": "a@b.io", "score": 0, "respondedAt": "2024-05-05T05:05:05.123Z"},
        headers=tenant.editor,
    )
    assert r.status_code == 201, r.text
    assert r.json()["respondedAt"] == "2024-05-05T05:05:05.123Z"
    assert r.json()["category"] == "DETRACTOR" and r.json()["comment"] is None and r.json()["custom"] is None
    assert client.get(f"{BASE}/{s['id']}", headers=tenant.viewer).json()["npsScore"] == -100.0


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"score": 5}, "email", 400),
        ({"email": "a@b.io"}, "score", 400),
        ({"email": "a@b.io", "score": 11}, "score", 400),
        ({"email": "a@b.io", "score": "9"}, "score", 400),
        ({"email": "a@b.io", "score": 9.5}, "score", 400),
        ({"email": "not-an-email", "score": 9}, "email", 400),
        ({"email": "a@b.io", "score": 9, "surveyId": "x"}, "surveyId", 400),
        ({"email": "a@b.io", "score": 9, "companyId": "acme"}, "companyId", 400),
        ({"email": "a@b.io", "score": 9, "companyId": "0123456789abcdef01234567"}, "companyId", 400),
        ({"email": "a@b.io", "score": 9, "comment": "nul\x00"}, "comment", 400),
        ({"email": "a@b.io", "score": 9, "respondedAt": "soon"}, "respondedAt", 400),
    ],
)
def test_add_response_rejects_bad_input(
    client: Any, tenant: Tenant, body: dict[str, Any], field: str, status: int
) -> None:
    s = make_survey(client, tenant)
    assert_error(client.post(f"{BASE}/{s['id']}/responses", json=body, headers=tenant.editor), status, field)
    assert get(client, tenant, s["id"])["breakdown"]["total"] == 0


def test_add_response_duplicate_source_id_conflicts(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    body = {"email": "a@b.io", "score": 9, "sourceId": "dup"}
    assert client.post(f"{BASE}/{s['id']}/responses", json=body, headers=tenant.editor).status_code == 201
    assert_error(
        client.post(f"{BASE}/{s['id']}/responses", json=body, headers=tenant.editor), 409, "sourceId"
    )
    assert get(client, tenant, s["id"])["breakdown"]["total"] == 1


def test_closed_survey_refuses_answers_but_imports_pass(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    answer = {"email": "a@b.io", "score": 8}
    client.post(f"{BASE}/{s['id']}/toggle", headers=tenant.editor)
    body = assert_error(
        client.post(f"{BASE}/{s['id']}/responses", json=answer, headers=tenant.editor), 409, "isActive"
    )
    assert body["message"] == "survey is not active"
    imported = client.post("/nps", json={**answer, "campaignId": s["id"]}, headers=tenant.editor)
    assert imported.status_code == 200
    assert get(client, tenant, s["id"])["breakdown"]["total"] == 1
    client.post(f"{BASE}/{s['id']}/toggle", headers=tenant.editor)
    assert client.post(f"{BASE}/{s['id']}/responses", json=answer, headers=tenant.editor).status_code == 201
    assert get(client, tenant, s["id"])["breakdown"]["total"] == 2

    now = datetime.now(UTC)
    future = make_survey(client, tenant, startsAt=(now + timedelta(days=1)).isoformat())
    r = client.post(f"{BASE}/{future['id']}/responses", json=answer, headers=tenant.editor)
    assert assert_error(r, 409, "startsAt")["message"] == "survey is not active"
    past = make_survey(
        client,
        tenant,
        startsAt=(now - timedelta(days=10)).isoformat(),
        endsAt=(now - timedelta(days=1)).isoformat(),
    )
    r = client.post(f"{BASE}/{past['id']}/responses", json=answer, headers=tenant.editor)
    assert assert_error(r, 409, "endsAt")["message"] == "survey is not active"
    open_now = make_survey(
        client,
        tenant,
        startsAt=(now - timedelta(days=1)).isoformat(),
        endsAt=(now + timedelta(days=1)).isoformat(),
    )
    assert (
        client.post(f"{BASE}/{open_now['id']}/responses", json=answer, headers=tenant.editor).status_code
        == 201
    )


# ------------------------------------------------------------------------------------------- export


def test_export_csv_uses_the_list_filters(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    records = seed(client, tenant, s["id"])
    other_survey = make_survey(client, tenant, name="other")
    client.post(
        "/nps", json={"email": "z@x.io", "score": 10, "campaignId": other_survey["id"]}, headers=tenant.editor
    )
    r = client.get(f"{BASE}/{s['id']}/responses/export", params={"format": "csv"}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    assert re.fullmatch(
        rf"attachment; filename=nps-survey-{s['id']}-responses-\d{{4}}-\d\d-\d\d\.csv", disposition
    ), disposition
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert {"email", "score"} <= set(rows[0])
    assert len(rows) == 6
    assert [int(row["score"]) for row in rows] == list(reversed(SCORES))  # same default order as the list
    assert {row["email"] for row in rows} == {rec["email"] for rec in records}
    promoters = client.get(
        f"{BASE}/{s['id']}/responses/export",
        params={"format": "csv", "scoreType": "promoter", "sortBy": "score", "sortOrder": "asc"},
        headers=tenant.viewer,
    )
    assert promoters.status_code == 200
    rows = list(csv.DictReader(io.StringIO(promoters.content.decode("utf-8-sig"))))
    assert [int(row["score"]) for row in rows] == [9, 10]


def test_export_json_and_format_errors(client: Any, tenant: Tenant) -> None:
    s = make_survey(client, tenant)
    seed(client, tenant, s["id"])
    r = client.get(
        f"{BASE}/{s['id']}/responses/export", params={"format": "json", "q": "support"}, headers=tenant.viewer
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].endswith(".json")
    assert sorted(item["score"] for item in r.json()) == [0, 10]
    assert_error(client.get(f"{BASE}/{s['id']}/responses/export", headers=tenant.viewer), 400, "format")
    bad = assert_error(
        client.get(f"{BASE}/{s['id']}/responses/export", params={"format": "pdf"}, headers=tenant.viewer),
        400,
        "format",
    )
    assert "csv" in bad["message"] and "ndjson" in bad["message"]
