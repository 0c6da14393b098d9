"""``/v1/nps-surveys/stats``, ``/nps-metrics`` and ``/metrics/nps``: exact figures from known data,
trends, groups, filters, bad input, tenant isolation, and roll-ups that stay exact under random writes."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from conftest import Tenant, TestDatabase, assert_error
from npsd.kit.ids import new_id
from npsd.kit.models import Invitation, NpsRecord, NpsRollup
from npsd.kit.timeutil import utcnow

METRICS = "/v1/nps-surveys/nps-metrics"
ALIAS = "/v1/nps-surveys/metrics/nps"
STATS = "/v1/nps-surveys/stats"


def put(client: TestClient, tenant: Tenant, items: list[dict[str, Any]]) -> list[str]:
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return [k["_id"] for k in r.json()["insertsKeys"]]


def answers(scores: list[int], day: str, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "email": f"{day}-{i}-{extra.get('source', '')}@example.com",
            "score": s,
            "dateAnswered": f"{day}T{i % 24:02d}:15:00Z",
            **extra,
        }
        for i, s in enumerate(scores)
    ]


def survey(client: TestClient, tenant: Tenant, name: str, **fields: Any) -> str:
    r = client.post("/v1/nps-surveys", json={"name": name, **fields}, headers=tenant.editor)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def company(client: TestClient, tenant: Tenant, name: str) -> str:
    r = client.post("/companies", json={"name": name}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()["_id"]


def metrics(client: TestClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    r = client.get(METRICS, params=params, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


JAN = [10, 10, 9, 8, 7, 6, 0]
FEB = [10, 9, 9, 9, 8, 3]


def test_known_data_gives_exact_metrics(client: TestClient, tenant: Tenant) -> None:
    put(client, tenant, answers(JAN, "2025-01-15") + answers(FEB, "2025-02-03"))
    m = metrics(client, tenant)
    overall = {k: v for k, v in m.items() if k not in ("trend", "groups")}
    assert overall == {
        "npsScore": 30.8,
        "totalResponses": 13,
        "promoters": 7,
        "passives": 3,
        "detractors": 3,
        "promoterPercentage": 53.8,
        "passivePercentage": 23.1,
        "detractorPercentage": 23.1,
        "averageScore": 7.54,
        "distribution": [1, 0, 0, 1, 0, 0, 1, 1, 2, 4, 3],
        # adjusted Wald (DESIGN.md §5), by hand: ñ = 13 + 3, p̃ = 7.75/16, d̃ = 3.75/16, centre 25,
        # SE = 100·sqrt((11.5/16 - 0.25²)/16) = 20.252, margin 39.69, interval 25 ± 39.69
        "marginOfError": 39.7,
        "confidenceInterval": [-14.7, 64.7],
        "lowSample": True,
        "responseRate": None,
    }
    assert m["trend"] == [
        {
            "period": "2025-01",
            "start": "2025-01-01",
            "end": "2025-01-31",
            "npsScore": 14.3,
            "responses": 7,
            "promoters": 3,
            "passives": 2,
            "detractors": 2,
            "marginOfError": 49.6,  # ñ = 10, p̃ = 0.375, d̃ = 0.275: 196·sqrt((0.65 - 0.01)/10)
            "confidenceInterval": [-39.6, 59.6],  # around the adjusted estimate 10, not 14.3
            "change": None,
            "significant": None,
        },
        {
            "period": "2025-02",
            "start": "2025-02-01",
            "end": "2025-02-28",
            "npsScore": 50.0,
            "responses": 6,
            "promoters": 4,
            "passives": 1,
            "detractors": 1,
            "marginOfError": 51.1,  # ñ = 9, p̃ = 4.75/9, d̃ = 1.75/9: 196·sqrt((6.5/9 - 1/9)/9)
            "confidenceInterval": [-17.7, 84.4],  # around the adjusted estimate 33.3, not 50
            "change": 35.7,
            "significant": False,
        },
    ]
    assert m["groups"] == []
    alias = client.get(ALIAS, headers=tenant.viewer)
    assert alias.status_code == 200 and alias.json() == m


def test_a_period_compared_with_another(client: TestClient, tenant: Tenant) -> None:
    strong = [10] * 30 + [8] * 10 + [3] * 10  # NPS +40
    weak = [10] * 10 + [8] * 10 + [3] * 30  # NPS -40
    put(
        client,
        tenant,
        answers(strong, "2025-01-20") + answers(weak, "2025-02-10") + answers([10], "2025-02-11"),
    )
    plain = metrics(client, tenant, since="2025-02-01", until="2025-02-28")
    assert "comparison" not in plain  # opt-in
    m = metrics(
        client,
        tenant,
        since="2025-02-01",
        until="2025-02-28",
        compareSince="2025-01-04",
        compareUntil="2025-01-31",
    )
    assert {k: v for k, v in m.items() if k != "comparison"} == plain
    c = m["comparison"]
    assert (c["since"], c["until"]) == ("2025-01-04", "2025-01-31")
    assert (c["totalResponses"], c["promoters"], c["passives"], c["detractors"]) == (50, 30, 10, 10)
    assert (c["npsScore"], c["marginOfError"], c["distribution"][10]) == (40.0, 21.5, 30)
    # February: 11 promoters, 10 passives, 30 detractors: NPS round(-1900/51, 1) = -37.3
    assert m["npsScore"] == -37.3 and c["change"] == -77.3
    # adjusted centres 100·20/53 = 37.7 and 100·(-19/54) = -35.2, SEs 10.99 and 11.3: far beyond chance
    assert c["significant"] is True
    # the same period on both sides: no change, not significant
    same = metrics(
        client,
        tenant,
        since="2025-01-01",
        until="2025-01-31",
        compareSince="2025-01-01",
        compareUntil="2025-01-31",
    )["comparison"]
    assert (same["change"], same["significant"], same["totalResponses"]) == (0.0, False, 50)
    # an open end: every answer from compareSince on
    open_ended = metrics(client, tenant, compareSince="2025-01-01")["comparison"]
    assert (open_ended["until"], open_ended["totalResponses"]) == (None, 101)
    # an empty period to compare with: its figures are null, never 0
    empty = metrics(client, tenant, compareSince="2024-01-01", compareUntil="2024-01-31")["comparison"]
    assert empty["npsScore"] is None and empty["change"] is None and empty["significant"] is None
    assert_error(
        client.get(
            METRICS,
            params={"compareSince": "2025-02-01", "compareUntil": "2025-01-01"},
            headers=tenant.viewer,
        ),
        400,
        "compareSince",
    )
    assert_error(
        client.get(METRICS, params={"compareUntil": "soon"}, headers=tenant.viewer), 400, "compareUntil"
    )


def test_no_answers_is_null_never_zero(client: TestClient, tenant: Tenant) -> None:
    m = metrics(client, tenant, groupBy="survey")
    assert m["npsScore"] is None and m["averageScore"] is None and m["marginOfError"] is None
    assert m["confidenceInterval"] is None and m["promoterPercentage"] is None
    assert m["totalResponses"] == 0 and m["distribution"] == [0] * 11 and m["lowSample"] is True
    assert m["trend"] == [] and m["groups"] == []
    put(client, tenant, answers([10], "2025-03-01"))
    assert metrics(client, tenant, since="2025-04-01")["npsScore"] is None


def test_trend_periods_gaps_and_significance(client: TestClient, tenant: Tenant) -> None:
    strong = [10] * 30 + [8] * 10 + [3] * 10  # NPS +40
    weak = [10] * 10 + [8] * 10 + [3] * 30  # NPS -40
    put(
        client,
        tenant,
        answers(strong, "2025-01-06") + answers(weak, "2025-03-31") + answers([9, 9], "2025-04-01"),
    )
    trend = metrics(client, tenant)["trend"]
    assert [(t["period"], t["responses"], t["npsScore"]) for t in trend] == [
        ("2025-01", 50, 40.0),
        ("2025-02", 0, None),
        ("2025-03", 50, -40.0),
        ("2025-04", 2, 100.0),
    ]
    assert (
        trend[1]["marginOfError"] is None and trend[1]["change"] is None and trend[1]["significant"] is None
    )
    assert trend[2]["change"] is None and trend[2]["significant"] is None  # the previous period is empty
    # adjusted centres 100·(-20/53) = -37.7 and 100·2/5 = 40 (Δ = 77.7), SEs 10.99 and 32.86:
    # 77.7 > 1.96·sqrt(10.99² + 32.86²) = 67.9
    assert trend[3]["change"] == 140.0 and trend[3]["significant"] is True
    # ñ = 53, p̃ = 30.75/53, d̃ = 10.75/53: 196·sqrt((41.5/53 - (20/53)²)/53) = 21.55
    assert trend[0]["marginOfError"] == 21.5

    weeks = metrics(client, tenant, interval="week", since="2025-03-01")["trend"]
    # 2025-03-31 is a Monday: ISO week 14, with 2025-04-01
    assert [(t["period"], t["start"], t["end"], t["responses"]) for t in weeks] == [
        ("2025-W14", "2025-03-31", "2025-04-06", 52)
    ]
    jan = metrics(client, tenant, interval="week", until="2025-01-31")["trend"]
    assert [(t["period"], t["start"]) for t in jan] == [("2025-W02", "2025-01-06")]

    days = metrics(client, tenant, interval="day", since="2025-03-31T23:00:00+02:00")["trend"]
    # since is taken as its UTC day: 2025-03-31T21:00Z, so all of 2025-03-31 counts
    assert [(t["period"], t["responses"], t["change"], t["significant"]) for t in days] == [
        ("2025-03-31", 50, None, None),
        ("2025-04-01", 2, 140.0, True),
    ]

    between = metrics(client, tenant, interval="month", since="2025-01-01", until="2025-03-30")
    assert between["totalResponses"] == 50 and [t["period"] for t in between["trend"]] == ["2025-01"]


def test_small_samples_get_honest_intervals(client: TestClient, tenant: Tenant) -> None:
    """Two promoters are not "100 ± 0", and one promoter then one detractor is no significant change."""
    put(client, tenant, answers([10, 9], "2025-06-10"))
    m = metrics(client, tenant)
    # by hand: ñ = 5, p̃ = 0.55, d̃ = 0.15, SE = 100·sqrt((0.7 - 0.4²)/5) = 32.86, margin 64.4,
    # interval centred on 40 (not on the NPS, 100), clipped at 100
    assert m["npsScore"] == 100.0 and m["marginOfError"] == 64.4
    assert m["confidenceInterval"] == [-24.4, 100.0]
    assert m["confidenceInterval"][0] < 100 and m["lowSample"] is True

    put(client, tenant, answers([10], "2025-07-01") + answers([0], "2025-08-01"))
    trend = metrics(client, tenant, since="2025-07-01")["trend"]
    # each period: ñ = 4, SE 37.5 (margin 73.5); Δ between adjusted centres 25 and -25 is 50,
    # under 1.96·sqrt(2·37.5²) = 103.9
    assert [
        (t["period"], t["npsScore"], t["marginOfError"], t["change"], t["significant"]) for t in trend
    ] == [
        ("2025-07", 100.0, 73.5, None, None),
        ("2025-08", -100.0, 73.5, -200.0, False),
    ]


def test_week_labels_across_the_new_year(client: TestClient, tenant: Tenant) -> None:
    put(client, tenant, answers([10], "2024-12-30") + answers([0], "2025-01-05") + answers([5], "2026-01-01"))
    weeks = metrics(client, tenant, interval="week", until="2025-01-31")["trend"]
    assert [(t["period"], t["start"], t["responses"]) for t in weeks] == [("2025-W01", "2024-12-30", 2)]
    months = metrics(client, tenant)["trend"]
    assert len(months) == 14 and months[0]["period"] == "2024-12" and months[-1]["period"] == "2026-01"
    assert sum(t["responses"] for t in months) == 3


def test_groups_and_filters(client: TestClient, tenant: Tenant) -> None:
    s1 = survey(client, tenant, "Quarterly")
    s2 = survey(client, tenant, "Onboarding")
    acme = company(client, tenant, "Acme")
    put(
        client,
        tenant,
        answers([10, 9, 0], "2025-05-01", campaignId=s1, cId=acme, source="email")
        + answers([7, 8], "2025-05-02", campaignId=s2, source="web")
        + answers([1], "2025-05-03", campaignId="planhat-campaign")
        + answers([10], "2025-05-04"),
    )
    by_survey = metrics(client, tenant, groupBy="survey")["groups"]
    assert by_survey == [
        {
            "key": s1,
            "name": "Quarterly",
            "npsScore": 33.3,
            "responses": 3,
            "promoters": 2,
            "passives": 0,
            "detractors": 1,
            "marginOfError": 68.0,  # ñ = 6, p̃ = 2.75/6, d̃ = 1.75/6: 196·sqrt((4.5/6 - (1/6)²)/6)
        },
        {
            "key": s2,
            "name": "Onboarding",
            "npsScore": 0.0,
            "responses": 2,
            "promoters": 0,
            "passives": 2,
            "detractors": 0,
            "marginOfError": 48.0,  # ñ = 5, p̃ = d̃ = 0.15: 196·sqrt(0.3/5)
        },
        {
            "key": None,
            "name": None,
            "npsScore": 100.0,
            "responses": 1,
            "promoters": 1,
            "passives": 0,
            "detractors": 0,
            "marginOfError": 73.5,  # ñ = 4, p̃ = 0.4375, d̃ = 0.1875: 196·sqrt((0.625 - 0.0625)/4)
        },
        {
            "key": "planhat-campaign",
            "name": None,
            "npsScore": -100.0,
            "responses": 1,
            "promoters": 0,
            "passives": 0,
            "detractors": 1,
            "marginOfError": 73.5,  # the mirror image of one promoter
        },
    ]
    by_company = metrics(client, tenant, groupBy="company")["groups"]
    assert [(g["key"], g["name"], g["responses"]) for g in by_company] == [(None, None, 4), (acme, "Acme", 3)]
    by_source = metrics(client, tenant, groupBy="source")["groups"]
    assert [(g["key"], g["name"], g["responses"]) for g in by_source] == [
        ("email", "email", 3),
        (None, None, 2),
        ("web", "web", 2),
    ]

    assert metrics(client, tenant, surveyId=s1)["totalResponses"] == 3
    assert metrics(client, tenant, surveyId=f"{s1},{s2}")["distribution"] == [1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert metrics(client, tenant, companyId=acme)["npsScore"] == 33.3
    assert metrics(client, tenant, source="web")["totalResponses"] == 2
    assert metrics(client, tenant, source="web", surveyId=s1)["totalResponses"] == 0
    narrowed = metrics(client, tenant, surveyId=s1, groupBy="source")["groups"]
    assert [(g["key"], g["responses"]) for g in narrowed] == [("email", 3)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2025-13-01", "until"),
        ("since=2025-02-01&until=2025-01-31", "since"),
        ("interval=year", "interval"),
        ("groupBy=planet", "groupBy"),
        ("surveyId=abc", "surveyId"),
        ("surveyId=0123456789abcdef01234567,zz", "surveyId"),
        ("companyId=%00", "companyId"),
        ("source=a%00b", "source"),
        ("source=" + "x" * 201, "source"),
        ("since=1e400", "since"),
        ("until=99999999999999999999", "until"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    client: TestClient, tenant: Tenant, query: str, field: str
) -> None:
    assert_error(client.get(f"{METRICS}?{query}", headers=tenant.viewer), 400, field)
    assert_error(client.get(f"{ALIAS}?{query}", headers=tenant.viewer), 400, field)


def test_auth_is_required(client: TestClient) -> None:
    for path in (METRICS, ALIAS, STATS):
        assert_error(client.get(path), 401)


def test_stats(client: TestClient, tenant: Tenant, database: TestDatabase) -> None:
    empty = client.get(STATS, headers=tenant.viewer)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {
        "total": 0,
        "active": 0,
        "inactive": 0,
        "totalResponses": 0,
        "responsesLast30Days": 0,
        "averageScore": None,
        "npsScore": None,
        "responseRate": None,
    }
    s1 = survey(client, tenant, "One")
    s2 = survey(client, tenant, "Two", isActive=False)
    survey(client, tenant, "Three")
    today = utcnow().date()
    recent = (today - timedelta(days=29)).isoformat()
    old = (today - timedelta(days=30)).isoformat()
    put(
        client,
        tenant,
        answers([10, 10, 6], recent, campaignId=s1)
        + answers([8], old, campaignId=s2)
        + answers([0, 0, 0], recent)
        + answers([0], recent, campaignId="not-a-survey"),
    )
    r = client.post(
        f"/v1/nps-surveys/{s1}/responses",
        json={"email": "live@example.com", "score": 9},
        headers=tenant.editor,
    )
    assert r.status_code == 201, r.text
    stats = client.get(STATS, headers=tenant.viewer).json()
    # only answers to the organization's surveys count: 10, 10, 6, 9 (recent) and 8 (31 days ago)
    assert stats == {
        "total": 3,
        "active": 2,
        "inactive": 1,
        "totalResponses": 5,
        "responsesLast30Days": 4,
        "averageScore": 8.6,
        "npsScore": 40.0,
        "responseRate": None,
    }
    listed = client.get("/v1/nps-surveys", headers=tenant.viewer).json()
    assert sum(s["responseCount"] for s in listed) == stats["totalResponses"]

    # the response rate: answered / sent invitations (no HTTP API creates invitations yet)
    now = utcnow()
    with database.db.transaction() as session:
        for i in range(4):
            session.add(
                Invitation(
                    id=new_id(),
                    org_id=tenant.org_id,
                    survey_id=s1,
                    email=f"i{i}@example.com",
                    email_key=f"i{i}@example.com",
                    token_hash=new_id() + new_id() + f"{i:016x}",
                    status="sent",
                    send_at=now,
                    sent_at=now if i < 4 else None,
                    answered_at=now if i == 0 else None,
                    expires_at=now + timedelta(days=30),
                    created_at=now,
                    updated_at=now,
                )
            )
        session.add(
            Invitation(
                id=new_id(),
                org_id=tenant.org_id,
                survey_id=s1,
                email="q@example.com",
                email_key="q@example.com",
                token_hash=new_id() + new_id() + "f" * 16,
                status="queued",
                send_at=now,
                expires_at=now + timedelta(days=30),
                created_at=now,
                updated_at=now,
            )
        )
    assert client.get(STATS, headers=tenant.viewer).json()["responseRate"] == 25.0
    assert client.get(METRICS, params={"surveyId": s1}, headers=tenant.viewer).json()["responseRate"] == 25.0
    assert (
        client.get(METRICS, params={"surveyId": new_id()}, headers=tenant.viewer).json()["responseRate"]
        is None
    )


def test_response_rate_counts_the_invitations_sent_in_the_period(
    client: TestClient, tenant: Tenant, database: TestDatabase
) -> None:
    """since/until pick the invitations sent in those days: 1 of 2 answered in March, 3 of 3 in
    May (one answered in June still counts for May, when it was sent); all time 4 of 5."""
    s1 = survey(client, tenant, "Rates")
    sent = [
        (datetime(2026, 3, 2, 10), True),
        (datetime(2026, 3, 31, 23, 59), False),
        (datetime(2026, 5, 1, 0, 0), True),
        (datetime(2026, 5, 20), True),
        (datetime(2026, 5, 31, 23, 0), True),
    ]
    with database.db.transaction() as session:
        for i, (at, answered) in enumerate(sent):
            session.add(
                Invitation(
                    id=new_id(),
                    org_id=tenant.org_id,
                    survey_id=s1,
                    email=f"p{i}@example.com",
                    email_key=f"p{i}@example.com",
                    token_hash=new_id() + new_id() + f"{i:016x}",
                    status="answered" if answered else "sent",
                    send_at=at,
                    sent_at=at,
                    answered_at=at + timedelta(days=10) if answered else None,
                    expires_at=at + timedelta(days=30),
                    created_at=at,
                    updated_at=at,
                )
            )

    def rate(**params: str) -> Any:
        r = client.get(METRICS, params={"surveyId": s1, **params}, headers=tenant.viewer)
        assert r.status_code == 200, r.text
        return r.json()["responseRate"]

    assert rate(since="2026-03-01", until="2026-03-31") == 50.0
    assert rate(since="2026-05-01", until="2026-05-31") == 100.0
    assert rate(since="2026-04-01", until="2026-04-30") is None  # nothing sent in April
    assert rate() == 80.0


def test_static_paths_win_over_survey_ids(client: TestClient, tenant: Tenant) -> None:
    survey(client, tenant, "Any")
    for path in (STATS, METRICS, ALIAS):
        r = client.get(path, headers=tenant.viewer)
        assert r.status_code == 200 and "id" not in r.json(), r.text


def test_tenant_isolation(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    mine = survey(client, tenant, "Mine")
    put(client, tenant, answers([10, 10], "2025-06-01", campaignId=mine))
    theirs = survey(client, other, "Theirs", isActive=False)
    put(
        client,
        other,
        answers([0, 0, 0], "2025-06-01", campaignId=theirs) + answers([0], "2025-06-02", campaignId=mine),
    )
    m = metrics(client, tenant, groupBy="survey")
    assert m["totalResponses"] == 2 and m["npsScore"] == 100.0
    assert [(g["key"], g["name"]) for g in m["groups"]] == [(mine, "Mine")]
    assert metrics(client, tenant, surveyId=theirs)["totalResponses"] == 0
    # the other tenant's answers with my survey's id are theirs, and my survey's name is not shown to them
    o = metrics(client, other, groupBy="survey")
    assert o["totalResponses"] == 4
    assert [(g["key"], g["name"], g["responses"]) for g in o["groups"]] == [
        (theirs, "Theirs", 3),
        (mine, None, 1),
    ]
    s = client.get(STATS, headers=tenant.viewer).json()
    assert (s["total"], s["active"], s["inactive"], s["totalResponses"]) == (1, 1, 0, 2)
    s = client.get(STATS, headers=other.viewer).json()
    assert (s["total"], s["active"], s["inactive"], s["totalResponses"]) == (1, 0, 1, 3)


# ------------------------------------------------------------------------------- roll-up exactness


def month(iso_date: str) -> str:
    return iso_date[:7]


def brute_force(records: list[dict[str, Any]], key: str | None = None) -> dict[Any, list[int]]:
    """Score distributions straight from the records: per month, or per group key."""
    out: dict[Any, list[int]] = {}
    for r in records:
        k = month(r["dateAnswered"]) if key is None else (r[key] or None)
        out.setdefault(k, [0] * 11)[r["score"]] += 1
    return out


def test_rollups_stay_exact_under_random_writes(
    client: TestClient, tenant: Tenant, other: Tenant, database: TestDatabase
) -> None:
    rng = random.Random(20250101)
    surveys = [survey(client, tenant, f"S{i}") for i in range(3)]
    companies = [company(client, tenant, f"C{i}") for i in range(2)]
    campaigns = [*surveys, None, "legacy"]
    sources = ["email", "web", None]
    put(client, other, answers([5, 6, 7], "2025-02-02", campaignId=surveys[0]))  # noise in another tenant
    live: list[str] = []

    def random_fields() -> dict[str, Any]:
        day = date(2025, 1, 1) + timedelta(days=rng.randrange(0, 120))
        return {
            "score": rng.randrange(11),
            "campaignId": rng.choice(campaigns),
            "cId": rng.choice([*companies, None]),
            "source": rng.choice(sources),
            "dateAnswered": f"{day.isoformat()}T{rng.randrange(24):02d}:00:00Z",
        }

    for step in range(70):
        op = rng.random()
        if op < 0.3 or not live:
            r = client.post(
                "/nps", json={"email": f"p{step}@example.com", **random_fields()}, headers=tenant.editor
            )
            assert r.status_code == 200, r.text
            live.append(r.json()["_id"])
        elif op < 0.55:
            rid = rng.choice(live)
            change = {k: v for k, v in random_fields().items() if rng.random() < 0.6}
            r = client.put(f"/nps/{rid}", json=change, headers=tenant.editor)
            assert r.status_code == 200, r.text
        elif op < 0.7:
            rid = live.pop(rng.randrange(len(live)))
            r = client.delete(f"/nps/{rid}", headers=tenant.admin)
            assert r.status_code == 200, r.text
        elif op < 0.8:
            r = client.post(
                f"/v1/nps-surveys/{surveys[1]}/responses",
                json={
                    "email": f"r{step}@example.com",
                    "score": rng.randrange(11),
                    "source": rng.choice(["email", "web"]),
                },
                headers=tenant.editor,
            )
            assert r.status_code == 201, r.text
            live.append(r.json()["id"])
        else:
            items: list[dict[str, Any]] = [
                {"email": f"b{step}-{i}@example.com", **random_fields()} for i in range(rng.randrange(1, 6))
            ]
            for rid in rng.sample(live, min(len(live), 3)):
                items.append({"_id": rid, **{k: v for k, v in random_fields().items() if rng.random() < 0.5}})
            r = client.put("/nps", json=items, headers=tenant.editor)
            assert r.status_code == 200, r.text
            live.extend(k["_id"] for k in r.json()["insertsKeys"])

    r = client.delete(f"/v1/nps-surveys/{surveys[2]}", headers=tenant.admin)
    assert r.status_code == 204, r.text

    records = client.get("/nps", params={"limit": 10000, "npsExpiryDay": 0}, headers=tenant.viewer).json()
    assert records and not any(rec["campaignId"] == surveys[2] for rec in records)

    # the roll-up table equals a GROUP BY over the records
    with database.db.transaction(write=False) as session:
        rolled = Counter(
            {
                (s, c, src, d, sc): n
                for s, c, src, d, sc, n in session.execute(
                    select(
                        NpsRollup.survey_id,
                        NpsRollup.company_id,
                        NpsRollup.source,
                        NpsRollup.day,
                        NpsRollup.score,
                        NpsRollup.count,
                    ).where(NpsRollup.org_id == tenant.org_id)
                )
            }
        )
        counted: Counter[tuple[str, str, str, date, int]] = Counter()
        for s, c, src, answered, sc, n in session.execute(
            select(
                NpsRecord.campaign_id,
                NpsRecord.company_id,
                NpsRecord.source,
                NpsRecord.date_answered,
                NpsRecord.score,
                func.count(),
            )
            .where(NpsRecord.org_id == tenant.org_id)
            .group_by(
                NpsRecord.campaign_id,
                NpsRecord.company_id,
                NpsRecord.source,
                NpsRecord.date_answered,
                NpsRecord.score,
            )
        ):
            assert isinstance(answered, datetime)
            counted[(s or "", c or "", src or "", answered.date(), sc)] += n
    assert rolled == counted
    assert all(n > 0 for n in rolled.values())

    # and the API's metrics equal a recomputation from the records it lists
    m = metrics(client, tenant, groupBy="survey")
    by_month = brute_force(records)
    assert m["totalResponses"] == len(records)
    assert m["distribution"] == [sum(d[i] for d in by_month.values()) for i in range(11)]
    assert {t["period"]: t["responses"] for t in m["trend"] if t["responses"]} == {
        k: sum(v) for k, v in by_month.items()
    }
    for t in m["trend"]:
        dist = by_month.get(t["period"], [0] * 11)
        assert (t["promoters"], t["passives"], t["detractors"]) == (
            sum(dist[9:]),
            sum(dist[7:9]),
            sum(dist[:7]),
        )
    for key, group_by in (("campaignId", "survey"), ("cId", "company"), ("source", "source")):
        expected = {k: sum(v) for k, v in brute_force(records, key).items()}
        groups = metrics(client, tenant, groupBy=group_by)["groups"]
        assert {g["key"]: g["responses"] for g in groups} == expected
