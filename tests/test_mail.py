"""Survey e-mails through a real SMTP server (aiosmtpd): content, headers and languages, the links
followed through the app, failures and retries, no double send after a restart, STARTTLS, SMTPS
and authentication, reminders over (simulated) days, and the response rate. Both databases."""

from __future__ import annotations

import hashlib
import re
import shutil
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select, update

from conftest import Tenant, TestDatabase, assert_error
from mail_helpers import (
    Sink,
    days_pass,
    get_invitation,
    invite,
    invite_one,
    local,
    make_jobs_due,
    make_survey,
    part,
    records_of,
    run_jobs,
    score_links,
    smtp_server,
    token_of,
    unique_email,
    unsubscribe_url,
)
from npsd.analytics import metrics
from npsd.collect import service
from npsd.kit.models import Invitation, Job
from npsd.kit.timeutil import utcnow

# the default question names the organization (its profile's name), in each language
DEFAULT_QUESTIONS = {
    "en": "How likely are you to recommend {org} to a friend or colleague?",
    "de": "Wie wahrscheinlich ist es, dass Sie {org} einem Freund oder Kollegen weiterempfehlen?",
    "fr": "Quelle est la probabilité que vous recommandiez {org} à un ami ou à un collègue ?",
    "es": "¿Qué probabilidad hay de que recomiende {org} a un amigo o colega?",
}
SUBJECTS = {
    "en": "A quick question for you",
    "de": "Eine kurze Frage an Sie",
    "fr": "Une petite question pour vous",
    "es": "Una pregunta rápida para usted",
}
SCALE_ENDS = {
    "en": ("Not at all likely", "Extremely likely"),
    "de": ("Überhaupt nicht wahrscheinlich", "Äußerst wahrscheinlich"),
    "fr": ("Pas du tout probable", "Très probable"),
    "es": ("Nada probable", "Muy probable"),
}


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value[:-1])


def only_mail(sink: Sink, address: str) -> Any:
    mails = sink.to(address)
    assert len(mails) == 1, [m["Subject"] for m in mails]
    return mails[0]


# -------------------------------------------------------------------------------------- content


def test_invitation_mail(client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink) -> None:
    survey = make_survey(client, tenant)
    address = unique_email()
    inv_id = invite_one(client, tenant, survey["id"], address, name="Ann Example")
    run_jobs(database.db)
    mail = only_mail(smtp, address)

    assert mail["Subject"] == "A quick question for you"
    assert mail["From"] == database.settings.mail_from
    assert mail["To"].addresses[0].addr_spec == address
    assert mail["To"].addresses[0].display_name == "Ann Example"
    assert mail["Message-ID"].startswith(f"<invitation.{inv_id}@")
    assert mail["Content-Language"] == "en"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]

    text, html = part(mail, "plain"), part(mail, "html")
    for body in (text, html):
        assert DEFAULT_QUESTIONS["en"].format(org=tenant.name) in body
        assert "Not at all likely" in body and "Extremely likely" in body
    assert text.startswith(f"{tenant.name}\r\n\r\nHello Ann Example,")  # the organization's name first
    links = score_links(text)
    assert sorted(links) == list(range(11))
    assert score_links(html) == links
    base = database.settings.base_url.rstrip("/")
    token = token_of(links[0])
    assert all(links[n] == f"{base}/r/{token}?score={n}" for n in range(11))
    # RFC 8058 one-click unsubscribe
    assert mail["List-Unsubscribe"] == f"<{base}/u/{token}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"{base}/u/{token}" in text and f'href="{base}/u/{token}"' in html

    # >= 128 random-looking bits; the database keeps only the SHA-256
    assert len(token) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    with database.db.transaction(write=False) as session:
        row = session.get(Invitation, inv_id)
        assert row is not None
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in repr([getattr(row, c.key) for c in Invitation.__table__.columns])

    inv = get_invitation(client, tenant, inv_id)
    assert inv["status"] == "sent"
    sent_at = parse(inv["sentAt"])
    assert abs(sent_at - utcnow()) < timedelta(minutes=1)
    assert parse(inv["expiresAt"]) == sent_at + timedelta(days=30)


