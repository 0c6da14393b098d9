"""``/v1/imports``: upload another tool's export and follow its import (admin or editor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from npsd.auth.deps import Editor
from npsd.imports import service
from npsd.imports.layouts import CHOICES, Parsed
from npsd.imports.schemas import UPLOAD_BODY_SCHEMA, UPLOAD_FIELDS, ImportRead
from npsd.kit.errors import BadRequest
from npsd.kit.http import DbSession, TransactionRoute
from npsd.kit.ids import is_id
from npsd.kit.limits import BodyTooLarge
from npsd.kit.listing import TOTAL_COUNT_HEADER, Paged, with_total
from npsd.kit.lookup import resolve
from npsd.kit.models import DataImport
from npsd.kit.validation import storable

router = APIRouter(route_class=TransactionRoute, prefix="/v1/imports", tags=["imports"])
TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off", ""})
MAX_COLUMN_NAME = 500


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    layout: str
    survey_id: str | None
    score_column: str | None
    comment_column: str | None
    dry_run: bool


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest.field(name, "must be a text field, not a file")
    try:
        value = storable(value.strip())
    except ValueError as exc:
        raise BadRequest.field(name, str(exc)) from None
    return value or None


async def upload_form(request: Request) -> Upload:
    """The multipart upload, each field checked; anything unreadable is a 400 naming the field."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise BadRequest.field(
            "file", "must be uploaded as multipart/form-data, the export in the field `file`"
        )
    try:
        form = await request.form(max_files=1, max_fields=len(UPLOAD_FIELDS))
    except BodyTooLarge:
        raise
    except Exception as exc:  # a malformed body, too many parts: starlette and python-multipart differ
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise BadRequest.field("file", f"the multipart body cannot be read ({detail})") from exc
    try:
        unknown = sorted({key for key in form if key not in UPLOAD_FIELDS})
        if unknown:
            raise BadRequest(
                f"{unknown[0]}: is not a known field; the fields are {', '.join(UPLOAD_FIELDS)}",
                [{"field": key, "issue": "is not a known field"} for key in unknown],
            )
        for key in UPLOAD_FIELDS:
            if len(form.getlist(key)) > 1:
                raise BadRequest.field(key, "must be sent once")
        upload = form.get("file")
        if upload is None:
            raise BadRequest.field("file", "is required: the export to import")
        if not isinstance(upload, UploadFile):
            raise BadRequest.field("file", "must be a file part (with a filename), not a text field")
        data = await upload.read()
        layout = _text(form.get("from"), "from") or "auto"
        if layout not in CHOICES:
            raise BadRequest.field("from", f"must be one of {', '.join(CHOICES)}")
        survey_id = _text(form.get("surveyId"), "surveyId")
        if survey_id is not None and not is_id(survey_id):
            raise BadRequest.field("surveyId", "must be a 24-character hexadecimal id")
        columns = {}
        for name in ("scoreColumn", "commentColumn"):
            columns[name] = _text(form.get(name), name)
            if columns[name] is not None and len(columns[name] or "") > MAX_COLUMN_NAME:
                raise BadRequest.field(name, f"must be at most {MAX_COLUMN_NAME} characters")
        dry = (_text(form.get("dryRun"), "dryRun") or "").lower()
        if dry not in TRUE | FALSE:
            raise BadRequest.field("dryRun", "must be true or false")
        return Upload(
            data,
            upload.filename,
            layout,
            survey_id,
            columns["scoreColumn"],
            columns["commentColumn"],
            dry in TRUE,
        )
    finally:
        await form.close()


UploadForm = Annotated[Upload, Depends(upload_form)]


@dataclass(frozen=True)
class CheckedUpload:
    upload: Upload
    parsed: Parsed


def checked_upload(upload: UploadForm) -> CheckedUpload:
    """The upload read whole (in a worker thread, before the request's transaction)."""
    parsed = service.read_upload(upload.data, upload.layout, upload.score_column, upload.comment_column)
    return CheckedUpload(upload, parsed)


Checked = Annotated[CheckedUpload, Depends(checked_upload)]


@router.post(
    "",
    response_model=ImportRead,
    status_code=202,
    openapi_extra=UPLOAD_BODY_SCHEMA,
)
def create_import(principal: Editor, checked: Checked, session: DbSession) -> dict[str, Any]:
    """Import answers from another tool's export (admin or editor).

    Send the file as `multipart/form-data` in the field `file` (at most `NPSD_MAX_BODY_BYTES`).
    `from` names its layout (`csv`, `delighted`, `qualtrics`, `surveymonkey`, `typeform`,
    `formbricks`) or is `auto` (the default), which recognises it by its headers.
    `scoreColumn` / `commentColumn` name the columns holding the 0-10 score and the comment
    when they cannot be told from the file (the reply names the column that was chosen).
    `surveyId` attaches every answer to that survey; `dryRun=true` checks and counts every row
    and writes nothing.

    The layout and columns are read at once (a 400 naming `file`, `from`, `scoreColumn` or
    `commentColumn` otherwise); the rows are then written by a background job, 5,000 at a time,
    through the same path as `PUT /nps`. Follow it with `GET /v1/imports/{id}`. Each answer's
    `sourceId` comes from the tool's response id, so importing a file again creates nothing new.
    """
    upload = checked.upload
    return service.create_import(
        session,
        principal.org_id,
        upload.data,
        checked.parsed,
        filename=upload.filename,
        survey_id=upload.survey_id,
        dry_run=upload.dry_run,
    )


@router.get("", response_model=list[ImportRead], responses=TOTAL_COUNT_HEADER)
def list_imports(
    principal: Editor, session: DbSession, response: Response, paged: Paged
) -> list[dict[str, Any]]:
    """List the organization's imports, newest first, as a bare array (total in `X-Total-Count`)."""
    return with_total(response, service.list_imports(session, principal.org_id, paged.page, paged.limit))


@router.get("/{id}", response_model=ImportRead)
def get_import(
    id: Annotated[str, Path(description="Import id (24 hexadecimal characters)")],
    principal: Editor,
    session: DbSession,
) -> dict[str, Any]:
    """One import: its state (queued, running, done, failed), rows done of the total, how many
    answers were created, updated or left unchanged, and the first rows not taken (row number,
    column, what is wrong)."""
    imp = resolve(session, DataImport, principal.org_id, id, "import", prefixes=False)
    return service.import_out(imp)
