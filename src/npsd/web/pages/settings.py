"""Settings ``/app/settings`` (admins only): API tokens, users and webhooks.

Every page here needs the admin role (``PageAdmin``; a viewer or editor gets a 403 page, and the
navigation hides the link for them). The pages call the same service functions as
``/v1/tokens``, ``/v1/users`` and ``/v1/webhooks``, and their forms carry the API's field names, so a
service's refusal lands next to the field it names. Two things are shown once and never again:
a new API token and a new webhook's signing secret. They appear only on the page that answers
the POST that made them (sent with ``Cache-Control: no-store`` like every page), never in a URL,
and no later page can show them: the server keeps neither.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from npsd.auth import service as auth_service
from npsd.auth.schemas import TokenCreate, UserCreate
from npsd.kit.errors import NpsdError, validation_details
from npsd.kit.http import AppSettings, DbSession
from npsd.kit.listing import PageParam, page_count
from npsd.kit.lookup import resolve
from npsd.kit.models import ApiToken, Organization, Webhook
from npsd.kit.timeutil import utcnow
from npsd.web.forms import form_text
from npsd.web.render import PageRoute, field_errors, render
from npsd.web.session import PageAdmin, PageUser, forget_user
from npsd.webhooks import service as webhook_service
from npsd.webhooks.schemas import EventType, WebhookCreate, WebhookUpdate

router = APIRouter(route_class=PageRoute, include_in_schema=False)

ROLE_OPTIONS = [("viewer", "Viewer"), ("editor", "Editor"), ("admin", "Admin")]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
EVENT_LABELS = {
    "response.created": "A response is created",
    "response.updated": "A response is updated",
    "response.deleted": "A response is deleted",
    "invitation.failed": "An invitation cannot be delivered",
    "unsubscribe.created": "Someone unsubscribes",
    "person.erased": "A person is erased",
}
DEFAULT_TTL_DAYS = "90"
PAGE_SIZE = 20


async def submitted_form(request: Request) -> FormData:
    """The POSTed form (already read once for its CSRF token; Starlette keeps it on the request)."""
    return await request.form()


Form = Annotated[FormData, Depends(submitted_form)]


def _errors_by_field(exc: ValidationError) -> dict[str, str]:
    """A schema's refusal as one message per form field (``events.0`` belongs to ``events``)."""
    errors: dict[str, str] = {}
    for detail in validation_details(list(exc.errors())):
        errors.setdefault(detail["field"].split(".")[0], detail["issue"])
    return errors


def _org(session: Session, user: PageUser) -> Organization:
    org = session.get(Organization, user.org_id)
    assert org is not None  # a session's organization exists while the session does
    return org


def _pages(total: int, page: int) -> dict[str, int]:
    return {"page": page, "pages": page_count(total, PAGE_SIZE), "total": total}


# ------------------------------------------------------------------------------------------ index


@router.get("/app/settings", response_class=HTMLResponse)
def settings_index(request: Request, user: PageAdmin) -> HTMLResponse:
    """The settings' front page: what each part is for, with links."""
    return render(request, "settings.html", {"section": ""}, user=user)


# ------------------------------------------------------------------------------------------ tokens


def _tokens_page(
    request: Request,
    user: PageUser,
    session: Session,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
    revoked: bool = False,
    status: int = 200,
) -> HTMLResponse:
    # Sessions (kind "session") are people signed in to the dashboard: they end when a person
    # signs out or is removed, so only the tokens made for machines are listed.
    tokens = [t for t in auth_service.list_tokens(session, _org(session, user)) if t.kind == "api"]
    tokens.reverse()  # newest first, where a token just made appears
    context = {
        "section": "tokens",
        "tokens": tokens,
        "now": utcnow(),
        "roles": ROLE_OPTIONS,
        "values": values if values is not None else {"role": "viewer", "ttlDays": DEFAULT_TTL_DAYS},
        "errors": errors or {},
        "created": created,
        "revoked": revoked,
    }
    return render(request, "settings_tokens.html", context, user=user, status=status)


@router.get("/app/settings/tokens", response_class=HTMLResponse)
def tokens_page(
    request: Request, user: PageAdmin, session: DbSession, revoked: str | None = None
) -> HTMLResponse:
    """The organization's API tokens, and the form that makes one."""
    return _tokens_page(request, user, session, revoked=revoked == "1")


@router.post("/app/settings/tokens", response_class=HTMLResponse)
def create_token(
    request: Request, user: PageAdmin, session: DbSession, form: Form, settings: AppSettings
) -> HTMLResponse:
    """Make a token (as ``POST /v1/tokens``); the answer is the one page that shows it."""
    values = {name: form_text(form, name).strip() for name in ("name", "role", "ttlDays")}
    try:
        body = TokenCreate.model_validate(
            {"name": values["name"] or None, "role": values["role"], "ttlDays": values["ttlDays"]}
        )
    except ValidationError as exc:
        return _tokens_page(request, user, session, values=values, errors=_errors_by_field(exc), status=400)
    try:
        issued = auth_service.create_token(
            session, settings, _org(session, user), body.role, timedelta(days=body.ttlDays), name=body.name
        )
    except NpsdError as exc:
        session.rollback()
        return _tokens_page(
            request, user, session, values=values, errors=field_errors(exc), status=exc.status
        )
    row = session.get_one(ApiToken, issued.jti)
    created = {"token": issued.token, "name": row.name, "role": row.role, "expires_at": row.expires_at}
    return _tokens_page(request, user, session, created=created, status=201)


