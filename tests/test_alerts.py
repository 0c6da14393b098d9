"""``/v1/alert-rules``: rules, the alerts they send by e-mail (a real SMTP server) and to a chat
webhook (a real HTTP receiver), once per answer, from every write path; on both databases.

The end-to-end test runs the job worker ``npsd serve`` runs and waits for the mail and the chat
message, as a team would (within a minute). The others run due jobs in the test's thread
(``run_jobs``) and make a retry due by moving its ``run_at``, never by waiting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from alert_helpers import ChatReceiver, chat_receiver, running_worker, wait_for
from conftest import Tenant, TestDatabase, assert_error, post_nps
from mail_helpers import Sink, make_survey, part, run_jobs, unique_email
from npsd.app import create_app
from npsd.kit.db import Database
from npsd.kit.models import AlertRule, Job
from npsd.kit.timeutil import utcnow


@pytest.fixture
def chat() -> Iterator[ChatReceiver]:
    with chat_receiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _no_delay(database: TestDatabase) -> Iterator[None]:
    """Alerts about new answers wait NPSD_ALERT_DELAY_SECONDS (30 s) for a comment; not here,
    except where a test says so."""
    before = database.settings.alert_delay_seconds
    database.settings.alert_delay_seconds = 0
    yield
    database.settings.alert_delay_seconds = before


@pytest.fixture(autouse=True)
def _drop_rules(database: TestDatabase, tenant: Tenant, other: Tenant) -> Iterator[None]:
    """Leave no rule behind: later tests' answers then alert nobody, and queued retries find nothing."""
    yield
    with database.db.transaction() as session:
        session.execute(delete(AlertRule).where(AlertRule.org_id.in_([tenant.org_id, other.org_id])))


