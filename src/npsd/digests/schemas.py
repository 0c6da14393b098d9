"""Digest subscription and delivery shapes (camelCase JSON, unknown fields are a 400)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from npsd.digests import schedule
from npsd.kit.validation import ColumnInput, Email, Storable, email_key

Frequency = Literal["daily", "weekly"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
DeliveryStatus = Literal["pending", "sent", "failed"]
DeliveryKind = Literal["scheduled", "preview"]
MAX_EMAILS = 50


def _time_zone(value: str) -> str:
    schedule.zone(value)  # ValueError names the expectation
    return value


def _unique_addresses(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(email_key(value), value)
    return list(seen.values())


def _survey_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


DigestName = Annotated[str, Field(max_length=200), Storable]
TimeZone = Annotated[str, Field(max_length=64), Storable, AfterValidator(_time_zone)]
Hour = Annotated[StrictInt, Field(ge=0, le=23)]
Emails = Annotated[list[Email], Field(min_length=1, max_length=MAX_EMAILS), AfterValidator(_unique_addresses)]
SurveyId = Annotated[str, Field(max_length=64), Storable, AfterValidator(_survey_id)]


class DigestUpdate(ColumnInput):
    """The fields of a digest an admin may write. On update every field is optional and only the
    fields sent change; `name: null` and `surveyId: null` clear them, the others must not be null."""

    model_config = ConfigDict(extra="forbid")

    name: DigestName | None = Field(None, description="A label for people, up to 200 characters")
    surveyId: SurveyId | None = Field(
        None, description="Only the answers to this survey; null or absent: every answer of the organization"
    )
    frequency: Frequency | None = Field(None, description="`daily` or `weekly`")
    weekday: Weekday | None = Field(
        None, description="The day a weekly digest is sent (`monday` ... `sunday`); required for weekly"
    )
    hour: Hour | None = Field(None, description="The local hour it is sent at, 0-23, in `timeZone`")
    timeZone: TimeZone | None = Field(
        None, description="IANA time zone of `hour` and `weekday`, e.g. `Europe/Berlin` or `UTC`"
    )
    emails: Emails | None = Field(None, description=f"Who receives it: 1 to {MAX_EMAILS} addresses")
    active: StrictBool | None = Field(None, description="An inactive digest is not sent on schedule")

    COLUMNS: ClassVar[dict[str, str]] = {
        "name": "name",
        "surveyId": "survey_id",
        "frequency": "frequency",
        "weekday": "weekday",
        "hour": "hour",
        "timeZone": "time_zone",
        "emails": "emails",
        "active": "is_active",
    }
    NOT_NULL: ClassVar[frozenset[str]] = frozenset({"frequency", "hour", "timeZone", "emails", "active"})


class DigestCreate(DigestUpdate):
    """A new digest: `frequency`, `hour`, `timeZone` and `emails` are required (and `weekday`
    for a weekly one)."""

    SETS_EVERY_FIELD = True

    frequency: Frequency = Field(description="`daily` or `weekly`")
    hour: Hour = Field(description="The local hour it is sent at, 0-23, in `timeZone`")
    timeZone: TimeZone = Field(description="IANA time zone, e.g. `Europe/Berlin` or `UTC`")
    emails: Emails = Field(description=f"Who receives it: 1 to {MAX_EMAILS} addresses")
    active: StrictBool = True


class DigestRead(BaseModel):
    """A digest subscription and its schedule."""

    id: str
    name: str | None
    surveyId: str | None = Field(description="null: every answer of the organization")
    frequency: Frequency
    weekday: Weekday | None
    hour: int
    timeZone: str
    emails: list[str]
    active: bool
    nextDueAt: str | None = Field(description="When it is sent next (UTC); null while inactive")
    lastSentAt: str | None = Field(description="When a scheduled digest was last sent (UTC)")
    createdAt: str
    updatedAt: str


class PeriodRead(BaseModel):
    since: str = Field(description="First UTC day covered")
    until: str = Field(description="Last UTC day covered, included")


class DigestFigures(BaseModel):
    """What a digest says, computed by the same functions as `GET /v1/nps-surveys/nps-metrics`
    with `since`/`until` set to the period and `compareSince`/`compareUntil` to the one before."""

    period: PeriodRead
    previousPeriod: PeriodRead
    npsScore: float | None
    marginOfError: float | None
    confidenceInterval: list[float] | None
    responses: int = Field(description="Answers received in the period")
    promoters: int
    passives: int
    detractors: int
    previousNpsScore: float | None
    change: float | None = Field(description="npsScore minus previousNpsScore; null if either is null")
    significant: bool | None = Field(description="Whether the change is beyond chance at 95%")
    newestDetractors: list[dict[str, Any]] = Field(
        description="Up to 5, newest first: answer id, date, score, comment, contact, company"
    )
    feedUrl: str = Field(description="The dashboard's feed of the period's detractors")


class DeliveryRead(BaseModel):
    """One digest mail: scheduled (one per period) or a preview (`POST /v1/digests/{id}/send`)."""

    id: str
    digestId: str
    kind: DeliveryKind
    period: PeriodRead
    emails: list[str]
    status: DeliveryStatus = Field(description="pending (queued or retrying), sent, or failed (gave up)")
    attempts: int
    lastError: str | None
    subject: str | None = Field(description="Set once sent")
    npsScore: float | None = Field(description="The NPS the mail reported, once sent")
    responses: int | None = Field(description="The answers the mail counted, once sent")
    createdAt: str
    sentAt: str | None


class SendResult(DeliveryRead):
    """The queued preview, with the figures it will report (the mail goes out within seconds)."""

    figures: DigestFigures
