"""Digest subscriptions, their schedule and their mails.

Callers pass rows already resolved in the caller's organization (``routes.digest_by_id``), so
nothing here reaches another tenant's digest.

Sending exactly once per period, with any number of workers: :func:`send_due_digests` (run by
every worker before each round of jobs) finds active digests whose ``next_due_at`` has passed
and, one short transaction each, moves ``next_due_at`` to the next local send time with an
UPDATE conditional on the value it read. Only one worker's UPDATE matches (PostgreSQL re-checks
the condition after the row lock the first one held; SQLite writers take turns); that worker
adds the period's delivery and its job in the same transaction. A delivery row is unique per
digest and period, so even a schedule changed back and forth never mails one period twice.
The mail itself is sent by the ``digest.send`` job, retried with backoff while the SMTP server
fails; it is recorded as sent at once after the server accepted it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from npsd.collect import mailer
from npsd.collect.service import MAIL_ATTEMPTS, mail_backoff
from npsd.digests import content, schedule
from npsd.digests.schemas import DigestCreate, DigestUpdate
from npsd.kit.db import Database
from npsd.kit.errors import BadRequest, NotFound
from npsd.kit.ids import new_id
from npsd.kit.jobs import JobInfo, RetryLater, enqueue, handler, periodic
from npsd.kit.listing import newest_page
from npsd.kit.lookup import resolve
from npsd.kit.models import Digest, DigestDelivery, Organization, Survey
from npsd.kit.timeutil import iso, utcnow

log = logging.getLogger("npsd.digests")

SEND_JOB = "digest.send"
NO_SMTP_RETRY = timedelta(minutes=1)
DUE_BATCH = 100
WEEKDAY_INDEX = {name: i for i, name in enumerate(schedule.WEEKDAYS)}


# ------------------------------------------------------------------------------------ subscriptions


def digest_out(d: Digest) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "surveyId": d.survey_id,
        "frequency": d.frequency,
        "weekday": None if d.weekday is None else schedule.WEEKDAYS[d.weekday],
        "hour": d.hour,
        "timeZone": d.time_zone,
        "emails": list(d.emails),
        "active": d.is_active,
        "nextDueAt": iso(d.next_due_at) if d.is_active else None,
        "lastSentAt": iso(d.last_sent_at),
        "createdAt": iso(d.created_at),
        "updatedAt": iso(d.updated_at),
    }


def _check_survey(session: Session, org_id: str, survey_id: str) -> None:
    """400 naming ``surveyId`` unless it is one of the organization's surveys (another
    organization's survey is unknown here, like an id nobody has)."""
    try:
        resolve(session, Survey, org_id, survey_id, "survey", prefixes=False)
    except (NotFound, BadRequest) as exc:
        raise BadRequest.field("surveyId", "must be the id of one of your surveys") from exc


def _apply(session: Session, d: Digest, values: dict[str, Any], now: datetime, new: bool = False) -> None:
    """Set the columns sent, check the schedule as a whole and recompute the next send time."""
    if values.get("survey_id") is not None:
        _check_survey(session, d.org_id, values["survey_id"])
    if "weekday" in values and values["weekday"] is not None:
        values["weekday"] = WEEKDAY_INDEX[values["weekday"]]
    frequency = values.get("frequency", d.frequency)
    if frequency == "daily":
        if values.get("weekday") is not None:
            raise BadRequest.field("weekday", "is only for weekly digests; leave it out for a daily one")
        values["weekday"] = None
    elif values.get("weekday", d.weekday) is None:
        raise BadRequest.field("weekday", "is required for a weekly digest (monday ... sunday)")
    rescheduled = any(
        k in values and values[k] != getattr(d, k, None)
        for k in ("frequency", "weekday", "hour", "time_zone", "is_active")
    )
    for column, value in values.items():
        setattr(d, column, value)
    if rescheduled or new:
        d.next_due_at = schedule.next_due(now, d.frequency, d.hour, d.weekday, d.time_zone)
    d.updated_at = now


def create_digest(session: Session, org_id: str, data: DigestCreate) -> dict[str, Any]:
    """Store a new digest; it is first sent at its next local send time."""
    now = utcnow()
    d = Digest(id=new_id(), org_id=org_id, created_at=now, last_sent_at=None)
    _apply(session, d, data.column_values(), now, new=True)
    session.add(d)
    session.flush()
    return digest_out(d)


