"""SalesOS NPS survey and survey-response shapes (camelCase JSON).

The SalesOS side is strict: any field a client may not write, read-only ones included, is a 400
naming it. ``PATCH`` and ``PUT`` are both partial updates (``SurveyUpdate``, applied with
``exclude_unset``), so a SalesOS client that sends only the fields it changes works with either.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from npsd.analytics.schemas import NpsSummary
from npsd.kit.validation import ColumnInput, Custom, Email, LongText, Score, ShortText, Storable, UtcDatetime
from npsd.records.schemas import ObjectId, SourceId

DEFAULT_QUESTION = "How likely are you to recommend us to a friend or colleague?"
DEFAULT_FOLLOW_UP = "What is the most important reason for your score?"
# The languages the respondent side speaks (``collect/i18n.py`` has their words): a survey's texts
# may be translated into these.
TRANSLATABLE = ("en", "de", "fr", "es")
TranslationLanguage = Literal["en", "de", "fr", "es"]
SurveyType = Literal["RELATIONSHIP", "TRANSACTIONAL"]
Category = Literal["PROMOTER", "PASSIVE", "DETRACTOR"]
_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _language(value: str) -> str:
    if not _LANGUAGE_RE.match(value):
        raise ValueError("must be a language tag such as en, de or pt-BR")
    return value


SurveyName = Annotated[str, Field(max_length=200), Storable, Field(min_length=1), AfterValidator(_not_blank)]
Question = Annotated[str, Field(max_length=2000), Storable, Field(min_length=1), AfterValidator(_not_blank)]
Language = Annotated[str, Field(max_length=16), AfterValidator(_language)]
ThrottleDays = Annotated[
    StrictInt, Field(ge=0, le=3650, description="Days before a contact may be asked again")
]
ReminderDays = Annotated[StrictInt, Field(ge=1, le=365, description="Days before a reminder; null for none")]


class SurveyTexts(BaseModel):
    """A survey's texts in one more language. A text left out is the default one in that language
    when the survey keeps the default; a text the survey's author wrote needs its translation,
    or recipients of this language get the whole mail and page in the survey's own language."""

    model_config = ConfigDict(extra="forbid")

    question: Question | None = None
    followUpQuestion: Question | None = None
    thankYouMessage: LongText | None = None


Translations = Annotated[
    dict[TranslationLanguage, SurveyTexts],
    Field(
        description="The question, follow-up question and thank-you message in other languages, "
        "by language (en, de, fr, es; not the survey's own `language`). Replaced whole on update; "
        "null removes every translation."
    ),
]


class SurveyUpdate(ColumnInput):
    """The fields of a survey a client may write. On update every field is optional and only the
    fields sent change; `name`, `question`, `surveyType`, `isActive`, `language` and `throttleDays`
    must not be null."""

    model_config = ConfigDict(extra="forbid")

    name: SurveyName | None = Field(None, description="1-200 characters")
    description: LongText | None = None
    surveyType: SurveyType | None = Field(
        None, description="RELATIONSHIP (periodic) or TRANSACTIONAL (after an event)"
    )
    triggerEvent: ShortText | None = Field(None, description="Event that sends a TRANSACTIONAL survey")
    question: Question | None = None
    followUpQuestion: Question | None = None
    isActive: StrictBool | None = Field(None, description="Whether the survey accepts new responses")
    language: Language | None = Field(None, description="Language tag, e.g. en")
    throttleDays: ThrottleDays | None = None
    reminderAfterDays: ReminderDays | None = None
    thankYouMessage: LongText | None = None
    startsAt: UtcDatetime | None = Field(None, description="Responses are accepted from this time (ISO 8601)")
    endsAt: UtcDatetime | None = Field(None, description="...and until this time; must be after startsAt")
    translations: Translations | None = None

    COLUMNS: ClassVar[dict[str, str]] = {
        "name": "name",
        "description": "description",
        "surveyType": "survey_type",
        "triggerEvent": "trigger_event",
        "question": "question",
        "followUpQuestion": "follow_up_question",
        "isActive": "is_active",
        "language": "language",
        "throttleDays": "throttle_days",
        "reminderAfterDays": "reminder_after_days",
        "thankYouMessage": "thank_you_message",
        "startsAt": "starts_at",
        "endsAt": "ends_at",
        "translations": "translations",
    }
    NOT_NULL: ClassVar[frozenset[str]] = frozenset(
        {"name", "surveyType", "question", "isActive", "language", "throttleDays"}
    )


class SurveyCreate(SurveyUpdate):
    """A new survey: `name` is required, the other fields have the defaults shown."""

    SETS_EVERY_FIELD = True  # a create stores every field, defaults included

    name: SurveyName = Field(description="1-200 characters")
    surveyType: SurveyType = "RELATIONSHIP"
    question: Question = DEFAULT_QUESTION
    followUpQuestion: Question | None = DEFAULT_FOLLOW_UP
    isActive: StrictBool = True
    language: Language = "en"
    throttleDays: ThrottleDays = 90
    reminderAfterDays: ReminderDays | None = 3


class SurveyRead(BaseModel):
    """A survey with its live response count and NPS (over all its responses)."""

    id: str
    name: str
    description: str | None
    surveyType: SurveyType
    triggerEvent: str | None
    question: str
    followUpQuestion: str | None
    isActive: bool
    language: str
    throttleDays: int
    reminderAfterDays: int | None
    thankYouMessage: str | None
    startsAt: str | None
    endsAt: str | None
    translations: dict[str, dict[str, str]] = Field(
        description="The survey's texts in other languages (an object by language; {} for none)"
    )
    createdAt: str
    updatedAt: str
    responseCount: int = Field(
        description="Number of responses (NPS records whose campaignId is this survey)"
    )
    npsScore: float | None = Field(
        description="NPS from -100 to 100, one decimal; null while there is no response"
    )


class ResponseCreate(BaseModel):
    """One answer to a survey. The contact is found by e-mail (case-insensitive) or created."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    score: Score
    comment: LongText | None = None
    companyId: ObjectId | None = Field(None, description="Company id; must exist in your organization")
    source: ShortText | None = Field(None, description="Where the answer came from, e.g. email, web, in-app")
    sourceId: SourceId | None = Field(None, description="Id in the source system; unique per organization")
    sentAt: UtcDatetime | None = Field(None, description="When the survey was sent to this contact")
    respondedAt: UtcDatetime | None = Field(None, description="When the contact answered; defaults to now")
    custom: Custom = None


class ResponseRead(BaseModel):
    """One response of a survey: the same object as an `/nps` record whose `campaignId` is the survey."""

    id: str
    surveyId: str
    enduserId: str
    companyId: str | None
    email: str
    score: int
    category: Category = Field(description="PROMOTER (9-10), PASSIVE (7-8) or DETRACTOR (0-6)")
    comment: str | None
    source: str | None
    sourceId: str | None
    sentAt: str | None
    respondedAt: str
    createdAt: str
    updatedAt: str
    custom: dict[str, Any] | None


class Breakdown(NpsSummary):
    """NPS over every response matching the filters, not only the page.

    Counts and percentages are flat fields (`promoters` + `promoterPercentage`), the same names
    as the `nps-metrics` body. Percentages, `npsScore`, `averageScore`, `marginOfError` and
    `confidenceInterval` are null while there is no response.
    """

    total: int


class Pagination(BaseModel):
    page: int
    limit: int
    total: int = Field(description="Responses matching the filters")


class ResponsesPage(BaseModel):
    responses: list[ResponseRead]
    breakdown: Breakdown
    pagination: Pagination
