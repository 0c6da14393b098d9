"""Writing imported rows, and imports as durable jobs.

Rows go through the bulk path of ``PUT /nps`` (:func:`npsd.records.service.bulk_upsert`), 5,000
at a time, each batch in a transaction of its own: the same validation, contact filing
(``records/filing.py``), roll-ups and ``response.*`` events as an API client's upsert, and a
batch that fails leaves nothing half-written. Every row carries a ``sourceId`` derived from the
tool's response id, so a second run of the same file updates nothing and creates nothing.

A company named by a row is found in the organization by id or by name (any case), and created
when no company has that name, so the answers of a tool's accounts land under one company each.

``POST /v1/imports`` stores the upload in ``data_import`` and enqueues :data:`IMPORT_JOB`; the
worker (any process, any machine) runs it and writes its progress with each batch, in the batch's
own transaction, so a worker that dies is followed by one that resumes after the last committed
batch. A dry run writes each batch and rolls it back: its counts are exactly what a real run
would do, and nothing stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from npsd.collect.service import address_hash
from npsd.contacts.service import create_company
from npsd.imports.layouts import API_OPTIONS, ImportProblem, Parsed, Row, RowError, parse
from npsd.kit.config import Settings, get_settings
from npsd.kit.db import Database, one_of
from npsd.kit.errors import BadRequest, NotFound
from npsd.kit.ids import is_id, new_id
from npsd.kit.jobs import JobInfo, RetryLater, enqueue, handler
from npsd.kit.models import Company, DataImport, Erasure
from npsd.kit.timeutil import iso, utcnow
from npsd.kit.validation import email_key
from npsd.records.bulk import MAX_BULK
from npsd.records.service import bulk_upsert
from npsd.records.writes import begin_write
from npsd.surveys.service import find_survey

log = logging.getLogger("npsd.imports")

IMPORT_JOB = "import.run"
BATCH = MAX_BULK
KEPT_ERRORS = 100  # per-row errors an import's record keeps (the count is always whole)
JOB_ATTEMPTS = 3
MAX_COMPANY_NAME = 500


@dataclass
class Tally:
    """What a batch, or a whole import, did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.errors.extend(other.errors)


def check_survey(session: Session, org_id: str, survey_id: str) -> str:
    """The id of the organization's survey ``survey_id``, or 404 (400 when it is no id)."""
    if not is_id(survey_id):
        raise BadRequest.field("surveyId", "must be a 24-character hexadecimal id")
    return find_survey(session, org_id, survey_id).id


def _companies(session: Session, org_id: str, names: set[str]) -> dict[str, str]:
    """Company id by the name (or id) rows gave, lower-cased; a name no company has is created."""
    if not names:
        return {}
    lowered = {n.lower() for n in names}
    ids = {n for n in names if is_id(n)}
    found: dict[str, str] = {}
    for cid, name in session.execute(
        select(Company.id, Company.name)
        .where(Company.org_id == org_id, or_(Company.id.in_(ids), func.lower(Company.name).in_(lowered)))
        .order_by(Company.id)
    ):
        if cid in ids:
            found.setdefault(cid, cid)
        found.setdefault(name.lower(), cid)
    for name in sorted(names):
        if name.lower() not in found and name not in found:
            found[name.lower()] = create_company(session, org_id, {"name": name}).id
    return found


def _erased(session: Session, settings: Settings, org_id: str, rows: Sequence[Row]) -> dict[str, datetime]:
    """When each address of ``rows`` that was erased in the organization was last erased (by its
    lower-cased form). Nothing to hash when the organization never erased anyone."""
    if session.scalar(select(Erasure.id).where(Erasure.org_id == org_id).limit(1)) is None:
        return {}
    hashes = {address_hash(settings, r.item["email"]): email_key(r.item["email"]) for r in rows}
    return {
        hashes[digest]: when
        for digest, when in session.execute(
            select(Erasure.email_hash, func.max(Erasure.created_at))
            .where(Erasure.org_id == org_id, one_of(session, Erasure.email_hash, hashes))
            .group_by(Erasure.email_hash)
        )
    }


