"""Webhook subscription and delivery shapes (camelCase JSON, unknown fields are a 400)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from npsd.kit.validation import ColumnInput, Storable
from npsd.webhooks import guard

EventType = Literal[
    "response.created",
    "response.updated",
    "response.deleted",
    "invitation.failed",
    "unsubscribe.created",
    "person.erased",
]
DeliveryStatus = Literal["pending", "succeeded", "failed"]
MAX_SURVEY_IDS = 1000


def _url(value: str) -> str:
    try:
        guard.check_syntax(value)
    except guard.UnsafeTarget as exc:
        raise ValueError(str(exc)) from exc
    return value


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _survey_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Description = Annotated[str, Field(max_length=500), Storable]
WebhookUrl = Annotated[str, Field(max_length=2048), Storable, AfterValidator(_url)]
Events = Annotated[list[EventType], Field(min_length=1, max_length=20), AfterValidator(_unique)]
SurveyIds = Annotated[
    list[Annotated[str, Field(max_length=64), Storable, AfterValidator(_survey_id)]],
    Field(min_length=1, max_length=MAX_SURVEY_IDS),
    AfterValidator(_unique),
]


class WebhookUpdate(ColumnInput):
    """The fields of a webhook an admin may write. On update every field is optional and only the
    fields sent change; `url`, `events` and `isActive` must not be null, `surveyIds: null` removes
    the survey filter."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = Field(
        None,
        description="http(s) URL the events are POSTed to; it must resolve to "
        "public addresses only (unless the server allows private ones)",
    )
    events: Events | None = Field(None, description="Event types to receive (at least one)")
    surveyIds: SurveyIds | None = Field(
        None,
        description="Only events about these surveys (the `campaignId` of a response); null or absent: "
        "all surveys. Events that concern no survey (unsubscribes) are always sent.",
    )
    description: Description | None = Field(None, description="Free text for people, up to 500 characters")
    isActive: StrictBool | None = Field(None, description="An inactive webhook receives nothing")

    COLUMNS: ClassVar[dict[str, str]] = {
        "url": "url",
        "events": "events",
        "surveyIds": "survey_ids",
        "description": "description",
        "isActive": "is_active",
    }
    NOT_NULL: ClassVar[frozenset[str]] = frozenset({"url", "events", "isActive"})


class WebhookCreate(WebhookUpdate):
    """A new webhook: `url` and `events` are required."""

    SETS_EVERY_FIELD = True  # a create stores every field, defaults included

    url: WebhookUrl = Field(description="http(s) URL the events are POSTed to")
    events: Events = Field(description="Event types to receive (at least one)")
    isActive: StrictBool = True


class WebhookHealth(BaseModel):
    """How the receiver fares. After `NPSD_WEBHOOK_CIRCUIT_FAILURES` (5) failed attempts in a row
    its circuit opens: one delivery (the probe) keeps its retry schedule, the others wait without
    using attempts until the probe or a test event (`POST /v1/webhooks/{id}/test`) succeeds; a
    delivery that waited a whole day is `failed` without an attempt."""

    consecutiveFailures: int = Field(description="Failed attempts in a row, across deliveries")
    failingSince: str | None = Field(description="When the current run of failures began")
    circuitOpen: bool
    nextProbeAt: str | None = Field(description="When the probe is tried next, while the circuit is open")


class WebhookRead(BaseModel):
    """A webhook subscription (its secret is only shown when it is created)."""

    id: str
    url: str
    events: list[str]
    surveyIds: list[str] | None
    description: str | None
    isActive: bool
    createdAt: str
    updatedAt: str
    health: WebhookHealth


class WebhookCreated(WebhookRead):
    """The new webhook, with its signing secret: store it now, it is never shown again."""

    secret: str = Field(
        description="`whsec_` + base64 key; verify each delivery's `webhook-signature` "
        "with any Standard Webhooks library"
    )


class AttemptRead(BaseModel):
    """One HTTP attempt of a delivery."""

    id: str
    attemptedAt: str
    statusCode: int | None = Field(description="The receiver's HTTP status; null when no answer came")
    error: str | None = Field(description="Why the attempt failed; null for a 2xx answer")
    durationMs: int


class DeliveryRead(BaseModel):
    """One event sent (or to be sent) to one webhook, with every attempt, oldest first."""

    id: str = Field(description="Also the `webhook-id` header: receivers deduplicate retries on it")
    webhookId: str
    eventType: str
    status: DeliveryStatus = Field(
        description="pending (will be tried or retried), succeeded or failed "
        "(gave up after about 24 hours of retries)"
    )
    attemptCount: int
    nextAttemptAt: str | None
    lastStatusCode: int | None
    lastError: str | None
    createdAt: str
    updatedAt: str
    payload: dict[str, Any] = Field(description="The exact JSON body that is signed and POSTed")
    attempts: list[AttemptRead]
