"""``npsd demo`` on both databases: one build per database (module-scoped), then the API looks at it.

The build goes through ``--reset`` over an earlier demo organization of the same name (its admin,
a company, a contact with an answer, a survey with an invitation, a webhook with deliveries), so
the one build also shows that a reset deletes everything of the old one.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner, Result

from conftest import Tenant, TestDatabase
from npsd import demo as demo_data
from npsd.analytics.nps import Summary
from npsd.auth import service as auth_service
from npsd.cli import app as cli_app
from npsd.kit.timeutil import utcnow

BASE_URL = "http://npsd.demo.test:8123"
CREDENTIAL = re.compile(r"^  (admin|editor|viewer)\s+(\S+@\S+)\s+(\S+)$", re.M)

# words that only one of the four languages uses often (the comments are at least a sentence)
WORDS = {
    "en": {"the", "and", "is", "we", "it", "to", "our", "for", "too", "every", "with"},
    "de": {"und", "nicht", "die", "der", "das", "wir", "ist", "sehr", "zu", "für", "uns", "mit", "ein"},
    "fr": {"le", "les", "est", "pas", "nous", "très", "des", "une", "pour", "du", "à", "tout", "l'équipe"},
    "es": {"el", "los", "las", "es", "muy", "para", "nos", "que", "una", "del", "todo", "en"},
}


def language_of(text: str) -> str | None:
    """The language whose common words ``text`` uses most; None when it is a tie (e.g. "Top !")."""
    words = re.findall(r"[\w']+", text.lower())
    hits = {lang: sum(w in vocabulary for w in words) for lang, vocabulary in WORDS.items()}
    best = max(hits.values())
    winners = [lang for lang, n in hits.items() if n == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


@dataclass
class Demo:
    org: str
    org_id: str
    stdout: str
    stderr: str
    users: dict[str, tuple[str, str]]  # role -> (email, password)
    headers: dict[str, str]  # an admin session of the demo organization
    today: date
    old_company: str


def cli(database: TestDatabase, *args: str) -> Result:
    env = {
        "NPSD_DATABASE_URL": database.url,
        "NPSD_SECRET_KEY": database.settings.secret_key or "",
        "NPSD_BASE_URL": BASE_URL,
        "NPSD_WORKER": "false",
    }
    return CliRunner().invoke(cli_app, list(args), env=env)


def login(client: Any, email: str, password: str) -> dict[str, Any]:
    r = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def an_earlier_demo(database: TestDatabase, client: Any, org: str) -> tuple[str, str]:
    """What an earlier ``npsd demo`` of ``org`` left: its admin and some of everything. Returns
    the organization's id and its company's id."""
    with database.db.transaction() as session:
        organization = auth_service.ensure_org(session, org)
        auth_service.create_user(
            session, organization, demo_data.user_email(org, "admin"), "admin", "old password"
        )
        token = auth_service.create_token(
            session, database.settings, organization, "admin", timedelta(hours=1)
        ).token
        org_id = organization.id
    headers = {"Authorization": f"Bearer {token}"}
    r = client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["response.created"]},
        headers=headers,
    )
    assert r.status_code in (200, 201), r.text
    r = client.post("/companies", json={"name": "Old Co", "domains": ["old-co.example"]}, headers=headers)
    assert r.status_code == 200, r.text
    company = r.json()["_id"]
    r = client.post("/v1/nps-surveys", json={"name": "Old survey"}, headers=headers)
    assert r.status_code in (200, 201), r.text
    survey = r.json()["id"]
    r = client.post(
        "/nps", json={"email": "ann@old-co.example", "score": 3, "campaignId": survey}, headers=headers
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/v1/nps-surveys/{survey}/invitations",
        json={"recipients": [{"email": "ben@old-co.example"}]},
        headers=headers,
    )
    assert r.status_code in (200, 201), r.text
    return org_id, company


@pytest.fixture(scope="module")
def built(database: TestDatabase, client: Any) -> Demo:
    org = f"Demo {secrets.token_hex(3)}"
    old_org_id, old_company = an_earlier_demo(database, client, org)
    today = utcnow().date()
    result = cli(database, "demo", "--org", org, "--reset")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    users = {role: (email, password) for role, email, password in CREDENTIAL.findall(result.stdout)}
    assert set(users) == {"admin", "editor", "viewer"}, result.stdout
    session = login(client, *users["admin"])
    org_id = jwt.decode(session["accessToken"], options={"verify_signature": False})["org"]
    assert org_id != old_org_id
    return Demo(
        org,
        org_id,
        result.stdout,
        result.stderr,
        users,
        {"Authorization": f"Bearer {session['accessToken']}"},
        today,
        old_company,
    )


def get(client: Any, built: Demo, path: str, **params: Any) -> Any:
    r = client.get(path, params=params, headers=built.headers)
    assert r.status_code == 200, r.text
    return r.json()


def all_records(client: Any, built: Demo) -> list[dict[str, Any]]:
    return list(get(client, built, "/nps", limit=10000, npsExpiryDay=0))


def summary_number(built: Demo, label: str) -> str:
    found = re.search(rf"([\d,.]+)%? {label}", built.stdout) or re.search(
        rf"{label} ([\d,.]+)%", built.stdout
    )
    assert found, (label, built.stdout)
    return found.group(1).replace(",", "")


# ------------------------------------------------------------------------------------------- output


def test_prints_a_one_line_summary_and_where_to_sign_in(built: Demo) -> None:
    lines = built.stdout.splitlines()
    assert lines[0].startswith(f"Rebuilt demo organization {built.org!r}: 4 surveys, 12 companies")
    assert f"Sign in at {BASE_URL}/app" in built.stdout
    slug = built.org.lower().replace(" ", "-")
    assert built.users["admin"][0] == f"admin@{slug}.example"
    assert "built in" in built.stderr


def test_the_printed_credentials_sign_in_with_the_printed_roles(client: Any, built: Demo) -> None:
    passwords = set()
    for role, (email, password) in built.users.items():
        claims = jwt.decode(
            login(client, email, password)["accessToken"], options={"verify_signature": False}
        )
        assert claims["role"] == role and claims["org"] == built.org_id
        passwords.add(password)
        assert len(password) >= 12
    assert len(passwords) == 3
    r = client.post("/v1/auth/login", json={"email": built.users["admin"][0], "password": "old password"})
    assert r.status_code == 401  # the earlier demo's admin went with it


# ------------------------------------------------------------------------------------------ metrics


def test_metrics_show_fourteen_months_that_move(client: Any, built: Demo) -> None:
    body = get(client, built, "/v1/nps-surveys/nps-metrics", interval="month")
    assert 2000 <= body["totalResponses"] <= 5000
    assert str(body["totalResponses"]) == summary_number(built, "answers")
    trend = body["trend"]
    assert len(trend) >= 13
    assert all(point["responses"] > 0 for point in trend)
    assert any(point["significant"] for point in trend), [(p["period"], p["npsScore"]) for p in trend]
    scores = [p["npsScore"] for p in trend[1:-1]]  # whole months
    assert max(scores) - min(scores) >= 20  # a dip and a recovery, not a flat line
    assert 20 <= body["responseRate"] <= 60
    assert f"{body['responseRate']}" == summary_number(built, "response rate")
    assert trend[-1]["end"] >= (built.today - timedelta(days=1)).isoformat() >= trend[-1]["start"]
    assert trend[0]["start"] <= (built.today - timedelta(days=13 * 30)).isoformat()


def test_companies_and_surveys_break_down_with_their_null_groups(client: Any, built: Demo) -> None:
    by_company = get(client, built, "/v1/nps-surveys/nps-metrics", groupBy="company")["groups"]
    named = [g for g in by_company if g["key"] is not None]
    assert len(named) >= 12 and all(g["name"] for g in named)
    assert any(g["key"] is None and g["responses"] > 0 for g in by_company)  # gmail.com: no company
    assert len([g for g in named if g["npsScore"] < 0]) >= 2  # the unhappy accounts
    assert len([g for g in named if g["npsScore"] > 20]) >= 6
    by_survey = get(client, built, "/v1/nps-surveys/nps-metrics", groupBy="survey")["groups"]
    assert any(g["key"] is None and g["responses"] > 100 for g in by_survey)  # in-app and imported answers
    assert len([g for g in by_survey if g["key"] is not None]) == 4
    sources = {
        g["key"] for g in get(client, built, "/v1/nps-surveys/nps-metrics", groupBy="source")["groups"]
    }
    assert {"email", "link", "in-app", "import"} <= sources


def test_surveys_use_their_fields(client: Any, built: Demo) -> None:
    surveys = {s["name"]: s for s in _survey_list(client, built)}
    assert set(surveys) == {
        "Quarterly relationship NPS",
        "Post-onboarding",
        "Support follow-up",
        "Reports beta feedback",
    }
    assert [s["isActive"] for s in surveys.values()].count(False) == 1
    beta = surveys["Reports beta feedback"]
    assert beta["startsAt"] and beta["endsAt"] and beta["responseCount"] > 0
    assert surveys["Support follow-up"]["surveyType"] == "TRANSACTIONAL"
    assert surveys["Support follow-up"]["triggerEvent"] == "ticket.closed"
    assert surveys["Quarterly relationship NPS"]["reminderAfterDays"] == 4
    assert all(s["createdAt"] < (built.today - timedelta(days=300)).isoformat() for s in surveys.values())
    stats = get(client, built, "/v1/nps-surveys/stats")
    assert stats["total"] == 4 and stats["inactive"] == 1 and stats["responsesLast30Days"] > 50
    link = get(client, built, f"/v1/nps-surveys/{surveys['Support follow-up']['id']}/link")
    assert "/s/" in link["url"]  # the ticket page links to it


def _survey_list(client: Any, built: Demo) -> list[dict[str, Any]]:
    return list(get(client, built, "/v1/nps-surveys", limit=100))


# ------------------------------------------------------------------------------------------ records


def test_comments_speak_each_contacts_language(client: Any, built: Demo) -> None:
    contacts = get(client, built, "/endusers", limit=1000)
    language = {c["email"].lower(): c["custom"]["language"] for c in contacts}
    assert 60 <= len(contacts) <= 120
    records = all_records(client, built)
    commented = [r for r in records if r["comment"]]
    assert 0.6 <= len(commented) / len(records) <= 0.7
    found: Counter[str] = Counter()
    wrong = []
    for record in commented:
        expected, detected = language[record["email"].lower()], language_of(record["comment"])
        if detected is None:
            continue
        found[detected] += 1
        if detected != expected:
            wrong.append((expected, record["comment"]))
    assert all(found[lang] >= 50 for lang in ("en", "de", "fr", "es")), found
    assert len(wrong) <= 0.02 * sum(found.values()), wrong[:10]
    assert len({r["comment"] for r in commented}) >= 300  # varied, not a handful of phrases


def test_comments_match_their_scores_mostly(client: Any, built: Demo) -> None:
    """Praise from promoters, complaints from detractors; a few disagree, as real ones do."""
    complaints = {s for bank in demo_data.COMPLAINTS.values() for topic in bank.values() for s in topic}
    praise = {s for bank in demo_data.PRAISE.values() for topic in bank.values() for s in topic}
    tally: Counter[tuple[str, str]] = Counter()
    for record in all_records(client, built):
        text = record["comment"] or ""
        kind = (
            "complaint"
            if any(s in text for s in complaints)
            else "praise"
            if any(s in text for s in praise)
            else ""
        )
        if kind and record["scoreType"] != "passive":
            tally[(record["scoreType"], kind)] += 1
    assert tally[("promoter", "praise")] > 10 * tally[("promoter", "complaint")] > 0
    assert tally[("detractor", "complaint")] > 10 * tally[("detractor", "praise")] > 0


def test_rollups_and_contacts_follow_the_answer_dates(client: Any, built: Demo) -> None:
    records = all_records(client, built)
    per_month: Counter[str] = Counter(r["dateAnswered"][:7] for r in records)
    trend = get(client, built, "/v1/nps-surveys/nps-metrics", interval="month")["trend"]
    assert {p["period"]: p["responses"] for p in trend} == dict(per_month)
    assert max(r["dateAnswered"] for r in records) < built.today.isoformat()
    latest: dict[str, str] = {}
    for r in records:
        latest[r["euId"]] = max(latest.get(r["euId"], ""), r["dateAnswered"])
    for contact in get(client, built, "/endusers", limit=1000):
        assert contact["npsDate"] == latest.get(contact["_id"]), contact
    companies = get(client, built, "/companies", limit=100)
    assert len(companies) == 12 and built.old_company not in {c["_id"] for c in companies}
    assert all(c["npsResponses"] > 0 and c["nps"] is not None for c in companies)
    assert any(c["nps"] < 0 for c in companies)  # an unhappy account, by its contacts' latest answers


def test_invitations_have_realistic_outcomes(client: Any, built: Demo) -> None:
    statuses: Counter[str] = Counter()
    for survey in _survey_list(client, built):
        for status in ("queued", "sent", "reminded", "answered", "failed", "cancelled"):
            r = client.get(
                f"/v1/nps-surveys/{survey['id']}/invitations",
                params={"status": status, "limit": 5},
                headers=built.headers,
            )
            assert r.status_code == 200, r.text
            statuses[status] += int(r.headers["X-Total-Count"])
            for inv in r.json():
                if status == "answered":
                    assert inv["sentAt"] < inv["answeredAt"] and inv["responseId"]
                    record = get(client, built, f"/nps/{inv['responseId']}")
                    assert (
                        record["dateAnswered"] == inv["answeredAt"] and record["campaignId"] == survey["id"]
                    )
                if status == "failed":
                    assert inv["failedReason"] and inv["sentAt"] is None
    assert statuses["queued"] == 0  # nothing waits to be mailed
    assert all(statuses[s] > 0 for s in ("sent", "reminded", "answered", "failed")), statuses
    assert 1000 <= sum(statuses.values()) == int(summary_number(built, "invitations"))
    r = client.get("/v1/unsubscribes", headers=built.headers)
    assert r.status_code == 200 and int(r.headers["X-Total-Count"]) >= 3
    assert all(u["createdAt"] < built.today.isoformat() and u["invitationId"] for u in r.json())


# ------------------------------------------------------------------------------------------ re-runs


def test_running_again_is_refused_and_changes_nothing(
    database: TestDatabase, client: Any, built: Demo
) -> None:
    before = get(client, built, "/v1/nps-surveys/nps-metrics", groupBy="company")
    result = cli(database, "demo", "--org", built.org)
    assert result.exit_code == 1 and result.stdout == ""
    message = " ".join(result.stderr.split())
    assert f"organization {built.org!r} exists" in message and "--reset" in message
    assert get(client, built, "/v1/nps-surveys/nps-metrics", groupBy="company") == before
    login(client, *built.users["admin"])  # the password did not change


def test_reset_deletes_only_a_demo_organization(database: TestDatabase, client: Any, tenant: Tenant) -> None:
    r = client.post("/companies", json={"name": "Keep me"}, headers=tenant.admin)
    assert r.status_code == 200
    result = cli(database, "demo", "--org", tenant.name, "--reset")
    assert result.exit_code == 1 and result.stdout == ""
    assert "not made by `npsd demo`" in " ".join(result.stderr.split())
    assert [c["name"] for c in client.get("/companies", headers=tenant.admin).json()] == ["Keep me"]


# ------------------------------------------------------------------------------------------ determinism


def test_the_same_seed_gives_the_same_history(client: Any, built: Demo) -> None:
    """The plan is a function of seed and day, and the database holds exactly the plan: the API's
    monthly figures are those of the plan drawn again here."""
    again = demo_data.plan(demo_data.DEFAULT_SEED, built.today)
    assert again == demo_data.plan(demo_data.DEFAULT_SEED, built.today)
    assert again != demo_data.plan(demo_data.DEFAULT_SEED + 1, built.today)
    months: defaultdict[str, list[int]] = defaultdict(lambda: [0] * 11)
    for answer in again.answers:
        months[answer.answered.strftime("%Y-%m")][answer.score] += 1
    expected = {m: (Summary(tuple(d)).total, Summary(tuple(d)).nps) for m, d in months.items()}
    trend = get(client, built, "/v1/nps-surveys/nps-metrics", interval="month")["trend"]
    assert {p["period"]: (p["responses"], p["npsScore"]) for p in trend} == expected
    sent = [i for i in again.invitations if i.sent is not None]
    rate = round(100 * sum(i.answered is not None for i in sent) / len(sent), 1)
    assert get(client, built, "/v1/nps-surveys/nps-metrics")["responseRate"] == rate
