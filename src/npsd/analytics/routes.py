"""Survey statistics and NPS metrics: ``/v1/nps-surveys/stats``, ``/nps-metrics``, ``/metrics/nps``.

Included before the surveys router, so these static paths win over ``/v1/nps-surveys/{id}``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from npsd.analytics import metrics
from npsd.analytics.schemas import NpsMetrics, SurveyStats
from npsd.auth.deps import Viewer
from npsd.kit.errors import BadRequest
from npsd.kit.http import ReadSession, TransactionRoute, json_response
from npsd.kit.listing import ParamStr, check_since_until, id_list
from npsd.kit.timeutil import utcnow
from npsd.kit.validation import UtcDatetime

router = APIRouter(route_class=TransactionRoute, prefix="/v1/nps-surveys", tags=["metrics"])


def metrics_query(
    since: Annotated[
        UtcDatetime | None,
        Query(description="First day (UTC) to count, ISO 8601 or epoch seconds; default: the first answer"),
    ] = None,
    until: Annotated[
        UtcDatetime | None, Query(description="Last day (UTC) to count, included; default: the last answer")
    ] = None,
    surveyId: Annotated[str | None, Query(description="Comma-separated survey ids")] = None,
    companyId: Annotated[str | None, Query(description="Comma-separated company ids")] = None,
    source: Annotated[
        ParamStr | None, Query(max_length=200, description="Only answers from this source")
    ] = None,
    interval: Annotated[metrics.Interval, Query(description="Trend period")] = "month",
    groupBy: Annotated[
        metrics.GroupBy | None, Query(description="Also break the answers down by this")
    ] = None,
    compareSince: Annotated[
        UtcDatetime | None,
        Query(
            description="First day (UTC) of a period to compare with (e.g. the previous period of the same "
            "length); with compareUntil, adds `comparison`"
        ),
    ] = None,
    compareUntil: Annotated[
        UtcDatetime | None, Query(description="Last day (UTC) of the period to compare with, included")
    ] = None,
) -> metrics.MetricsQuery:
    first, last = (since.date() if since else None), (until.date() if until else None)
    check_since_until(first, last)  # whole days: a later hour of the same day is that day
    compare_first = compareSince.date() if compareSince else None
    compare_last = compareUntil.date() if compareUntil else None
    if compare_first is not None and compare_last is not None and compare_first > compare_last:
        raise BadRequest.field("compareSince", "must not be after compareUntil")
    return metrics.MetricsQuery(
        since=first,
        until=last,
        survey_ids=id_list(surveyId, "surveyId"),
        company_ids=id_list(companyId, "companyId"),
        source=source,
        interval=interval,
        group_by=groupBy,
        compare_since=compare_first,
        compare_until=compare_last,
    )


MetricsQueryDep = Annotated[metrics.MetricsQuery, Depends(metrics_query)]


@router.get("/stats", response_model=SurveyStats)
def survey_stats(principal: Viewer, session: ReadSession) -> Response:
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
def nps_metrics(q: MetricsQueryDep, principal: Viewer, session: ReadSession) -> Response:
    """NPS metrics over every answer of your organization, with their uncertainty.

    All NPS records count, with or without a survey; narrow them with `surveyId`, `companyId`,
    `source`, `since` and `until`. Answers are counted by UTC day: `since` and `until` select
    whole days, both included. Promoters answer 9-10, passives 7-8, detractors 0-6;
    `npsScore` = round(100·(promoters - detractors)/total, 1) and is null, never 0, without
    answers. The uncertainty is an adjusted Wald estimate, so that small samples never report
    ±0 (the plain one gives two promoters 100 ± 0): pseudo-counts 0.75 / 1.5 / 0.75 are added to
    detractors / passives / promoters, ñ = total + 3, p̃ = (promoters + 0.75)/ñ and
    d̃ = (detractors + 0.75)/ñ. `marginOfError` is the 95% half-width
    196·sqrt((p̃ + d̃ - (p̃ - d̃)²)/ñ) points; `confidenceInterval` is the adjusted estimate
    100·(p̃ - d̃) ± that margin, widened where needed to hold `npsScore`, clipped to -100..100,
    so it need not be symmetric around `npsScore` but always contains it. `lowSample` flags fewer than 30 answers or a margin above 10 points.

    `trend` has one point per `interval` (`day`, ISO `week` starting Monday, or `month`) from
    the first to the last period with answers; empty periods in between are included with
    `npsScore` null; `since` and `until` may cut the first and last periods short. `change`
    compares a period with the one just before it, and `significant` says whether that change
    is beyond chance at 95% (|Δ| > 1.96·sqrt(SE₁² + SE₂²), with the adjusted standard errors and
    Δ between the adjusted estimates). With `groupBy`, `groups` breaks the same answers down by
    survey, company or source (`key` null for answers without one).

    With `compareSince` and/or `compareUntil`, `comparison` holds the same figures for that other
    period (same `surveyId`, `companyId` and `source`), the `change` of the NPS from it, and
    whether that change is `significant` at 95% (the test of `trend`). The dashboard's overview
    compares each period with the one of the same length just before it this way.

    Figures come from a daily roll-up of answer counts, so the cost follows the number of days
    (and surveys, companies and sources), not the number of answers.
    """
    return json_response(metrics.nps_metrics(session, principal.org_id, q))
