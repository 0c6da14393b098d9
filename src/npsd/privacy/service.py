"""Erasure of a person, and retention: deleting what is older than an operator allows.

Erasure. ``POST /v1/erasures`` stores an :class:`~npsd.kit.models.Erasure` row (with a keyed hash
of the address, never the address) and a durable ``person.erase`` job in the request's
transaction; the job carries the address until it has run and blanks it in the transaction that
does the work, so once an erasure is done the address is nowhere in the database. The work
(:func:`erase`) goes through the delete paths that keep roll-ups exact: the records' delete
(answers, with ``nps_rollup``, each contact's latest answer and each company's NPS) and the
contacts' delete (the contact, then its company's NPS). It also removes the address's
invitations, the stored ``Idempotency-Key`` replies and webhook deliveries whose body holds it,
removes it from uploads waiting to be imported and from import reports (:func:`_scrub_imports`),
and records one ``person.erased`` event with ids and counts only. The unsubscribe list is kept:
it holds only a hash, and keeps refusing the address.

Retention. :func:`apply_retention` runs with every round of the job worker, but works at most
once per ``NPSD_RETENTION_INTERVAL_SECONDS`` in each process (sooner while a backlog remains): it
deletes answers answered before ``NPSD_RETENTION_DAYS`` (through the same records delete, 5,000
per transaction), invitations past ``NPSD_INVITATION_RETENTION_DAYS``, settled webhook deliveries
past ``NPSD_WEBHOOK_RETENTION_DAYS`` with their attempts, finished jobs (``done``, ``failed``)
past ``NPSD_JOB_RETENTION_DAYS``, and expired idempotency keys. Each query is a range read of an
index, so a round with nothing to delete costs a few index probes.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from npsd.collect.service import address_hash
from npsd.contacts.service import delete_enduser
from npsd.kit import events
from npsd.kit.config import Settings
from npsd.kit.db import Database, lock_org_writes, one_of
from npsd.kit.ids import new_id
from npsd.kit.jobs import JobInfo, enqueue, handler, periodic
from npsd.kit.models import (
    DataImport,
    Enduser,
    Erasure,
    IdempotencyKey,
    Invitation,
    Job,
    NpsRecord,
    Organization,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from npsd.kit.timeutil import iso, utcnow
from npsd.kit.validation import email_key
from npsd.records.service import delete_records

log = logging.getLogger("npsd.privacy")

# What an erased address becomes in an uploaded file not yet imported (``imports/`` refuses its rows)
ERASED_MARK = "[erased]"
ERASE_JOB = "person.erase"
ERASE_ATTEMPTS = 5
STATES = ("queued", "running", "done", "failed")

# ------------------------------------------------------------------------------------------ erasure


@dataclass
class Counts:
    """What one erasure removed."""

    answers: int = 0
    contacts: int = 0
    invitations: int = 0
    idempotency_replies: int = 0
    webhook_deliveries: int = 0
    imports: int = 0  # uploaded files and import reports the address was removed from (not stored)
    response_ids: list[str] = field(default_factory=list)
    contact_id: str | None = None


def public_counts(source: Counts | Erasure) -> dict[str, int]:
    """What an erasure removed, as the API and the ``person.erased`` event show it: from the
    erasure's record, or from the counts of the erasure just done (the same attributes)."""
    return {
        "answers": source.answers,
        "contacts": source.contacts,
        "invitations": source.invitations,
        "idempotencyReplies": source.idempotency_replies,
        "webhookDeliveries": source.webhook_deliveries,
    }


def erasure_out(row: Erasure) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "source": row.source,
        "counts": public_counts(row),
        "error": row.error,
        "createdAt": iso(row.created_at),
        "startedAt": iso(row.started_at),
        "finishedAt": iso(row.finished_at),
    }


def _holds(column: Any, key: str) -> ColumnElement[bool]:
    """``column`` (a text column) contains the normalized address, in any case. ``%`` and ``_``,
    which addresses may contain, match only themselves."""
    return func.lower(column).contains(key, autoescape=True)


