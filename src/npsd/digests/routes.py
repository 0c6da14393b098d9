"""``/v1/digests``: daily and weekly summary e-mails of the NPS (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from npsd.auth.deps import Admin
from npsd.digests import service
from npsd.digests.schemas import (
    DeliveryRead,
    DeliveryStatus,
    DigestCreate,
    DigestRead,
    DigestUpdate,
    SendResult,
)
from npsd.kit.http import AppSettings, DbSession, TransactionRoute
from npsd.kit.listing import TOTAL_COUNT_HEADER, LimitParam, PageParam, with_total
from npsd.kit.lookup import resolve
from npsd.kit.models import Digest

router = APIRouter(route_class=TransactionRoute, prefix="/v1/digests", tags=["digests"])


def digest_by_id(
    id: Annotated[str, Path(description="Digest id (24 hexadecimal characters)")],
    principal: Admin,
    session: DbSession,
) -> Digest:
    """The digest named in the path, in the caller's organization, or 404 (400 when malformed)."""
    return resolve(session, Digest, principal.org_id, id, "digest", prefixes=False)


DigestById = Annotated[Digest, Depends(digest_by_id)]


@router.post("", response_model=DigestRead, status_code=201)
def create_digest(body: DigestCreate, principal: Admin, session: DbSession) -> dict[str, Any]:
    """Send a summary of the NPS by e-mail every day or every week (admin only).

    The digest goes out at `hour` (0-23) local time in `timeZone` (an IANA name such as
    `Europe/Berlin`; daylight saving time moves it with the clocks), on `weekday` for a weekly
    one, to every address of `emails`, about the answers to `surveyId` or, without it, every
    answer of the organization. It reports the NPS with its 95% margin of error, the answers
    received, the change against the period of the same length just before and whether that
    change is significant, and the newest detractors with their comments, contact and company.

    A digest covers whole UTC days, the way `GET /v1/nps-surveys/nps-metrics` counts answers
    (its figures are that API's for `since`/`until` = the period and `compareSince`/
    `compareUntil` = the one before): a daily digest the last UTC day that ended before it is
    sent, a weekly one the last seven. `nextDueAt` says when it goes out next. Each period is
    mailed once, however many workers run.
    """
    return service.create_digest(session, principal.org_id, body)


@router.get("", response_model=list[DigestRead], responses=TOTAL_COUNT_HEADER)
def list_digests(
    principal: Admin, session: DbSession, response: Response, page: PageParam = 1, limit: LimitParam = 20
) -> list[dict[str, Any]]:
    """List the organization's digests, newest first, as a bare array (total in `X-Total-Count`)."""
    return with_total(response, service.list_digests(session, principal.org_id, page, limit))


@router.get("/{id}", response_model=DigestRead)
def get_digest(digest: DigestById) -> dict[str, Any]:
    """Get one digest with its schedule (`nextDueAt`, `lastSentAt`)."""
    return service.digest_out(digest)


@router.patch("/{id}", response_model=DigestRead)
def patch_digest(digest: DigestById, body: DigestUpdate, session: DbSession) -> dict[str, Any]:
    """Change any field; those not sent keep their values. A changed schedule (frequency,
    weekday, hour, time zone, or switching the digest on) counts from now: `nextDueAt` is the
    next such time. A period already mailed is never mailed again."""
    return service.update_digest(session, digest, body)


@router.delete("/{id}", status_code=204, response_class=Response)
def delete_digest(digest: DigestById, session: DbSession) -> Response:
    """Delete a digest with its delivery log; a mail still queued is not sent."""
    service.delete_digest(session, digest)
    return Response(status_code=204)


@router.post("/{id}/send", response_model=SendResult, status_code=202)
def send_digest_now(digest: DigestById, session: DbSession, settings: AppSettings) -> dict[str, Any]:
    """Send the digest now, as a preview, to its addresses (also when it is inactive).

    It covers the period a digest sent now would (see `POST /v1/digests`), and its subject starts
    with `[Preview]`; the schedule is untouched. Answers at once with the queued delivery and the
    `figures` the mail reports; follow it in `GET /v1/digests/{id}/deliveries`.
    """
    return service.send_now(session, digest, settings.base_url)


@router.get("/{id}/deliveries", response_model=list[DeliveryRead], responses=TOTAL_COUNT_HEADER)
def list_deliveries(
    digest: DigestById,
    session: DbSession,
    response: Response,
    page: PageParam = 1,
    limit: LimitParam = 20,
    status: Annotated[DeliveryStatus | None, Query(description="pending, sent or failed")] = None,
) -> list[dict[str, Any]]:
    """The digest's mails, newest first: scheduled ones (one per period) and previews, with the
    period, the addresses, the status (`pending` while queued or retried, `sent`, `failed` once
    the SMTP server refused it for good or retries ran out), the attempts and last error, and
    the subject, NPS and answer count the mail reported. A bare array; total in `X-Total-Count`."""
    return with_total(response, service.list_deliveries(session, digest, page, limit, status))
