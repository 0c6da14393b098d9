"""Domain events (``response.created`` ...), recorded in the writer's transaction and delivered
to webhooks by the job worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

EVENT_TYPES = ("response.created", "response.updated", "response.deleted", "invitation.failed",
               "unsubscribe.created")


def emit(session: Session, org_id: str, event_type: str, objects: Sequence[dict[str, Any]]) -> None:
    """Record one event per object for every matching webhook of ``org_id``, in the caller's
    transaction. ``objects`` are the API representations (for responses: the /nps record output,
    whose ``campaignId`` selects webhooks filtered by ``surveyIds``). Set-based: one query to find
    webhooks, one insert for deliveries, whatever the number of objects; nothing when the
    organization has no webhook."""
    return None