def erase(session: Session, org_id: str, email: str) -> Counts:
    """Remove everything the organization holds about ``email``, keeping every roll-up exact.

    The answers are the contact's and any other with that address (a contact whose address was
    changed keeps answers filed under the old one); they go without ``response.deleted`` events,
    which would carry the address. The caller's transaction commits it all at once.
    """
    key = email_key(email)
    counts = Counts()
    lock_org_writes(session, org_id)
    contact = session.scalar(select(Enduser).where(Enduser.org_id == org_id, Enduser.email_key == key))
    answers: ColumnElement[bool] = func.lower(func.trim(NpsRecord.email)) == key
    if contact is not None:
        answers = or_(NpsRecord.enduser_id == contact.id, answers)
    counts.response_ids = list(
        session.scalars(
            select(NpsRecord.id).where(NpsRecord.org_id == org_id, answers).order_by(NpsRecord.id)
        )
    )
    if counts.response_ids:
        counts.answers = delete_records(
            session, org_id, one_of(session, NpsRecord.id, counts.response_ids), events=False
        )
    invitations: ColumnElement[bool] = Invitation.email_key == key
    if contact is not None:
        invitations = or_(invitations, Invitation.enduser_id == contact.id)
        counts.contact_id = contact.id
        # its answers are gone: the contacts' delete removes it and recounts its company's NPS
        delete_enduser(session, contact, cascade=True)
        counts.contacts = 1
    counts.invitations = _deleted(
        session.execute(delete(Invitation).where(Invitation.org_id == org_id, invitations))
    )
    counts.idempotency_replies = _deleted(
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.org_id == org_id, _holds(IdempotencyKey.response_body, key)
            )
        )
    )
    # Bodies of earlier events (response.created, unsubscribe.created...) hold the address: they
    # go with their attempts, and a pending delivery's job then finds nothing to send.
    doomed = list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.org_id == org_id, _holds(WebhookDelivery.payload, key)
            )
        )
    )
    if doomed:
        session.execute(delete(WebhookAttempt).where(one_of(session, WebhookAttempt.delivery_id, doomed)))
        session.execute(delete(WebhookDelivery).where(one_of(session, WebhookDelivery.id, doomed)))
    counts.webhook_deliveries = len(doomed)
    counts.imports = _scrub_imports(session, org_id, key)
    session.flush()
    return counts


def _address_pattern(key: str) -> re.Pattern[str]:
    """The address as a whole, in any case: not the tail of a longer local part
    (``hana@x.org`` for ``ana@x.org``) nor the head of a longer domain (``ana@x.org.uk``). A quote
    before it is taken as a quote (row errors quote what they refuse), not as part of an address."""
    return re.compile(r"(?<![\w.!#$%&*+/=?^`{|}~-])" + re.escape(key) + r"(?![\w-]|\.[\w-])", re.IGNORECASE)


