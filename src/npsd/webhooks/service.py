"""Webhook subscriptions: create, read, update, delete, list deliveries, send a test event.

Callers pass rows already resolved in the caller's organization (``routes.webhook_by_id``), so
nothing here can reach another tenant's webhook.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from npsd.kit import events
from npsd.kit.errors import BadRequest
from npsd.kit.ids import new_id
from npsd.kit.listing import newest_page
from npsd.kit.models import Webhook, WebhookAttempt, WebhookDelivery
from npsd.kit.timeutil import iso, utcnow
from npsd.webhooks import delivery, guard, signing
from npsd.webhooks.schemas import WebhookCreate, WebhookUpdate


def check_url(url: str, allow_private: bool) -> None:
    """400 naming ``url`` unless it is a safe target (resolved and checked unless private targets
    are allowed; delivery checks again, since DNS answers change)."""
    try:
        if allow_private:
            guard.check_syntax(url)
        else:
            guard.check_target(url, allow_private=False)
    except guard.UnsafeTarget as exc:
        raise BadRequest.field("url", str(exc)) from exc


def webhook_out(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "surveyIds": hook.survey_ids,
        "description": hook.description,
        "isActive": hook.is_active,
        "createdAt": iso(hook.created_at),
        "updatedAt": iso(hook.updated_at),
        "health": {
            "consecutiveFailures": hook.consecutive_failures or 0,
            "failingSince": iso(hook.failing_since),
            "circuitOpen": hook.circuit_opened_at is not None,
            "nextProbeAt": iso(hook.next_probe_at),
        },
    }


def create_webhook(session: Session, org_id: str, data: WebhookCreate, allow_private: bool) -> dict[str, Any]:
    """Store a new subscription with a fresh secret; the reply is the only place the secret appears."""
    check_url(data.url, allow_private)
    now = utcnow()
    hook = Webhook(
        id=new_id(),
        org_id=org_id,
        secret=signing.new_secret(),
        created_at=now,
        updated_at=now,
        **data.column_values(),
    )
    session.add(hook)
    session.flush()
    return {**webhook_out(hook), "secret": hook.secret}


def update_webhook(
    session: Session, hook: Webhook, data: WebhookUpdate, allow_private: bool
) -> dict[str, Any]:
    """Change the fields sent. A new URL is checked like a new webhook's."""
    values = data.column_values()
    if "url" in values and values["url"] != hook.url:
        check_url(values["url"], allow_private)
    for column, value in values.items():
        setattr(hook, column, value)
    if values:
        hook.updated_at = utcnow()
    session.flush()
    return webhook_out(hook)


def delete_webhook(session: Session, hook: Webhook) -> None:
    """Delete the subscription; its deliveries and attempts go with it, and queued retries find
    nothing to send."""
    session.execute(delete(Webhook).where(Webhook.id == hook.id, Webhook.org_id == hook.org_id))


def list_webhooks(session: Session, org_id: str, page: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the organization's webhooks, newest first, and their total number."""
    rows, total = newest_page(session, Webhook, org_id, page, limit)
    return [webhook_out(row) for row in rows], total


@dataclass(frozen=True)
class DeliveryQuery:
    page: int
    limit: int
    status: str | None
    event_type: str | None


def _delivery_out(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhookId": row.webhook_id,
        "eventType": row.event_type,
        "status": row.status,
        "attemptCount": row.attempts,
        "nextAttemptAt": iso(row.next_attempt_at),
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "payload": orjson.loads(row.payload),
        "attempts": [
            {
                "id": a.id,
                "attemptedAt": iso(a.attempted_at),
                "statusCode": a.status_code,
                "error": a.error,
                "durationMs": a.duration_ms,
            }
            for a in attempts
        ],
    }


def _with_attempts(session: Session, rows: list[WebhookDelivery]) -> list[dict[str, Any]]:
    by_delivery: dict[str, list[WebhookAttempt]] = defaultdict(list)
    if rows:
        for attempt in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_([r.id for r in rows]))
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        ):
            by_delivery[attempt.delivery_id].append(attempt)
    return [_delivery_out(r, by_delivery[r.id]) for r in rows]


def list_deliveries(session: Session, hook: Webhook, q: DeliveryQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of the webhook's deliveries, newest first, each with all its attempts; and the
    number of deliveries matching the filters. Three queries whatever the page size."""
    conds = [WebhookDelivery.webhook_id == hook.id, WebhookDelivery.org_id == hook.org_id]
    if q.status is not None:
        conds.append(WebhookDelivery.status == q.status)
    if q.event_type is not None:
        conds.append(WebhookDelivery.event_type == q.event_type)
    total = session.scalar(select(func.count()).select_from(WebhookDelivery).where(*conds)) or 0
    rows = list(
        session.scalars(
            select(WebhookDelivery)
            .where(*conds)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(q.limit)
            .offset((q.page - 1) * q.limit)
        )
    )
    return _with_attempts(session, rows), total


def send_test(session: Session, hook: Webhook) -> dict[str, Any]:
    """Queue a ``webhook.test`` event to this webhook only (even when it is inactive, so a receiver
    can be checked before it is switched on). Returns the pending delivery."""
    now = iso(utcnow()) or ""
    data = {"webhookId": hook.id, "message": "This is a test event from npsd; no data changed."}
    text = orjson.dumps({"type": delivery.TEST_EVENT, "timestamp": now, "data": data}).decode()
    (delivery_id,) = events.enqueue_deliveries(session, hook.org_id, [(hook.id, delivery.TEST_EVENT, text)])
    row = session.get_one(WebhookDelivery, delivery_id)
    return _delivery_out(row, [])
