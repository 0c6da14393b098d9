"""Response bodies of the metrics routes, and the NPS summary they share with survey responses."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SurveyStats(BaseModel):
    total: int = Field(description="Surveys in your organization")
    active: int = Field(description="Surveys with isActive true")
    inactive: int
    totalResponses: int = Field(
        description="Responses to your surveys (records whose campaignId is one of them)"
    )
    responsesLast30Days: int = Field(description="Of those, answered in the last 30 UTC days, today included")
    averageScore: float | None = Field(description="Mean score 0-10, two decimals; null without responses")
    npsScore: float | None = Field(description="NPS -100..100, one decimal; null without responses, never 0")
    responseRate: float | None = Field(
        description="Answered invitations per invitation sent, in percent; null while no invitation has been sent"
    )


class TrendPoint(BaseModel):
    period: str = Field(description="2024-03-05 (day), 2024-W10 (ISO week) or 2024-03 (month)")
    start: str = Field(description="First day of the period (UTC)")
    end: str = Field(description="Last day of the period (UTC)")
    npsScore: float | None = Field(description="null for a period without answers")
    responses: int
    promoters: int
    passives: int
    detractors: int
    marginOfError: float | None = Field(
        description="As in the body: 95% half-width, adjusted Wald, in NPS points"
    )
    change: float | None = Field(
        description="npsScore minus the previous period's; null if either has no answers"
    )
    significant: bool | None = Field(
        description="Whether the change from the previous period is beyond chance at 95%: "
        "|Δ| > 1.96·sqrt(SE₁² + SE₂²), with the adjusted Wald standard errors and Δ the difference "
        "of the adjusted estimates 100·(p̃ - d̃) (so one promoter against one detractor is not); "
        "null if either period has no answers"
    )
    confidenceInterval: tuple[float, float] | None = Field(
        description="As in the body: [lower, upper] of the 95% interval of this period, around the adjusted "
        "estimate (not simply npsScore ± marginOfError); null for a period without answers",
    )


class GroupMetrics(BaseModel):
    key: str | None = Field(description="Survey id, company id or source; null for answers without one")
    name: str | None = Field(description="Survey name, company name or the source; null if unknown")
    npsScore: float | None
    responses: int
    promoters: int
    passives: int
    detractors: int
    marginOfError: float | None = Field(
        description="As in the body: 95% half-width, adjusted Wald, in NPS points"
    )


class NpsSummary(BaseModel):
    """NPS over a set of answers, with its uncertainty (npsd.analytics.nps); the fields shared by
    the `nps-metrics` body and a survey's responses `breakdown`. Percentages, `npsScore`,
    `averageScore`, `marginOfError` and `confidenceInterval` are null while there is no answer."""

    promoters: int = Field(description="Scores 9-10")
    passives: int = Field(description="Scores 7-8")
    detractors: int = Field(description="Scores 0-6")
    promoterPercentage: float | None
    passivePercentage: float | None
    detractorPercentage: float | None
    npsScore: float | None = Field(
        description="round(100·(promoters - detractors)/total, 1); null without answers"
    )
    averageScore: float | None = Field(description="Mean score 0-10, two decimals")
    distribution: list[int] = Field(
        min_length=11, max_length=11, description="Counts of scores 0, 1, ..., 10"
    )
    marginOfError: float | None = Field(
        description="Half-width of the 95% confidence interval, in NPS points, one decimal: "
        "196·sqrt((p̃ + d̃ - (p̃ - d̃)²)/ñ), an adjusted Wald estimate with pseudo-counts 0.75 / 1.5 / 0.75 "
        "added to detractors / passives / promoters (ñ = total + 3, p̃ = (promoters + 0.75)/ñ, "
        "d̃ = (detractors + 0.75)/ñ), so that small samples (two promoters) never report ±0"
    )
    confidenceInterval: tuple[float, float] | None = Field(
        description="[lower, upper] bounds of the 95% confidence interval, one decimal: the adjusted estimate "
        "100·(p̃ - d̃) ± marginOfError, widened where needed to hold npsScore, clipped to -100..100. Centred on "
        "the adjusted estimate, which is npsScore pulled towards 0 (times total/(total + 3)), so it need not be "
        "symmetric around npsScore, but always contains it"
    )
    lowSample: bool = Field(description="True below 30 answers or when the margin of error exceeds 10 points")


class PeriodComparison(NpsSummary):
    """The figures of the period a metrics request compares with (``compareSince`` /
    ``compareUntil``), and how the requested period differs from it."""

    since: str | None = Field(description="compareSince as a day (UTC); null when not given")
    until: str | None = Field(description="compareUntil as a day (UTC); null when not given")
    totalResponses: int
    change: float | None = Field(
        description="The body's npsScore minus this period's, one decimal; null if either has no answers"
    )
    significant: bool | None = Field(
        description="Whether that change is beyond chance at 95% (the test of the trend's `significant`); "
        "null if either period has no answers"
    )


class NpsMetrics(NpsSummary):
    totalResponses: int
    responseRate: float | None = Field(
        description="Answered invitations per invitation sent (of the surveys filtered by surveyId, sent from since "
        "to until), in percent; an invitation sent in the period counts as answered whenever its answer came; "
        "null while none was sent"
    )
    trend: list[TrendPoint] = Field(
        description="One point per period from the first to the last period with answers, empty periods included"
    )
    groups: list[GroupMetrics] = Field(
        description="With groupBy: one line per key, most answers first; else empty"
    )
    comparison: PeriodComparison | None = Field(
        default=None,
        description="Only with compareSince or compareUntil (absent otherwise): the figures of that period "
        "and the change from it",
    )
