"""Collecting answers, API side: invitations, the public link and unsubscribes under ``/v1``.

Included before the surveys router, so ``/v1/nps-surveys/{id}/invitations`` is matched here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from npsd.auth.deps import Admin, Editor, Viewer
from npsd.collect import service
from npsd.collect.pages import run_in_transaction
from npsd.collect.schemas import (
    InvitationRead,
    InvitationResults,
    InvitationsCreate,
    LinkRead,
    RemindersQueued,
    UnsubscribeCreate,
    UnsubscribeRead,
)
from npsd.kit.errors import BadRequest
from npsd.kit.http import AppSettings, DbSession, TransactionRoute, json_response
from npsd.kit.listing import (
    TOTAL_COUNT_HEADER,
    LimitParam,
    PageParam,
    ParamStr,
    SortOrderParam,
    blank_to_none,
    is_descending,
)
from npsd.kit.lookup import resolve
from npsd.kit.models import Invitation
from npsd.kit.validation import check_email
from npsd.surveys.routes import SurveyById

router = APIRouter(route_class=TransactionRoute, prefix="/v1", tags=["collect"])


def invitation_by_id(
    id: Annotated[str, Path(description="Invitation id (24 hexadecimal characters)")],
    principal: Viewer,
    session: DbSession,
) -> Invitation:
    """The invitation named in the path, in the caller's organization, or 404 (400 when malformed)."""
    return resolve(session, Invitation, principal.org_id, id, "invitation", prefixes=False)


InvitationById = Annotated[Invitation, Depends(invitation_by_id)]


