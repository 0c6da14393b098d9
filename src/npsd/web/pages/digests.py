"""Digest settings ``/app/settings/digests`` (admins only): the daily and weekly NPS e-mails.

The pages call the service of ``/v1/digests`` and their forms carry the API's field names, so a
refusal (a time zone nobody has, a weekly digest without its weekday, an address that is not
one) is shown next to the field it names. "Send now" queues a preview exactly like
``POST /v1/digests/{id}/send``; the delivery log is ``GET /v1/digests/{id}/deliveries``.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from npsd.analytics.metrics import survey_choices
from npsd.digests import schedule
from npsd.digests import service as digest_service
from npsd.digests.schemas import DigestCreate, DigestUpdate
from npsd.kit.errors import NpsdError
from npsd.kit.http import AppSettings, DbSession
from npsd.kit.listing import PageParam
from npsd.kit.lookup import resolve
from npsd.kit.models import Digest
from npsd.web.forms import form_text
from npsd.web.pages.settings import PAGE_SIZE, Form, _errors_by_field, _pages
from npsd.web.render import PageRoute, field_errors, render
from npsd.web.session import PageAdmin, PageUser

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SURVEY_CHOICES = 500
FREQUENCY_OPTIONS = [("daily", "Daily"), ("weekly", "Weekly")]
WEEKDAY_OPTIONS = [("", "—"), *((day, day.capitalize()) for day in schedule.WEEKDAYS)]
HOUR_OPTIONS = [(str(h), f"{h:02d}:00") for h in range(24)]
TIME_ZONES = sorted(available_timezones())
DEFAULTS = {"frequency": "daily", "hour": "9", "timeZone": "UTC", "active": "true", "weekday": ""}
ADDRESS_SEPARATORS = re.compile(r"[\s,;]+")


def _form_values(form: FormData) -> dict[str, Any]:
    """What was typed, as the page shows it again."""
    return {
        "name": form_text(form, "name").strip(),
        "surveyId": form_text(form, "surveyId").strip(),
        "frequency": form_text(form, "frequency").strip(),
        "weekday": form_text(form, "weekday").strip(),
        "hour": form_text(form, "hour").strip(),
        "timeZone": form_text(form, "timeZone").strip(),
        "emails": form_text(form, "emails").strip(),
        "active": "true" if form_text(form, "active") in ("true", "on") else "",
    }


def _body(values: dict[str, Any]) -> dict[str, Any]:
    """The API body of the form: blanks are absent or null, the hour a number when it is one, the
    addresses split on commas, semicolons, spaces and lines; a weekday only for weekly ones."""
    hour: int | str = int(values["hour"]) if values["hour"].isdigit() else values["hour"]
    return {
        "name": values["name"] or None,
        "surveyId": values["surveyId"] or None,
        "frequency": values["frequency"],
        "weekday": (values["weekday"] or None) if values["frequency"] == "weekly" else None,
        "hour": hour,
        "timeZone": values["timeZone"],
        "emails": [e for e in ADDRESS_SEPARATORS.split(values["emails"]) if e],
        "active": values["active"] == "true",
    }


def _values_of(digest: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": digest["name"] or "",
        "surveyId": digest["surveyId"] or "",
        "frequency": digest["frequency"],
        "weekday": digest["weekday"] or "",
        "hour": str(digest["hour"]),
        "timeZone": digest["timeZone"],
        "emails": "\n".join(digest["emails"]),
        "active": "true" if digest["active"] else "",
    }


def _choices(session: Session, user: PageUser) -> dict[str, Any]:
    surveys = survey_choices(session, user.org_id, SURVEY_CHOICES)
    return {
        "survey_options": [("", "All answers of the organization"), *surveys],
        "survey_names": dict(surveys),
        "frequency_options": FREQUENCY_OPTIONS,
        "weekday_options": WEEKDAY_OPTIONS,
        "hour_options": HOUR_OPTIONS,
        "time_zones": TIME_ZONES,
    }


def _list_page(
    request: Request,
    user: PageUser,
    session: Session,
    page: int = 1,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    deleted: bool = False,
    status: int = 200,
) -> HTMLResponse:
    digests, total = digest_service.list_digests(session, user.org_id, page, PAGE_SIZE)
    context = {
        "section": "digests",
        "digests": digests,
        "pager": _pages(total, page),
        "values": values if values is not None else DEFAULTS,
        "errors": errors or {},
        "deleted": deleted,
        **_choices(session, user),
    }
    return render(request, "settings_digests.html", context, user=user, status=status)


def _digest(session: Session, user: PageUser, digest_id: str) -> Digest:
    """The digest of the path, in the user's organization: another's is a 404 like an unknown one."""
    return resolve(session, Digest, user.org_id, digest_id, "digest", prefixes=False)


def _detail_page(
    request: Request,
    user: PageUser,
    session: Session,
    digest: Digest,
    page: int = 1,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    out = digest_service.digest_out(digest)
    deliveries, total = digest_service.list_deliveries(session, digest, page, PAGE_SIZE)
    context = {
        "section": "digests",
        "digest": out,
        "deliveries": deliveries,
        "pager": _pages(total, page),
        "values": values if values is not None else _values_of(out),
        "errors": errors or {},
        "notice": notice,
        **_choices(session, user),
    }
    return render(request, "settings_digest.html", context, user=user, status=status)


@router.get("/app/settings/digests", response_class=HTMLResponse)
def digests_page(
    request: Request, user: PageAdmin, session: DbSession, page: PageParam = 1, deleted: str | None = None
) -> HTMLResponse:
    """The organization's digests, newest first, and the form that adds one."""
    return _list_page(request, user, session, page, deleted=deleted == "1")


