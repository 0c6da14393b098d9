"""Settings ``/app/settings/organization`` (admins only): the organization's profile.

The form carries the fields of ``PUT /v1/organization`` under their API names and calls the same
service (``auth.service.update_profile``), so every refusal lands next to the field it names.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from npsd.auth import service as auth_service
from npsd.kit.errors import NpsdError
from npsd.kit.http import DbSession
from npsd.kit.models import Organization
from npsd.web.forms import form_text
from npsd.web.pages.settings import Form
from npsd.web.render import PageRoute, field_errors, render
from npsd.web.session import PageAdmin, PageUser

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FIELDS = ("name", "senderName", "senderEmail", "logoUrl", "brandColor", "privacyUrl")


def _values(org: Organization) -> dict[str, str]:
    return {
        "name": org.name,
        "senderName": org.sender_name or "",
        "senderEmail": org.sender_email or "",
        "logoUrl": org.logo_url or "",
        "brandColor": org.brand_color or "",
        "privacyUrl": org.privacy_url or "",
    }


def _page(
    request: Request,
    user: PageUser,
    values: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    saved: bool = False,
    status: int = 200,
) -> HTMLResponse:
    context = {"section": "organization", "values": values, "errors": errors or {}, "saved": saved}
    return render(request, "settings_organization.html", context, user=user, status=status)


def _org(session: Session, user: PageUser) -> Organization:
    org = session.get(Organization, user.org_id)
    assert org is not None  # a session's organization exists while the session does
    return org


@router.get("/app/settings/organization", response_class=HTMLResponse)
def organization_page(
    request: Request, user: PageAdmin, session: DbSession, saved: str | None = None
) -> HTMLResponse:
    """The profile respondents see: sender of survey mails, logo, brand colour, privacy link."""
    return _page(request, user, _values(_org(session, user)), saved=saved == "1")


@router.post("/app/settings/organization", response_class=HTMLResponse)
def save_organization(request: Request, user: PageAdmin, session: DbSession, form: Form) -> Response:
    """Replace the profile (as ``PUT /v1/organization``); each refusal is shown next to its field."""
    values = {name: form_text(form, name).strip() for name in FIELDS}
    try:  # every field's length and form is the service's rule, as for the API
        auth_service.update_profile(
            session,
            _org(session, user),
            auth_service.Profile(
                name=values["name"],
                sender_name=values["senderName"],
                sender_email=values["senderEmail"],
                logo_url=values["logoUrl"],
                brand_color=values["brandColor"],
                privacy_url=values["privacyUrl"],
            ),
        )
    except NpsdError as exc:
        session.rollback()
        return _page(request, user, values, errors=field_errors(exc), status=exc.status)
    return RedirectResponse("/app/settings/organization?saved=1", status_code=303)