@pytest.mark.parametrize("lang", ["en", "de", "fr", "es"])
def test_mail_in_the_recipients_language(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink, lang: str
) -> None:
    survey = make_survey(client, tenant)
    address = unique_email(lang)
    invite_one(client, tenant, survey["id"], address, locale=f"{lang}-XX")
    run_jobs(database.db)
    mail = only_mail(smtp, address)
    assert mail["Subject"] == SUBJECTS[lang]
    assert mail["Content-Language"] == lang
    text, html = part(mail, "plain"), part(mail, "html")
    assert DEFAULT_QUESTIONS[lang].format(org=tenant.name) in text
    assert f'<html lang="{lang}">' in html
    low, high = SCALE_ENDS[lang]
    assert low in text and high in html


def test_language_falls_back_to_the_survey_then_english(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    french = make_survey(client, tenant, language="fr", throttleDays=0)
    no_locale, unknown_locale = unique_email("nl"), unique_email("pt")
    invite(client, tenant, french["id"], [{"email": no_locale}, {"email": unknown_locale, "locale": "pt-BR"}])
    klingon = make_survey(client, tenant, language="tlh", throttleDays=0)
    fallback = unique_email("en")
    invite_one(client, tenant, klingon["id"], fallback)
    run_jobs(database.db)
    assert only_mail(smtp, no_locale)["Subject"] == SUBJECTS["fr"]
    assert only_mail(smtp, unknown_locale)["Subject"] == SUBJECTS["fr"]
    assert only_mail(smtp, fallback)["Subject"] == SUBJECTS["en"]


def test_custom_question_is_kept_and_escaped(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    question = 'Would you recommend <Acme & "Co">?'
    survey = make_survey(client, tenant, question=question)
    address = unique_email()
    invite_one(client, tenant, survey["id"], address, locale="de", name="<b>Eve</b>")
    run_jobs(database.db)
    mail = only_mail(smtp, address)
    # the question exists in English only: the German recipient gets the whole mail in English
    # (tests/test_survey_languages.py covers translations)
    assert mail["Subject"] == SUBJECTS["en"]
    text, html = part(mail, "plain"), part(mail, "html")
    assert question in text
    assert "Would you recommend &lt;Acme &amp; &#34;Co&#34;&gt;?" in html
    assert "<b>Eve</b>" not in html and "&lt;b&gt;Eve&lt;/b&gt;" in html


def test_names_cannot_add_headers_and_unicode_addresses_work(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, throttleDays=0)
    plain, unicode = unique_email("inject"), f"jörg-{unique_email()}".replace("@example.com", "@exämple.com")
    invite(
        client,
        tenant,
        survey["id"],
        [
            {"email": plain, "name": "Eve\r\nBcc: victim@example.com"},
            {"email": unicode, "name": "Jörg Ümlaut"},
        ],
    )
    run_jobs(database.db)
    mail = only_mail(smtp, plain)
    assert mail["Bcc"] is None
    assert mail["To"].addresses[0].display_name == "Eve Bcc: victim@example.com"
    assert [r.rcpt_tos for r in smtp.received if plain in r.rcpt_tos] == [[plain]]
    other = only_mail(smtp, unicode)
    assert other["To"].addresses[0].display_name == "Jörg Ümlaut"
    assert len(score_links(part(other, "plain"))) == 11


def test_links_follow_a_changed_secret_key(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    """All processes of one installation share the key; should it change before a mail goes out,
    the mail's link must still open the invitation."""
    survey = make_survey(client, tenant)
    address = unique_email()
    inv_id = invite_one(client, tenant, survey["id"], address)
    with database.db.transaction() as session:  # as if created under another key
        session.execute(update(Invitation).where(Invitation.id == inv_id).values(token_hash="0" * 64))
    run_jobs(database.db)
    links = score_links(part(only_mail(smtp, address), "plain"))
    assert client.get(local(links[7])).status_code == 200
    assert records_of(client, tenant, address)[0]["score"] == 7


# -------------------------------------------------------------------------------- following links


def test_score_link_records_the_answer(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    acme = client.post("/companies", json={"name": "Acme"}, headers=tenant.editor).json()["_id"]
    survey = make_survey(client, tenant)
    address = unique_email()
    inv_id = invite_one(client, tenant, survey["id"], address, companyId=acme, properties={"plan": "pro"})
    run_jobs(database.db)
    links = score_links(part(only_mail(smtp, address), "plain"))
    sent_at = get_invitation(client, tenant, inv_id)["sentAt"]

    page = client.get(local(links[9]))
    assert page.status_code == 200, page.text
    [record] = records_of(client, tenant, address)
    assert record["score"] == 9
    assert record["campaignId"] == survey["id"]
    assert record["source"] == "email"
    assert record["cId"] == acme
    assert record["custom"] == {"plan": "pro"}
    assert record["dateSent"] == sent_at
    assert record["dateReminderSent"] is None
    assert abs(parse(record["dateAnswered"]) - utcnow()) < timedelta(minutes=1)
    inv = get_invitation(client, tenant, inv_id)
    assert inv["status"] == "answered"
    assert inv["responseId"] == record["_id"]
    assert inv["answeredAt"] == record["dateAnswered"]

    # another click changes the same record
    assert client.get(local(links[4])).status_code == 200
    [again] = records_of(client, tenant, address)
    assert again["_id"] == record["_id"] and again["score"] == 4 and again["__v"] == 1
    responses = client.get(f"/v1/nps-surveys/{survey['id']}/responses", headers=tenant.viewer).json()
    assert [(r["email"], r["score"]) for r in responses["responses"]] == [(address, 4)]
    assert client.get(f"/v1/nps-surveys/{survey['id']}", headers=tenant.viewer).json()["responseCount"] == 1
    assert_error(client.delete(f"/v1/invitations/{inv_id}", headers=tenant.editor), 409, "status")


# ------------------------------------------------------------------------------------ no SMTP, failures


def test_without_smtp_invitations_stay_queued(
    client: Any, tenant: Tenant, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database.settings, "smtp_url", None)
    survey = make_survey(client, tenant)
    address = unique_email()
    inv_id = invite_one(client, tenant, survey["id"], address)
    run_jobs(database.db)
    assert get_invitation(client, tenant, inv_id)["status"] == "queued"
    with database.db.transaction(write=False) as session:
        job = session.scalar(select(Job).where(Job.dedupe_key == f"invitation.send:{inv_id}"))
        assert job is not None
        assert job.status == "queued" and job.attempts == 0
        assert "NPSD_SMTP_URL" in (job.last_error or "")
        assert job.run_at > utcnow()
    # once a server is configured, the waiting invitation goes out
    with smtp_server(database.settings) as sink:
        make_jobs_due(database.db, [inv_id])
        run_jobs(database.db)
        assert len(sink.to(address)) == 1
    assert get_invitation(client, tenant, inv_id)["status"] == "sent"


def webhook(client: Any, tenant: Tenant, events: list[str]) -> str:
    r = client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": events}, headers=tenant.admin
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def deliveries(client: Any, tenant: Tenant, hook_id: str, event_type: str) -> list[dict[str, Any]]:
    r = client.get(
        f"/v1/webhooks/{hook_id}/deliveries", params={"eventType": event_type}, headers=tenant.admin
    )
    assert r.status_code == 200, r.text
    return [d["payload"] for d in r.json()]


def test_refused_recipient_fails_at_once(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    hook = webhook(client, tenant, ["invitation.failed"])
    smtp.refuse["bounce"] = "550 5.1.1 no such user here"
    survey = make_survey(client, tenant)
    bad, good = unique_email("bounce"), unique_email("fine")
    ids = [r["invitationId"] for r in invite(client, tenant, survey["id"], [{"email": bad}, {"email": good}])]
    run_jobs(database.db)
    failed = get_invitation(client, tenant, ids[0])
    assert failed["status"] == "failed"
    assert "550" in failed["failedReason"] and "no such user here" in failed["failedReason"]
    assert failed["sentAt"] is None
    assert get_invitation(client, tenant, ids[1])["status"] == "sent"
    assert len(smtp.to(good)) == 1
    [event] = deliveries(client, tenant, hook, "invitation.failed")
    assert event["type"] == "invitation.failed"
    assert event["data"]["id"] == ids[0] and event["data"]["status"] == "failed"
    assert event["data"]["failedReason"] == failed["failedReason"]
    failed_only = client.get(
        f"/v1/nps-surveys/{survey['id']}/invitations", params={"status": "failed"}, headers=tenant.viewer
    ).json()
    assert [i["id"] for i in failed_only] == [ids[0]]


def test_temporary_failure_is_retried_with_backoff_then_failed(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    smtp.refuse["busy"] = "451 4.3.0 try again later"
    survey = make_survey(client, tenant)
    address = unique_email("busy")
    inv_id = invite_one(client, tenant, survey["id"], address)

    def job() -> Job:
        with database.db.transaction(write=False) as session:
            found = session.scalar(select(Job).where(Job.dedupe_key == f"invitation.send:{inv_id}"))
            assert found is not None
            return found

    waits = []
    for attempt in range(1, service.MAIL_ATTEMPTS):
        run_jobs(database.db)
        current = job()
        assert current.status == "queued" and current.attempts == attempt
        assert "451" in (current.last_error or "")
        waits.append(current.run_at - current.updated_at)
        assert get_invitation(client, tenant, inv_id)["status"] == "queued"
        make_jobs_due(database.db, [inv_id])
    # waits grow: 1 min, 5 min, 30 min, 2 h, 6 h
    assert [round(w.total_seconds()) for w in waits] == list(service.MAIL_BACKOFF)
    run_jobs(database.db)
    assert job().status == "failed"
    inv = get_invitation(client, tenant, inv_id)
    assert inv["status"] == "failed"
    assert inv["failedReason"].startswith(f"gave up after {service.MAIL_ATTEMPTS} attempts")
    assert "451" in inv["failedReason"]
    assert smtp.to(address) == []


def test_temporary_failure_then_success(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    smtp.refuse["flaky"] = "421 4.7.0 slow down"
    survey = make_survey(client, tenant)
    address = unique_email("flaky")
    inv_id = invite_one(client, tenant, survey["id"], address)
    run_jobs(database.db)
    assert get_invitation(client, tenant, inv_id)["status"] == "queued"
    del smtp.refuse["flaky"]
    make_jobs_due(database.db, [inv_id])
    run_jobs(database.db)
    assert len(smtp.to(address)) == 1
    assert get_invitation(client, tenant, inv_id)["status"] == "sent"


# ------------------------------------------------------------------------------------------- restarts


def test_a_restart_sends_no_mail_twice(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, reminderAfterDays=None)
    first, second = unique_email("first"), unique_email("second")
    first_id = invite_one(client, tenant, survey["id"], first)
    run_jobs(database.db)
    assert len(smtp.to(first)) == 1
    second_id = invite_one(client, tenant, survey["id"], second)
    dead_lease = {
        "status": "running",
        "attempts": 1,
        "locked_by": "dead-worker",
        "locked_until": utcnow() - timedelta(seconds=1),
    }
    with database.db.transaction() as session:
        # the worker died after the server accepted the first mail (and it was marked sent), before
        # the job was marked done...
        session.execute(
            update(Job).where(Job.dedupe_key == f"invitation.send:{first_id}").values(**dead_lease)
        )
        # ...and it had claimed the second job, then died before sending anything
        session.execute(
            update(Job).where(Job.dedupe_key == f"invitation.send:{second_id}").values(**dead_lease)
        )
    run_jobs(database.db)  # a new worker takes both jobs over once their leases ran out
    assert len(smtp.to(first)) == 1
    assert len(smtp.to(second)) == 1
    with database.db.transaction(write=False) as session:
        statuses = session.scalars(
            select(Job.status).where(
                Job.dedupe_key.in_([f"invitation.send:{i}" for i in (first_id, second_id)])
            )
        ).all()
    assert statuses == ["done", "done"]
    assert [get_invitation(client, tenant, i)["status"] for i in (first_id, second_id)] == ["sent", "sent"]


# ---------------------------------------------------------------------------------------- TLS, auth


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Credentials:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.seen.append((login, password, session.ssl is not None))
        # handled=False: aiosmtpd then answers a refusal with 535 itself
        return AuthResult(success=(login, password) == ("mailer", "p@ss:word"), handled=False)


def test_starttls_and_login(
    client: Any, tenant: Tenant, database: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate, as a real CA would be
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    credentials = Credentials()
    survey = make_survey(client, tenant)
    address = unique_email("tls")
    with smtp_server(
        database.settings,
        user="mailer:p%40ss%3Aword",
        tls_context=context,
        require_starttls=True,
        authenticator=credentials,
        auth_require_tls=True,
    ) as sink:
        invite_one(client, tenant, survey["id"], address)
        run_jobs(database.db)
        assert len(sink.to(address)) == 1
    assert credentials.seen == [("mailer", "p@ss:word", True)]


def test_smtps(
    client: Any, tenant: Tenant, database: TestDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    survey = make_survey(client, tenant)
    address = unique_email("smtps")
    with smtp_server(database.settings, scheme="smtps", ssl_context=context) as sink:
        invite_one(client, tenant, survey["id"], address)
        run_jobs(database.db)
        assert len(sink.to(address)) == 1


def test_wrong_password_is_retried_not_failed(client: Any, tenant: Tenant, database: TestDatabase) -> None:
    credentials = Credentials()
    survey = make_survey(client, tenant)
    address = unique_email("auth")
    with smtp_server(
        database.settings, user="mailer:wrong", authenticator=credentials, auth_require_tls=False
    ) as sink:
        inv_id = invite_one(client, tenant, survey["id"], address)
        run_jobs(database.db)
        assert sink.to(address) == []
    assert get_invitation(client, tenant, inv_id)["status"] == "queued"
    with database.db.transaction(write=False) as session:
        job = session.scalar(select(Job).where(Job.dedupe_key == f"invitation.send:{inv_id}"))
        assert job is not None and job.attempts == 1 and "535" in (job.last_error or "")


# ------------------------------------------------------------------------------------------- reminders


def test_one_reminder_after_the_configured_days(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, reminderAfterDays=3)
    address = unique_email("remind")
    inv_id = invite_one(client, tenant, survey["id"], address, locale="de")
    run_jobs(database.db)
    invitation_mail = only_mail(smtp, address)

    days_pass(database.db, [inv_id], 2)
    run_jobs(database.db)
    assert len(smtp.to(address)) == 1  # not due yet: the job re-checks and waits
    assert get_invitation(client, tenant, inv_id)["status"] == "sent"

    days_pass(database.db, [inv_id], 1.01)
    run_jobs(database.db)
    mails = smtp.to(address)
    assert len(mails) == 2
    reminder = mails[1]
    assert reminder["Subject"] == "Erinnerung: Eine kurze Frage an Sie"
    assert reminder["Message-ID"].startswith(f"<invitation.{inv_id}.reminder@")
    assert "Vor einigen Tagen" in part(reminder, "plain")
    # the same links as the first mail
    assert score_links(part(reminder, "plain")) == score_links(part(invitation_mail, "plain"))
    assert reminder["List-Unsubscribe"] == invitation_mail["List-Unsubscribe"]
    inv = get_invitation(client, tenant, inv_id)
    assert inv["status"] == "reminded"
    assert abs(parse(inv["remindedAt"]) - utcnow()) < timedelta(minutes=1)
    listed = client.get(
        f"/v1/nps-surveys/{survey['id']}/invitations", params={"status": "reminded"}, headers=tenant.viewer
    ).json()
    assert [i["id"] for i in listed] == [inv_id]

    days_pass(database.db, [inv_id], 10)
    run_jobs(database.db)
    assert len(smtp.to(address)) == 2  # only one reminder, ever

    # answering afterwards carries the reminder time into the record
    assert client.get(local(score_links(part(reminder, "plain"))[10])).status_code == 200
    [record] = records_of(client, tenant, address)
    assert record["dateReminderSent"] == inv["remindedAt"]
    assert record["dateSent"] == get_invitation(client, tenant, inv_id)["sentAt"]
    assert get_invitation(client, tenant, inv_id)["status"] == "answered"


def test_no_reminder_after_an_answer_or_an_unsubscribe(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, reminderAfterDays=2)
    answered, leaving, waiting = unique_email("answered"), unique_email("leaving"), unique_email("waiting")
    ids = [
        r["invitationId"]
        for r in invite(
            client, tenant, survey["id"], [{"email": answered}, {"email": leaving}, {"email": waiting}]
        )
    ]
    run_jobs(database.db)
    assert client.get(local(score_links(part(only_mail(smtp, answered), "plain"))[7])).status_code == 200
    one_click = client.post(
        local(unsubscribe_url(only_mail(smtp, leaving))), data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200
    days_pass(database.db, ids, 3)
    run_jobs(database.db)
    assert len(smtp.to(answered)) == 1
    assert len(smtp.to(leaving)) == 1
    assert len(smtp.to(waiting)) == 2
    assert [get_invitation(client, tenant, i)["status"] for i in ids] == ["answered", "sent", "reminded"]
    assert records_of(client, tenant, answered)[0]["dateReminderSent"] is None


def test_no_reminder_when_the_survey_has_none(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, reminderAfterDays=None)
    address = unique_email()
    inv_id = invite_one(client, tenant, survey["id"], address)
    run_jobs(database.db)
    with database.db.transaction(write=False) as session:
        assert session.scalar(select(Job).where(Job.dedupe_key == f"invitation.remind:{inv_id}")) is None
    days_pass(database.db, [inv_id], 30)
    run_jobs(database.db)
    assert len(smtp.to(address)) == 1


def test_no_reminder_once_the_survey_is_switched_off(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, reminderAfterDays=1)
    address = unique_email()
    inv_id = invite_one(client, tenant, survey["id"], address)
    run_jobs(database.db)
    assert (
        client.post(f"/v1/nps-surveys/{survey['id']}/toggle", headers=tenant.editor).json()["isActive"]
        is False
    )
    days_pass(database.db, [inv_id], 2)
    run_jobs(database.db)
    assert len(smtp.to(address)) == 1
    assert get_invitation(client, tenant, inv_id)["status"] == "sent"


def test_remind_now_sends_one_reminder_to_those_who_have_not_answered(
    client: Any, tenant: Tenant, other: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    """POST /reminders sends at once what would wait reminderAfterDays (also when the survey has
    no automatic reminder), skips the answered and the unsubscribed, and never sends two."""
    for days in (7, None):
        survey = make_survey(client, tenant, reminderAfterDays=days)
        answered, leaving, waiting = (
            unique_email("answered"),
            unique_email("leaving"),
            unique_email("waiting"),
        )
        ids = [
            r["invitationId"]
            for r in invite(
                client, tenant, survey["id"], [{"email": answered}, {"email": leaving}, {"email": waiting}]
            )
        ]
        path = f"/v1/nps-surveys/{survey['id']}/reminders"
        assert client.post(path, headers=tenant.editor).json() == {"queued": 0}  # nothing sent yet
        run_jobs(database.db)
        assert client.get(local(score_links(part(only_mail(smtp, answered), "plain"))[8])).status_code == 200
        assert (
            client.post(
                local(unsubscribe_url(only_mail(smtp, leaving))), data={"List-Unsubscribe": "One-Click"}
            ).status_code
            == 200
        )

        assert_error(client.post(path, headers=tenant.viewer), 403)
        assert_error(client.post(path, headers=other.editor), 404)
        r = client.post(path, headers=tenant.editor)
        assert r.status_code == 200, r.text
        assert r.json() == {"queued": 1}  # waiting: not the answered, nor the unsubscribed
        run_jobs(database.db)
        assert [len(smtp.to(a)) for a in (answered, leaving, waiting)] == [1, 1, 2]
        assert smtp.to(waiting)[1]["Message-ID"].startswith(f"<invitation.{ids[2]}.reminder@")
        assert [get_invitation(client, tenant, i)["status"] for i in ids] == ["answered", "sent", "reminded"]
        assert records_of(client, tenant, waiting) == []

        # a second call, or the scheduled reminder coming due, sends nothing more
        assert client.post(path, headers=tenant.editor).json() == {"queued": 0}
        days_pass(database.db, ids, 30)
        run_jobs(database.db)
        assert [len(smtp.to(a)) for a in (answered, leaving, waiting)] == [1, 1, 2]


def test_remind_now_on_a_closed_survey_is_409(client: Any, tenant: Tenant, smtp: Sink) -> None:
    survey = make_survey(client, tenant)
    client.post(f"/v1/nps-surveys/{survey['id']}/toggle", headers=tenant.editor)
    r = client.post(f"/v1/nps-surveys/{survey['id']}/reminders", headers=tenant.editor)
    assert_error(r, 409)
    assert r.json()["details"][0]["field"] == "isActive"


def test_switched_off_survey_holds_its_invitations(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant)
    address = unique_email()
    inv_id = invite_one(client, tenant, survey["id"], address)
    client.post(f"/v1/nps-surveys/{survey['id']}/toggle", headers=tenant.editor)
    run_jobs(database.db)
    assert smtp.to(address) == [] and get_invitation(client, tenant, inv_id)["status"] == "queued"
    client.post(f"/v1/nps-surveys/{survey['id']}/toggle", headers=tenant.editor)
    make_jobs_due(database.db, [inv_id])
    run_jobs(database.db)
    assert len(smtp.to(address)) == 1


# ----------------------------------------------------------------------------------------- rate


def test_response_rate(
    client: Any, tenant: Tenant, other: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    first, second = make_survey(client, tenant, throttleDays=0), make_survey(client, tenant, throttleDays=0)
    addresses = [unique_email(f"rate{i}") for i in range(3)]
    first_ids = [
        r["invitationId"] for r in invite(client, tenant, first["id"], [{"email": a} for a in addresses])
    ]
    invite_one(client, tenant, second["id"], addresses[0])
    invite(
        client, tenant, second["id"], [{"email": unique_email()}], sendAt="2200-01-01T00:00:00Z"
    )  # not sent
    with database.db.transaction(write=False) as session:
        assert metrics.response_rate(session, tenant.org_id, None) is None  # nothing sent yet
    run_jobs(database.db)
    [answered_mail] = [m for m in smtp.to(addresses[0]) if m["X-Npsd-Invitation-Id"] == first_ids[0]]
    assert client.get(local(score_links(part(answered_mail, "plain"))[8])).status_code == 200
    with database.db.transaction(write=False) as session:
        assert metrics.response_rate(session, tenant.org_id, None) == pytest.approx(1 / 4)
        assert metrics.response_rate(session, tenant.org_id, [first["id"]]) == pytest.approx(1 / 3)
        assert metrics.response_rate(session, tenant.org_id, [second["id"]]) == 0.0
        assert metrics.response_rate(session, tenant.org_id, [first["id"], second["id"]]) == pytest.approx(
            1 / 4
        )
        assert metrics.response_rate(session, other.org_id, None) is None


def test_after_an_unsubscribe_no_more_mail(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    first, second = make_survey(client, tenant, throttleDays=0), make_survey(client, tenant, throttleDays=0)
    address = unique_email()
    invite_one(client, tenant, first["id"], address)
    run_jobs(database.db)
    page = client.post(local(unsubscribe_url(only_mail(smtp, address))))
    assert page.status_code == 200
    [result] = invite(client, tenant, second["id"], [{"email": address}])
    assert result["status"] == "unsubscribed"
    run_jobs(database.db)
    assert len(smtp.to(address)) == 1
    [entry] = client.get("/v1/unsubscribes", params={"email": address}, headers=tenant.viewer).json()
    assert entry["source"] == "link"
    assert abs(
        datetime.fromisoformat(entry["createdAt"][:-1]).replace(tzinfo=UTC) - datetime.now(UTC)
    ) < timedelta(minutes=1)