@router.post("/app/settings/digests", response_class=HTMLResponse)
def create_digest(request: Request, user: PageAdmin, session: DbSession, form: Form) -> Response:
    """Add a digest (as ``POST /v1/digests``); a refusal is shown next to its field."""
    values = _form_values(form)
    try:
        created = digest_service.create_digest(
            session, user.org_id, DigestCreate.model_validate(_body(values))
        )
    except ValidationError as exc:
        return _list_page(request, user, session, values=values, errors=_errors_by_field(exc), status=400)
    except NpsdError as exc:
        session.rollback()
        return _list_page(request, user, session, values=values, errors=field_errors(exc), status=exc.status)
    return RedirectResponse(f"/app/settings/digests/{created['id']}?created=1", status_code=303)


NOTICES = {
    "created": "The digest was added. It is sent at its next time below; “Send now” sends a preview.",
    "saved": "The digest was saved.",
    "sent": "A preview was queued to the digest's addresses. It is sent in the background: reload "
    "this page to see how it went.",
}


@router.get("/app/settings/digests/{digest_id}", response_class=HTMLResponse)
def digest_page(
    request: Request,
    digest_id: str,
    user: PageAdmin,
    session: DbSession,
    page: PageParam = 1,
    created: str | None = None,
    saved: str | None = None,
    sent: str | None = None,
) -> HTMLResponse:
    """One digest: its schedule, the form that changes it, "Send now", and its mails."""
    digest = _digest(session, user, digest_id)
    flags = {"created": created, "saved": saved, "sent": sent}
    notice = next((NOTICES[k] for k, v in flags.items() if v == "1"), None)
    return _detail_page(request, user, session, digest, page, notice=notice)


@router.post("/app/settings/digests/{digest_id}", response_class=HTMLResponse)
def save_digest(
    request: Request, digest_id: str, user: PageAdmin, session: DbSession, form: Form
) -> Response:
    """Change a digest (as ``PATCH /v1/digests/{id}`` with every field of the form)."""
    digest = _digest(session, user, digest_id)
    values = _form_values(form)
    try:
        digest_service.update_digest(session, digest, DigestUpdate.model_validate(_body(values)))
    except ValidationError as exc:
        errors = _errors_by_field(exc)
        return _detail_page(request, user, session, digest, values=values, errors=errors, status=400)
    except NpsdError as exc:
        session.rollback()
        digest = _digest(session, user, digest_id)
        errors = field_errors(exc)
        return _detail_page(request, user, session, digest, values=values, errors=errors, status=exc.status)
    return RedirectResponse(f"/app/settings/digests/{digest.id}?saved=1", status_code=303)


@router.post("/app/settings/digests/{digest_id}/send")
def send_now(digest_id: str, user: PageAdmin, session: DbSession, settings: AppSettings) -> Response:
    """Queue a preview of the digest (as ``POST /v1/digests/{id}/send``)."""
    digest = _digest(session, user, digest_id)
    digest_service.send_now(session, digest, settings.base_url)
    return RedirectResponse(f"/app/settings/digests/{digest.id}?sent=1", status_code=303)


@router.get("/app/settings/digests/{digest_id}/delete", response_class=HTMLResponse)
def delete_digest_page(request: Request, digest_id: str, user: PageAdmin, session: DbSession) -> HTMLResponse:
    """Ask before deleting a digest and its delivery log."""
    digest = _digest(session, user, digest_id)
    context = {"section": "digests", "digest": digest_service.digest_out(digest)}
    return render(request, "settings_digest_delete.html", context, user=user)


@router.post("/app/settings/digests/{digest_id}/delete")
def delete_digest(digest_id: str, user: PageAdmin, session: DbSession) -> Response:
    """Delete a digest with its delivery log (as ``DELETE /v1/digests/{id}``)."""
    digest = _digest(session, user, digest_id)
    digest_service.delete_digest(session, digest)
    return RedirectResponse("/app/settings/digests?deleted=1", status_code=303)