def _statuses(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    statuses = [s.strip().lower() for s in value.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in service.STATUSES]
    if unknown:
        raise BadRequest.field(
            "status", f"unknown status {unknown[0][:40]!r}; use {', '.join(service.STATUSES)}"
        )
    return statuses


# ------------------------------------------------------------------------------------- invitations


@router.post("/nps-surveys/{id}/invitations", response_model=InvitationResults)
def create_invitations(
    principal: Editor, survey: SurveyById, body: InvitationsCreate, session: DbSession, settings: AppSettings
) -> Response:
    """Invite up to 5,000 recipients to answer the survey by e-mail, now or at `sendAt`.

    The reply has one result per recipient, in the order sent: `queued` (with `invitationId`),
    `throttled` (surveyed by any survey of your organization within this survey's `throttleDays`;
    with `nextEligibleAt`), `unsubscribed`, `invalid` (with `reason`) or `duplicate` (the address
    appears earlier in the request, or already has an open invitation to this survey). A switched-off
    survey, or one that closes before `sendAt`, answers 409.
    """
    results = service.create_invitations(session, settings, survey, body)
    return json_response({"results": results})


@router.get(
    "/nps-surveys/{id}/invitations", response_model=list[InvitationRead], responses=TOTAL_COUNT_HEADER
)
def list_invitations(
    survey: SurveyById,
    principal: Viewer,
    session: DbSession,
    status: Annotated[
        str | None,
        Query(
            max_length=200,
            description=("Comma-separated statuses: queued, sent, failed, answered, reminded, cancelled"),
        ),
    ] = None,
    email: Annotated[
        ParamStr | None, Query(max_length=320, description="Recipient address (case-insensitive)")
    ] = None,
    page: PageParam = 1,
    limit: LimitParam = 20,
    sortOrder: SortOrderParam = None,
) -> Response:
    """The survey's invitations, newest first, as a bare array; `X-Total-Count` has the number matching."""
    q = service.InvitationQuery(
        statuses=_statuses(status),
        email=blank_to_none(email),
        page=page,
        limit=limit,
        descending=is_descending(sortOrder),
    )
    rows, total = service.list_invitations(session, principal.org_id, survey.id, q)
    return json_response(rows, headers={"X-Total-Count": str(total)})


@router.post("/nps-surveys/{id}/reminders", response_model=RemindersQueued)
def remind_now(_: Editor, survey: SurveyById, session: DbSession, settings: AppSettings) -> Any:
    """Send the reminder now to everyone invited to this survey who has not answered, has not been
    reminded and has not unsubscribed, instead of waiting `reminderAfterDays` (this works for a
    survey without automatic reminders too). Each invitation still gets one reminder at most.

    The reply says how many reminders were queued; the mails go out within seconds, and each
    invitation's `remindedAt` is set once its reminder was accepted by the mail server. A closed
    survey answers 409.
    """
    return {"queued": service.remind_now(session, settings, survey)}


@router.get("/nps-surveys/{id}/link", response_model=LinkRead)
async def survey_link(request: Request, survey: SurveyById, principal: Viewer, settings: AppSettings) -> Any:
    """The survey's public link (`/s/{publicId}`), created on first request. Share it as is for anonymous
    answers, or add `?email=<address>` to identify the respondent. Answers are rate-limited per address
    (per client IP when anonymous)."""
    public_id = survey.public_id
    if not public_id:
        public_id = await run_in_transaction(
            request, True, service.ensure_public_id, principal.org_id, survey.id
        )
    return {"url": service.public_url(settings, public_id), "publicId": public_id}


@router.get("/invitations/{id}", response_model=InvitationRead)
def get_invitation(invitation: InvitationById) -> Any:
    """One invitation and where it stands."""
    return service.invitation_out(invitation)


@router.delete("/invitations/{id}", response_model=InvitationRead)
def cancel_invitation(invitation: InvitationById, _: Editor, session: DbSession) -> Any:
    """Cancel an invitation that has not been sent yet, and return it (`status` is `cancelled`).
    Cancelling a cancelled one changes nothing; one already sent, answered or failed answers 409."""
    return service.cancel_invitation(session, invitation)


# ------------------------------------------------------------------------------------ unsubscribes


@router.get("/unsubscribes", response_model=list[UnsubscribeRead], responses=TOTAL_COUNT_HEADER)
def list_unsubscribes(
    principal: Viewer,
    session: DbSession,
    settings: AppSettings,
    email: Annotated[
        ParamStr | None, Query(max_length=320, description="Only this address (case-insensitive)")
    ] = None,
    page: PageParam = 1,
    limit: LimitParam = 20,
) -> Response:
    """Addresses that receive no more survey e-mails, newest first; `X-Total-Count` has the number.

    npsd keeps only a one-way hash of each unsubscribed address (so that an address stays refused
    even after its person was erased), never the address itself. An entry therefore shows `email`
    only when you ask for one address (`?email=`: the entry of that address, or none); in the
    full list `email` is null. To check an address, ask for it."""
    rows, total = service.list_unsubscribes(
        session, settings, principal.org_id, blank_to_none(email), page, limit
    )
    return json_response(rows, headers={"X-Total-Count": str(total)})


@router.post(
    "/unsubscribes",
    response_model=UnsubscribeRead,
    status_code=201,
    responses={200: {"model": UnsubscribeRead, "description": "The address was unsubscribed already"}},
)
def create_unsubscribe(
    body: UnsubscribeCreate, principal: Editor, session: DbSession, settings: AppSettings
) -> Response:
    """Unsubscribe an address: its queued invitations are cancelled and new ones come back
    `unsubscribed`. 201 when new, 200 with the existing entry when it was unsubscribed already.
    Only a one-way hash of the address is stored; the reply shows the address (lower-cased, as npsd matches addresses)."""
    out, created = service.unsubscribe(session, settings, principal.org_id, body.email, "api")
    return json_response(out, status_code=201 if created else 200)


@router.delete("/unsubscribes/{email}", status_code=204, response_class=Response)
def delete_unsubscribe(
    email: Annotated[ParamStr, Path(max_length=320, description="The address, percent-encoded")],
    principal: Admin,
    session: DbSession,
    settings: AppSettings,
) -> Response:
    """Let the address receive invitations again (admin only). Cancelled invitations stay cancelled."""
    try:
        address = check_email(email.strip())
    except ValueError as exc:
        raise BadRequest.field("email", str(exc)) from exc
    service.delete_unsubscribe(session, settings, principal.org_id, address)
    return Response(status_code=204)
