"""Survey statistics and NPS metrics: ``/v1/nps-surveys/stats``, ``/nps-metrics``, ``/metrics/nps``.

Included before the surveys router, so these static paths win over ``/v1/nps-surveys/{id}``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from npsd.analytics import metrics
from npsd.auth.deps import Viewer
from npsd.errors import BadRequest
from npsd.http import DbSession, TransactionRoute, json_response
from npsd.listing import id_list
from npsd.timeutil import utcnow
from npsd.validation import UtcDatetime

router = APIRouter(route_class=TransactionRoute, prefix="/v1/nps-surveys", tags=["metrics"])


class SurveyStats(BaseModel):
    total: int = Field(description="Surveys in your organization")
    active: int = Field(description="Surveys with isActive true")
    inactive: int
    totalResponses: int = Field(description="Responses to your surveys (records whose campaignId is one of them)")
    responsesLast30Days: int = Field(description="Of those, answered in the last 30 UTC days, today included")
    averageScore: float | None = Field(description="Mean score 0-10, two decimals; null without responses")
    npsScore: float | None = Field(description="NPS -100..100, one decimal; null without responses, never 0")
    responseRate: float | None = Field(
        description="Answered invitations per invitation sent, in percent; null while no invitation has been sent")


class TrendPoint(BaseModel):
    period: str = Field(description="2024-03-05 (day), 2024-W10 (ISO week) or 2024-03 (month)")
    start: str = Field(description="First day of the period (UTC)")
    end: str = Field(description="Last day of the period (UTC)")
    npsScore: float | None = Field(description="null for a period without answers")
    responses: int
    promoters: int
    passives: int
    detractors: int
    marginOfError: float | None
    change: float | None = Field(description="npsScore minus the previous period's; null if either has no answers")
    significant: bool | None = Field(
        description="Whether the change from the previous period is beyond chance at 95%: "
                    "|Δ| > 1.96·sqrt(SE₁² + SE₂²); null if either period has no answers")


class GroupMetrics(BaseModel):
    key: str | None = Field(description="Survey id, company id or source; null for answers without one")
    name: str | None = Field(description="Survey name, company name or the source; null if unknown")
    npsScore: float | None
    responses: int
    promoters: int
    passives: int
    detractors: int
    marginOfError: float | None


class NpsMetrics(BaseModel):
    npsScore: float | None = Field(description="round(100·(promoters - detractors)/total, 1); null without answers")
    totalResponses: int
    promoters: int = Field(description="Scores 9-10")
    passives: int = Field(description="Scores 7-8")
    detractors: int = Field(description="Scores 0-6")
    promoterPercentage: float | None
    passivePercentage: float | None
    detractorPercentage: float | None
    averageScore: float | None = Field(description="Mean score 0-10, two decimals")
    distribution: list[int] = Field(min_length=11, max_length=11, description="Counts of scores 0, 1, ..., 10")
    marginOfError: float | None = Field(description="Half-width of the 95% confidence interval, in NPS points")
    confidenceInterval: tuple[float, float] | None = Field(
        description="[lower, upper] bounds of the 95% confidence interval, clipped to -100..100")
    lowSample: bool = Field(description="True below 30 answers or when the margin of error exceeds 10 points")
    responseRate: float | None = Field(
        description="Answered invitations per invitation sent (of the surveys filtered by surveyId), in percent; "
                    "null while none was sent")
    trend: list[TrendPoint] = Field(
        description="One point per period from the first to the last period with answers, empty periods included")
    groups: list[GroupMetrics] = Field(description="With groupBy: one line per key, most answers first; else empty")


def metrics_query(
    since: Annotated[UtcDatetime | None, Query(
        description="First day (UTC) to count, ISO 8601 or epoch seconds; default: the first answer")] = None,
    until: Annotated[UtcDatetime | None, Query(
        description="Last day (UTC) to count, included; default: the last answer")] = None,
    surveyId: Annotated[str | None, Query(description="Comma-separated survey ids")] = None,
    companyId: Annotated[str | None, Query(description="Comma-separated company ids")] = None,
    source: Annotated[str | None, Query(max_length=200, description="Only answers from this source")] = None,
    interval: Annotated[metrics.Interval, Query(description="Trend period")] = "month",
    groupBy: Annotated[metrics.GroupBy | None, Query(description="Also break the answers down by this")] = None,
) -> metrics.MetricsQuery:
    if since is not None and until is not None and since.date() > until.date():
        raise BadRequest.field("since", "must not be after until")
    if source is not None and "\x00" in source:
        raise BadRequest.field("source", "must not contain NUL characters")
    return metrics.MetricsQuery(
        since=since.date() if since else None,
        until=until.date() if until else None,
        survey_ids=id_list(surveyId, "surveyId"),
        company_ids=id_list(companyId, "companyId"),
        source=source,
        interval=interval,
        group_by=groupBy,
    )


MetricsQueryDep = Annotated[metrics.MetricsQuery, Depends(metrics_query)]


@router.get("/stats", response_model=SurveyStats)
def survey_stats(principal: Viewer, session: DbSession) -> Response:
    """Survey counts and the NPS of your survey responses.

    `total`, `active` and `inactive` count your surveys by `isActive`. The response figures
    cover the responses *to your surveys*: NPS records whose `campaignId` is the id of one of
    your surveys, so `totalResponses` equals the sum of the surveys' `responseCount`. Records
    without a campaign, or with a campaign that is not a survey (e.g. imported Planhat
    campaigns), are left out here; `nps-metrics` counts every answer. `responsesLast30Days`
    counts answers of the last 30 UTC days, today included. `npsScore` and `averageScore` are
    null while there is no response. `responseRate` is the share of sent invitations that were
    answered, in percent, and null while no invitation has been sent.
    """
    return json_response(metrics.survey_stats(session, principal.org_id, utcnow().date()))


@router.get("/nps-metrics", response_model=NpsMetrics)
@router.get("/metrics/nps", response_model=NpsMetrics)
def nps_metrics(q: MetricsQueryDep, principal: Viewer, session: DbSession) -> Response:
    """NPS metrics over every answer of your organization, with their uncertainty.

    All NPS records count, with or without a survey; narrow them with `surveyId`, `companyId`,
    `source`, `since` and `until`. Answers are counted by UTC day: `since` and `until` select
    whole days, both included. Promoters answer 9-10, passives 7-8, detractors 0-6;
    `npsScore` = round(100·(promoters - detractors)/total, 1) and is null, never 0, without
    answers. `marginOfError` is the 95% half-width 196·sqrt((p + d - (p - d)²)/n) points and
    `lowSample` flags fewer than 30 answers or a margin above 10 points.

    `trend` has one point per `interval` (`day`, ISO `week` starting Monday, or `month`) from
    the first to the last period with answers; empty periods in between are included with
    `npsScore` null; `since` and `until` may cut the first and last periods short. `change`
    compares a period with the one just before it, and `significant` says whether that change
    is beyond chance at 95%. With `groupBy`, `groups` breaks the same answers down by survey,
    company or source (`key` null for answers without one).

    Figures come from a daily roll-up of answer counts, so the cost follows the number of days
    (and surveys, companies and sources), not the number of answers.
    """
    return json_response(metrics.nps_metrics(session, principal.org_id, q))