def _answered(item: dict[str, Any]) -> datetime | None:
    value = item.get("dateAnswered")
    return datetime.fromisoformat(value.removesuffix("Z")) if isinstance(value, str) else None


def write_rows(
    session: Session,
    org_id: str,
    entries: Sequence[Row | RowError],
    survey_id: str | None,
    settings: Settings | None = None,
) -> Tally:
    """Write one batch (at most :data:`BATCH` entries) through the bulk path, in the caller's
    transaction; the rows it refuses come back as errors with their row and column.

    A row of a person erased in the organization, answered before that erasure (or undated), is
    refused: an old export must not bring back what a data-protection request removed."""
    if len(entries) > BATCH:
        raise ValueError(f"a batch holds at most {BATCH} rows")
    tally = Tally()
    begin_write(session, org_id)
    rows: list[Row] = []
    for entry in entries:
        if isinstance(entry, RowError):
            tally.errors.append(entry)
        elif entry.company is not None and (len(entry.company) > MAX_COMPANY_NAME or "\x00" in entry.company):
            tally.errors.append(
                RowError(
                    entry.row,
                    entry.columns.get("company", "company"),
                    f"must be a company name of at most {MAX_COMPANY_NAME} characters",
                )
            )
        else:
            rows.append(entry)
    erased = _erased(session, settings or get_settings(), org_id, rows)
    if erased:
        kept: list[Row] = []
        for row in rows:
            when = erased.get(email_key(row.item["email"]))
            answered = _answered(row.item)
            if when is not None and (answered is None or answered <= when):
                tally.errors.append(
                    RowError(
                        row.row,
                        row.columns.get("email", "email"),
                        f"belongs to a person erased on {when.date().isoformat()}; their answers from "
                        "before the erasure are not imported again",
                    )
                )
            else:
                kept.append(row)
        rows = kept
    if survey_id is not None:
        check_survey(session, org_id, survey_id)
    companies = _companies(session, org_id, {r.company for r in rows if r.company})
    items: list[dict[str, Any]] = []
    for row in rows:
        item = dict(row.item)
        if survey_id is not None:
            item["campaignId"] = survey_id
        if row.company:
            item["cId"] = companies.get(row.company.lower()) or companies[row.company]
        items.append(item)
    if not items:
        return tally
    outcome = bulk_upsert(session, org_id, items)
    for failure in [*outcome.created_errors, *outcome.updated_errors]:
        row = rows[failure["index"]]
        text: str = failure["error"]
        name, _, rest = text.partition(" ")
        if name in row.item or name in ("cId", "campaignId"):
            column = row.columns.get(name, "company" if name == "cId" else name)
            tally.errors.append(RowError(row.row, column, rest or text))
        else:
            tally.errors.append(RowError(row.row, "", text))
    tally.created = outcome.created
    tally.updated = outcome.updated
    tally.unchanged = outcome.nonupdates
    tally.errors.sort(key=lambda e: e.row)
    return tally


Progress = Callable[[Session, int, Tally], None]


def run_rows(
    db: Database,
    org_id: str,
    rows: Sequence[Row | RowError],
    *,
    survey_id: str | None = None,
    dry_run: bool = False,
    start: int = 0,
    progress: Progress | None = None,
) -> Tally:
    """Write ``rows[start:]`` batch by batch, each in its own transaction (rolled back on a dry
    run). ``progress`` is called after each batch, in that batch's transaction (after the roll
    back on a dry run), with the number of rows done so far and the batch's tally."""
    total = Tally()
    for offset in range(start, len(rows), BATCH):
        chunk = rows[offset : offset + BATCH]
        with db.transaction() as session:
            tally = write_rows(session, org_id, chunk, survey_id, db.config)
            if dry_run:
                session.rollback()
            if progress is not None:
                progress(session, offset + len(chunk), tally)
        total.add(tally)
    return total