def create_rule(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/alert-rules", json={"name": "Detractors", **body}, headers=tenant.admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


def deliveries(client: TestClient, tenant: Tenant, rule_id: str, **params: Any) -> list[dict[str, Any]]:
    r = client.get(
        f"/v1/alert-rules/{rule_id}/deliveries", params={"limit": 100, **params}, headers=tenant.admin
    )
    assert r.status_code == 200, r.text
    return list(r.json())


def mails_about(sink: Sink, address: str) -> dict[str, EmailMessage]:
    """The alert mails to ``address``, by the answer they are about."""
    return {str(m["X-Npsd-Answer-Id"]): m for m in sink.to(address)}


def chats_about(receiver: ChatReceiver, answer_ids: list[str]) -> dict[str, str]:
    """The chat messages received, by the answer (of ``answer_ids``) whose link they carry."""
    found: dict[str, str] = {}
    for message in receiver.messages():
        for answer_id in answer_ids:
            if f"/app/answers/{answer_id}|" in message["text"]:
                found[answer_id] = message["text"]
    return found


def link(database: TestDatabase, answer_id: str) -> str:
    return f"{database.settings.base_url.rstrip('/')}/app/answers/{answer_id}"


# ------------------------------------------------------------------------------------- end to end


def test_detractors_from_every_write_path_alert_once_by_mail_and_chat(
    client: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink, chat: ChatReceiver
) -> None:
    """A detractor written by POST /nps, bulk PUT /nps, the respondent page and survey responses
    each reaches the team once by e-mail and once in chat, within a minute, with what the team
    needs; a promoter does not, and an update of an alerted answer does not alert again."""
    team = unique_email("cx-team")
    survey = make_survey(client, tenant, name="Quarterly NPS")
    client.post(
        "/companies", json={"name": "Acme & Sons", "domains": ["acme-alerts.example"]}, headers=tenant.editor
    ).json()
    rule = create_rule(
        client, tenant, name="Unhappy customers", scoreAtMost=6, emails=[team], chatWebhookUrl=chat.url
    )
    assert rule["isActive"] is True and rule["commentContains"] is None

    written: dict[str, dict[str, Any]] = {}  # answer id -> what was written
    latencies = []
    with running_worker(database.db):

        def arrived(answer_id: str, started: float) -> None:
            wait_for(
                lambda: answer_id in mails_about(smtp, team) and answer_id in chats_about(chat, [answer_id])
            )
            latencies.append(time.monotonic() - started)

        # POST /nps
        started = time.monotonic()
        single = post_nps(
            client,
            tenant,
            "jane@acme-alerts.example",
            3,
            comment="Support took <a week>",
            campaignId=survey["id"],
        )
        written[single["_id"]] = {
            "score": 3,
            "email": "jane@acme-alerts.example",
            "comment": "Support took <a week>",
        }
        arrived(single["_id"], started)

        # bulk PUT /nps: one detractor, one promoter
        started = time.monotonic()
        items = [
            {"email": "bob@acme-alerts.example", "score": 2, "comment": "Too expensive", "sourceId": "b1"},
            {"email": "cat@acme-alerts.example", "score": 10, "comment": "Love it", "sourceId": "b2"},
        ]
        r = client.put("/nps", json=items, headers=tenant.editor)
        assert r.status_code == 200, r.text
        bulk_detractor = client.get("/nps/srcid-b1", headers=tenant.viewer).json()
        promoter = client.get("/nps/srcid-b2", headers=tenant.viewer).json()
        assert (bulk_detractor["score"], promoter["score"]) == (2, 10)
        written[bulk_detractor["_id"]] = {
            "score": 2,
            "email": "bob@acme-alerts.example",
            "comment": "Too expensive",
        }
        arrived(bulk_detractor["_id"], started)

        # the respondent page (the survey's public link, identified)
        started = time.monotonic()
        public = client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=tenant.viewer).json()
        path = "/s/" + public["publicId"]
        page = client.post(
            path, data={"score": "1", "comment": "Broken export", "email": "dan@acme-alerts.example"}
        )
        assert page.status_code == 200, page.text
        [from_page] = client.get(
            "/nps", params={"email": "dan@acme-alerts.example"}, headers=tenant.viewer
        ).json()
        written[from_page["_id"]] = {
            "score": 1,
            "email": "dan@acme-alerts.example",
            "comment": "Broken export",
        }
        arrived(from_page["_id"], started)

        # survey responses
        started = time.monotonic()
        r = client.post(
            f"/v1/nps-surveys/{survey['id']}/responses",
            json={"email": "eve@acme-alerts.example", "score": 0, "comment": "Never again"},
            headers=tenant.editor,
        )
        assert r.status_code in (200, 201), r.text
        response_id = r.json().get("id") or r.json().get("_id")
        [from_responses] = client.get(
            "/nps", params={"email": "eve@acme-alerts.example"}, headers=tenant.viewer
        ).json()
        assert response_id in (None, from_responses["_id"])
        written[from_responses["_id"]] = {
            "score": 0,
            "email": "eve@acme-alerts.example",
            "comment": "Never again",
        }
        arrived(from_responses["_id"], started)

        # an update of an alerted answer (still a detractor) evaluates again but alerts nobody again
        r = client.put(
            f"/nps/{single['_id']}", json={"score": 4, "comment": "Still slow"}, headers=tenant.editor
        )
        assert r.status_code == 200, r.text
        wait_for(lambda: all_done(database, tenant.org_id))

    all_ids = [*written, promoter["_id"]]
    mails = mails_about(smtp, team)
    chats = chats_about(chat, all_ids)
    assert sorted(mails) == sorted(written)  # one mail per detractor, none for the promoter
    assert len(smtp.to(team)) == len(written)  # ... and not one more
    assert sorted(chats) == sorted(written)
    assert len(chat.messages()) == len(written)
    assert {h["content-type"] for h in chat.headers()} == {"application/json"}

    for answer_id, what in written.items():
        mail = mails[answer_id]
        subject = str(mail["Subject"])
        text = part(mail, "plain")
        assert f"score {what['score']}" in subject and "Unhappy customers" in subject
        assert "Acme & Sons" in subject  # the company the contact's domain files them under
        assert f"Score: {what['score']} (detractor)" in text
        assert what["comment"] in text
        assert f"Contact: {what['email']}" in text
        assert "Company: Acme & Sons" in text
        assert link(database, answer_id) in text
        assert mail["To"] == team
        message = chats[answer_id]
        assert f"score *{what['score']}* (detractor)" in message
        assert "Unhappy customers" in message
        assert what["comment"].replace("<", "&lt;").replace(">", "&gt;") in message  # Slack's escapes
        assert what["email"] in message and "Acme &amp; Sons" in message
        assert f"<{link(database, answer_id)}|Open the answer in npsd>" in message
    assert "Survey: Quarterly NPS" in part(mails[single["_id"]], "plain")  # answered to the survey
    assert "Survey: Quarterly NPS" in chats[from_page["_id"]]

    log = deliveries(client, tenant, rule["id"])
    assert len(log) == 2 * len(written)
    assert {(d["answerId"], d["channel"]) for d in log} == {
        (a, c) for a in written for c in ("email", "chat")
    }
    for d in log:
        assert (d["status"], d["attempts"], d["lastError"]) == ("sent", 1, None)
        assert d["sentAt"] is not None and d["nextAttemptAt"] is None
        assert d["target"] == (team if d["channel"] == "email" else chat.url)
    assert len(deliveries(client, tenant, rule["id"], channel="chat")) == len(written)
    assert deliveries(client, tenant, rule["id"], status="failed") == []
    print(
        f"\n[{database.kind}] answer written -> mail and chat received: "
        + ", ".join(f"{s:.2f} s" for s in latencies)
    )
    assert max(latencies) < 60