@router.post("/app/settings/tokens/{jti}/revoke")
def revoke_token(jti: str, user: PageAdmin, session: DbSession) -> Response:
    """Revoke a token of the organization (as ``DELETE /v1/tokens/{jti}``): refused from now on."""
    row = auth_service.find_token(session, user.org_id, jti)
    auth_service.revoke_token(session, row.jti)
    return RedirectResponse("/app/settings/tokens?revoked=1", status_code=303)


# ------------------------------------------------------------------------------------------- users


def _users_page(
    request: Request,
    user: PageUser,
    session: Session,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    added: bool = False,
    removed: bool = False,
    remove_error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    context = {
        "section": "users",
        "users": auth_service.list_users(session, user.org_id),
        "me": user.principal.user_id,
        "roles": ROLE_OPTIONS,
        "values": values if values is not None else {"role": "viewer"},
        "errors": errors or {},
        "added": added,
        "removed": removed,
        "remove_error": remove_error,
    }
    return render(request, "settings_users.html", context, user=user, status=status)


@router.get("/app/settings/users", response_class=HTMLResponse)
def users_page(
    request: Request,
    user: PageAdmin,
    session: DbSession,
    added: str | None = None,
    removed: str | None = None,
) -> HTMLResponse:
    """The people who sign in to this organization, and the form that adds one."""
    return _users_page(request, user, session, added=added == "1", removed=removed == "1")


@router.post("/app/settings/users", response_class=HTMLResponse)
def create_user(request: Request, user: PageAdmin, session: DbSession, form: Form) -> Response:
    """Add a person with a role (as ``POST /v1/users``); the password is never shown back."""
    values = {"email": form_text(form, "email").strip(), "role": form_text(form, "role")}
    password = form_text(form, "password")
    try:
        body = UserCreate.model_validate({**values, "password": password})
        auth_service.create_user(session, _org(session, user), body.email, body.role, body.password)
    except ValidationError as exc:
        return _users_page(request, user, session, values=values, errors=_errors_by_field(exc), status=400)
    except NpsdError as exc:
        session.rollback()
        return _users_page(request, user, session, values=values, errors=field_errors(exc), status=exc.status)
    return RedirectResponse("/app/settings/users?added=1", status_code=303)


@router.get("/app/settings/users/{user_id}/remove", response_class=HTMLResponse)
def remove_user_page(request: Request, user_id: str, user: PageAdmin, session: DbSession) -> HTMLResponse:
    """Ask before removing a person (the form on this page is the only way to do it)."""
    person = auth_service.find_user(session, user.org_id, user_id)
    context = {"section": "users", "person": person, "me": user.principal.user_id, "errors": {}}
    return render(request, "settings_user_remove.html", context, user=user)


@router.post("/app/settings/users/{user_id}/remove", response_class=HTMLResponse)
def remove_user(request: Request, user_id: str, user: PageAdmin, session: DbSession) -> Response:
    """Remove a person; their sessions end at once, so their next page is the sign-in form."""
    person = auth_service.find_user(session, user.org_id, user_id)
    try:
        auth_service.delete_user(session, person, user.principal.user_id)
    except NpsdError as exc:
        session.rollback()
        return _users_page(request, user, session, remove_error=exc.message, status=exc.status)
    forget_user(user_id)
    return RedirectResponse("/app/settings/users?removed=1", status_code=303)


# ---------------------------------------------------------------------------------------- webhooks


def _webhooks_page(
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
    hooks, total = webhook_service.list_webhooks(session, user.org_id, page, PAGE_SIZE)
    context = {
        "section": "webhooks",
        "hooks": hooks,
        "pager": _pages(total, page),
        "events": [(e, EVENT_LABELS[e]) for e in EVENT_TYPES],
        "values": values if values is not None else {"events": list(EVENT_TYPES)},
        "errors": errors or {},
        "deleted": deleted,
    }
    return render(request, "settings_webhooks.html", context, user=user, status=status)


@router.get("/app/settings/webhooks", response_class=HTMLResponse)
def webhooks_page(
    request: Request,
    user: PageAdmin,
    session: DbSession,
    page: PageParam = 1,
    deleted: str | None = None,
) -> HTMLResponse:
    """The organization's webhooks, newest first, and the form that registers one."""
    return _webhooks_page(request, user, session, page, deleted=deleted == "1")


def _webhook_page(
    request: Request,
    user: PageUser,
    session: Session,
    hook: Webhook,
    page: int = 1,
    *,
    secret: str | None = None,
    tested: bool = False,
    status: int = 200,
) -> HTMLResponse:
    deliveries, total = webhook_service.list_deliveries(
        session, hook, webhook_service.DeliveryQuery(page=page, limit=PAGE_SIZE, status=None, event_type=None)
    )
    context = {
        "section": "webhooks",
        "hook": webhook_service.webhook_out(hook),
        "event_labels": EVENT_LABELS,
        "deliveries": deliveries,
        "pager": _pages(total, page),
        "secret": secret,
        "tested": tested,
    }
    return render(request, "settings_webhook.html", context, user=user, status=status)


@router.post("/app/settings/webhooks", response_class=HTMLResponse)
def register_webhook(
    request: Request, user: PageAdmin, session: DbSession, form: Form, settings: AppSettings
) -> HTMLResponse:
    """Register a webhook (as ``POST /v1/webhooks``); the answer is the one page with its secret."""
    values: dict[str, Any] = {
        "url": form_text(form, "url").strip(),
        "events": [e for e in form.getlist("events") if isinstance(e, str)],
        "description": form_text(form, "description").strip(),
    }
    try:
        body = WebhookCreate.model_validate(
            {"url": values["url"], "events": values["events"], "description": values["description"] or None}
        )
        created = webhook_service.create_webhook(session, user.org_id, body, settings.webhook_allow_private)
    except ValidationError as exc:
        errors = _errors_by_field(exc)
        return _webhooks_page(request, user, session, values=values, errors=errors, status=400)
    except NpsdError as exc:
        session.rollback()
        errors = field_errors(exc)
        return _webhooks_page(request, user, session, values=values, errors=errors, status=exc.status)
    hook = session.get_one(Webhook, created["id"])
    return _webhook_page(request, user, session, hook, secret=created["secret"], status=201)


def _webhook(session: Session, user: PageUser, webhook_id: str) -> Webhook:
    """The webhook of the path, in the user's organization: another's is a 404 like an unknown one."""
    return resolve(session, Webhook, user.org_id, webhook_id, "webhook", prefixes=False)


@router.get("/app/settings/webhooks/{webhook_id}", response_class=HTMLResponse)
def webhook_page(
    request: Request,
    webhook_id: str,
    user: PageAdmin,
    session: DbSession,
    page: PageParam = 1,
    tested: str | None = None,
) -> HTMLResponse:
    """One webhook with its deliveries, newest first (as ``GET /v1/webhooks/{id}/deliveries``)."""
    hook = _webhook(session, user, webhook_id)
    return _webhook_page(request, user, session, hook, page, tested=tested == "1")


@router.post("/app/settings/webhooks/{webhook_id}/test")
def send_test_event(webhook_id: str, user: PageAdmin, session: DbSession) -> Response:
    """Queue a ``webhook.test`` event to this webhook (as ``POST /v1/webhooks/{id}/test``)."""
    hook = _webhook(session, user, webhook_id)
    webhook_service.send_test(session, hook)
    return RedirectResponse(f"/app/settings/webhooks/{hook.id}?tested=1", status_code=303)


@router.post("/app/settings/webhooks/{webhook_id}/active")
def set_webhook_active(
    request: Request,
    webhook_id: str,
    user: PageAdmin,
    session: DbSession,
    form: Form,
    settings: AppSettings,
) -> Response:
    """Switch a webhook on or off (as ``PATCH /v1/webhooks/{id}`` with ``isActive``)."""
    hook = _webhook(session, user, webhook_id)
    raw = form_text(form, "isActive")
    # a form sends text; the API's field is a strict boolean, so only these two words map onto it
    active: bool | str = {"true": True, "false": False}.get(raw, raw)
    try:
        body = WebhookUpdate.model_validate({"isActive": active})
    except ValidationError as exc:
        raise NpsdError("isActive must be true or false", validation_details(list(exc.errors()))) from exc
    webhook_service.update_webhook(session, hook, body, settings.webhook_allow_private)
    return RedirectResponse(f"/app/settings/webhooks/{hook.id}", status_code=303)


@router.get("/app/settings/webhooks/{webhook_id}/delete", response_class=HTMLResponse)
def delete_webhook_page(
    request: Request, webhook_id: str, user: PageAdmin, session: DbSession
) -> HTMLResponse:
    """Ask before deleting a webhook and its delivery history."""
    hook = _webhook(session, user, webhook_id)
    context = {"section": "webhooks", "hook": webhook_service.webhook_out(hook)}
    return render(request, "settings_webhook_delete.html", context, user=user)


@router.post("/app/settings/webhooks/{webhook_id}/delete")
def delete_webhook(webhook_id: str, user: PageAdmin, session: DbSession) -> Response:
    """Delete a webhook with its deliveries (as ``DELETE /v1/webhooks/{id}``)."""
    hook = _webhook(session, user, webhook_id)
    webhook_service.delete_webhook(session, hook)
    return RedirectResponse("/app/settings/webhooks?deleted=1", status_code=303)
