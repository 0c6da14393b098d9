"""A real SMTP server for the tests (aiosmtpd on a free port), and helpers to read what it received.

``smtp_server(settings)`` starts the server, points ``settings.smtp_url`` at it (the app's settings
object, so the job handlers see it) and restores everything afterwards. Messages are parsed with
the standard library exactly as a mail client would; the tests read links out of them and follow
them through the HTTP client.
"""

from __future__ import annotations

import email
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller
from sqlalchemy import update

from npsd.collect import mailer
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.jobs import run_pending
from npsd.kit.models import Invitation, Job
from npsd.kit.timeutil import utcnow
from servers import free_port

SCORE_LINK = re.compile(r"https?://[^\s\"'<>]+/r/([A-Za-z0-9_-]+)\?score=(\d+)")


def unique_email(prefix: str = "r", domain: str = "example.com") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@{domain}"


@dataclass
class Received:
    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]


@dataclass
class Sink:
    """The aiosmtpd handler: keeps every accepted message; refuses recipients on demand.

    ``refuse`` maps a substring of the recipient address to the SMTP reply sent instead of 250,
    e.g. ``{"bounce": "550 5.1.1 no such user"}``.
    """

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        for needle, reply in self.refuse.items():
            if needle in address:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if envelope.smtp_utf8:  # RFC 6531: headers are raw UTF-8, as a SMTPUTF8 client would read them
            message = email.message_from_string(envelope.content.decode("utf-8"), policy=policy.default)
        else:
            message = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append(Received(message, envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 accepted"

    def to(self, address: str) -> list[EmailMessage]:
        """Messages whose envelope went to ``address`` (other tests' leftover jobs may send too)."""
        with self.lock:
            return [r.message for r in self.received if address in r.rcpt_tos]


@contextmanager
def smtp_server(
    settings: Settings, scheme: str = "smtp", user: str | None = None, **controller_kwargs: Any
) -> Iterator[Sink]:
    """Run an SMTP server and point ``settings.smtp_url`` at it for the duration."""
    port = free_port()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **controller_kwargs)
    controller.start()
    old = settings.smtp_url
    credentials = f"{user}@" if user else ""
    settings.smtp_url = f"{scheme}://{credentials}127.0.0.1:{port}"
    try:
        yield sink
    finally:
        settings.smtp_url = old
        mailer.close_cached()
        controller.stop()


# ------------------------------------------------------------------------------------------- reading


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    assert body is not None and body.get_content_subtype() == subtype, f"no text/{subtype} part"
    content = body.get_content()
    assert isinstance(content, str)
    return content


def score_links(text: str) -> dict[int, str]:
    """score -> URL of the 11 score links in a text or HTML body (HTML entities are not an issue:
    the links carry no ``&``)."""
    found: dict[int, str] = {}
    for match in SCORE_LINK.finditer(text):
        found[int(match.group(2))] = match.group(0)
    return found


def local(url: str) -> str:
    """The path and query of an absolute link, to follow it through the test client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def token_of(url: str) -> str:
    match = SCORE_LINK.search(url) or re.search(r"/[ru]/([A-Za-z0-9_-]+)", url)
    assert match, url
    return match.group(1)


def unsubscribe_url(message: EmailMessage) -> str:
    header = str(message["List-Unsubscribe"])
    match = re.fullmatch(r"<(https?://[^>]+)>", header.strip())
    assert match, header
    return match.group(1)


# ------------------------------------------------------------------------------------------- time


def run_jobs(db: Database) -> int:
    """Run every due job, until none is left (other tests' leftovers included)."""
    total = 0
    while ran := run_pending(db):
        total += ran
    return total


def days_pass(db: Database, invitation_ids: list[str], days: float) -> None:
    """Pretend ``days`` went by for these invitations: move their sent time back and make their
    due reminder jobs run now (a reminder re-checks the sent time itself)."""
    delta = timedelta(days=days)
    with db.transaction() as session:
        for inv_id in invitation_ids:
            inv = session.get(Invitation, inv_id)
            assert inv is not None and inv.sent_at is not None, inv_id
            inv.sent_at = inv.sent_at - delta
            inv.expires_at = inv.expires_at - delta
            session.execute(
                update(Job)
                .where(Job.dedupe_key == f"invitation.remind:{inv_id}", Job.status == "queued")
                .values(run_at=utcnow())
            )


def make_jobs_due(db: Database, invitation_ids: list[str]) -> None:
    """Retries wait (backoff); make the send jobs of these invitations due now."""
    with db.transaction() as session:
        session.execute(
            update(Job)
            .where(
                Job.dedupe_key.in_([f"invitation.send:{i}" for i in invitation_ids]),
                Job.status == "queued",
            )
            .values(run_at=utcnow())
        )


# ------------------------------------------------------------------------------------------- API


def make_survey(client: Any, tenant: Any, **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/nps-surveys", json={"name": "Quarterly NPS", **fields}, headers=tenant.editor)
    assert r.status_code == 201, r.text
    return r.json()


CUSTOM = "How likely are you to recommend Acme's onboarding?"


def custom_survey(client: Any, tenant: Any, **translations: Any) -> dict[str, Any]:
    """A survey with its own question, follow-up and thanks (English), and ``translations``
    ({"de": {...}}), throttling off: the survey the per-language and branding tests send."""
    return make_survey(
        client,
        tenant,
        question=CUSTOM,
        followUpQuestion="What did you miss?",
        thankYouMessage="Thanks, this helps!",
        throttleDays=0,
        translations=translations,
    )


def invite(
    client: Any, tenant: Any, survey_id: str, recipients: list[Any], **body: Any
) -> list[dict[str, Any]]:
    r = client.post(
        f"/v1/nps-surveys/{survey_id}/invitations",
        json={"recipients": recipients, **body},
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(recipients)
    return results


def invite_one(client: Any, tenant: Any, survey_id: str, email_address: str, **recipient: Any) -> str:
    """Queue one invitation and return its id."""
    [result] = invite(client, tenant, survey_id, [{"email": email_address, **recipient}])
    assert result["status"] == "queued", result
    return str(result["invitationId"])


def get_invitation(client: Any, tenant: Any, invitation_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/invitations/{invitation_id}", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def records_of(client: Any, tenant: Any, email_address: str) -> list[dict[str, Any]]:
    r = client.get("/nps", params={"email": email_address}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()
