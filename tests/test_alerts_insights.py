"""Alert rules on what the comments say (#13): `sentiments` and `themeIds`, judged on the
comment analysis and never on a guess; on both databases, with a real SMTP server and a real
chat receiver.

The suite's own server does not analyse comments (``NPSD_INSIGHTS`` off); these tests run a
second app over the same database with it on, as a second server process would be, and run its
due jobs in the test's thread. To show the evaluation waiting for the analysis, the tests run
one kind of job at a time (``run_kind``) and make a deferred job due by moving its ``run_at``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from alert_helpers import ChatReceiver, chat_receiver
from conftest import Tenant, TestDatabase, assert_error, make_tenant
from dashboard import Person, csrf_of, make_user
from mail_helpers import Sink, part, smtp_server, unique_email
from npsd.alerts.delivery import INSIGHTS_RETRY, INSIGHTS_WAIT
from npsd.app import create_app
from npsd.auth import service as auth_service
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.events import ALERTS_EVALUATE_JOB, INSIGHTS_ANALYSE_JOB
from npsd.kit.jobs import claim, release, run_one, run_pending, worker_name
from npsd.kit.models import Job, Organization, User
from npsd.kit.timeutil import utcnow
from npsd.web.session import SESSION_COOKIE


@dataclass
class Reader:
    """An app with the comment analysis on, over the test database."""

    client: TestClient
    db: Database
    settings: Settings
    app: Any

    def run(self) -> int:
        """Run every due job (the analysis and the alerts among them) until none is left."""
        total = 0
        while ran := run_pending(self.db):
            total += ran
        return total

    def run_kind(self, kind: str, org_id: str) -> int:
        """Run the due jobs of one kind and organization only (the others stay queued)."""
        ran = 0
        worker = worker_name()
        while True:
            jobs = claim(self.db, worker, kinds=[kind])
            others = [job.id for job in jobs if job.org_id != org_id]
            release(self.db, worker, others)  # another test's job: given back untouched
            mine = [job for job in jobs if job.org_id == org_id]
            if not mine:
                return ran
            for job in mine:
                run_one(self.db, job, worker)
                ran += 1

    def jobs(self, org_id: str, kind: str) -> list[Job]:
        with self.db.transaction(write=False) as session:
            rows = list(session.scalars(select(Job).where(Job.org_id == org_id, Job.kind == kind)))
            session.expunge_all()
        return rows

    def make_due(self, org_id: str) -> None:
        """A deferred evaluation comes back after INSIGHTS_RETRY; make it due now instead."""
        with self.db.transaction() as session:
            session.execute(
                update(Job).where(Job.org_id == org_id, Job.status == "queued").values(run_at=utcnow())
            )

    def settle(self, org_id: str) -> None:
        """Run everything, deferred evaluations included, until the organization has no job left."""
        for _ in range(10):
            self.run()
            if not [j for j in self.jobs(org_id, ALERTS_EVALUATE_JOB) if j.status == "queued"]:
                return
            self.make_due(org_id)
        raise AssertionError("the alert evaluation never settled")


@pytest.fixture(scope="module")
def reader(database: TestDatabase) -> Iterator[Reader]:
    settings = database.settings.model_copy(update={"insights": True, "alert_delay_seconds": 0})
    db = Database(database.url, pool_size=2, settings=settings)
    app = create_app(settings, db)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Reader(client, db, settings, app)
    finally:
        db.dispose()


@pytest.fixture
def org(database: TestDatabase) -> Tenant:
    return make_tenant(database)


@pytest.fixture
def mail(reader: Reader) -> Iterator[Sink]:
    with smtp_server(reader.settings) as sink:
        yield sink


@pytest.fixture
def chat() -> Iterator[ChatReceiver]:
    with chat_receiver() as receiver:
        yield receiver


def post(reader: Reader, tenant: Tenant, score: int, comment: str | None = None) -> str:
    body: dict[str, Any] = {"email": unique_email("p"), "score": score}
    if comment is not None:
        body["comment"] = comment
    r = reader.client.post("/nps", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return str(r.json()["_id"])


def create_rule(reader: Reader, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = reader.client.post("/v1/alert-rules", json={"name": "Unhappy", **body}, headers=tenant.admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


def themes(reader: Reader, tenant: Tenant) -> dict[str, dict[str, Any]]:
    """The organization's themes by key (its default themes are made on first use)."""
    r = reader.client.get("/v1/insights/themes", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return {t["key"] or t["name"]: t for t in r.json()["themes"]}


def deliveries(reader: Reader, tenant: Tenant, rule_id: str) -> list[dict[str, Any]]:
    r = reader.client.get(f"/v1/alert-rules/{rule_id}/deliveries", headers=tenant.admin)
    assert r.status_code == 200, r.text
    return list(r.json())


def mails_about(sink: Sink, address: str) -> dict[str, EmailMessage]:
    return {str(m["X-Npsd-Answer-Id"]): m for m in sink.to(address)}


def reading(reader: Reader, tenant: Tenant, answer_id: str) -> dict[str, Any]:
    r = reader.client.get("/v1/insights/answers", params={"limit": 100}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    [found] = [a for a in r.json() if a["answerId"] == answer_id]
    return dict(found)


def browser(reader: Reader, database: TestDatabase, person: Person) -> TestClient:
    """An HTTP client of the reader's app with the person's session cookie, no redirects."""
    with database.db.transaction() as session:
        org, user = session.get(Organization, person.org_id), session.get(User, person.user_id)
        assert org is not None and user is not None
        issued = auth_service.create_token(
            session, database.settings, org, user.role, timedelta(hours=1), user=user, kind="session"
        )
    client = TestClient(reader.app, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, issued.token)
    return client


def field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="error" id="f-{re.escape(name)}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


# ----------------------------------------------------------------------------------- matching


def test_a_sentiment_rule_alerts_on_what_the_comment_says_not_on_the_score(
    reader: Reader, org: Tenant, mail: Sink, chat: ChatReceiver
) -> None:
    team = unique_email("cx")
    rule = create_rule(reader, org, sentiments=["negative"], emails=[team], chatWebhookUrl=chat.url)
    assert rule["sentiments"] == ["negative"] and rule["themeIds"] is None
    complaint = post(reader, org, 9, "Support never answers, terrible")
    praise = post(reader, org, 2, "Great support")
    silent = post(reader, org, 0)  # no comment: never matches a sentiment
    near_empty = post(reader, org, 1, "n/a")
    reader.settle(org.org_id)

    assert reading(reader, org, complaint)["sentiment"] == "negative"
    assert reading(reader, org, praise)["sentiment"] == "positive"
    got = mails_about(mail, team)
    assert set(got) == {complaint}, got.keys()
    assert [d["answerId"] for d in deliveries(reader, org, rule["id"]) if d["channel"] == "email"] == [
        complaint
    ]
    text = part(got[complaint], "plain")
    support = themes(reader, org)["support"]["name"]
    assert "Sentiment: negative" in text and f"Themes: {support}" in text
    assert "Support never answers, terrible" in text
    [message] = chat.messages()
    assert "Sentiment: negative" in message["text"] and f"Themes: {support}" in message["text"]
    assert silent not in got and near_empty not in got


def test_a_theme_rule_alerts_only_for_answers_about_that_theme(
    reader: Reader, org: Tenant, mail: Sink
) -> None:
    known = themes(reader, org)
    billing = known["billing"]
    team = unique_email("finance")
    rule = create_rule(reader, org, themeIds=[billing["id"]], emails=[team])
    assert rule["themeIds"] == [billing["id"]]
    charged = post(reader, org, 3, "You charged our credit card twice for the March invoice")
    slow = post(reader, org, 3, "The dashboard takes forever to load every morning")
    helpful = post(reader, org, 3, "Support never answers our tickets")
    post(reader, org, 0)
    reader.settle(org.org_id)

    assert billing["id"] in reading(reader, org, charged)["themeIds"]
    assert billing["id"] not in reading(reader, org, slow)["themeIds"]
    got = mails_about(mail, team)
    assert set(got) == {charged}, {k: part(m, "plain") for k, m in got.items()}
    assert f"Themes: {billing['name']}" in part(got[charged], "plain")
    assert helpful not in got
    # both conditions at once: the billing complaint is negative, so it would match; a positive
    # sentiment condition with it matches nothing
    both = create_rule(reader, org, themeIds=[billing["id"]], sentiments=["positive"], emails=[team])
    again = post(reader, org, 2, "We were billed twice and the refund still has not arrived")
    reader.settle(org.org_id)
    assert deliveries(reader, org, both["id"]) == []
    assert again in {d["answerId"] for d in deliveries(reader, org, rule["id"])}


# ------------------------------------------------------------------------------------ waiting


def test_the_evaluation_waits_for_the_analysis_then_alerts_once(
    reader: Reader, org: Tenant, mail: Sink
) -> None:
    team = unique_email("wait")
    rule = create_rule(reader, org, sentiments=["negative"], emails=[team])
    plain = create_rule(reader, org, name="Every detractor", scoreAtMost=6, emails=[team])
    answer = post(reader, org, 4, "Support never answers, terrible")

    # the evaluation runs before the analysis: it decides what it can and comes back later
    before = utcnow()
    assert reader.run_kind(ALERTS_EVALUATE_JOB, org.org_id) == 1
    [job] = reader.jobs(org.org_id, ALERTS_EVALUATE_JOB)
    assert job.status == "queued" and job.attempts == 0  # a deferral, not a failure
    assert job.run_at >= before + INSIGHTS_RETRY - timedelta(seconds=1)
    assert "waiting for the analysis of 1 comment" in (job.last_error or "")
    assert deliveries(reader, org, rule["id"]) == []
    assert [d["answerId"] for d in deliveries(reader, org, plain["id"])] == [answer]
    [analysis] = reader.jobs(org.org_id, INSIGHTS_ANALYSE_JOB)
    assert analysis.status == "queued"
    reader.run_kind(ALERTS_EVALUATE_JOB, org.org_id)  # not due yet: nothing runs
    assert reader.jobs(org.org_id, ALERTS_EVALUATE_JOB)[0].status == "queued"

    # the analysis runs; the evaluation, due again, alerts
    assert reader.run_kind(INSIGHTS_ANALYSE_JOB, org.org_id) == 1
    assert reading(reader, org, answer)["sentiment"] == "negative"
    reader.make_due(org.org_id)
    reader.run()
    [job] = reader.jobs(org.org_id, ALERTS_EVALUATE_JOB)
    assert job.status == "done"
    [d] = deliveries(reader, org, rule["id"])
    assert (d["answerId"], d["status"]) == (answer, "sent")

    # a later update of the answer is evaluated again, and alerts no one twice
    r = reader.client.put(
        f"/nps/{answer}", json={"score": 3, "comment": "Support never answers, awful"}, headers=org.editor
    )
    assert r.status_code == 200, r.text
    reader.settle(org.org_id)
    assert len(deliveries(reader, org, rule["id"])) == 1
    assert [str(m["X-Npsd-Alert-Delivery-Id"]) for m in mail.to(team)].count(d["id"]) == 1
    assert len(mail.to(team)) == 2  # one per rule


def test_a_changed_comment_waits_for_its_new_reading(reader: Reader, org: Tenant, mail: Sink) -> None:
    """A reading of the comment as it was is no reading of the comment as it is."""
    team = unique_email("changed")
    rule = create_rule(reader, org, sentiments=["negative"], emails=[team])
    answer = post(reader, org, 8, "Great support, thank you")
    reader.settle(org.org_id)
    assert deliveries(reader, org, rule["id"]) == []
    r = reader.client.put(
        f"/nps/{answer}", json={"comment": "Support never answers, terrible"}, headers=org.editor
    )
    assert r.status_code == 200, r.text
    assert reader.run_kind(ALERTS_EVALUATE_JOB, org.org_id) == 1
    assert deliveries(reader, org, rule["id"]) == []  # the old (positive) reading does not count
    reader.settle(org.org_id)
    assert [d["answerId"] for d in deliveries(reader, org, rule["id"])] == [answer]
    assert set(mails_about(mail, team)) == {answer}


def test_the_wait_is_bounded_and_gives_up_on_those_rules_only(
    reader: Reader, org: Tenant, mail: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    team = unique_email("late")
    rule = create_rule(reader, org, sentiments=["negative"], emails=[team])
    plain = create_rule(reader, org, name="Every detractor", scoreAtMost=6, emails=[team])
    answer = post(reader, org, 2, "Support never answers, terrible")
    assert reader.run_kind(ALERTS_EVALUATE_JOB, org.org_id) == 1
    with reader.db.transaction() as session:  # the analysis never came, and the write is old
        session.execute(
            update(Job)
            .where(Job.org_id == org.org_id, Job.kind == INSIGHTS_ANALYSE_JOB)
            .values(status="failed")
        )
        session.execute(
            update(Job)
            .where(Job.org_id == org.org_id, Job.kind == ALERTS_EVALUATE_JOB)
            .values(created_at=utcnow() - INSIGHTS_WAIT - timedelta(seconds=1), run_at=utcnow())
        )
    with caplog.at_level(logging.WARNING, logger="npsd.alerts"):
        assert reader.run_kind(ALERTS_EVALUATE_JOB, org.org_id) == 1
    [job] = reader.jobs(org.org_id, ALERTS_EVALUATE_JOB)
    assert job.status == "done"
    warned = [r.getMessage() for r in caplog.records if r.name == "npsd.alerts"]
    assert any(rule["id"] in m and "not analysed within" in m for m in warned), warned
    assert not any(plain["id"] in m for m in warned)
    reader.run()
    assert deliveries(reader, org, rule["id"]) == []  # never a guess
    assert [d["answerId"] for d in deliveries(reader, org, plain["id"])] == [answer]
    assert set(mails_about(mail, team)) == {answer}


def test_without_the_analysis_a_rule_on_sentiment_sends_nothing(
    client: TestClient, database: TestDatabase, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """The suite's own server runs with NPSD_INSIGHTS off: the evaluation does not wait for an
    analysis that will never come; it says so in the log."""
    r = client.post(
        "/v1/alert-rules",
        json={"name": "Negative", "sentiments": ["negative"], "emails": [unique_email("off")]},
        headers=tenant.admin,
    )
    assert r.status_code == 201, r.text
    rule = r.json()
    r = client.post(
        "/nps", json={"email": unique_email("p"), "score": 1, "comment": "Terrible"}, headers=tenant.editor
    )
    assert r.status_code == 200, r.text
    with caplog.at_level(logging.WARNING, logger="npsd.alerts"):
        while run_pending(database.db):
            pass
    assert any("NPSD_INSIGHTS" in rec.getMessage() for rec in caplog.records if rec.name == "npsd.alerts")
    assert client.get(f"/v1/alert-rules/{rule['id']}/deliveries", headers=tenant.admin).json() == []
    with database.db.transaction(write=False) as session:
        states = set(
            session.scalars(
                select(Job.status).where(Job.org_id == tenant.org_id, Job.kind == ALERTS_EVALUATE_JOB)
            )
        )
    assert states == {"done"}
    client.delete(f"/v1/alert-rules/{rule['id']}", headers=tenant.admin)


# ---------------------------------------------------------------------------------------- API


def test_rules_on_sentiment_and_themes_are_validated(
    reader: Reader, org: Tenant, database: TestDatabase
) -> None:
    other = make_tenant(database)
    mine, theirs = themes(reader, org), themes(reader, other)
    base = {"name": "Insightful", "emails": [unique_email("a")]}

    def create(**fields: Any) -> Any:
        return reader.client.post("/v1/alert-rules", json={**base, **fields}, headers=org.admin)

    assert_error(create(sentiments=["angry"]), 400, "sentiments")
    assert_error(create(sentiments=[]), 400, "sentiments")
    assert_error(create(sentiments="negative"), 400, "sentiments")
    assert_error(create(themeIds=["billing"]), 400, "themeIds")
    assert_error(create(themeIds=[]), 400, "themeIds")
    body = assert_error(create(themeIds=[theirs["billing"]["id"]]), 404, "themeIds")
    assert theirs["billing"]["id"] in body["details"][0]["issue"]
    unknown = secrets.token_hex(12)
    assert_error(create(themeIds=[mine["price"]["id"], unknown]), 404, "themeIds")

    made = create(sentiments=["negative", "neutral", "negative"], themeIds=[mine["price"]["id"]])
    assert made.status_code == 201, made.text
    rule = made.json()
    assert rule["sentiments"] == ["negative", "neutral"] and rule["themeIds"] == [mine["price"]["id"]]
    path = f"/v1/alert-rules/{rule['id']}"
    assert reader.client.get(path, headers=org.admin).json()["sentiments"] == ["negative", "neutral"]

    h = org.admin
    assert_error(reader.client.patch(path, json={"sentiments": ["bad"]}, headers=h), 400, "sentiments")
    r = reader.client.patch(path, json={"themeIds": [theirs["price"]["id"]]}, headers=h)
    assert_error(r, 404, "themeIds")
    r = reader.client.patch(path, json={"themeIds": [mine["support"]["id"]]}, headers=h)
    assert r.status_code == 200 and r.json()["themeIds"] == [mine["support"]["id"]]
    r = reader.client.patch(path, json={"sentiments": None, "themeIds": None}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["sentiments"], r.json()["themeIds"]) == (None, None)
    # another organization cannot name this one's themes, nor see the rule
    r = reader.client.get(path, headers=other.admin)
    assert r.status_code == 404


def test_the_rule_form_offers_sentiments_and_themes(
    reader: Reader, org: Tenant, database: TestDatabase
) -> None:
    known = themes(reader, org)
    admin = browser(reader, database, make_user(database.db, org.org_id, "admin"))
    page = admin.get("/app/settings/alerts")
    assert page.status_code == 200
    assert 'name="sentiments" type="checkbox" value="negative"' in page.text
    assert f'<option value="{known["billing"]["id"]}">{known["billing"]["name"]}</option>' in page.text

    def form(**fields: Any) -> dict[str, Any]:
        base = {"name": "Negative billing", "scoreAtMost": "", "emails": "a@example.com", "isActive": "true"}
        return {**base, **fields, "csrf_token": csrf_of(admin.get("/app/settings/alerts").text)}

    r = admin.post("/app/settings/alerts", data=form(sentiments=["negative", "grumpy"]))
    assert r.status_code == 400 and field_error(r.text, "sentiments"), r.text[-1500:]
    r = admin.post("/app/settings/alerts", data=form(themeIds=["0" * 24]))
    assert r.status_code == 404 and field_error(r.text, "themeIds"), r.text[-1500:]
    assert 'value="negative" checked' not in r.text

    r = admin.post(
        "/app/settings/alerts",
        data=form(
            sentiments=["negative", "neutral"], themeIds=[known["billing"]["id"], known["price"]["id"]]
        ),
    )
    assert r.status_code == 303, r.text
    rule_id = r.headers["location"].split("/")[-1].split("?")[0]
    api = reader.client.get(f"/v1/alert-rules/{rule_id}", headers=org.admin).json()
    assert api["sentiments"] == ["negative", "neutral"]
    assert api["themeIds"] == [known["billing"]["id"], known["price"]["id"]]
    shown = admin.get(r.headers["location"]).text
    assert "comment reads negative or neutral" in shown
    assert f"comment is about {known['billing']['name']} or {known['price']['name']}" in shown
    assert 'value="negative" checked' in shown and "selected>" in shown

    # unticking everything removes the conditions
    r = admin.post(f"/app/settings/alerts/{rule_id}", data={**form(), "csrf_token": csrf_of(shown)})
    assert r.status_code == 303, r.text
    api = reader.client.get(f"/v1/alert-rules/{rule_id}", headers=org.admin).json()
    assert (api["sentiments"], api["themeIds"]) == (None, None)