def update_digest(session: Session, d: Digest, data: DigestUpdate) -> dict[str, Any]:
    """Change the fields sent; a changed schedule (or switching it on) counts from now."""
    values = data.column_values()
    if values:
        _apply(session, d, values, utcnow())
    session.flush()
    return digest_out(d)


def delete_digest(session: Session, d: Digest) -> None:
    """Delete the digest with its delivery log; a queued mail finds nothing to send."""
    session.execute(delete(Digest).where(Digest.id == d.id, Digest.org_id == d.org_id))


def list_digests(session: Session, org_id: str, page: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the organization's digests, newest first, and their total number."""
    rows, total = newest_page(session, Digest, org_id, page, limit)
    return [digest_out(row) for row in rows], total


# ------------------------------------------------------------------------------------- deliveries


def delivery_out(row: DigestDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "digestId": row.digest_id,
        "kind": row.kind,
        "period": {"since": row.period_since.isoformat(), "until": row.period_until.isoformat()},
        "emails": list(row.emails),
        "status": row.status,
        "attempts": row.attempts,
        "lastError": row.last_error,
        "subject": row.subject,
        "npsScore": row.nps_score,
        "responses": row.responses,
        "createdAt": iso(row.created_at),
        "sentAt": iso(row.sent_at),
    }


def list_deliveries(
    session: Session, d: Digest, page: int, limit: int, status: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """One page of the digest's mails, newest first, and how many match."""
    conds = [DigestDelivery.digest_id == d.id, DigestDelivery.org_id == d.org_id]
    if status is not None:
        conds.append(DigestDelivery.status == status)
    total = session.scalar(select(func.count()).select_from(DigestDelivery).where(*conds)) or 0
    rows = session.scalars(
        select(DigestDelivery)
        .where(*conds)
        .order_by(DigestDelivery.created_at.desc(), DigestDelivery.id.desc())
        .limit(limit)
        .offset((page - 1) * limit)
    )
    return [delivery_out(r) for r in rows], total


def _add_delivery(
    session: Session, d: Digest, kind: str, period: schedule.Period, now: datetime
) -> DigestDelivery:
    row = DigestDelivery(
        id=new_id(),
        org_id=d.org_id,
        digest_id=d.id,
        kind=kind,
        period_key=period.key if kind == "scheduled" else None,
        period_since=period.since,
        period_until=period.until,
        emails=list(d.emails),
        status="pending",
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    enqueue(
        session,
        SEND_JOB,
        {"delivery_id": row.id},
        org_id=d.org_id,
        dedupe_key=f"{SEND_JOB}:{row.id}",
        max_attempts=MAIL_ATTEMPTS,
    )
    return row


def figures_of(session: Session, d: Digest, period: schedule.Period, base_url: str) -> content.Content:
    """What the digest reports for ``period`` (the figures of the metrics API)."""
    return content.figures(session, content.Scope(d.org_id, d.survey_id, period), base_url)


def send_now(session: Session, d: Digest, base_url: str) -> dict[str, Any]:
    """Queue a preview of the digest to its addresses (also when inactive): the period a digest
    sent now would cover. Returns the pending delivery and the figures the mail will show. The
    schedule is untouched: the next scheduled digest still goes out."""
    now = utcnow()
    period = schedule.period_before(now, d.frequency)
    row = _add_delivery(session, d, "preview", period, now)
    return {**delivery_out(row), "figures": figures_of(session, d, period, base_url).figures}


# ------------------------------------------------------------------------------------- scheduling


def _claim(session: Session, digest_id: str, due_at: datetime, now: datetime) -> bool:
    """Take one due digest for this worker: move its ``next_due_at`` on, if nobody did since it
    was read, and queue the period's mail. False when another worker (or an edit) came first, or
    the period was mailed already."""
    d = session.get(Digest, digest_id)
    if d is None or not d.is_active or d.next_due_at != due_at:
        return False
    following = schedule.next_due(now, d.frequency, d.hour, d.weekday, d.time_zone)
    moved = cast(
        CursorResult[Any],
        session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.next_due_at == due_at, Digest.is_active.is_(True))
            .values(next_due_at=following)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if moved != 1:
        return False
    # The days before the send time; a digest found late (the server was down) reports the
    # days before now rather than a stale period.
    late = now - due_at > timedelta(days=schedule.PERIOD_DAYS[d.frequency])
    period = schedule.period_before(now if late else due_at, d.frequency)
    done = session.scalar(
        select(DigestDelivery.id).where(
            DigestDelivery.digest_id == d.id, DigestDelivery.period_key == period.key
        )
    )
    if done is not None:
        return False
    _add_delivery(session, d, "scheduled", period, now)
    return True


@periodic
def send_due_digests(db: Database, now: datetime | None = None) -> int:
    """Queue the mail of every digest whose send time has passed (see the module docstring);
    returns how many this worker queued. Costs one index read when none is due."""
    now = now or utcnow()
    with db.transaction(write=False) as session:
        due = session.execute(
            select(Digest.id, Digest.next_due_at)
            .where(Digest.is_active.is_(True), Digest.next_due_at <= now)
            .order_by(Digest.next_due_at, Digest.id)
            .limit(DUE_BATCH)
        ).all()
    queued = 0
    for digest_id, due_at in due:
        try:
            with db.transaction(write=True) as session:
                queued += _claim(session, digest_id, due_at, now)
        except Exception:  # one digest's trouble (a time zone gone from tzdata) never stops the rest
            log.exception("digest %s could not be scheduled", digest_id)
    return queued


# ----------------------------------------------------------------------------------------- sending


def _fail(db: Database, delivery_id: str, reason: str) -> None:
    with db.transaction() as session:
        session.execute(
            update(DigestDelivery)
            .where(DigestDelivery.id == delivery_id, DigestDelivery.status == "pending")
            .values(status="failed", last_error=reason[:2000], updated_at=utcnow())
        )


def _send_failed(db: Database, job: JobInfo, reason: str) -> None:
    _fail(db, job.payload["delivery_id"], f"gave up after {job.attempts} attempts: {reason}")


@handler(SEND_JOB, backoff=mail_backoff, on_failure=_send_failed)
def send_digest(db: Database, job: JobInfo) -> None:
    """Compose the digest's mail from the figures at this moment and send it once."""
    delivery_id = job.payload["delivery_id"]
    settings = db.config
    with db.transaction(write=False) as session:
        row = session.get(DigestDelivery, delivery_id)
        if row is None or row.status != "pending":
            return  # deleted with its digest, or sent before a restart
        d = session.get(Digest, row.digest_id)
        org = session.get(Organization, row.org_id)
        if d is None or org is None:
            return
        survey_name = None
        if d.survey_id:
            survey_name = session.scalar(
                select(Survey.name).where(Survey.id == d.survey_id, Survey.org_id == d.org_id)
            )
        period = schedule.Period(row.period_since, row.period_until)
        found = figures_of(session, d, period, settings.base_url)
        message = content.compose(
            delivery_id=row.id,
            org_name=org.name,
            from_header=content.sender(org.name, org.sender_name, org.sender_email, settings.mail_from),
            digest_name=d.name,
            frequency=d.frequency,
            survey_name=survey_name,
            emails=list(row.emails),
            content=found,
            preview=row.kind == "preview",
        )
    if not settings.smtp_url:
        raise RetryLater(NO_SMTP_RETRY, "NPSD_SMTP_URL is not set; the digest waits")
    with db.transaction() as session:  # count the attempt, whatever comes of it
        session.execute(
            update(DigestDelivery)
            .where(DigestDelivery.id == delivery_id)
            .values(attempts=DigestDelivery.attempts + 1, updated_at=utcnow())
        )
    try:
        mailer.send(mailer.SmtpConfig.from_url(settings.smtp_url), message)
    except Exception as exc:
        if mailer.is_permanent(exc):
            _fail(db, delivery_id, mailer.describe(exc))
            return
        with db.transaction() as session:
            session.execute(
                update(DigestDelivery)
                .where(DigestDelivery.id == delivery_id)
                .values(last_error=mailer.describe(exc)[:2000], updated_at=utcnow())
            )
        raise
    sent_at = utcnow()
    with db.transaction() as session:
        session.execute(
            update(DigestDelivery)
            .where(DigestDelivery.id == delivery_id, DigestDelivery.status == "pending")
            .values(
                status="sent",
                sent_at=sent_at,
                updated_at=sent_at,
                last_error=None,
                subject=str(message["Subject"]),
                nps_score=found.figures["npsScore"],
                responses=found.figures["responses"],
            )
        )
        if row.kind == "scheduled":
            session.execute(update(Digest).where(Digest.id == d.id).values(last_sent_at=sent_at))