def _decoded(data: bytes) -> tuple[str, bool] | None:
    """An upload's text as the import's parser reads it (UTF-16 with a byte-order mark, else
    UTF-8 with or without one), and whether it had a UTF-8 byte-order mark; None if neither."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16"), False
        return data.decode("utf-8-sig"), data.startswith(b"\xef\xbb\xbf")
    except UnicodeDecodeError:
        return None


def _scrub_imports(session: Session, org_id: str, key: str) -> int:
    """Remove the address from the organization's imports: the uploads still waiting to be
    imported (their stored file), and the reports of every import (file name, row errors, reason).

    In a stored file each occurrence becomes :data:`ERASED_MARK`, so the file keeps its rows and
    columns (an import that resumes counts the same rows) and the person's rows are refused as
    erased when the job reads them; an import already running refuses them too, since it checks
    each batch against the erasures. A file that cannot be read as text (its import will fail
    anyway) but holds the address is dropped, and its import fails saying why.
    Returns how many imports were changed."""
    pattern = _address_pattern(key)
    changed = 0
    waiting = session.execute(
        select(DataImport.id, DataImport.content).where(
            DataImport.org_id == org_id, DataImport.content.is_not(None)
        )
    ).all()
    for import_id, content in waiting:
        decoded = _decoded(content)
        values: dict[str, Any]
        if decoded is None:
            if key.encode() not in content.lower():
                continue
            values = {
                "content": None,
                "state": "failed",
                "reason": "the uploaded file was removed by an erasure of a person it named; upload it again",
                "finished_at": utcnow(),
            }
        else:
            text, bom = decoded
            if key not in text.lower():  # the usual case, 10x cheaper than the search below
                continue
            scrubbed, found = pattern.subn(ERASED_MARK, text)
            if not found:
                continue
            values = {"content": ("\ufeff" if bom else "").encode() + scrubbed.lstrip("\ufeff").encode()}
        session.execute(
            update(DataImport)
            .where(DataImport.id == import_id, DataImport.content.is_not(None))
            .values(updated_at=utcnow(), **values)
        )
        changed += 1
    reports = session.execute(
        select(DataImport.id, DataImport.filename, DataImport.errors, DataImport.reason).where(
            DataImport.org_id == org_id
        )
    ).all()
    for import_id, filename, errors, reason in reports:
        report = {"filename": filename, "errors": errors, "reason": reason}
        scrubbed_report = _scrubbed(report, pattern)
        if scrubbed_report != report:
            session.execute(update(DataImport).where(DataImport.id == import_id).values(**scrubbed_report))
            changed += 1
    return changed


def _scrubbed(value: Any, pattern: re.Pattern[str]) -> Any:
    """``value`` (text, or lists and dicts of text) with every occurrence of the address marked."""
    if isinstance(value, str):
        return pattern.sub(ERASED_MARK, value)
    if isinstance(value, list):
        return [_scrubbed(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v, pattern) for k, v in value.items()}
    return value


def _deleted(result: Any) -> int:
    return int(result.rowcount or 0)


def _finish(session: Session, erasure: Erasure, counts: Counts) -> None:
    """Record what was removed and tell the organization's webhooks (ids and counts only)."""
    now = utcnow()
    erasure.state = "done"
    erasure.answers = counts.answers
    erasure.contacts = counts.contacts
    erasure.invitations = counts.invitations
    erasure.idempotency_replies = counts.idempotency_replies
    erasure.webhook_deliveries = counts.webhook_deliveries
    erasure.started_at = erasure.started_at or now
    erasure.finished_at = now
    erasure.error = None
    session.flush()
    events.emit(
        session,
        erasure.org_id,
        "person.erased",
        [
            {
                "id": erasure.id,
                "contactId": counts.contact_id,
                "responseIds": counts.response_ids,
                "counts": public_counts(counts),
                "requestedAt": iso(erasure.created_at),
                "erasedAt": iso(now),
            }
        ],
    )


def request_erasure(
    session: Session, settings: Settings, org_id: str, email: str, requested_by: str | None
) -> Erasure:
    """``POST /v1/erasures``: the erasure record and its job, in the caller's transaction."""
    key = email_key(email)
    now = utcnow()
    erasure = Erasure(
        id=new_id(),
        org_id=org_id,
        email_hash=address_hash(settings, key),
        state="queued",
        source="api",
        requested_by=requested_by,
        answers=0,
        contacts=0,
        invitations=0,
        idempotency_replies=0,
        webhook_deliveries=0,
        created_at=now,
    )
    session.add(erasure)
    session.flush()
    enqueue(
        session,
        ERASE_JOB,
        {"erasure_id": erasure.id, "email": key},
        org_id=org_id,
        max_attempts=ERASE_ATTEMPTS,
    )
    return erasure