def all_done(database: TestDatabase, org_id: str) -> bool:
    """Whether every alert job of the organization has run."""
    with database.db.transaction(write=False) as session:
        pending = session.scalar(
            select(Job.id).where(
                Job.org_id == org_id, Job.kind.like("alerts.%"), Job.status.in_(["queued", "running"])
            )
        )
    return pending is None


# -------------------------------------------------------------------------------------- conditions


def test_comment_words_match_whole_words_ignoring_case(
    client: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    team = unique_email("words")
    create_rule(client, tenant, commentContains=["refund", "cancel my account", "ça"], emails=[team])
    comments = {
        "I want a REFUND!": True,
        "refunded already, thanks": False,
        "Please cancel\n my   account": True,
        "cancel the account": False,
        "Ça ne marche pas": True,
        "Deçà": False,
        None: False,
    }
    ids = {}
    for n, comment in enumerate(comments):
        body = {"comment": comment} if comment is not None else {}
        ids[post_nps(client, tenant, unique_email(f"w{n}"), 9, **body)["_id"]] = comment
    run_jobs(database.db)
    alerted = {ids[a] for a in mails_about(smtp, team)}
    assert alerted == {c for c, hit in comments.items() if hit}


def test_scope_by_survey_company_and_score(
    client: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    team = unique_email("scope")
    survey = make_survey(client, tenant)
    other_survey = make_survey(client, tenant)
    company = client.post(
        "/companies", json={"name": "Scoped", "domains": ["scoped.example"]}, headers=tenant.editor
    )
    company_id = company.json()["_id"]
    create_rule(client, tenant, surveyId=survey["id"], companyId=company_id, scoreAtMost=4, emails=[team])
    cases = [
        ("a@scoped.example", 4, survey["id"], True),
        ("b@scoped.example", 5, survey["id"], False),  # score above
        ("c@scoped.example", 0, other_survey["id"], False),  # another survey
        ("d@elsewhere.example", 0, survey["id"], False),  # another company
        ("e@scoped.example", 0, None, False),  # no survey
    ]
    ids = {}
    for address, score, survey_id, _ in cases:
        extra = {"campaignId": survey_id} if survey_id else {}
        ids[post_nps(client, tenant, address, score, **extra)["_id"]] = address
    run_jobs(database.db)
    assert {ids[a] for a in mails_about(smtp, team)} == {c[0] for c in cases if c[3]}


def test_an_answer_updated_into_a_match_alerts_once(
    client: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    team = unique_email("upd")
    create_rule(client, tenant, scoreAtMost=6, emails=[team])
    record = post_nps(client, tenant, unique_email("u"), 9, sourceId="u1")
    run_jobs(database.db)
    assert mails_about(smtp, team) == {}
    for score in (5, 2):  # becomes a detractor, then changes again
        r = client.put(f"/nps/{record['_id']}", json={"score": score}, headers=tenant.editor)
        assert r.status_code == 200, r.text
        run_jobs(database.db)
    [mail] = smtp.to(team)
    assert "score 5" in str(mail["Subject"])


# ------------------------------------------------------------------------------- the hook's cost


def alert_jobs(database: TestDatabase, org_id: str) -> list[dict[str, Any]]:
    with database.db.transaction(write=False) as session:
        return [
            dict(p)
            for p in session.scalars(
                select(Job.payload)
                .where(Job.org_id == org_id, Job.kind == "alerts.evaluate")
                .order_by(Job.created_at)
            )
        ]


def test_only_an_organization_with_an_active_rule_queues_evaluations(
    client: TestClient, tenant: Tenant, database: TestDatabase
) -> None:
    post_nps(client, tenant, unique_email("n"), 0)
    assert alert_jobs(database, tenant.org_id) == []  # no rule: nothing queued
    rule = create_rule(client, tenant, emails=["x@example.com"], isActive=False)
    post_nps(client, tenant, unique_email("n"), 0)
    assert alert_jobs(database, tenant.org_id) == []  # an inactive rule: nothing either
    client.patch(f"/v1/alert-rules/{rule['id']}", json={"isActive": True}, headers=tenant.admin)
    items = [{"email": unique_email("bulk"), "score": 1} for _ in range(3)]
    assert client.put("/nps", json=items, headers=tenant.editor).status_code == 200
    [job] = alert_jobs(database, tenant.org_id)  # one job for the whole write
    assert job["event"] == "response.created" and len(job["record_ids"]) == 3


def test_imported_answers_alert(
    client: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    team = unique_email("imp")
    create_rule(client, tenant, scoreAtMost=6, emails=[team])
    csv = b"email,score,comment\nimp1@example.com,2,Imported complaint\nimp2@example.com,9,Fine\n"
    r = client.post("/v1/imports", files={"file": ("old.csv", csv, "text/csv")}, headers=tenant.editor)
    assert r.status_code == 202, r.text
    run_jobs(database.db)
    [mail] = smtp.to(team)
    assert "Imported complaint" in part(mail, "plain") and "imp1@example.com" in part(mail, "plain")


# ------------------------------------------------------------------------------------- delivery


def make_due(database: TestDatabase, org_id: str) -> None:
    with database.db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.org_id == org_id, Job.kind.like("alerts.%"), Job.status == "queued")
            .values(run_at=utcnow())
        )


def test_a_failing_chat_receiver_is_retried_and_the_log_shows_each_attempt(
    client: TestClient, tenant: Tenant, database: TestDatabase, chat: ChatReceiver
) -> None:
    chat.answers = [500, 503]
    rule = create_rule(client, tenant, chatWebhookUrl=chat.url)
    record = post_nps(client, tenant, unique_email("f"), 2, comment="Meh")
    run_jobs(database.db)
    [d] = deliveries(client, tenant, rule["id"])
    assert (d["answerId"], d["channel"], d["status"], d["attempts"]) == (record["_id"], "chat", "pending", 1)
    assert (d["lastStatusCode"], d["lastError"]) == (500, "answered 500")
    assert d["nextAttemptAt"] is not None and d["sentAt"] is None
    run_jobs(database.db)
    assert deliveries(client, tenant, rule["id"])[0]["attempts"] == 1  # the retry waits for its time
    make_due(database, tenant.org_id)
    run_jobs(database.db)
    [d] = deliveries(client, tenant, rule["id"])
    assert (d["status"], d["attempts"], d["lastStatusCode"]) == ("pending", 2, 503)
    make_due(database, tenant.org_id)
    run_jobs(database.db)
    [d] = deliveries(client, tenant, rule["id"])
    assert (d["status"], d["attempts"], d["lastStatusCode"], d["lastError"]) == ("sent", 3, 200, None)
    messages = chat.messages()
    assert len(messages) == 3 and messages[0] == messages[2]  # the same message each time
    assert "Meh" in messages[0]["text"]


def test_an_alert_waits_for_the_comment_typed_after_the_score(
    client: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    """The invitation flow: a click on a score makes the answer, the comment follows on the page a
    few seconds later. The alert waits NPSD_ALERT_DELAY_SECONDS after the answer was made and is
    composed when sent, so it carries the comment; the update alerts nobody twice."""
    database.settings.alert_delay_seconds = 30
    team = unique_email("delay")
    rule = create_rule(client, tenant, scoreAtMost=6, emails=[team])
    record = post_nps(client, tenant, unique_email("d"), 2, sourceId="delayed")
    run_jobs(database.db)
    [d] = deliveries(client, tenant, rule["id"])
    assert d["status"] == "pending" and d["attempts"] == 0 and smtp.to(team) == []
    waited = datetime.fromisoformat(d["nextAttemptAt"].rstrip("Z")) - datetime.fromisoformat(
        record["createdAt"].rstrip("Z")
    )
    assert timedelta(seconds=29) <= waited <= timedelta(seconds=31)
    r = client.put(f"/nps/{record['_id']}", json={"comment": "The invoice was wrong"}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    run_jobs(database.db)
    assert smtp.to(team) == []  # still waiting
    make_due(database, tenant.org_id)  # the 30 s pass
    run_jobs(database.db)
    [mail] = smtp.to(team)
    assert "The invoice was wrong" in part(mail, "plain")
    assert [x["status"] for x in deliveries(client, tenant, rule["id"])] == ["sent"]


def test_a_refused_mail_fails_for_good_and_says_why(
    client: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    smtp.refuse = {"bounce": "550 5.1.1 no such user"}
    rule = create_rule(client, tenant, emails=[unique_email("bounce")])
    post_nps(client, tenant, unique_email("r"), 0)
    run_jobs(database.db)
    [d] = deliveries(client, tenant, rule["id"])
    assert (d["status"], d["attempts"]) == ("failed", 1)
    assert "550" in d["lastError"] and "no such user" in d["lastError"]


def test_an_answer_deleted_or_a_rule_switched_off_before_sending_sends_nothing(
    client: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    from npsd.alerts.delivery import evaluate_answers

    team = unique_email("gone")
    rule = create_rule(client, tenant, emails=[team])
    doomed = post_nps(client, tenant, unique_email("g"), 0)
    with database.db.transaction() as session:  # the evaluation ran; the mail is not sent yet
        assert len(evaluate_answers(session, tenant.org_id, [doomed["_id"]])) == 1
    with database.db.transaction() as session:  # evaluating again stores nothing more
        assert evaluate_answers(session, tenant.org_id, [doomed["_id"]]) == []
    assert client.delete(f"/nps/{doomed['_id']}", headers=tenant.admin).status_code in (200, 204)
    run_jobs(database.db)
    assert smtp.to(team) == []
    [d] = deliveries(client, tenant, rule["id"])
    assert (d["status"], d["attempts"], d["lastError"]) == ("failed", 0, "not sent: the answer was deleted")

    kept = post_nps(client, tenant, unique_email("k"), 0)
    with database.db.transaction() as session:
        evaluate_answers(session, tenant.org_id, [kept["_id"]])
    client.patch(f"/v1/alert-rules/{rule['id']}", json={"isActive": False}, headers=tenant.admin)
    run_jobs(database.db)
    assert smtp.to(team) == []
    [d] = [x for x in deliveries(client, tenant, rule["id"]) if x["answerId"] == kept["_id"]]
    assert (d["status"], d["lastError"]) == ("failed", "not sent: the rule was switched off")


# ------------------------------------------------------------------------------------------- API


def test_rule_crud(client: TestClient, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    rule = create_rule(
        client,
        tenant,
        surveyId=survey["id"],
        scoreAtMost=6,
        commentContains=["Refund", "refund", "  cancel   account "],
        emails=["A@example.com", "a@example.com", "b@example.com"],
    )
    assert rule["commentContains"] == ["Refund", "cancel account"]  # trimmed, duplicates dropped
    assert rule["emails"] == ["A@example.com", "b@example.com"]
    assert rule["chatWebhookUrl"] is None and rule["companyId"] is None
    assert client.get(f"/v1/alert-rules/{rule['id']}", headers=tenant.admin).json() == rule
    second = create_rule(client, tenant, name="All answers", emails=["c@example.com"])

    r = client.get("/v1/alert-rules", params={"limit": 1}, headers=tenant.admin)
    assert r.status_code == 200 and r.headers["X-Total-Count"] == "2"
    assert [x["id"] for x in r.json()] == [second["id"]]  # newest first
    page2 = client.get("/v1/alert-rules", params={"limit": 1, "page": 2}, headers=tenant.admin).json()
    assert [x["id"] for x in page2] == [rule["id"]]

    r = client.patch(
        f"/v1/alert-rules/{rule['id']}",
        json={"scoreAtMost": None, "surveyId": None, "name": "Renamed", "isActive": False},
        headers=tenant.admin,
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert (patched["name"], patched["scoreAtMost"], patched["surveyId"], patched["isActive"]) == (
        "Renamed", None, None, False,
    )  # fmt: skip
    assert patched["commentContains"] == ["Refund", "cancel account"]  # not sent: kept
    assert client.delete(f"/v1/alert-rules/{rule['id']}", headers=tenant.admin).status_code == 204
    assert_error(client.get(f"/v1/alert-rules/{rule['id']}", headers=tenant.admin), 404)
    assert_error(client.get(f"/v1/alert-rules/{rule['id']}/deliveries", headers=tenant.admin), 404)


def test_a_rule_scoped_to_a_survey_or_company_goes_with_it(client: TestClient, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    rule = create_rule(client, tenant, surveyId=survey["id"], emails=["x@example.com"])
    assert client.delete(f"/v1/nps-surveys/{survey['id']}", headers=tenant.admin).status_code in (200, 204)
    assert_error(client.get(f"/v1/alert-rules/{rule['id']}", headers=tenant.admin), 404)
    company = client.post("/companies", json={"name": "Gone Inc"}, headers=tenant.editor).json()
    rule = create_rule(client, tenant, companyId=company["_id"], emails=["x@example.com"])
    assert client.delete(f"/companies/{company['_id']}", headers=tenant.admin).status_code in (200, 204)
    assert_error(client.get(f"/v1/alert-rules/{rule['id']}", headers=tenant.admin), 404)


BAD_RULES = [
    ({"emails": ["a@example.com"]}, "name"),
    ({"name": "   ", "emails": ["a@example.com"]}, "name"),
    ({"name": "x" * 201, "emails": ["a@example.com"]}, "name"),
    ({"name": "No channel"}, "emails"),
    ({"name": "No channel", "emails": []}, "emails"),
    ({"name": "x", "emails": ["not an address"]}, "emails"),
    ({"name": "x", "emails": "a@example.com"}, "emails"),
    ({"name": "x", "emails": [f"a{i}@example.com" for i in range(21)]}, "emails"),
    ({"name": "x", "emails": ["a@example.com"], "scoreAtMost": 11}, "scoreAtMost"),
    ({"name": "x", "emails": ["a@example.com"], "scoreAtMost": -1}, "scoreAtMost"),
    ({"name": "x", "emails": ["a@example.com"], "scoreAtMost": "6"}, "scoreAtMost"),
    ({"name": "x", "emails": ["a@example.com"], "scoreAtMost": 5.5}, "scoreAtMost"),
    ({"name": "x", "emails": ["a@example.com"], "commentContains": []}, "commentContains"),
    ({"name": "x", "emails": ["a@example.com"], "commentContains": ["  "]}, "commentContains"),
    ({"name": "x", "emails": ["a@example.com"], "commentContains": "refund"}, "commentContains"),
    ({"name": "x", "emails": ["a@example.com"], "commentContains": ["a\x00b"]}, "commentContains"),
    ({"name": "x", "chatWebhookUrl": "ftp://example.com/x"}, "chatWebhookUrl"),
    ({"name": "x", "chatWebhookUrl": "not a url"}, "chatWebhookUrl"),
    ({"name": "x", "chatWebhookUrl": 5}, "chatWebhookUrl"),
    ({"name": "x", "emails": ["a@example.com"], "surveyId": "nope"}, "surveyId"),
    ({"name": "x", "emails": ["a@example.com"], "companyId": "0" * 23}, "companyId"),
    ({"name": "x", "emails": ["a@example.com"], "isActive": "yes"}, "isActive"),
    ({"name": "x", "emails": ["a@example.com"], "sentiment": "negative"}, "sentiment"),
]


@pytest.mark.parametrize(("body", "field"), BAD_RULES)
def test_bad_rules_are_400_naming_the_field(
    client: TestClient, tenant: Tenant, body: Any, field: str
) -> None:
    assert_error(client.post("/v1/alert-rules", json=body, headers=tenant.admin), 400, field)


def test_bad_updates_and_bodies(client: TestClient, tenant: Tenant) -> None:
    rule = create_rule(client, tenant, emails=["a@example.com"])
    url = f"/v1/alert-rules/{rule['id']}"
    for body, field in [
        ({"emails": []}, "emails"),  # would leave no channel
        ({"name": None}, "name"),
        ({"emails": None}, "emails"),
        ({"isActive": None}, "isActive"),
        ({"scoreAtMost": 12}, "scoreAtMost"),
        ({"id": "x"}, "id"),
    ]:
        assert_error(client.patch(url, json=body, headers=tenant.admin), 400, field)
    assert_error(client.post("/v1/alert-rules", content=b"{", headers=tenant.admin), 400)
    assert_error(client.post("/v1/alert-rules", json=[1], headers=tenant.admin), 400)
    assert_error(client.get("/v1/alert-rules/not-an-id", headers=tenant.admin), 400, "id")
    assert_error(client.get("/v1/alert-rules/" + "0" * 24, headers=tenant.admin), 404)
    assert_error(
        client.get(f"{url}/deliveries", params={"status": "lost"}, headers=tenant.admin), 400, "status"
    )
    assert_error(
        client.get(f"{url}/deliveries", params={"channel": "sms"}, headers=tenant.admin), 400, "channel"
    )
    # swapping the e-mails for a chat URL is fine: a channel remains
    ok = client.patch(
        url, json={"emails": [], "chatWebhookUrl": "http://127.0.0.1:9/x"}, headers=tenant.admin
    )
    assert ok.status_code == 200 and ok.json()["emails"] == []
    assert client.get(url, headers=tenant.admin).json()["emails"] == []
    assert client.get(url, headers=tenant.admin).json()["updatedAt"] >= rule["updatedAt"]


def test_only_admins_manage_rules(client: TestClient, tenant: Tenant) -> None:
    rule = create_rule(client, tenant, emails=["a@example.com"])
    for role in ("editor", "viewer"):
        h = tenant.headers(role)
        assert_error(client.get("/v1/alert-rules", headers=h), 403)
        assert_error(
            client.post("/v1/alert-rules", json={"name": "x", "emails": ["a@example.com"]}, headers=h), 403
        )
        assert_error(client.get(f"/v1/alert-rules/{rule['id']}/deliveries", headers=h), 403)
        assert_error(client.delete(f"/v1/alert-rules/{rule['id']}", headers=h), 403)
    assert_error(client.get("/v1/alert-rules"), 401)


def test_tenants_never_meet(
    client: TestClient, tenant: Tenant, other: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    """Another tenant's rule is a 404 everywhere, its surveys and companies cannot scope a rule,
    and its answers never trigger this tenant's rules."""
    team = unique_email("iso")
    rule = create_rule(client, tenant, scoreAtMost=6, emails=[team])
    theirs = make_survey(client, other)
    their_company = client.post("/companies", json={"name": "Theirs"}, headers=other.editor).json()
    for method in ("GET", "PATCH", "DELETE"):
        r = client.request(
            method,
            f"/v1/alert-rules/{rule['id']}",
            json={"name": "x"} if method == "PATCH" else None,
            headers=other.admin,
        )
        assert_error(r, 404)
    assert_error(client.get(f"/v1/alert-rules/{rule['id']}/deliveries", headers=other.admin), 404)
    r = client.get("/v1/alert-rules", headers=other.admin)
    assert r.json() == [] and r.headers["X-Total-Count"] == "0"
    assert_error(
        client.post(
            "/v1/alert-rules",
            json={"name": "x", "emails": [team], "surveyId": theirs["id"]},
            headers=tenant.admin,
        ),
        404,
        "surveyId",
    )
    assert_error(
        client.patch(
            f"/v1/alert-rules/{rule['id']}", json={"companyId": their_company["_id"]}, headers=tenant.admin
        ),
        404,
        "companyId",
    )
    post_nps(client, other, unique_email("theirs"), 0)
    run_jobs(database.db)
    assert smtp.to(team) == [] and deliveries(client, tenant, rule["id"]) == []
    assert client.get(f"/v1/alert-rules/{rule['id']}", headers=tenant.admin).json()["name"] == "Detractors"


# ------------------------------------------------------------------------------------------- SSRF


@pytest.fixture
def guarded(database: TestDatabase) -> Iterator[tuple[TestClient, Database]]:
    """An app (and its worker's database) that refuses private targets, over the same database."""
    settings = database.settings.model_copy(update={"webhook_allow_private": False})
    db = Database(database.url, pool_size=2, settings=settings)
    try:
        with TestClient(create_app(settings, db), raise_server_exceptions=False) as guarded_client:
            yield guarded_client, db
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/hook", "http://localhost:8080/x", "http://10.0.0.5/", "http://169.254.169.254/latest"],
)
def test_a_private_chat_url_is_refused_unless_allowed(
    client: TestClient, tenant: Tenant, guarded: tuple[TestClient, Database], url: str
) -> None:
    guarded_client, _ = guarded
    body = {"name": "x", "chatWebhookUrl": url}
    error = assert_error(
        guarded_client.post("/v1/alert-rules", json=body, headers=tenant.admin), 400, "chatWebhookUrl"
    )
    assert "NPSD_WEBHOOK_ALLOW_PRIVATE" in error["message"]
    rule = create_rule(client, tenant, emails=["a@example.com"])
    r = guarded_client.patch(
        f"/v1/alert-rules/{rule['id']}", json={"chatWebhookUrl": url}, headers=tenant.admin
    )
    assert_error(r, 400, "chatWebhookUrl")
    assert client.post("/v1/alert-rules", json=body, headers=tenant.admin).status_code == 201  # allowed here


def test_the_guard_holds_at_delivery_too(
    client: TestClient,
    tenant: Tenant,
    database: TestDatabase,
    guarded: tuple[TestClient, Database],
    chat: ChatReceiver,
) -> None:
    """A rule saved while private targets were allowed is refused when sent by a worker that does
    not allow them (DNS answers, and settings, change between saving and sending)."""
    _, guarded_db = guarded
    rule = create_rule(client, tenant, chatWebhookUrl=chat.url)
    post_nps(client, tenant, unique_email("ssrf"), 0)
    run_jobs(guarded_db)
    assert chat.messages() == []
    [d] = deliveries(client, tenant, rule["id"])
    assert d["status"] == "pending" and d["attempts"] == 1
    assert "loopback" in d["lastError"] and d["lastStatusCode"] is None


def test_openapi_documents_the_contract(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert set(paths["/v1/alert-rules"]) == {"get", "post"}
    assert set(paths["/v1/alert-rules/{id}"]) == {"get", "patch", "delete"}
    assert set(paths["/v1/alert-rules/{id}/deliveries"]) == {"get"}
    create = doc["components"]["schemas"]["AlertRuleCreate"]["properties"]
    assert {
        "name",
        "surveyId",
        "scoreAtMost",
        "companyId",
        "commentContains",
        "emails",
        "chatWebhookUrl",
    } <= set(create)
    assert "once per answer" in paths["/v1/alert-rules"]["post"]["description"]
