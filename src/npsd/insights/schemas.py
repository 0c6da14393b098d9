"""Shapes of ``/v1/insights`` (camelCase JSON; unknown fields are a 400)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from npsd.kit.ids import is_id
from npsd.kit.validation import Storable

SentimentName = Literal["negative", "neutral", "positive"]
MAX_EXAMPLES = 30
MAX_KEYWORDS = 20


def _words(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("must not be blank")
    return value


def _unique(values: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.casefold(), value)
    return list(seen.values())


def _object_id(value: str) -> str:
    if not is_id(value):
        raise ValueError("must be a 24-character hexadecimal id")
    return value


ThemeName = Annotated[str, Field(min_length=1, max_length=80), Storable, AfterValidator(_words)]
Phrases = Annotated[
    list[Annotated[str, Field(max_length=500), Storable, AfterValidator(_words)]],
    Field(max_length=MAX_EXAMPLES),
    AfterValidator(_unique),
]
Keywords = Annotated[
    list[Annotated[str, Field(max_length=60), Storable, AfterValidator(_words)]],
    Field(max_length=MAX_KEYWORDS),
    AfterValidator(_unique),
]
ObjectId = Annotated[str, AfterValidator(_object_id)]


class ThemeCreate(BaseModel):
    """A theme of your own: its name and a few example phrases (any of the four languages;
    answers are matched to the name and the examples, whatever their language)."""

    model_config = ConfigDict(extra="forbid")

    name: ThemeName = Field(description="Shown everywhere the theme is, unique in the organization")
    examples: Phrases = Field(
        min_length=1,
        description='1-30 short phrases as customers would write them ("the app logs me out every day")',
    )
    keywords: Keywords = Field(
        default_factory=list, description="Words that describe the theme (shown, not matched)"
    )


class ThemeUpdate(BaseModel):
    """The fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: ThemeName | None = Field(None, description="A new name (a default theme keeps what it matches)")
    examples: Phrases | None = Field(
        None, description="Example phrases; for a default theme, in addition to its own"
    )
    keywords: Keywords | None = Field(None, description="Words that describe the theme")
    hidden: StrictBool | None = Field(
        None, description="A hidden theme is neither matched nor listed; false shows it again"
    )


class ThemeMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: ObjectId = Field(description="The theme that takes over this one's answers and examples")


class SuggestionAdopt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ThemeName | None = Field(None, description="The name to give it; default: its suggested label")


class SentimentCounts(BaseModel):
    negative: int
    neutral: int
    positive: int


class ThemeRead(BaseModel):
    """A theme as configured (``GET /v1/insights/themes/{id}``)."""

    id: str
    key: str | None = Field(
        description="The default theme it is (`price`, `support`, ...), null for your own"
    )
    name: str
    keywords: list[str]
    examples: list[str] = Field(description="Your example phrases (a default theme's own are not listed)")
    status: Literal["active", "suggested"]
    hidden: bool
    mergedIntoId: str | None


class ThemeFigures(BaseModel):
    """A theme with its figures over the answers that match the filters."""

    id: str
    key: str | None
    name: str
    keywords: list[str]
    answers: int = Field(description="Answers with this theme (among their themes)")
    share: float | None = Field(description="answers / commentedAnswers, 0-1")
    npsScore: float | None = Field(description="NPS of the theme's answers")
    marginOfError: float | None = Field(description="95% margin of that NPS, in points")
    promoters: int
    passives: int
    detractors: int
    sentiment: SentimentCounts
    impact: float | None = Field(
        description="NPS points the overall score would move without this theme's answers: "
        "positive when the theme pulls the score down, negative when it holds it up"
    )
    impactMarginOfError: float | None = Field(description="95% margin of `impact`, in points")
    exampleAnswerIds: list[str] = Field(description="A few answers most typical of the theme")


class ThemesReport(BaseModel):
    answers: int = Field(description="Answers that match the filters, with or without a comment")
    npsScore: float | None = Field(description="NPS of those answers")
    commentedAnswers: int = Field(description="Of those, analysed answers whose comment says something")
    themes: list[ThemeFigures]


class TrendPoint(BaseModel):
    period: str
    start: str
    answers: int
    commentedAnswers: int
    share: float | None
    npsScore: float | None
    marginOfError: float | None


class ThemeTrend(BaseModel):
    theme: ThemeRead
    interval: Literal["day", "week", "month"]
    trend: list[TrendPoint]


class Suggestion(BaseModel):
    id: str
    name: str = Field(description="A label made of the group's characteristic words")
    keywords: list[str]
    answers: int = Field(description="Comments without a theme that are close to this group")
    exampleAnswerIds: list[str]
    examples: list[str] = Field(description="A few of the comments the group was formed from")


class AnswerReading(BaseModel):
    answerId: str
    themeIds: list[str] = Field(description="Strongest first")
    sentiment: SentimentName | None
    sentimentScore: float | None = Field(description="-1 (negative) to 1 (positive)")


class InsightStatus(BaseModel):
    model: str = Field(description="The model that reads the comments, on this server")
    themesVersion: int = Field(description="Raised by every change of themes")
    answers: int = Field(description="Answers of the organization")
    analysed: int = Field(description="Answers read with the current themes")
    pending: int = Field(description="Answers still to be read (new, changed, or after a change of themes)")
    emptyComments: int = Field(description="Analysed answers without a comment, or a near-empty one")
    queuedJobs: int
    state: Literal["idle", "working"]
    lastAnalysedAt: str | None
