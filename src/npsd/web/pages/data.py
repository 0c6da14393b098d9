"""Bringing data in and taking a person out: ``/app/imports`` and ``/app/settings/erasures``.

Imports (admins and editors, as ``/v1/imports``): the form uploads another tool's export with
the API's fields (``file``, ``from``, ``surveyId``, ``scoreColumn``, ``commentColumn``,
``dryRun``); the file is read and its layout and columns settled by
:func:`npsd.imports.service.read_upload` before the request's transaction (a large file takes
seconds to read, which no writer should wait for), then stored and queued by
:func:`~npsd.imports.service.create_import`, exactly as the API does. A refusal lands next to
the field it names. The import's page then follows the job: its progress block polls
(htmx, every couple of seconds) until the import is done or failed, and stops polling then.
Without JavaScript the page still works: reloading it shows the same block.

Erasures (admins, as ``/v1/erasures``): the form requests the erasure of an address; the list
shows every request with its state and counts. The address is not shown back anywhere (npsd
keeps only a keyed hash of it), and never travels in a URL: the form posts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from npsd.analytics.metrics import survey_choices
from npsd.imports import service as import_service
from npsd.imports.layouts import LAYOUTS, TOOL_NAMES, Parsed
from npsd.kit.errors import NotFound, NpsdError, validation_details
from npsd.kit.http import AppSettings, DbSession
from npsd.kit.ids import is_id
from npsd.kit.listing import PageParam, page_count
from npsd.kit.lookup import resolve
from npsd.kit.models import DataImport, Survey
from npsd.kit.validation import storable
from npsd.privacy import service as privacy_service
from npsd.privacy.schemas import ErasureCreate
from npsd.web.forms import form_file, form_text
from npsd.web.render import PageRoute, field_errors, render
from npsd.web.session import PageAdmin, PageEditor, PageUser

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 20
POLL_EVERY = "2s"  # how often an import's page asks for its progress while it runs
MAX_SURVEY_OPTIONS = 1000
MAX_COLUMN_NAME = 500
LAYOUT_OPTIONS = [("auto", "Recognise it from its headers"), *((k, TOOL_NAMES[k]) for k in LAYOUTS)]
STATE_LABELS = {"queued": "Queued", "running": "Running", "done": "Done", "failed": "Failed"}
TEXT_FIELDS = ("from", "surveyId", "scoreColumn", "commentColumn")


async def submitted_form(request: Request) -> FormData:
    """The POSTed form (already read once for its CSRF token; Starlette keeps it on the request)."""
    return await request.form()


Form = Annotated[FormData, Depends(submitted_form)]


def _pager(total: int, page: int) -> dict[str, int]:
    return {"page": page, "pages": page_count(total, PAGE_SIZE), "total": total}


# ------------------------------------------------------------------------------------------ imports


@dataclass
class ImportUpload:
    """What the import form sent: the fields as typed (to show them again), the problems by
    field, and, when there are none, the file and its settled layout."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    filename: str | None = None
    parsed: Parsed | None = None


def import_upload(user: PageEditor, form: Form) -> ImportUpload:
    """Read and check the upload (a plain function: FastAPI runs it on a worker thread, before the
    request's transaction begins, as the API's ``checked_upload``)."""
    values = {name: form_text(form, name).strip() for name in TEXT_FIELDS}
    values["dryRun"] = "true" if form_text(form, "dryRun") else ""
    upload = ImportUpload(values)
    errors = upload.errors
    for name in TEXT_FIELDS:
        try:
            values[name] = storable(values[name])
        except ValueError as exc:
            errors[name] = str(exc)
            values[name] = ""
    layout = values["from"] or "auto"
    if layout not in ("auto", *LAYOUTS):
        errors["from"] = "Choose one of the layouts listed."
    if values["surveyId"] and not is_id(values["surveyId"]):
        errors["surveyId"] = "Choose one of the surveys listed."
    for name in ("scoreColumn", "commentColumn"):
        if len(values[name]) > MAX_COLUMN_NAME:
            errors[name] = f"At most {MAX_COLUMN_NAME} characters."
    if form_text(form, "dryRun") not in ("", "true"):
        errors["dryRun"] = "Tick the box, or leave it empty."
    chosen = form_file(form, "file")
    if chosen is None:
        errors["file"] = "Choose the file to import: a CSV export, or Delighted's JSON."
    if errors or chosen is None:
        return upload
    upload.data = chosen.file.read()
    upload.filename = chosen.filename
    try:
        upload.parsed = import_service.read_upload(
            upload.data, layout, values["scoreColumn"] or None, values["commentColumn"] or None
        )
    except NpsdError as exc:
        errors.update(field_errors(exc))
    return upload


CheckedImport = Annotated[ImportUpload, Depends(import_upload)]


