"""Domain events (``response.created`` ...), recorded in the writer's transaction and delivered
to webhooks by the job worker; created and updated answers also reach the record listeners
(alerts), as jobs of their own.

Writers call :func:`emit` with the API representations of what changed, in the same transaction
as the change: the events exist exactly when the change is committed, and a rolled-back write
sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from npsd.kit.ids import new_ids
from npsd.kit.models import AlertRule, Job, Webhook, WebhookDelivery
from npsd.kit.timeutil import iso, utcnow

EVENT_TYPES = (
    "response.created",
    "response.updated",
    "response.deleted",
    "invitation.failed",
    "unsubscribe.created",
    "person.erased",  # privacy/: an erasure finished (ids and counts, never the address)
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


def emit(
    session: Session,
    org_id: str,
    event_type: str,
    objects: Objects,
    record_ids: Sequence[str] | None = None,
) -> int:
    """Record one event per object for every matching webhook of ``org_id``, in the caller's
    transaction, and hand the ids of created and updated records to the record listeners (see
    :data:`RECORD_LISTENERS`). ``objects`` are the API representations (for responses: the /nps
    record output, whose ``campaignId`` selects webhooks filtered by ``surveyIds``). Set-based: one
    query to find webhooks, one insert for deliveries and one for their jobs, whatever the number
    of objects; only the webhook query (and one cheap query per listener) when nobody wants the
    event. Returns the number of webhook deliveries queued. ``objects`` may be a function that
    builds them: it is called at most once, and only when a webhook or listener wants the event,
    so a bulk write pays nothing for events nobody listens to. ``record_ids`` (the ``_id`` of
    each object, when the writer has them at hand) spare the listeners building the objects: on
    a 5,000-record batch formatting them cost a sixth of the write."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    built: list[Sequence[dict[str, Any]]] = []

    def materialized() -> Sequence[dict[str, Any]]:
        if not built:
            built.append(objects() if callable(objects) else objects)
        return built[0]

    def ids() -> Sequence[str]:
        if record_ids is not None:
            return record_ids
        return [str(obj["_id"]) for obj in materialized() if obj.get("_id")]

    queued = _to_webhooks(session, org_id, event_type, materialized)
    _to_listeners(session, org_id, event_type, ids)
    return queued


def _to_webhooks(
    session: Session, org_id: str, event_type: str, objects: Callable[[], Sequence[dict[str, Any]]]
) -> int:
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
    built = objects()
    if not built:
        return 0
    timestamp = iso(utcnow()) or ""
    bodies = [body(event_type, timestamp, obj) for obj in built]
    surveys = [survey_of(obj) for obj in built]
    items = [
        (hook_id, event_type, text)
        for hook_id, wanted in targets
        for text, survey in zip(bodies, surveys, strict=True)
        if wanted is None or survey is _NO_SURVEY or survey in wanted
    ]
    return len(enqueue_deliveries(session, org_id, items))


# ------------------------------------------------------------------------------ record listeners
# Areas above the kit that act on new and changed answers (alerts; the analysis of issue #13) do
# so through a job of their own kind: a write whose organization wants it stores one job per
# chunk of record ids, in the writer's transaction, so it is never lost nor run for a rolled-back
# write, and whatever process wrote the answers (a server, `npsd import`, `npsd demo`), any
# worker runs it. The kit declares the listeners (job kind and the one cheap query that says
# whether an organization wants it) rather than letting areas register at import: a process that
# never imported the listening area must still record the job. The area registers the handler.


@dataclass(frozen=True)
class RecordListener:
    """A job kind that receives ``{"event": ..., "record_ids": [...]}`` for the records a write
    created or updated, when ``wanted(session, org_id)`` (one cheap query, run per write) says so."""

    job_kind: str
    wanted: Callable[[Session, str], bool]
    events: frozenset[str] = frozenset({"response.created", "response.updated"})
    chunk: int = 500  # record ids per job