# ------------------------------------------------------------------------------------ imports as jobs


def import_out(imp: DataImport) -> dict[str, Any]:
    """An import as ``/v1/imports`` shows it."""
    return {
        "id": imp.id,
        "state": imp.state,
        "layout": imp.layout,
        "filename": imp.filename,
        "surveyId": imp.survey_id,
        "scoreColumn": imp.score_column,
        "commentColumn": imp.comment_column or None,
        "dryRun": imp.dry_run,
        "sizeBytes": imp.size_bytes,
        "rowsTotal": imp.rows_total,
        "rowsDone": imp.rows_done,
        "created": imp.created,
        "updated": imp.updated,
        "unchanged": imp.unchanged,
        "errorCount": imp.error_count,
        "errors": list(imp.errors or []),
        "reason": imp.reason,
        "createdAt": iso(imp.created_at),
        "startedAt": iso(imp.started_at),
        "finishedAt": iso(imp.finished_at),
    }


def problem_to_http(problem: ImportProblem) -> BadRequest:
    return BadRequest.field(problem.field, problem.text(API_OPTIONS))


def read_upload(data: bytes, layout: str, score_column: str | None, comment_column: str | None) -> Parsed:
    """An upload read whole, its layout and columns settled (or a 400 naming the field at fault).
    Done before the request's transaction begins: a large file takes seconds to read, which no
    other writer should wait for."""
    try:
        return parse(data, layout, score_column, comment_column)
    except ImportProblem as problem:
        raise problem_to_http(problem) from problem


def create_import(
    session: Session,
    org_id: str,
    data: bytes,
    parsed: Parsed,
    *,
    filename: str | None,
    survey_id: str | None,
    dry_run: bool,
) -> dict[str, Any]:
    """Store a checked upload (see :func:`read_upload`) and queue its job; an unknown survey is a
    404. The rows themselves are written when the job runs."""
    if survey_id is not None:
        check_survey(session, org_id, survey_id)
    now = utcnow()
    imp = DataImport(
        id=new_id(),
        org_id=org_id,
        layout=parsed.layout,
        filename=filename.replace("\x00", "")[:500] or None if filename else None,
        survey_id=survey_id,
        score_column=parsed.score_column[:500] if parsed.score_column else None,
        # "" records that the file has no comment column, so the job does not guess again
        comment_column=parsed.comment_column[:500] if parsed.comment_column else "",
        dry_run=dry_run,
        state="queued",
        content=data,
        size_bytes=len(data),
        rows_total=parsed.total,
        rows_done=0,
        created=0,
        updated=0,
        unchanged=0,
        error_count=0,
        errors=[],
        reason=None,
        created_at=now,
        started_at=None,
        finished_at=None,
        updated_at=now,
    )
    session.add(imp)
    session.flush()
    enqueue(session, IMPORT_JOB, {"import_id": imp.id}, org_id=org_id, max_attempts=JOB_ATTEMPTS)
    return import_out(imp)


