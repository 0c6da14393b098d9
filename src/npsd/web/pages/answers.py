"""One answer ``/app/answers/{id}``: the answer, its tags, notes and follow-up, and its history.

Everyone signed in reads it; editors and admins change the tags (one per line), add notes and set
the follow-up status and assignee. The forms carry the API's field names (``tags``, ``text``,
``status``, ``assigneeEmail``) and call the same service as ``/v1/answers/{id}``, so a refusal is
shown next to the field it names, with the page's other values kept. A change answers with a
redirect to the page (post, redirect, get): reloading never sends it twice.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from npsd.followup import service
from npsd.followup.schemas import STATUSES, FollowUpInput, NoteInput, TagsInput
from npsd.insights import service as service_insights
from npsd.kit.errors import NpsdError, validation_details
from npsd.kit.http import DbSession
from npsd.kit.models import Company, Enduser, Survey
from npsd.web.forms import form_text
from npsd.web.insights_section import SENTIMENT_LABELS
from npsd.web.render import PageRoute, field_errors, render
from npsd.web.session import PageEditor, PageUser, PageViewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)

STATUS_LABELS = {"open": "Open", "contacted": "Contacted", "resolved": "Resolved"}
NOTICES = {
    "tags": "The tags were saved.",
    "note": "The note was added.",
    "followUp": "The follow-up was saved.",
}


async def submitted_form(request: Request) -> FormData:
    """The POSTed form (already read once for its CSRF token; Starlette keeps it on the request)."""
    return await request.form()


Form = Annotated[FormData, Depends(submitted_form)]


def _errors(exc: ValidationError) -> dict[str, str]:
    """A schema's refusal as one message per form field; a tag's problem names the tag's line."""
    errors: dict[str, str] = {}
    for detail in validation_details(list(exc.errors())):
        name, _, rest = detail["field"].partition(".")
        issue = detail["issue"]
        if name == "tags" and rest.isdigit():
            issue = f"Tag {int(rest) + 1}: {issue}"
        errors.setdefault(name, issue)
    return errors


def _names(session: Session, org_id: str, answer: dict[str, Any]) -> dict[str, str | None]:
    """The names beside the answer's ids: its contact (else the address), company and survey."""

    def name_of(model: Any, key: str | None) -> str | None:
        if not key:
            return None
        name: str | None = session.scalar(select(model.name).where(model.org_id == org_id, model.id == key))
        return name

    return {
        "contact": name_of(Enduser, answer["euId"]) or answer["email"],
        "company": name_of(Company, answer["cId"]),
        "survey": name_of(Survey, answer["campaignId"]),
    }


def _page(
    request: Request,
    user: PageUser,
    session: Session,
    key: str,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    record = service.find_answer(session, user.org_id, key)
    answer = service.answer_view(session, user.org_id, record)
    follow = answer["followUp"]
    shown = {
        "tags": "\n".join(answer["tags"]),
        "text": "",
        "status": follow["status"] or "open",
        "assigneeEmail": follow["assigneeEmail"] or "",
        **(values or {}),
    }
    users = service.org_users(session, user.org_id)
    context = {
        "answer": answer,
        "names": _names(session, user.org_id, answer),
        "values": shown,
        "errors": errors or {},
        "notice": notice,
        "statuses": [(s, STATUS_LABELS[s]) for s in STATUSES],
        "status_labels": STATUS_LABELS,
        "assignees": [("", "Nobody"), *((email, email) for _, email in users)],
        "here": f"/app/answers/{answer['_id']}",
        "insight": service_insights.readings_of(session, user.org_id, [answer["_id"]]).get(answer["_id"]),
        "sentiment_labels": SENTIMENT_LABELS,
    }
    return render(request, "answer.html", context, user=user, status=status)


@router.get("/app/answers/{key}", response_class=HTMLResponse)
def answer_page(
    key: str, request: Request, user: PageViewer, session: DbSession, saved: str = ""
) -> HTMLResponse:
    """One answer with its tags, notes, follow-up and history (as ``GET /v1/answers/{id}``)."""
    return _page(request, user, session, key, notice=NOTICES.get(saved))


def _refused(
    request: Request,
    user: PageUser,
    session: Session,
    key: str,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int,
) -> HTMLResponse:
    session.rollback()
    return _page(request, user, session, key, values=values, errors=errors, status=status)


@router.post("/app/answers/{key}/tags", response_class=HTMLResponse)
def save_tags(key: str, request: Request, user: PageEditor, session: DbSession, form: Form) -> Response:
    """Replace the answer's tags, one per line (as ``PUT /v1/answers/{id}/tags``)."""
    record = service.find_answer(session, user.org_id, key, for_update=True)
    raw = form_text(form, "tags")
    tags = [line for line in raw.replace("\r\n", "\n").split("\n") if line.strip()]
    try:
        body = TagsInput.model_validate({"tags": tags})
        service.set_tags(
            session, user.org_id, record["id"], body.tags, service.actor_of(session, user.principal)
        )
    except ValidationError as exc:
        return _refused(request, user, session, key, {"tags": raw}, _errors(exc), 400)
    return RedirectResponse(f"/app/answers/{record['id']}?saved=tags", status_code=303)


@router.post("/app/answers/{key}/notes", response_class=HTMLResponse)
def add_note(key: str, request: Request, user: PageEditor, session: DbSession, form: Form) -> Response:
    """Add a note to the answer (as ``POST /v1/answers/{id}/notes``)."""
    record = service.find_answer(session, user.org_id, key, for_update=True)
    text = form_text(form, "text")
    try:
        body = NoteInput.model_validate({"text": text})
        service.add_note(
            session, user.org_id, record["id"], body.text, service.actor_of(session, user.principal)
        )
    except ValidationError as exc:
        return _refused(request, user, session, key, {"text": text}, _errors(exc), 400)
    return RedirectResponse(f"/app/answers/{record['id']}?saved=note", status_code=303)


@router.post("/app/answers/{key}/follow-up", response_class=HTMLResponse)
def save_follow_up(key: str, request: Request, user: PageEditor, session: DbSession, form: Form) -> Response:
    """Set the answer's status and assignee (as ``PUT /v1/answers/{id}/follow-up``; an empty
    assignee is nobody)."""
    record = service.find_answer(session, user.org_id, key, for_update=True)
    values = {"status": form_text(form, "status"), "assigneeEmail": form_text(form, "assigneeEmail").strip()}
    try:
        body = FollowUpInput.model_validate(
            {"status": values["status"], "assigneeEmail": values["assigneeEmail"] or None}
        )
        service.set_follow_up(
            session,
            user.org_id,
            record["id"],
            body.status,
            body.assigneeEmail,
            service.actor_of(session, user.principal),
        )
    except ValidationError as exc:
        return _refused(request, user, session, key, values, _errors(exc), 400)
    except NpsdError as exc:
        return _refused(request, user, session, key, values, field_errors(exc), exc.status)
    return RedirectResponse(f"/app/answers/{record['id']}?saved=followUp", status_code=303)