def _has_active_alert_rule(session: Session, org_id: str) -> bool:
    found = session.scalar(
        select(AlertRule.id).where(AlertRule.org_id == org_id, AlertRule.is_active.is_(True)).limit(1)
    )
    return found is not None


def _insights_on(session: Session, org_id: str) -> bool:
    """Whether the server analyses comments (``NPSD_INSIGHTS``, on unless switched off)."""
    database = session.info.get("database")
    return database is None or bool(database.config.insights)


ALERTS_EVALUATE_JOB = "alerts.evaluate"  # registered by alerts/delivery.py
# Every answer is read for its themes and sentiment (a comment cleared to none too: its reading
# must go); the job costs nothing for answers without a comment.
INSIGHTS_ANALYSE_JOB = "insights.analyse"  # registered by insights/service.py
RECORD_LISTENERS: list[RecordListener] = [
    RecordListener(ALERTS_EVALUATE_JOB, _has_active_alert_rule),
    RecordListener(INSIGHTS_ANALYSE_JOB, _insights_on),
]


def _to_listeners(
    session: Session, org_id: str, event_type: str, record_ids: Callable[[], Sequence[str]]
) -> None:
    for listener in RECORD_LISTENERS:
        if event_type not in listener.events or not listener.wanted(session, org_id):
            continue
        ids = record_ids()
        if not ids:
            continue
        chunks = [ids[i : i + listener.chunk] for i in range(0, len(ids), listener.chunk)]
        now = utcnow()
        session.flush()
        session.execute(
            insert(Job.__table__),
            [
                {
                    "id": job_id,
                    "org_id": org_id,
                    "kind": listener.job_kind,
                    "payload": {"event": event_type, "record_ids": chunk},
                    "dedupe_key": None,
                    "status": "queued",
                    "run_at": now,
                    "attempts": 0,
                    "max_attempts": MAX_ATTEMPTS,
                    "locked_by": None,
                    "locked_until": None,
                    "last_error": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for job_id, chunk in zip(new_ids(len(chunks)), chunks, strict=True)
            ],
        )


# The outbox: an event for a webhook becomes a stored delivery and the durable job that sends it
# (the webhooks area registers the job's handler).
DELIVERY_JOB = "webhook.deliver"
# Delay before retry n (after attempt n fails). 8 attempts in all, the last about 24 h after the first.
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=8),
    timedelta(hours=8, minutes=25),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1


def retry_delay(attempt: int) -> timedelta:
    """How long to wait after failed attempt number ``attempt`` (1-based)."""
    return RETRY_SCHEDULE[min(max(attempt, 1), len(RETRY_SCHEDULE)) - 1]


def enqueue_deliveries(session: Session, org_id: str, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Store deliveries ``(webhook_id, event_type, body)`` and one ``webhook.deliver`` job each, in
    the caller's transaction: two multi-row inserts whatever the number. Returns the delivery ids."""
    if not items:
        return []
    now = utcnow()
    delivery_ids = new_ids(len(items))
    job_ids = new_ids(len(items))
    session.flush()  # ORM objects added earlier in this session (the webhook, say) go first
    session.execute(
        insert(WebhookDelivery.__table__),
        [
            {
                "id": did,
                "org_id": org_id,
                "webhook_id": webhook_id,
                "event_type": event_type,
                "payload": body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "last_status_code": None,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            }
            for did, (webhook_id, event_type, body) in zip(delivery_ids, items, strict=True)
        ],
    )
    session.execute(
        insert(Job.__table__),
        [
            {
                "id": jid,
                "org_id": org_id,
                "kind": DELIVERY_JOB,
                "payload": {"delivery_id": did},
                "dedupe_key": None,
                "status": "queued",
                "run_at": now,
                "attempts": 0,
                "max_attempts": MAX_ATTEMPTS,
                "locked_by": None,
                "locked_until": None,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            }
            for jid, did in zip(job_ids, delivery_ids, strict=True)
        ],
    )
    return delivery_ids