def list_imports(session: Session, org_id: str, page: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The organization's imports, newest first, and how many there are."""
    total = session.scalar(select(func.count()).select_from(DataImport).where(DataImport.org_id == org_id))
    rows = session.scalars(
        select(DataImport)
        .where(DataImport.org_id == org_id)
        .order_by(DataImport.created_at.desc(), DataImport.id.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return [import_out(r) for r in rows], int(total or 0)


def _end(db: Database, import_id: str, state: str, reason: str | None = None) -> None:
    """Finish an import: its state, and the stored file dropped (it holds people's addresses)."""
    now = utcnow()
    with db.transaction() as session:
        session.execute(
            update(DataImport)
            .where(DataImport.id == import_id, DataImport.state.in_(("queued", "running")))
            .values(state=state, reason=reason, content=None, finished_at=now, updated_at=now)
        )


def _gave_up(db: Database, job: JobInfo, reason: str) -> None:
    _end(db, job.payload["import_id"], "failed", f"gave up after {job.attempts} attempts: {reason}"[:2000])


def _backoff(attempt: int) -> timedelta:
    return timedelta(seconds=10 * attempt)


@dataclass(frozen=True)
class _Claimed:
    org_id: str
    content: bytes | None
    layout: str
    score_column: str | None
    comment_column: str | None
    survey_id: str | None
    dry_run: bool
    rows_done: int


def _claim(db: Database, import_id: str) -> _Claimed | None:
    with db.transaction() as session:
        imp = session.get(DataImport, import_id)
        if imp is None or imp.state not in ("queued", "running"):
            return None
        now = utcnow()
        imp.state = "running"
        imp.started_at = imp.started_at or now
        imp.updated_at = now
        return _Claimed(
            imp.org_id,
            imp.content,
            imp.layout,
            imp.score_column,
            imp.comment_column,
            imp.survey_id,
            imp.dry_run,
            imp.rows_done,
        )


class TakenOver(Exception):
    """Another worker has moved this import on since this one read it (its lease ran out)."""


def _record_progress(import_id: str, done_before: int) -> Progress:
    """Progress written in each batch's transaction, only if no other worker moved the import on
    meanwhile: otherwise the batch is rolled back (:class:`TakenOver`), so rows are never
    counted twice, whoever holds the job."""
    last = [done_before]

    def record(session: Session, done: int, tally: Tally) -> None:
        kept = session.scalar(select(DataImport.errors).where(DataImport.id == import_id)) or []
        room = KEPT_ERRORS - len(kept)
        moved = session.execute(
            update(DataImport)
            .where(DataImport.id == import_id, DataImport.rows_done == last[0], DataImport.state == "running")
            .values(
                rows_done=done,
                created=DataImport.created + tally.created,
                updated=DataImport.updated + tally.updated,
                unchanged=DataImport.unchanged + tally.unchanged,
                error_count=DataImport.error_count + len(tally.errors),
                errors=[*kept, *(e.out() for e in tally.errors[: max(room, 0)])],
                updated_at=utcnow(),
            )
        )
        if not cast(CursorResult[Any], moved).rowcount:
            raise TakenOver(import_id)
        last[0] = done

    return record


# Imports run on a worker thread of their own (one per worker process, one import at a time):
# an import of a large history takes minutes, and mails and reminders must not wait behind it.
@handler(IMPORT_JOB, backoff=_backoff, on_failure=_gave_up, pool="imports")
def run_import(db: Database, job: JobInfo) -> None:
    """Run an uploaded import from the first row not yet done (see the module docstring)."""
    import_id = job.payload["import_id"]
    claimed = _claim(db, import_id)
    if claimed is None:
        return  # finished already, or deleted with its organization
    if claimed.content is None:
        _end(db, import_id, "failed", "the uploaded file is no longer stored")
        return
    try:
        parsed: Parsed = parse(claimed.content, claimed.layout, claimed.score_column, claimed.comment_column)
    except ImportProblem as problem:
        _end(db, import_id, "failed", f"{problem.field}: {problem.text(API_OPTIONS)}")
        return
    try:
        run_rows(
            db,
            claimed.org_id,
            parsed.rows,
            survey_id=claimed.survey_id,
            dry_run=claimed.dry_run,
            start=claimed.rows_done,
            progress=_record_progress(import_id, claimed.rows_done),
        )
    except NotFound as exc:  # the survey was deleted after the upload
        _end(db, import_id, "failed", exc.message)
        return
    except TakenOver as exc:
        # Its new holder goes on; if none does (this worker read a stale state), a fresh start
        # soon resumes from what is committed.
        log.warning("import %s was moved on by another worker; this one stops", import_id)
        raise RetryLater(timedelta(seconds=1), "moved on by another worker") from exc
    _end(db, import_id, "done")
    log.info("import %s done (%d rows)", import_id, parsed.total)
