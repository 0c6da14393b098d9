"""``/v1/webhooks``: signed event subscriptions (admin)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from npsd.auth.deps import Admin
from npsd.kit.http import AppSettings, DbSession, TransactionRoute
from npsd.kit.listing import TOTAL_COUNT_HEADER, Paged, with_total
from npsd.kit.lookup import resolve
from npsd.kit.models import Webhook
from npsd.webhooks import service
from npsd.webhooks.schemas import (
    DeliveryRead,
    DeliveryStatus,
    EventType,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)

router = APIRouter(route_class=TransactionRoute, prefix="/v1/webhooks", tags=["webhooks"])


def webhook_by_id(
    id: Annotated[str, Path(description="Webhook id (24 hexadecimal characters)")],
    principal: Admin,
    session: DbSession,
) -> Webhook:
    """The webhook named in the path, in the caller's organization, or 404 (400 when malformed)."""
    return resolve(session, Webhook, principal.org_id, id, "webhook", prefixes=False)


WebhookById = Annotated[Webhook, Depends(webhook_by_id)]


@router.post("", response_model=WebhookCreated, status_code=201)
def create_webhook(
    body: WebhookCreate, principal: Admin, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """Subscribe a URL to events (admin only).

    Every event is POSTed as `{"type", "timestamp", "data"}` and signed as a
    [Standard Webhook](https://www.standardwebhooks.com/): headers `webhook-id`, `webhook-timestamp`
    and `webhook-signature`. The reply carries the signing `secret` (`whsec_...`): it is shown here
    only, store it now. Failed deliveries are retried with exponential backoff for about 24 hours.
    The URL must be http(s) and resolve to public addresses only (400 naming `url` otherwise).
    """
    return service.create_webhook(session, principal.org_id, body, settings.webhook_allow_private)


@router.get("", response_model=list[WebhookRead], responses=TOTAL_COUNT_HEADER)
def list_webhooks(
    principal: Admin, session: DbSession, response: Response, paged: Paged
) -> list[dict[str, Any]]:
    """List the organization's webhooks, newest first, as a bare array (total in `X-Total-Count`).
    Secrets are never listed."""
    return with_total(response, service.list_webhooks(session, principal.org_id, paged.page, paged.limit))


@router.get("/{id}", response_model=WebhookRead)
def get_webhook(hook: WebhookById) -> dict[str, Any]:
    """Get one webhook (without its secret)."""
    return service.webhook_out(hook)


@router.patch("/{id}", response_model=WebhookRead)
def patch_webhook(
    hook: WebhookById, body: WebhookUpdate, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """Change `url`, `events`, `surveyIds`, `description` or `isActive`; the fields not sent keep
    their values. `surveyIds: null` removes the survey filter. A new URL is checked like a new one."""
    return service.update_webhook(session, hook, body, settings.webhook_allow_private)


@router.delete("/{id}", status_code=204, response_class=Response)
def delete_webhook(hook: WebhookById, session: DbSession) -> Response:
    """Delete a webhook with its delivery history; pending retries are dropped."""
    service.delete_webhook(session, hook)
    return Response(status_code=204)


@router.get("/{id}/deliveries", response_model=list[DeliveryRead], responses=TOTAL_COUNT_HEADER)
def list_deliveries(
    hook: WebhookById,
    session: DbSession,
    response: Response,
    paged: Paged,
    status: Annotated[DeliveryStatus | None, Query(description="pending, succeeded or failed")] = None,
    eventType: Annotated[
        EventType | Literal["webhook.test"] | None,
        Query(description="Only deliveries of this event type"),
    ] = None,
) -> list[dict[str, Any]]:
    """The webhook's deliveries, newest first, each with every attempt (time, HTTP status, error,
    duration). A bare array; the total is in `X-Total-Count`."""
    query = service.DeliveryQuery(page=paged.page, limit=paged.limit, status=status, event_type=eventType)
    return with_total(response, service.list_deliveries(session, hook, query))


@router.post("/{id}/test", response_model=DeliveryRead, status_code=202)
def send_test(hook: WebhookById, session: DbSession) -> dict[str, Any]:
    """Send a `webhook.test` event to this webhook only (also when it is inactive). Answers at once
    with the pending delivery; follow it in `GET /v1/webhooks/{id}/deliveries`."""
    return service.send_test(session, hook)
