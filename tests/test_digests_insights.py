"""The digest's "What the comments say" section (#13): the period's top themes with their
answers, share and impact, and the negative comments, as ``GET /v1/insights/themes`` reports
them for the digest's survey and days; on both databases, with a real SMTP server.

As in tests/test_insights.py, a second app over the same database runs with the comment
analysis on (the suite's own server has it off) and runs its due jobs in the test's thread.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from conftest import Tenant, TestDatabase, make_tenant
from mail_helpers import Sink, part, smtp_server
from npsd.app import create_app
from npsd.digests.content import TOP_THEMES
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.events import INSIGHTS_ANALYSE_JOB
from npsd.kit.jobs import run_pending
from npsd.kit.models import Job
from npsd.kit.timeutil import utcnow

TITLE = "What the comments say"


@dataclass
class Reader:
    client: TestClient
    db: Database
    settings: Settings

    def run(self) -> int:
        total = 0
        while ran := run_pending(self.db):
            total += ran
        return total


@pytest.fixture(scope="module")
def reader(database: TestDatabase) -> Iterator[Reader]:
    settings = database.settings.model_copy(update={"insights": True})
    db = Database(database.url, pool_size=2, settings=settings)
    try:
        with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
            yield Reader(client, db, settings)
    finally:
        db.dispose()


@pytest.fixture
def org(database: TestDatabase) -> Tenant:
    return make_tenant(database)


@pytest.fixture
def mail(reader: Reader) -> Iterator[Sink]:
    with smtp_server(reader.settings) as sink:
        yield sink


def yesterday() -> date:
    return utcnow().date() - timedelta(days=1)


def at(day: date, hour: int) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


def post(reader: Reader, tenant: Tenant, score: int, comment: str | None, **fields: Any) -> str:
    body: dict[str, Any] = {"email": f"p-{secrets.token_hex(5)}@example.com", "score": score, **fields}
    if comment is not None:
        body["comment"] = comment
    r = reader.client.post("/nps", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return str(r.json()["_id"])


def get(reader: Reader, tenant: Tenant, path: str, **params: Any) -> Any:
    r = reader.client.get(path, params=params, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def survey(reader: Reader, tenant: Tenant, name: str) -> str:
    r = reader.client.post("/v1/nps-surveys", json={"name": name}, headers=tenant.editor)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def digest_mail(reader: Reader, tenant: Tenant, sink: Sink, **fields: Any) -> tuple[str, str]:
    """Send a daily digest now (yesterday's answers) and return its text and HTML parts."""
    to = f"team-{secrets.token_hex(5)}@example.com"
    body = {"frequency": "daily", "hour": 9, "timeZone": "UTC", "emails": [to], **fields}
    r = reader.client.post("/v1/digests", json=body, headers=tenant.admin)
    assert r.status_code == 201, r.text
    sent = reader.client.post(f"/v1/digests/{r.json()['id']}/send", headers=tenant.admin)
    assert sent.status_code == 202, sent.text
    reader.run()
    [message] = sink.to(to)
    return part(message, "plain").replace("\r\n", "\n"), part(message, "html")


BILLING = [
    (2, "You charged our credit card twice for the March invoice"),
    (3, "We were billed twice and the refund still has not arrived"),
    (4, "The invoice never shows our VAT number, accounting rejects it every month"),
]
SUPPORT = [
    (10, "Support answered within minutes and fixed it"),
    (9, "Friendly and competent support team"),
]
SPEED = [(5, "The dashboard takes forever to load every morning")]


def test_the_digest_says_what_the_comments_of_its_period_say(reader: Reader, org: Tenant, mail: Sink) -> None:
    day = yesterday()
    main = survey(reader, org, "Customers")
    for i, (score, text) in enumerate(BILLING + SUPPORT + SPEED):
        post(reader, org, score, text, campaignId=main, dateAnswered=at(day, 8 + i))
    post(reader, org, 8, None, campaignId=main, dateAnswered=at(day, 20))  # no comment
    post(reader, org, 7, "n/a", campaignId=main, dateAnswered=at(day, 21))  # says nothing
    # outside the digest: another survey, another day
    other = survey(reader, org, "Partners")
    post(reader, org, 1, "Your invoices are wrong again", campaignId=other, dateAnswered=at(day, 9))
    post(
        reader,
        org,
        1,
        "Double charged on the invoice",
        campaignId=main,
        dateAnswered=at(day - timedelta(days=3), 9),
    )
    reader.run()

    since = until = day.isoformat()
    report = get(reader, org, "/v1/insights/themes", surveyId=main, since=since, until=until)
    assert report["commentedAnswers"] == len(BILLING + SUPPORT + SPEED)
    top = [t for t in report["themes"] if t["answers"]][:TOP_THEMES]
    keys = [t["key"] for t in top]
    assert keys[:2] == ["billing", "support"], keys
    negative = len(
        get(
            reader,
            org,
            "/v1/insights/answers",
            surveyId=main,
            since=since,
            until=until,
            sentiment="negative",
            limit=100,
        )
    )
    assert negative >= len(BILLING)

    text, html = digest_mail(reader, org, mail, surveyId=main)
    assert f"\n{TITLE}:\n" in text
    section = text[text.index(f"{TITLE}:") :]
    lines = [line[2:] for line in section.splitlines()[1:] if line.startswith("- ")]
    assert len(lines) == len(top) + 1
    for line, theme in zip(lines, top, strict=False):
        answers = theme["answers"]
        assert line.startswith(f"{theme['name']}: {answers} answer{'s' if answers != 1 else ''} "), line
        assert f"({theme['share'] * 100:.0f}% of the commented)" in line, line
        points = theme["impact"]
        if points > 0:
            assert f"pulls the NPS down by {points:.1f} points" in line, line
        elif points < 0:
            assert f"lifts the NPS by {-points:.1f} points" in line, line
        assert f"± {theme['impactMarginOfError']:.1f}" in line, line
    billing = lines[0]
    assert billing.startswith(f"{top[0]['name']}: 3 answers (50% of the commented), pulls the NPS down")
    assert lines[1].startswith(f"{top[1]['name']}: 2 answers") and "lifts the NPS" in lines[1]
    assert lines[-1] == f"Negative comments: {negative} of {report['commentedAnswers']} commented answers"
    # the HTML part has the same section, escaped
    assert f'<h2 style="margin:0 0 8px;font-size:17px;">{TITLE}</h2>' in html
    assert f"<li>Negative comments: {negative} of 6 commented answers</li>" in html
    assert f"<li>{top[0]['name']}: 3 answers" in html.replace("&amp;", "&")

    # the organization-wide digest counts the other survey's comment too
    text, _ = digest_mail(reader, org, mail)
    assert f"{top[0]['name']}: 4 answers" in text
    assert f"of {report['commentedAnswers'] + 1} commented answers" in text


def test_no_section_when_no_comment_of_the_period_was_analysed(
    reader: Reader, org: Tenant, mail: Sink
) -> None:
    day = yesterday()
    quiet = survey(reader, org, "Quiet")
    post(reader, org, 9, None, campaignId=quiet, dateAnswered=at(day, 9))
    post(reader, org, 3, "-", campaignId=quiet, dateAnswered=at(day, 10))
    post(reader, org, 2, "Way too expensive", campaignId=quiet, dateAnswered=at(day - timedelta(days=2), 9))
    reader.run()
    text, html = digest_mail(reader, org, mail, surveyId=quiet)
    assert TITLE not in text and TITLE not in html
    assert "Answers received: 2" in text

    # comments not analysed (yet, or on a server with the analysis off) make no section either
    unread = survey(reader, org, "Unread")
    post(reader, org, 1, "Terrible invoices", campaignId=unread, dateAnswered=at(day, 9))
    with reader.db.transaction() as session:  # the analysis of that write never runs
        session.execute(delete(Job).where(Job.org_id == org.org_id, Job.kind == INSIGHTS_ANALYSE_JOB))
    text, _ = digest_mail(reader, org, mail, surveyId=unread)
    assert TITLE not in text and "Terrible invoices" in text
