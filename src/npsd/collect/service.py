"""Collecting answers: invitations and their e-mails, reminders, answers from the respondent
pages, unsubscribes, and the response rate.

Life of an invitation::

    queued --(mail accepted by the SMTP server)--> sent --(reminderAfterDays, no answer)--> reminded
       |                                             \\______________________________________/
       +--> cancelled (DELETE, or the address unsubscribed)          |
       +--> failed (SMTP refused it, or every retry failed)          +--(score clicked)--> answered

Tokens. A respondent link carries a 192-bit token that opens exactly one invitation; the database
keeps only its SHA-256. The token is an HMAC of the invitation id under the installation's
secret key rather than a stored random value: the reminder, and a send retried after a crash, must
put *the same* link in the mail, and storing the token itself would defeat keeping only its hash.

Sends are idempotent. A send job loads its invitation, sends only while it is ``queued``, and marks
it ``sent`` in a transaction of its own right after the server accepted the mail; a job that runs
again after a crash finds ``sent`` and does nothing. The same holds for reminders
(``reminded_at``).

Every answer goes through ``records.service.create_record`` / ``update_record``, so contact,
company and metric roll-ups stay exact, and one invitation never has more than one record.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import ColumnElement, CursorResult, case, func, insert, select, update
from sqlalchemy.orm import Session

from npsd.collect import mailer
from npsd.collect.brand import Brand, brand_of
from npsd.collect.i18n import survey_texts
from npsd.collect.schemas import MAX_RECIPIENTS, InvitationsCreate, RecipientIn
from npsd.kit import events
from npsd.kit.config import Settings
from npsd.kit.db import Database, lock_org_writes, one_of
from npsd.kit.errors import BadRequest, Conflict, NotFound, summary, validation_details
from npsd.kit.ids import new_ids
from npsd.kit.jobs import JobInfo, RetryLater, enqueue, enqueue_new, handler
from npsd.kit.models import Company, Invitation, Job, Survey, Unsubscribe
from npsd.kit.timeutil import iso, utcnow
from npsd.kit.validation import email_key
from npsd.records import service as records
from npsd.records.filing import file_addresses
from npsd.records.schemas import NpsInput
from npsd.surveys.service import is_open

log = logging.getLogger("npsd.collect")

STATUSES = ("queued", "sent", "failed", "answered", "reminded", "cancelled")
OPEN = ("queued", "sent", "reminded")  # may still be answered
SURVEYED = ("queued", "sent", "reminded", "answered")  # count for throttling
SEND_JOB = "invitation.send"
REMIND_JOB = "invitation.remind"
MAIL_ATTEMPTS = 6
MAIL_BACKOFF = (60, 300, 1800, 7200, 21600)  # seconds: 1 min, 5 min, 30 min, 2 h, 6 h
NO_SMTP_RETRY = timedelta(minutes=1)
PAUSED_RETRY = timedelta(minutes=15)
ANONYMOUS_EMAIL = "anonymous@npsd.invalid"  # the contact of anonymous public-link answers (RFC 2606 domain)
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
PUBLIC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")
MAX_COMMENT = 65_536

# --------------------------------------------------------------------------------------- settings


def settings_for(db: Database) -> Settings:
    """The settings the job handlers work under: those the Database was built with."""
    return db.config


# ------------------------------------------------------------------------------------------ tokens


def invitation_token(settings: Settings, invitation_id: str) -> str:
    """The respondent token of an invitation: 192 bits, URL-safe, reproducible only with the secret key."""
    digest = hmac.new(
        settings.signing_key.encode(), b"npsd/invitation-token/" + invitation_id.encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def address_hash(settings: Settings, email: str) -> str:
    """The one-way form of an address that the unsubscribe list and erasure records keep:
    HMAC-SHA256 of the normalized address (:func:`email_key`) under the signing key, in hex.

    Keyed rather than a plain SHA-256 so that a copy of the database alone cannot confirm a
    guessed address; the same address always gives the same hash, so an unsubscribed (or erased)
    address is still recognised. Migration 0007 holds a deliberate copy of this formula (it must
    not change under an old migration); ``tests/test_privacy.py`` checks the two agree.
    """
    return hmac.new(
        settings.signing_key.encode(), b"npsd/address/" + email_key(email).encode(), hashlib.sha256
    ).hexdigest()


# --------------------------------------------------------------------------------------- shapes


def invitation_out(inv: Invitation) -> dict[str, Any]:
    return {
        "id": inv.id,
        "surveyId": inv.survey_id,
        "email": inv.email,
        "name": inv.name,
        "companyId": inv.company_id,
        "enduserId": inv.enduser_id,
        "locale": inv.locale,
        "properties": inv.properties,
        "status": inv.status,
        "sendAt": iso(inv.send_at),
        "sentAt": iso(inv.sent_at),
        "remindedAt": iso(inv.reminded_at),
        "answeredAt": iso(inv.answered_at),
        "cancelledAt": iso(inv.cancelled_at),
        "failedReason": inv.failed_reason,
        "responseId": inv.record_id,
        "expiresAt": iso(inv.expires_at),
        "createdAt": iso(inv.created_at),
        "updatedAt": iso(inv.updated_at),
    }


def unsubscribe_out(row: Unsubscribe, email: str | None = None) -> dict[str, Any]:
    """An unsubscribe as the API shows it. Only a hash of the address is stored, so ``email`` is
    the address the caller gave (when creating, or looking one address up), normalized as npsd
    matches addresses (so every spelling of one address shows alike), else None."""
    return {
        "email": email,
        "source": row.source,
        "invitationId": row.invitation_id,
        "createdAt": iso(row.created_at),
    }


# ------------------------------------------------------------------------------------- invitations


def _check_survey_open(survey: Survey, at: datetime) -> None:
    if not survey.is_active:
        raise Conflict("survey is not active", [{"field": "isActive", "issue": "the survey is switched off"}])
    if survey.ends_at is not None and at > survey.ends_at:
        raise Conflict(
            "survey is closed",
            [
                {
                    "field": "sendAt",
                    "issue": f"the survey closes at {iso(survey.ends_at)}"
                    ", before the invitations would be sent",
                }
            ],
        )


def _parse_recipient(item: Any) -> tuple[RecipientIn | None, str | None]:
    if isinstance(item, RecipientIn):
        return item, None
    if not isinstance(item, dict):
        return None, "must be a JSON object"
    try:
        return RecipientIn.model_validate(item), None
    except ValidationError as exc:
        return None, summary(validation_details(list(exc.errors())))


def _raw_email(item: Any) -> str | None:
    email = item.get("email") if isinstance(item, dict) else None
    return email if isinstance(email, str) else None


def create_invitations(
    session: Session, settings: Settings, survey: Survey, body: InvitationsCreate
) -> list[dict[str, Any]]:
    """Queue one invitation per acceptable recipient; one result per recipient, in order.

    Set-based: whatever the number of recipients, a fixed handful of queries (per 500 addresses)
    finds companies, contacts, unsubscribes, open invitations and throttling, then two inserts
    write the invitations and their send jobs.
    """
    org_id = survey.org_id
    now = utcnow()
    send_at = body.sendAt or now
    _check_survey_open(survey, max(send_at, now))
    lock_org_writes(session, org_id)  # two requests inviting the same address must not both pass the throttle

    results: list[dict[str, Any]] = [{} for _ in body.recipients]
    accepted: list[tuple[int, RecipientIn, str]] = []
    seen: set[str] = set()
    for index, item in enumerate(body.recipients):
        recipient, reason = _parse_recipient(item)
        if recipient is None:
            results[index] = {"email": _raw_email(item), "status": "invalid", "reason": reason}
            continue
        key = email_key(recipient.email)
        if key in seen:
            results[index] = {"email": recipient.email, "status": "duplicate"}
            continue
        seen.add(key)
        accepted.append((index, recipient, key))

    keys = [key for _, _, key in accepted]
    wanted_companies = {r.companyId for _, r, _ in accepted if r.companyId}
    companies = set(
        session.scalars(
            select(Company.id).where(Company.org_id == org_id, one_of(session, Company.id, wanted_companies))
        )
    )
    hashes = {address_hash(settings, key): key for key in keys}
    unsubscribed = {
        hashes[h]
        for h in session.scalars(
            select(Unsubscribe.email_key).where(
                Unsubscribe.org_id == org_id, one_of(session, Unsubscribe.email_key, hashes)
            )
        )
    }
    open_here = set(
        session.scalars(
            select(Invitation.email_key).where(
                Invitation.org_id == org_id,
                Invitation.survey_id == survey.id,
                Invitation.status.in_(OPEN),
                one_of(session, Invitation.email_key, keys),
            )
        )
    )
    # who each address is, or the company a new contact will join, as on every write path
    filings = file_addresses(session, org_id, {key: r.companyId for _, r, key in accepted})
    window = timedelta(days=survey.throttle_days)
    surveyed: dict[str, tuple[datetime, datetime]] = {}
    if survey.throttle_days > 0:
        at = func.coalesce(Invitation.sent_at, Invitation.send_at)
        surveyed = {
            key: (first, last)
            for key, first, last in session.execute(
                select(Invitation.email_key, func.min(at), func.max(at))
                .where(
                    Invitation.org_id == org_id,
                    Invitation.status.in_(SURVEYED),
                    one_of(session, Invitation.email_key, keys),
                )
                .group_by(Invitation.email_key)
            )
        }

    expires_at = max(send_at, now) + timedelta(days=settings.invitation_ttl_days)
    rows: list[dict[str, Any]] = []
    for (index, r, key), inv_id in zip(accepted, new_ids(len(accepted)), strict=True):
        if r.companyId and r.companyId not in companies:
            results[index] = {
                "email": r.email,
                "status": "invalid",
                "reason": "companyId does not name a company of your organization",
            }
            continue
        if key in unsubscribed:
            results[index] = {"email": r.email, "status": "unsubscribed"}
            continue
        if key in open_here:
            results[index] = {"email": r.email, "status": "duplicate"}
            continue
        if key in surveyed:
            first, last = surveyed[key]
            if first - window < send_at < last + window:
                results[index] = {
                    "email": r.email,
                    "status": "throttled",
                    "nextEligibleAt": iso(last + window),
                }
                continue
        filing = filings[key]
        rows.append(
            {
                "id": inv_id,
                "org_id": org_id,
                "survey_id": survey.id,
                "enduser_id": filing.enduser_id,
                "company_id": r.companyId or filing.company_id,
                "email": r.email,
                "email_key": key,
                "name": r.name,
                "locale": r.locale,
                "properties": r.properties,
                "token_hash": hash_token(invitation_token(settings, inv_id)),
                "status": "queued",
                "send_at": send_at,
                "sent_at": None,
                "reminded_at": None,
                "answered_at": None,
                "cancelled_at": None,
                "failed_reason": None,
                "record_id": None,
                "expires_at": expires_at,
                "created_at": now,
                "updated_at": now,
            }
        )
        results[index] = {"email": r.email, "status": "queued", "invitationId": inv_id}
    if rows:
        session.execute(insert(Invitation), rows)
        enqueue_new(
            session,
            SEND_JOB,
            [({"invitation_id": row["id"]}, f"{SEND_JOB}:{row['id']}") for row in rows],
            org_id=org_id,
            run_at=send_at,
            max_attempts=MAIL_ATTEMPTS,
        )
    return results


@dataclass(frozen=True)
class InvitationQuery:
    statuses: Sequence[str] | None = None
    email: str | None = None
    page: int = 1
    limit: int = 20
    descending: bool = True


def list_invitations(
    session: Session, org_id: str, survey_id: str, q: InvitationQuery
) -> tuple[list[dict[str, Any]], int]:
    """One page of a survey's invitations, newest first, and how many match."""
    conds: list[ColumnElement[bool]] = [Invitation.org_id == org_id, Invitation.survey_id == survey_id]
    if q.statuses:
        conds.append(Invitation.status.in_(list(q.statuses)))
    if q.email:
        conds.append(Invitation.email_key == email_key(q.email))
    total = session.scalar(select(func.count()).select_from(Invitation).where(*conds)) or 0
    order = (
        (Invitation.created_at.desc(), Invitation.id.desc())
        if q.descending
        else (Invitation.created_at.asc(), Invitation.id.asc())
    )
    rows: list[Invitation] = []
    if total > (q.page - 1) * q.limit:
        rows = list(
            session.scalars(
                select(Invitation)
                .where(*conds)
                .order_by(*order)
                .limit(q.limit)
                .offset((q.page - 1) * q.limit)
            )
        )
    return [invitation_out(r) for r in rows], total