def _imports_page(
    request: Request,
    user: PageUser,
    session: Session,
    page: int = 1,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    imports, total = import_service.list_imports(session, user.org_id, page, PAGE_SIZE)
    surveys = survey_choices(session, user.org_id, MAX_SURVEY_OPTIONS)
    context = {
        "imports": imports,
        "pager": _pager(total, page),
        "layouts": LAYOUT_OPTIONS,
        "layout_names": dict(LAYOUT_OPTIONS),
        "surveys": [("", "No survey"), *surveys],
        "states": STATE_LABELS,
        "values": values if values is not None else {"from": "auto"},
        "errors": errors or {},
    }
    return render(request, "imports.html", context, user=user, status=status)


@router.get("/app/imports", response_class=HTMLResponse)
def imports_page(request: Request, user: PageEditor, session: DbSession, page: PageParam = 1) -> HTMLResponse:
    """The organization's imports, newest first, and the form that starts one."""
    return _imports_page(request, user, session, page)


@router.post("/app/imports", response_class=HTMLResponse)
def start_import(request: Request, user: PageEditor, upload: CheckedImport, session: DbSession) -> Response:
    """Start an import (as ``POST /v1/imports``), then follow it on its own page."""
    errors = dict(upload.errors)
    if not errors and upload.parsed is not None:
        try:
            created = import_service.create_import(
                session,
                user.org_id,
                upload.data,
                upload.parsed,
                filename=upload.filename,
                survey_id=upload.values["surveyId"] or None,
                dry_run=upload.values["dryRun"] == "true",
            )
        except NotFound:
            session.rollback()
            errors["surveyId"] = "This survey no longer exists: choose another, or none."
        except NpsdError as exc:
            session.rollback()
            errors = field_errors(exc)
        else:
            return RedirectResponse(f"/app/imports/{created['id']}", status_code=303)
    return _imports_page(request, user, session, values=upload.values, errors=errors, status=400)


def _import_context(session: Session, user: PageUser, import_id: str) -> dict[str, Any]:
    """The import of the path, in the user's organization (another's is a 404 like an unknown one)."""
    imp = resolve(session, DataImport, user.org_id, import_id, "import", prefixes=False)
    out = import_service.import_out(imp)
    survey_name = None
    if imp.survey_id is not None:  # None when the survey was deleted since
        survey_name = session.scalar(
            select(Survey.name).where(Survey.org_id == user.org_id, Survey.id == imp.survey_id)
        )
    return {
        "imp": out,
        "survey_name": survey_name,
        "layout_names": dict(LAYOUT_OPTIONS),
        "states": STATE_LABELS,
        "live": out["state"] in ("queued", "running"),
        "poll_every": POLL_EVERY,
    }


@router.get("/app/imports/{import_id}", response_class=HTMLResponse)
def import_page(request: Request, import_id: str, user: PageEditor, session: DbSession) -> HTMLResponse:
    """One import: what was uploaded and how far its job got (rows done, created, updated,
    unchanged, the rows not taken with their row, column and reason)."""
    return render(request, "imports_detail.html", _import_context(session, user, import_id), user=user)


@router.get("/app/imports/{import_id}/progress", response_class=HTMLResponse)
def import_progress(request: Request, import_id: str, user: PageEditor, session: DbSession) -> HTMLResponse:
    """The import page's progress block alone: what its poll swaps in, until the import ends."""
    return render(request, "imports_progress.html", _import_context(session, user, import_id), user=user)


# ----------------------------------------------------------------------------------------- erasures


def _erasures_page(
    request: Request,
    user: PageUser,
    session: Session,
    settings: Any,
    page: int = 1,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    requested: bool = False,
    status: int = 200,
) -> HTMLResponse:
    context = {
        **_erasures_context(session, settings, user, page),
        "values": values or {},
        "errors": errors or {},
        "requested": requested,
    }
    return render(request, "settings_data_erasures.html", context, user=user, status=status)


def _erasures_context(session: Session, settings: Any, user: PageUser, page: int) -> dict[str, Any]:
    erasures, total = privacy_service.list_erasures(session, settings, user.org_id, None, page, PAGE_SIZE)
    return {
        "section": "erasures",
        "erasures": erasures,
        "pager": _pager(total, page),
        "states": STATE_LABELS,
        "live": any(e["state"] in ("queued", "running") for e in erasures),
        "poll_every": POLL_EVERY,
    }


@router.get("/app/settings/erasures", response_class=HTMLResponse)
def erasures_page(
    request: Request,
    user: PageAdmin,
    session: DbSession,
    settings: AppSettings,
    page: PageParam = 1,
    requested: str | None = None,
) -> HTMLResponse:
    """The organization's erasure requests, newest first, and the form that makes one."""
    return _erasures_page(request, user, session, settings, page, requested=requested == "1")


@router.get("/app/settings/erasures/table", response_class=HTMLResponse)
def erasures_table(
    request: Request, user: PageAdmin, session: DbSession, settings: AppSettings, page: PageParam = 1
) -> HTMLResponse:
    """The erasure table alone: what the page's poll swaps in while an erasure is under way."""
    context = _erasures_context(session, settings, user, page)
    return render(request, "settings_data_erasures_table.html", context, user=user)


@router.post("/app/settings/erasures", response_class=HTMLResponse)
def request_erasure(
    request: Request, user: PageAdmin, session: DbSession, settings: AppSettings, form: Form
) -> Response:
    """Request the erasure of an address (as ``POST /v1/erasures``); the worker does the work."""
    email = form_text(form, "email").strip()
    try:
        body = ErasureCreate.model_validate({"email": email})
        privacy_service.request_erasure(session, settings, user.org_id, body.email, user.principal.user_id)
    except ValidationError as exc:
        details = validation_details(list(exc.errors()))
        errors = {"email": details[0]["issue"] if details else "must be an e-mail address"}
        return _erasures_page(
            request, user, session, settings, values={"email": email}, errors=errors, status=400
        )
    except NpsdError as exc:
        session.rollback()
        return _erasures_page(
            request,
            user,
            session,
            settings,
            values={"email": email},
            errors=field_errors(exc),
            status=exc.status,
        )
    return RedirectResponse("/app/settings/erasures?requested=1", status_code=303)
