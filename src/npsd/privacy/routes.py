"""``/v1/erasures``: erase a person on request (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from npsd.auth.deps import Admin
from npsd.kit.errors import BadRequest
from npsd.kit.http import AppSettings, DbSession, TransactionRoute, json_response
from npsd.kit.listing import TOTAL_COUNT_HEADER, Paged, ParamStr, blank_to_none, with_total
from npsd.kit.lookup import resolve
from npsd.kit.models import Erasure
from npsd.kit.validation import check_email
from npsd.privacy import service
from npsd.privacy.schemas import ErasureCreate, ErasureRead

router = APIRouter(route_class=TransactionRoute, prefix="/v1/erasures", tags=["privacy"])


def erasure_by_id(
    id: Annotated[str, Path(description="Erasure id (24 hexadecimal characters)")],
    principal: Admin,
    session: DbSession,
) -> Erasure:
    """The erasure named in the path, in the caller's organization, or 404 (400 when malformed)."""
    return resolve(session, Erasure, principal.org_id, id, "erasure", prefixes=False)


ErasureById = Annotated[Erasure, Depends(erasure_by_id)]


@router.post("", response_model=ErasureRead, status_code=202)
def create_erasure(
    body: ErasureCreate, principal: Admin, session: DbSession, settings: AppSettings
) -> Response:
    """Erase a person (admin only), as data-protection law asks on request: every answer of the
    address in every survey, its contact, its invitations, stored `Idempotency-Key` replies and
    webhook deliveries that hold it. Files uploaded to `POST /v1/imports` and not yet imported
    keep their rows, with the address replaced: the import then refuses those rows as erased;
    import reports (file name, row errors) lose the address too. Contacts', companies' and surveys' figures are recounted
    without them. Its entry on the unsubscribe list stays (it is a one-way hash, and keeps the
    address from being mailed).

    The work runs in the background: the reply (202) is the erasure with `state` `queued`; follow
    it at `GET /v1/erasures/{id}` until `done` (with counts of what was removed) or `failed`. Webhooks
    subscribed to `person.erased` then receive the erasure's id, counts, and the ids of the removed
    answers and contact, never the address; no `response.deleted` events are sent for it. npsd
    does not keep the address: the erasure stores a keyed hash of it, enough to find the erasures of
    an address again (`GET /v1/erasures?email=`)."""
    erasure = service.request_erasure(session, settings, principal.org_id, body.email, principal.user_id)
    return json_response(service.erasure_out(erasure), status_code=202)


@router.get("", response_model=list[ErasureRead], responses=TOTAL_COUNT_HEADER)
def list_erasures(
    principal: Admin,
    session: DbSession,
    settings: AppSettings,
    response: Response,
    paged: Paged,
    email: Annotated[
        ParamStr | None,
        Query(max_length=320, description="Only the erasures of this address (case-insensitive)"),
    ] = None,
) -> list[dict[str, Any]]:
    """The organization's erasures, newest first, as a bare array; `X-Total-Count` has the number.
    With `email`, only that address's (they are found by its hash; the address is not stored)."""
    address = blank_to_none(email)
    if address is not None:
        try:
            address = check_email(address.strip())
        except ValueError as exc:
            raise BadRequest.field("email", str(exc)) from exc
    listed = service.list_erasures(session, settings, principal.org_id, address, paged.page, paged.limit)
    return with_total(response, listed)


@router.get("/{id}", response_model=ErasureRead)
def get_erasure(erasure: ErasureById) -> Any:
    """One erasure: `state` (queued, running, done, failed), its counts and times."""
    return service.erasure_out(erasure)