def erase_now(session: Session, settings: Settings, org_id: str, email: str) -> tuple[Erasure, Counts]:
    """``npsd erase``: the same erasure, done in the caller's transaction, with its record."""
    now = utcnow()
    erasure = Erasure(
        id=new_id(),
        org_id=org_id,
        email_hash=address_hash(settings, email),
        state="running",
        source="cli",
        answers=0,
        contacts=0,
        invitations=0,
        idempotency_replies=0,
        webhook_deliveries=0,
        created_at=now,
        started_at=now,
    )
    session.add(erasure)
    session.flush()
    counts = erase(session, org_id, email)
    _finish(session, erasure, counts)
    return erasure, counts


def _scrub(session: Session, job_id: str, erasure_id: str) -> None:
    """Forget the address the job carried (in the transaction that settles the erasure)."""
    session.execute(
        update(Job).where(Job.id == job_id).values(payload={"erasure_id": erasure_id}, last_error=None)
    )


def _failed(db: Database, job: JobInfo, reason: str) -> None:
    """Every attempt failed: the erasure is ``failed`` and the job forgets the address (the
    request must be made again)."""
    erasure_id = str(job.payload.get("erasure_id"))
    with db.transaction() as session:
        session.execute(
            update(Erasure)
            .where(Erasure.id == erasure_id, Erasure.state != "done")
            .values(state="failed", error=reason, finished_at=utcnow())
        )
        _scrub(session, job.id, erasure_id)


@handler(ERASE_JOB, on_failure=_failed)
def run_erasure(db: Database, job: JobInfo) -> None:
    """Run one queued erasure: ``running`` in a short transaction of its own (so it shows), then
    the whole erasure, its record and the forgetting of the address in one transaction."""
    erasure_id = str(job.payload.get("erasure_id"))
    email = job.payload.get("email")
    with db.transaction() as session:
        erasure = session.get(Erasure, erasure_id)
        if erasure is None or erasure.state == "done" or not isinstance(email, str):
            _scrub(session, job.id, erasure_id)
            return
        erasure.state = "running"
        erasure.started_at = erasure.started_at or utcnow()
    try:
        with db.transaction() as session:
            erasure = session.get(Erasure, erasure_id)
            assert erasure is not None
            counts = erase(session, erasure.org_id, email)
            _finish(session, erasure, counts)
            _scrub(session, job.id, erasure_id)
    except Exception as exc:
        # Database errors quote their parameters, the address among them: keep it out of the
        # job's last_error, the erasure's error and the log.
        detail = str(exc).replace(email, "<address>").replace(email_key(email), "<address>")
        log.warning("erasure %s failed: %s: %s", erasure_id, type(exc).__name__, detail[:500])
        raise RuntimeError(f"the erasure failed ({type(exc).__name__}); see the server log") from None


def list_erasures(
    session: Session, settings: Settings, org_id: str, email: str | None, page: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The organization's erasures, newest first; with ``email``, those of that address (found by
    its hash, the only form kept)."""
    conds: list[ColumnElement[bool]] = [Erasure.org_id == org_id]
    if email:
        conds.append(Erasure.email_hash == address_hash(settings, email))
    total = session.scalar(select(func.count()).select_from(Erasure).where(*conds)) or 0
    rows: list[Erasure] = []
    if total > (page - 1) * limit:
        rows = list(
            session.scalars(
                select(Erasure)
                .where(*conds)
                .order_by(Erasure.created_at.desc(), Erasure.id.desc())
                .limit(limit)
                .offset((page - 1) * limit)
            )
        )
    return [erasure_out(r) for r in rows], int(total)


# ---------------------------------------------------------------------------------------- retention

RETENTION_BATCH = 5000
RETENTION_BUDGET = timedelta(seconds=20)  # of work per round, so due jobs are not held up


@dataclass
class Retention:
    """What one pass of :func:`run_retention` deleted, and whether it stopped with work left."""

    answers: int = 0
    invitations: int = 0
    webhook_deliveries: int = 0
    idempotency_keys: int = 0
    jobs: int = 0
    more: bool = False

    @property
    def total(self) -> int:
        return self.answers + self.invitations + self.webhook_deliveries + self.idempotency_keys + self.jobs


def _old_answers(db: Database, org_id: str, cutoff: datetime, batch: int) -> int:
    """Delete one batch of the organization's answers answered before ``cutoff``."""
    with db.transaction(write=False) as session:  # the usual case: nothing, one index probe
        if (
            session.scalar(
                select(NpsRecord.id)
                .where(NpsRecord.org_id == org_id, NpsRecord.date_answered < cutoff)
                .limit(1)
            )
            is None
        ):
            return 0
    with db.transaction() as session:
        lock_org_writes(session, org_id)  # then choose: two workers never take one batch
        ids = list(
            session.scalars(
                select(NpsRecord.id)
                .where(NpsRecord.org_id == org_id, NpsRecord.date_answered < cutoff)
                .order_by(NpsRecord.date_answered, NpsRecord.id)
                .limit(batch)
            )
        )
        if not ids:
            return 0
        return delete_records(session, org_id, one_of(session, NpsRecord.id, ids), events=False)