def cancel_invitation(session: Session, inv: Invitation) -> dict[str, Any]:
    """Cancel an invitation that has not been sent yet; 409 once it has been (or has failed)."""
    if inv.status == "cancelled":
        return invitation_out(inv)
    now = utcnow()
    # Session.execute is typed as returning a Result; an UPDATE without RETURNING gives a CursorResult
    done = cast(
        CursorResult[Any],
        session.execute(
            update(Invitation)
            .where(Invitation.id == inv.id, Invitation.org_id == inv.org_id, Invitation.status == "queued")
            .values(status="cancelled", cancelled_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    session.refresh(inv)
    if not done:
        raise Conflict(
            f"the invitation is {inv.status}; only queued invitations can be cancelled",
            [{"field": "status", "issue": f"is {inv.status}"}],
        )
    return invitation_out(inv)


# ------------------------------------------------------------------------------------ unsubscribes


def unsubscribe(
    session: Session,
    settings: Settings,
    org_id: str,
    email: str,
    source: str,
    invitation_id: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Opt ``email`` out of the organization's surveys and cancel its queued invitations.

    Returns the unsubscribe (showing the normalized address) and whether it is new (only a
    new one emits ``unsubscribe.created``). The row keeps only :func:`address_hash`.
    """
    key = email_key(email)
    hashed = address_hash(settings, key)
    lock_org_writes(session, org_id)
    row = session.get(Unsubscribe, (org_id, hashed))
    if row is not None:
        return unsubscribe_out(row, key), False
    now = utcnow()
    row = Unsubscribe(
        org_id=org_id,
        email_key=hashed,
        source=source,
        invitation_id=invitation_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    session.execute(
        update(Invitation)
        .where(Invitation.org_id == org_id, Invitation.email_key == key, Invitation.status == "queued")
        .values(status="cancelled", cancelled_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    out = unsubscribe_out(row, key)
    events.emit(session, org_id, "unsubscribe.created", [out])
    return out, True


def list_unsubscribes(
    session: Session, settings: Settings, org_id: str, email: str | None, page: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The organization's unsubscribes, newest first. Their addresses are not stored: with
    ``email`` the one entry of that address shows it, otherwise ``email`` is None."""
    conds: list[ColumnElement[bool]] = [Unsubscribe.org_id == org_id]
    if email:
        conds.append(Unsubscribe.email_key == address_hash(settings, email))
    total = session.scalar(select(func.count()).select_from(Unsubscribe).where(*conds)) or 0
    rows: list[Unsubscribe] = []
    if total > (page - 1) * limit:
        rows = list(
            session.scalars(
                select(Unsubscribe)
                .where(*conds)
                .order_by(Unsubscribe.created_at.desc(), Unsubscribe.email_key)
                .limit(limit)
                .offset((page - 1) * limit)
            )
        )
    shown = email_key(email) if email else None
    return [unsubscribe_out(r, shown) for r in rows], total


def delete_unsubscribe(session: Session, settings: Settings, org_id: str, email: str) -> None:
    """Let the address receive invitations again (cancelled invitations stay cancelled)."""
    row = session.get(Unsubscribe, (org_id, address_hash(settings, email)))
    if row is None:
        raise NotFound(f"no unsubscribe for {email}")
    session.delete(row)
    session.flush()


def is_unsubscribed(session: Session, settings: Settings, org_id: str, email: str) -> bool:
    """Whether ``email`` (as given, or already normalized) is on the organization's list."""
    return session.get(Unsubscribe, (org_id, address_hash(settings, email))) is not None


# ------------------------------------------------------------------------------ respondent pages


def invitation_for_token(session: Session, token: str, for_update: bool = False) -> Invitation | None:
    """The invitation a link token opens, or None (malformed tokens cost no query)."""
    if not TOKEN_RE.match(token):
        return None
    inv = session.scalar(select(Invitation).where(Invitation.token_hash == hash_token(token)))
    if inv is not None and for_update:
        # the organization's write lock first, like every other writer, then the row: no lock cycle
        lock_org_writes(session, inv.org_id)
        session.refresh(inv, with_for_update=True)
    return inv


def answer_invitation(
    session: Session,
    inv: Invitation,
    survey: Survey,
    score: int,
    comment: str | None = None,
    with_comment: bool = False,
) -> dict[str, Any]:
    """Record (or change) the answer of one invitation: one invitation, one record.

    The first answer creates the NPS record (``dateSent`` from the invitation, ``dateAnswered``
    now, ``campaignId`` the survey, source ``email``); later ones update the same record.
    ``with_comment`` says whether the comment was part of this answer (the score links carry none).
    """
    now = utcnow()
    values: dict[str, Any] = {"score": score}
    if with_comment:
        values["comment"] = comment
    record = None
    if inv.record_id is not None:
        try:
            record = records.update_record(
                session, inv.org_id, inv.record_id, NpsInput.model_validate(values)
            )
        except NotFound:
            record = None  # deleted through the API meanwhile: the answer makes a new one
    if record is None:
        sent_at = inv.sent_at or now  # answered before being marked sent: the mail did go out
        values.update(
            email=inv.email, campaignId=survey.id, source="email", dateSent=sent_at, dateAnswered=now
        )
        if inv.reminded_at is not None:
            values["dateReminderSent"] = inv.reminded_at
        if inv.properties:
            values["custom"] = inv.properties
        if inv.company_id and session.scalar(
            select(Company.id).where(Company.org_id == inv.org_id, Company.id == inv.company_id)
        ):
            values["cId"] = inv.company_id
        record = records.create_record(session, inv.org_id, NpsInput.model_validate(values))
        inv.record_id = record["id"]
    if inv.sent_at is None:
        inv.sent_at = now
    if inv.answered_at is None:
        inv.answered_at = now
    inv.status = "answered"
    inv.enduser_id = inv.enduser_id or record["enduser_id"]
    inv.updated_at = now
    session.flush()
    return record


def current_answer(session: Session, inv: Invitation) -> tuple[int | None, str | None]:
    """The score and comment recorded for an invitation, to prefill the page."""
    if inv.record_id is None:
        return None, None
    row = session.execute(
        select(records.T.c.score, records.T.c.comment).where(
            records.T.c.org_id == inv.org_id, records.T.c.id == inv.record_id
        )
    ).first()
    return (row[0], row[1]) if row else (None, None)


def ensure_public_id(session: Session, org_id: str, survey_id: str) -> str:
    """The survey's public link id, created on first use."""
    current = session.scalar(select(Survey.public_id).where(Survey.org_id == org_id, Survey.id == survey_id))
    if current:
        return current
    session.execute(
        update(Survey)
        .where(Survey.org_id == org_id, Survey.id == survey_id, Survey.public_id.is_(None))
        .values(public_id=secrets.token_urlsafe(16))
        .execution_options(synchronize_session=False)
    )
    public_id = session.scalar(
        select(Survey.public_id).where(Survey.org_id == org_id, Survey.id == survey_id)
    )
    if public_id is None:
        raise NotFound(f"no survey {survey_id}")
    return public_id


def public_url(settings: Settings, public_id: str) -> str:
    return f"{settings.base_url.rstrip('/')}/s/{public_id}"


def survey_for_public_id(session: Session, public_id: str) -> Survey | None:
    if not PUBLIC_ID_RE.match(public_id):
        return None
    return session.scalar(select(Survey).where(Survey.public_id == public_id))


def answer_public(
    session: Session, survey: Survey, email: str | None, score: int, comment: str | None
) -> dict[str, Any]:
    """Record an answer given through the survey's public link (source ``link``).

    Anonymous answers all belong to one contact, ``anonymous@npsd.invalid``, so they count in
    the survey's NPS without inventing people.
    """
    values: dict[str, Any] = {
        "email": email or ANONYMOUS_EMAIL,
        "score": score,
        "campaignId": survey.id,
        "source": "link",
        "dateAnswered": utcnow(),
    }
    if comment is not None:
        values["comment"] = comment
    return records.create_record(session, survey.org_id, NpsInput.model_validate(values))


# -------------------------------------------------------------------------------------------- jobs


def mail_backoff(attempt: int) -> timedelta:
    return timedelta(seconds=MAIL_BACKOFF[min(max(attempt, 1), len(MAIL_BACKOFF)) - 1])


@dataclass(frozen=True)
class _Loaded:
    invitation: Invitation
    survey: Survey
    unsubscribed: bool
    brand: Brand


def _load(db: Database, invitation_id: str) -> _Loaded | None:
    with db.transaction(write=False) as session:
        inv = session.get(Invitation, invitation_id)
        if inv is None:
            return None
        survey = session.get(Survey, inv.survey_id)
        if survey is None:
            return None
        return _Loaded(
            inv,
            survey,
            is_unsubscribed(session, settings_for(db), inv.org_id, inv.email_key),
            brand_of(session, inv.org_id),
        )


def _token(db: Database, settings: Settings, inv: Invitation) -> str:
    """The invitation's token under this process's key. Every npsd process of one installation must
    share the secret key (API tokens need it too); should it have changed since the invitation was
    created, the stored hash follows the new key, so the link in this mail works."""
    token = invitation_token(settings, inv.id)
    if hash_token(token) != inv.token_hash:
        log.warning("invitation %s was created under another secret key; its link changes", inv.id)
        with db.transaction() as session:
            session.execute(
                update(Invitation).where(Invitation.id == inv.id).values(token_hash=hash_token(token))
            )
    return token


def _mail(db: Database, settings: Settings, loaded: _Loaded, reminder: bool) -> mailer.Mail:
    inv = loaded.invitation
    # one language for the whole mail, the same the page of its links will speak
    texts = survey_texts(loaded.survey, loaded.brand.name, inv.locale)
    return mailer.Mail(
        invitation_id=inv.id,
        to_email=inv.email,
        to_name=inv.name,
        lang=texts.lang,
        question=texts.question,
        token=_token(db, settings, inv),
        base_url=settings.base_url,
        reminder=reminder,
        brand=loaded.brand,
    )


def _send_mail(db: Database, settings: Settings, loaded: _Loaded, reminder: bool) -> str | None:
    """Send the invitation (or its reminder). Returns why the server refused it for good, or None
    once it was accepted; a temporary failure raises, so the job is retried with backoff.
    The mail comes from the organization's sender when its profile names one."""
    config = _smtp(settings)  # first: without an SMTP server the job waits, nothing is composed
    message = mailer.compose(_mail(db, settings, loaded, reminder=reminder), settings.mail_from)
    try:
        mailer.send(config, message)
    except Exception as exc:
        if mailer.is_permanent(exc):
            return mailer.describe(exc)
        raise
    return None


def _smtp(settings: Settings) -> mailer.SmtpConfig:
    if not settings.smtp_url:
        raise RetryLater(NO_SMTP_RETRY, "NPSD_SMTP_URL is not set; the invitation stays queued")
    return mailer.SmtpConfig.from_url(settings.smtp_url)


def _fail(db: Database, invitation_id: str, reason: str) -> None:
    """Mark a queued invitation failed and tell the webhooks (``invitation.failed``)."""
    with db.transaction() as session:
        inv = session.get(Invitation, invitation_id)
        if inv is None or inv.status != "queued":
            return
        now = utcnow()
        inv.status = "failed"
        inv.failed_reason = reason[:2000]
        inv.updated_at = now
        session.flush()
        events.emit(session, inv.org_id, "invitation.failed", [invitation_out(inv)])


def _send_failed(db: Database, job: JobInfo, reason: str) -> None:
    _fail(db, job.payload["invitation_id"], f"gave up after {job.attempts} attempts: {reason}")


@handler(SEND_JOB, backoff=mail_backoff, on_failure=_send_failed)
def send_invitation(db: Database, job: JobInfo) -> None:
    """Send the invitation e-mail once, when due; see the module docstring for why it is safe to rerun."""
    loaded = _load(db, job.payload["invitation_id"])
    if loaded is None or loaded.invitation.status != "queued":
        return  # deleted with its survey, cancelled, or already sent before a restart
    inv, survey = loaded.invitation, loaded.survey
    now = utcnow()
    if loaded.unsubscribed:
        with db.transaction() as session:
            session.execute(
                update(Invitation)
                .where(Invitation.id == inv.id, Invitation.status == "queued")
                .values(status="cancelled", cancelled_at=now, updated_at=now)
            )
        return
    if survey.ends_at is not None and now > survey.ends_at:
        _fail(db, inv.id, f"the survey closed at {iso(survey.ends_at)} before the invitation was sent")
        return
    if not survey.is_active:
        raise RetryLater(PAUSED_RETRY, "the survey is switched off; sending resumes when it is switched on")
    if survey.starts_at is not None and now < survey.starts_at:
        raise RetryLater(survey.starts_at - now, "the survey has not started yet")
    settings = settings_for(db)
    refused = _send_mail(db, settings, loaded, reminder=False)
    if refused is not None:
        _fail(db, inv.id, refused)
        return
    with db.transaction() as session:
        sent_at = utcnow()
        # an UPDATE without RETURNING gives a CursorResult (Session.execute is typed as Result)
        marked = cast(
            CursorResult[Any],
            session.execute(
                update(Invitation)
                .where(Invitation.id == inv.id, Invitation.status == "queued")
                .values(
                    status="sent",
                    sent_at=sent_at,
                    updated_at=sent_at,
                    expires_at=sent_at + timedelta(days=settings.invitation_ttl_days),
                )
            ),
        ).rowcount
        if not marked:
            log.warning("invitation %s changed state while its mail was being sent", inv.id)
        elif survey.reminder_after_days:
            enqueue(
                session,
                REMIND_JOB,
                {"invitation_id": inv.id},
                org_id=inv.org_id,
                run_at=sent_at + timedelta(days=survey.reminder_after_days),
                dedupe_key=f"{REMIND_JOB}:{inv.id}",
                max_attempts=MAIL_ATTEMPTS,
            )


def remind_now(session: Session, settings: Settings, survey: Survey) -> int:
    """Make the reminder of every invitation of ``survey`` that was sent, is not answered, was not
    reminded and whose address did not unsubscribe due now, instead of ``reminderAfterDays``
    after the send (also for a survey without automatic reminders). Returns how many were queued;
    the worker still skips one answered, or unsubscribed, before it gets to it.

    An invitation keeps one pending reminder job: the scheduled one is retired and one due now
    takes its place; one whose reminder is being sent right now is left to it. A closed survey
    (switched off, or outside its window) answers 409.
    """
    now = utcnow()
    ok, field, issue = is_open(survey, now)
    if not ok:
        raise Conflict("survey is not active", [{"field": field, "issue": issue}])
    lock_org_writes(session, survey.org_id)  # two of these at once queue rather than collide
    sent = session.execute(
        select(Invitation.id, Invitation.email_key).where(
            Invitation.org_id == survey.org_id,
            Invitation.survey_id == survey.id,
            Invitation.status == "sent",
            Invitation.reminded_at.is_(None),
            Invitation.expires_at > now,
        )
    ).all()
    # the list holds hashes: hash the candidates' addresses (once each) and ask for those
    hashes = {key: address_hash(settings, key) for key in {key for _, key in sent}}
    unsubscribed = set(
        session.scalars(
            select(Unsubscribe.email_key).where(
                Unsubscribe.org_id == survey.org_id,
                one_of(session, Unsubscribe.email_key, set(hashes.values())),
            )
        )
    )
    candidates = [i for i, key in sent if hashes[key] not in unsubscribed]
    # dedupe key -> status, of the candidates' reminder jobs (the column is nullable; these keys are not)
    keys = [k for i in candidates for k in (f"{REMIND_JOB}:{i}", f"{REMIND_JOB}:{i}:now")]
    jobs: dict[str | None, str] = dict(
        session.execute(select(Job.dedupe_key, Job.status).where(one_of(session, Job.dedupe_key, keys)))
        .tuples()
        .all()
    )
    invitation_ids = [
        i
        for i in candidates
        if "running" not in (jobs.get(f"{REMIND_JOB}:{i}"), jobs.get(f"{REMIND_JOB}:{i}:now"))
    ]
    if invitation_ids:
        scheduled = [f"{REMIND_JOB}:{i}" for i in invitation_ids]
        session.execute(
            update(Job)
            .where(one_of(session, Job.dedupe_key, scheduled), Job.status == "queued")
            .values(status="done", last_error="replaced by a reminder sent now", updated_at=now)
        )
        # asked for before and not sent (its mail was refused): ask again
        session.execute(
            update(Job)
            .where(
                one_of(session, Job.dedupe_key, [f"{key}:now" for key in scheduled]),
                Job.status.in_(("done", "failed")),
            )
            .values(status="queued", run_at=now, attempts=0, last_error=None, updated_at=now)
        )
    enqueue_new(
        session,
        REMIND_JOB,
        [
            ({"invitation_id": i, "now": True}, f"{REMIND_JOB}:{i}:now")
            for i in invitation_ids
            if f"{REMIND_JOB}:{i}:now" not in jobs
        ],
        org_id=survey.org_id,
        run_at=now,
        max_attempts=MAIL_ATTEMPTS,
    )
    return len(invitation_ids)


@handler(REMIND_JOB, backoff=mail_backoff)
def send_reminder(db: Database, job: JobInfo) -> None:
    """Send the one reminder, unless the invitation was answered, or the address unsubscribed, meanwhile."""
    loaded = _load(db, job.payload["invitation_id"])
    if loaded is None:
        return
    inv, survey = loaded.invitation, loaded.survey
    if inv.status != "sent" or inv.reminded_at is not None or inv.sent_at is None or loaded.unsubscribed:
        return
    now = utcnow()
    if not is_open(survey, now)[0] or now >= inv.expires_at:
        return
    if not job.payload.get("now"):  # scheduled, not asked for (remind_now)
        if survey.reminder_after_days is None:
            return
        due = inv.sent_at + timedelta(days=survey.reminder_after_days)
        if now < due:
            raise RetryLater(due - now, "the reminder is not due yet")
    refused = _send_mail(db, settings_for(db), loaded, reminder=True)
    if refused is not None:
        log.warning("reminder for invitation %s refused: %s", inv.id, refused)
        return
    with db.transaction() as session:
        reminded_at = utcnow()
        session.execute(
            update(Invitation)
            .where(Invitation.id == inv.id, Invitation.reminded_at.is_(None))
            .values(
                reminded_at=reminded_at,
                updated_at=reminded_at,
                status=case((Invitation.status == "sent", "reminded"), else_=Invitation.status),
            )
        )


# ---------------------------------------------------------------------- recipients typed by people

MAX_RECIPIENT_FILE_BYTES = 2 * 1024 * 1024  # 5,000 rows of address, name and locale fit in well under this
RECIPIENT_FILE_SUFFIXES = (".csv", ".txt")
_NAMED_ADDRESS = re.compile(r"^(?P<name>.*?)\s*<(?P<email>[^<>]*)>$")
_EMAIL_HEADERS = frozenset({"email", "e-mail", "email address", "e-mail address"})


def _recipient(email: str, name: str = "", locale: str = "") -> dict[str, Any]:
    """A recipient object as the API takes it; empty name and locale are left out."""
    out: dict[str, Any] = {"email": email.strip()}
    if name.strip():
        out["name"] = name.strip().strip('"').strip()
    if locale.strip():
        out["locale"] = locale.strip()
    return out


def recipients_from_lines(text: str) -> list[dict[str, Any]]:
    """Recipients as a person pastes them, one per line: ``address``, ``Name <address>``, or
    ``address, name, locale`` (commas, semicolons or tabs, as copied from a spreadsheet).

    Nothing is refused here: each line becomes one recipient object, and
    :func:`create_invitations` checks it by the API's rules and reports an invalid one at its
    position, so a pasted list gets the same outcome, line by line, as the same list sent to
    the API. Blank lines are skipped.
    """
    recipients: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        named = _NAMED_ADDRESS.match(line)
        if named:
            recipients.append(_recipient(named["email"], named["name"]))
            continue
        separator = next((s for s in ("\t", ";", ",") if s in line), None)
        if separator is None:
            recipients.append(_recipient(line))
            continue
        email, name, locale = ([*line.split(separator, 2), "", ""])[:3]
        recipients.append(_recipient(email, name, locale))
    return recipients


def _decode_recipient_file(data: bytes) -> str:
    if b"\x00" in data:
        raise BadRequest.field("file", "is not a CSV file (it holds binary data)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:  # a spreadsheet's "CSV" without "UTF-8" is Windows-1252
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise BadRequest.field("file", "is not a text file in UTF-8 or Windows-1252") from exc


def recipients_from_csv(data: bytes, filename: str | None = None) -> list[dict[str, Any]]:
    """The recipients of an uploaded CSV file: a header row naming an ``email`` column and
    optionally ``name`` and ``locale`` (any order and case; other columns are ignored), then one
    row per recipient. Commas or semicolons separate the cells (the header row says which);
    UTF-8 with or without a byte-order mark, or Windows-1252 as older spreadsheets save it.

    A file that is not such a CSV, or is larger than :data:`MAX_RECIPIENT_FILE_BYTES`, is a 400
    naming ``file``. Like :func:`recipients_from_lines`, rows are not checked here: each becomes
    a recipient object that :func:`create_invitations` checks and reports on.
    """
    if filename and not filename.lower().endswith(RECIPIENT_FILE_SUFFIXES):
        raise BadRequest.field("file", "must be a CSV file (.csv) with the columns email, name, locale")
    if len(data) > MAX_RECIPIENT_FILE_BYTES:
        raise BadRequest.field("file", f"is larger than {MAX_RECIPIENT_FILE_BYTES // (1024 * 1024)} MB")
    text = _decode_recipient_file(data)
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next((row for row in rows if any(cell.strip() for cell in row)), None)
        if header is None:
            raise BadRequest.field("file", "is empty")
        names = [cell.strip().lower() for cell in header]
        email_at = next((i for i, n in enumerate(names) if n in _EMAIL_HEADERS), None)
        if email_at is None:
            raise BadRequest.field(
                "file", "needs a header row naming its columns: email, and optionally name and locale"
            )
        name_at = names.index("name") if "name" in names else None
        locale_at = names.index("locale") if "locale" in names else None

        def cell(row: list[str], at: int | None) -> str:
            return row[at] if at is not None and at < len(row) else ""

        recipients = [
            _recipient(cell(row, email_at), cell(row, name_at), cell(row, locale_at))
            for row in rows
            if any(c.strip() for c in row)
        ]
    except csv.Error as exc:
        raise BadRequest.field("file", f"is not a readable CSV file: {exc}") from exc
    if not recipients:
        raise BadRequest.field("file", "has no recipients below its header row")
    if len(recipients) > MAX_RECIPIENTS:
        raise BadRequest.field(
            "file", f"has {len(recipients)} recipients; at most {MAX_RECIPIENTS} can be invited at once"
        )
    return recipients
