"""Alert rule and delivery shapes (camelCase JSON, unknown fields are a 400)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from npsd.kit.ids import is_id
from npsd.kit.validation import ColumnInput, Email, Storable
from npsd.webhooks import guard

Channel = Literal["email", "chat"]
DeliveryStatus = Literal["pending", "sent", "failed"]
Sentiment = Literal["negative", "neutral", "positive"]  # insights/engine.SENTIMENTS
MAX_EMAILS = 20
MAX_WORDS = 20
MAX_THEMES = 100


def _chat_url(value: str) -> str:
    try:
        guard.check_syntax(value)
    except guard.UnsafeTarget as exc:
        raise ValueError(str(exc)) from exc
    return value


def _object_id(value: str) -> str:
    if not is_id(value):
        raise ValueError("must be a 24-character hexadecimal id")
    return value


def _word(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("must not be blank")
    return value


def _unique(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.casefold(), value)
    return list(seen.values())


RuleName = Annotated[str, Field(max_length=200), Storable, AfterValidator(_word)]
ObjectId = Annotated[str, AfterValidator(_object_id)]
Words = Annotated[
    list[Annotated[str, Field(max_length=200), Storable, AfterValidator(_word)]],
    Field(min_length=1, max_length=MAX_WORDS),
    AfterValidator(_unique),
]
Emails = Annotated[list[Email], Field(max_length=MAX_EMAILS), AfterValidator(_unique)]
Sentiments = Annotated[list[Sentiment], Field(min_length=1, max_length=3), AfterValidator(_unique)]
ThemeIds = Annotated[list[ObjectId], Field(min_length=1, max_length=MAX_THEMES), AfterValidator(_unique)]
ChatUrl = Annotated[str, Field(max_length=2048), Storable, AfterValidator(_chat_url)]


class AlertRuleUpdate(ColumnInput):
    """The fields of an alert rule an admin may write. On update every field is optional and only
    the fields sent change; `name`, `emails` and `isActive` must not be null; `null` removes a
    condition (`surveyId`, `companyId`, `scoreAtMost`, `commentContains`, `sentiments`,
    `themeIds`) or the chat target.

    Conditions that are set must all hold for an answer to match; a rule without conditions
    matches every answer. `sentiments` and `themeIds` are judged on what the comment analysis
    read in the comment (`/v1/insights`): an answer with such a condition is judged once its
    comment is analysed (seconds after it is written), and an answer without a comment never
    meets them."""

    model_config = ConfigDict(extra="forbid")

    name: RuleName | None = Field(None, description="What the rule is for, shown in every alert")
    surveyId: ObjectId | None = Field(
        None, description="Only answers to this survey (its id; the answer's `campaignId`)"
    )
    companyId: ObjectId | None = Field(None, description="Only answers from contacts of this company")
    scoreAtMost: StrictInt | None = Field(
        None, ge=0, le=10, description="Only answers scoring at most this (6: every detractor)"
    )
    commentContains: Words | None = Field(
        None,
        description="A list of words or phrases: only answers whose comment contains at least one "
        "of them as whole words, ignoring case (`refund` matches `Refund!` but not `refunded`)",
    )
    sentiments: Sentiments | None = Field(
        None,
        description="A list of `negative`, `neutral`, `positive`: only answers whose comment reads so "
        "(as `/v1/insights/answers` reports its `sentiment`)",
    )
    themeIds: ThemeIds | None = Field(
        None,
        description="A list of theme ids of the organization (`/v1/insights/themes`): only answers "
        "whose comment is about at least one of these themes",
    )
    emails: Emails | None = Field(None, description="Addresses that get each alert as one e-mail")
    chatWebhookUrl: ChatUrl | None = Field(
        None,
        description='A Slack-compatible incoming-webhook URL that gets each alert as `{"text": ...}`; '
        "it must resolve to public addresses only (unless the server allows private ones)",
    )
    isActive: StrictBool | None = Field(None, description="An inactive rule sends nothing")

    COLUMNS: ClassVar[dict[str, str]] = {
        "name": "name",
        "surveyId": "survey_id",
        "companyId": "company_id",
        "scoreAtMost": "score_at_most",
        "commentContains": "comment_contains",
        "sentiments": "sentiments",
        "themeIds": "theme_ids",
        "emails": "emails",
        "chatWebhookUrl": "chat_webhook_url",
        "isActive": "is_active",
    }
    NOT_NULL: ClassVar[frozenset[str]] = frozenset({"name", "emails", "isActive"})


class AlertRuleCreate(AlertRuleUpdate):
    """A new rule: `name` is required, and at least one of `emails` and `chatWebhookUrl`."""

    SETS_EVERY_FIELD = True

    name: RuleName = Field(description="What the rule is for, shown in every alert")
    emails: Emails = Field(default_factory=list, description="Addresses that get each alert as one e-mail")
    isActive: StrictBool = True


class AlertRuleRead(BaseModel):
    """An alert rule."""

    id: str
    name: str
    surveyId: str | None
    companyId: str | None
    scoreAtMost: int | None
    commentContains: list[str] | None
    sentiments: list[Sentiment] | None
    themeIds: list[str] | None
    emails: list[str]
    chatWebhookUrl: str | None
    isActive: bool
    createdAt: str
    updatedAt: str


class AlertDeliveryRead(BaseModel):
    """One alert about one answer on one channel: sent at most once per rule, answer and channel."""

    id: str
    ruleId: str
    answerId: str = Field(description="The answer's `_id` (see `/nps/{id}` and `/app/answers/{id}`)")
    channel: Channel
    target: str = Field(description="The e-mail addresses (comma-separated), or the chat webhook URL")
    status: DeliveryStatus = Field(
        description="pending (will be tried or retried), sent, or failed (gave up; `lastError` says why)"
    )
    attempts: int
    nextAttemptAt: str | None
    lastStatusCode: int | None = Field(description="The chat receiver's last HTTP status")
    lastError: str | None
    sentAt: str | None
    createdAt: str
    updatedAt: str