def run_retention(
    db: Database,
    settings: Settings,
    now: datetime | None = None,
    batch: int = RETENTION_BATCH,
    budget: timedelta = RETENTION_BUDGET,
) -> Retention:
    """Delete what the retention settings no longer allow, ``batch`` rows per transaction, for at
    most about ``budget``; ``more`` says whether something was left for the next pass."""
    now = now or utcnow()
    deadline = time.monotonic() + budget.total_seconds()
    done = Retention()

    def out_of_time() -> bool:
        done.more = time.monotonic() > deadline
        return done.more

    if settings.retention_days is not None:
        cutoff = now - timedelta(days=settings.retention_days)
        with db.transaction(write=False) as session:
            orgs = list(session.scalars(select(Organization.id).order_by(Organization.id)))
        for org_id in orgs:
            while (n := _old_answers(db, org_id, cutoff, batch)) > 0:
                done.answers += n
                if out_of_time():
                    return done

    if settings.invitation_retention_days > 0:
        cutoff = now - timedelta(days=settings.invitation_retention_days)
        old = (Invitation.created_at < cutoff, Invitation.expires_at < now)  # never a link that still works

        def old_invitations(session: Session) -> list[Any]:
            return list(session.scalars(select(Invitation.id).where(*old).limit(batch)))

        def drop_invitations(session: Session, ids: list[Any]) -> int:
            return _deleted(
                session.execute(delete(Invitation).where(one_of(session, Invitation.id, ids), *old))
            )

        n, done.more = _in_batches(db, old_invitations, drop_invitations, batch, deadline)
        done.invitations += n
        if done.more:
            return done

    if settings.webhook_retention_days > 0:
        cutoff = now - timedelta(days=settings.webhook_retention_days)
        with db.transaction(write=False) as session:
            hooks = list(session.scalars(select(Webhook.id).order_by(Webhook.id)))
        for hook_id in hooks:
            settled = (
                WebhookDelivery.webhook_id == hook_id,  # the (webhook_id, created_at) index
                WebhookDelivery.created_at < cutoff,
                WebhookDelivery.status != "pending",  # one still being retried stays
            )

            def old_deliveries(session: Session, settled: tuple[Any, ...] = settled) -> list[Any]:
                return list(session.scalars(select(WebhookDelivery.id).where(*settled).limit(batch)))

            def drop_deliveries(session: Session, ids: list[Any]) -> int:
                session.execute(
                    delete(WebhookAttempt).where(one_of(session, WebhookAttempt.delivery_id, ids))
                )
                return _deleted(
                    session.execute(delete(WebhookDelivery).where(one_of(session, WebhookDelivery.id, ids)))
                )

            n, done.more = _in_batches(db, old_deliveries, drop_deliveries, batch, deadline)
            done.webhook_deliveries += n
            if done.more:
                return done

    if settings.job_retention_days > 0:
        n, done.more = _old_jobs(db, now - timedelta(days=settings.job_retention_days), batch, deadline)
        done.jobs += n
        if done.more:
            return done

    # expired Idempotency-Key replies: nothing else removes a key that is never sent again
    def expired_keys(session: Session) -> list[Any]:
        return list(
            session.scalars(
                select(IdempotencyKey.expires_at)
                .where(IdempotencyKey.expires_at < now)
                .order_by(IdempotencyKey.expires_at)
                .limit(batch)
            )
        )

    def drop_keys(session: Session, expiries: list[Any]) -> int:
        return _deleted(
            session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.expires_at <= expiries[-1], IdempotencyKey.expires_at < now
                )
            )
        )

    n, done.more = _in_batches(db, expired_keys, drop_keys, batch, deadline)
    done.idempotency_keys += n
    return done


