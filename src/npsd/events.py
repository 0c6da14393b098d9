"""Domain events (``response.created`` ...), recorded in the writer's transaction and delivered
to webhooks by the job worker.

Writers call :func:`emit` with the API representations of what changed, in the same transaction
as the change: the events exist exactly when the change is committed, and a rolled-back write
sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from npsd.models import Webhook
from npsd.timeutil import iso, utcnow
from npsd.webhooks import delivery

EVENT_TYPES = (
    "response.created",
    "response.updated",
    "response.deleted",
    "invitation.failed",
    "unsubscribe.created",
)
_NO_SURVEY = object()


def survey_of(obj: dict[str, Any]) -> Any:
    """The survey an event object concerns: its ``campaignId`` (records), else its ``surveyId``
    (invitations); objects with neither key (unsubscribes) concern no survey and pass every filter."""
    if "campaignId" in obj:
        return obj["campaignId"]
    if "surveyId" in obj:
        return obj["surveyId"]
    return _NO_SURVEY


def body(event_type: str, timestamp: str, obj: dict[str, Any]) -> str:
    """The exact JSON that is signed and POSTed: ``{"type", "timestamp", "data"}``."""
    return orjson.dumps({"type": event_type, "timestamp": timestamp, "data": obj}).decode()


Objects = Sequence[dict[str, Any]] | Callable[[], Sequence[dict[str, Any]]]


def emit(session: Session, org_id: str, event_type: str, objects: Objects) -> int:
    """Record one event per object for every matching webhook of ``org_id``, in the caller's
    transaction. ``objects`` are the API representations (for responses: the /nps record output,
    whose ``campaignId`` selects webhooks filtered by ``surveyIds``). Set-based: one query to find
    webhooks, one insert for deliveries and one for their jobs, whatever the number of objects;
    only the webhook query when the organization has no matching webhook. Returns the number of
    deliveries queued. ``objects`` may be a function that builds them: it is called only when
    some webhook wants the event, so a bulk write pays nothing for events nobody listens to."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    hooks = session.execute(
        select(Webhook.id, Webhook.events, Webhook.survey_ids).where(
            Webhook.org_id == org_id, Webhook.is_active.is_(True)
        )
    ).all()
    targets = [
        (hook_id, set(survey_ids) if survey_ids else None)
        for hook_id, events, survey_ids in hooks
        if event_type in (events or ())
    ]
    if not targets:
        return 0
    if callable(objects):
        objects = objects()
    if not objects:
        return 0
    timestamp = iso(utcnow()) or ""
    bodies = [body(event_type, timestamp, obj) for obj in objects]
    surveys = [survey_of(obj) for obj in objects]
    items = [
        (hook_id, event_type, text)
        for hook_id, wanted in targets
        for text, survey in zip(bodies, surveys, strict=True)
        if wanted is None or survey is _NO_SURVEY or survey in wanted
    ]
    return len(delivery.enqueue_deliveries(session, org_id, items))