def _old_jobs(db: Database, cutoff: datetime, batch: int, deadline: float) -> tuple[int, bool]:
    """Delete finished jobs last changed before ``cutoff``: a row per mail, reminder, webhook
    delivery and import is written for ever otherwise. Queued and running jobs always stay.

    A job is due before it finishes (``run_at`` <= ``updated_at``), so the ``(status, run_at)``
    index bounds the read; ``updated_at`` then keeps a job that finished recently after a long
    backoff. Nothing refers to a finished job: a dedupe key it held is free again, and the
    reminders that use such keys check their invitation, not the job."""
    removed = 0
    for status in ("done", "failed"):
        finished = (Job.status == status, Job.run_at < cutoff, Job.updated_at < cutoff)

        def old_jobs(session: Session, finished: tuple[Any, ...] = finished) -> list[Any]:
            return list(session.scalars(select(Job.id).where(*finished).limit(batch)))

        def drop_jobs(session: Session, ids: list[Any], finished: tuple[Any, ...] = finished) -> int:
            return _deleted(session.execute(delete(Job).where(one_of(session, Job.id, ids), *finished)))

        n, more = _in_batches(db, old_jobs, drop_jobs, batch, deadline)
        removed += n
        if more:
            return removed, True
    return removed, False


def _in_batches(
    db: Database,
    find: Callable[[Session], list[Any]],
    remove: Callable[[Session, list[Any]], int],
    batch: int,
    deadline: float,
) -> tuple[int, bool]:
    """Find up to ``batch`` rows in a read, remove them in a write transaction of their own, until
    none is left or the time is up. A look that finds nothing never takes a write lock. Returns
    how many were removed and whether some may be left."""
    removed = 0
    while True:
        with db.transaction(write=False) as session:
            found = find(session)
        if not found:
            return removed, False
        with db.transaction() as session:
            removed += remove(session, found)
        if len(found) < batch:
            return removed, False
        if time.monotonic() > deadline:
            return removed, True


# When each Database may run retention next (monotonic seconds); one Database per process in
# production, several in the tests.
_NEXT_RUN: weakref.WeakKeyDictionary[Database, float] = weakref.WeakKeyDictionary()
LAST_RUN: weakref.WeakKeyDictionary[Database, dict[str, Any]] = weakref.WeakKeyDictionary()


@periodic
def apply_retention(db: Database) -> int:
    """The worker's retention pass: at most once per ``retention_interval_seconds`` in this
    process, at once again while a backlog remains. Returns how many rows it deleted.

    ``LAST_RUN[db]`` keeps when the last pass ran and what it did (the tests read it)."""
    settings = db.config
    started = time.monotonic()
    if started < _NEXT_RUN.get(db, 0.0):
        return 0
    done = run_retention(db, settings)
    _NEXT_RUN[db] = time.monotonic() + (0.0 if done.more else settings.retention_interval_seconds)
    LAST_RUN[db] = {"at": utcnow(), **asdict(done)}
    if done.total:
        log.info(
            "retention deleted %d answers, %d invitations, %d webhook deliveries, %d idempotency keys, %d jobs",
            done.answers,
            done.invitations,
            done.webhook_deliveries,
            done.idempotency_keys,
            done.jobs,
        )
    return done.total
