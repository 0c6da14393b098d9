"""The overview ``/app``: the organization's NPS with its uncertainty, trend and distribution.

Every figure comes from :func:`npsd.analytics.metrics.nps_metrics` with the
:class:`~npsd.analytics.metrics.MetricsQuery` that ``GET /v1/nps-surveys/nps-metrics`` builds
for the same filter (``since``, ``until``, ``surveyId``, ``interval``, and
``compareSince``/``compareUntil`` for the previous period), so the page and the API show the
same numbers. The filters live in the URL (a shareable view); a malformed one is named next to
its field (status 400) while the default period is shown.

Live: the figures block polls ``/app/overview/live`` (htmx, every few seconds). The reply is
204, which htmx leaves alone, while the figures are unchanged, and the new block otherwise; the
block's URL carries a digest of the figures it shows. Without JavaScript a reload does the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from npsd.analytics import metrics
from npsd.contacts.service import list_companies
from npsd.kit.errors import NpsdError
from npsd.kit.http import ReadSession
from npsd.kit.listing import Page
from npsd.kit.lookup import resolve
from npsd.kit.models import Company
from npsd.kit.timeutil import utcnow
from npsd.surveys.service import find_survey
from npsd.web.charts import distribution_chart, trend_chart
from npsd.web.filters import INTERVALS, PRESETS, Period, parse_period
from npsd.web.insights_section import insights_of
from npsd.web.render import PageRoute, category_tiles, render, with_query
from npsd.web.session import PageUser, PageViewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LIVE_EVERY = "3s"  # a new answer shows within five seconds: one poll period plus the request
MAX_FIELD = 200  # a filter value longer than any id or date is refused before any query
MAX_OPTIONS = 1000  # surveys or companies listed in a filter's select


def query_values(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The page's filter parameters as typed (stripped; the last one of a repeated name)."""
    params = request.query_params
    return {name: params[name].strip()[: MAX_FIELD + 1] for name in names if name in params}


# ---------------------------------------------------------------------------- filter choices


def survey_options(session: Session, org_id: str, chosen: str | None) -> list[tuple[str, str]]:
    """("", "All surveys") and the organization's surveys by name (the chosen one always listed)."""
    options = metrics.survey_choices(session, org_id, MAX_OPTIONS)
    if chosen and all(key != chosen for key, _ in options):
        options.append((chosen, find_survey(session, org_id, chosen).name))
    return [("", "All surveys"), *options]


def company_options(session: Session, org_id: str, chosen: str | None) -> list[tuple[str, str]]:
    """("", "All companies") and the organization's companies by name (the chosen one always listed)."""
    rows = list_companies(session, org_id, Page(MAX_OPTIONS, 0, "name", None))
    options = [(str(c["_id"]), str(c["name"])) for c in rows]
    if chosen and all(key != chosen for key, _ in options):
        options.append((chosen, resolve(session, Company, org_id, chosen, "company").name))
    return [("", "All companies"), *options]


def check_survey(session: Session, org_id: str, raw: str) -> tuple[str | None, str | None]:
    """(the survey id, None) for one of the organization's surveys; (None, message) otherwise:
    another organization's survey is unknown here, exactly like an id nobody has."""
    if not raw:
        return None, None
    try:
        return find_survey(session, org_id, raw).id, None
    except NpsdError:
        return None, "Choose one of your surveys."


def check_company(session: Session, org_id: str, raw: str) -> tuple[str | None, str | None]:
    """(the company id, None) for one of the organization's companies; (None, message) otherwise."""
    if not raw:
        return None, None
    try:
        return resolve(session, Company, org_id, raw, "company", prefixes=False).id, None
    except NpsdError:
        return None, "Choose one of your companies."


def digest(data: Any) -> str:
    """A short fingerprint of what a live block shows: unchanged figures, unchanged digest."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


# ------------------------------------------------------------------------------------ the view


@dataclass
class OverviewView:
    """What the overview shows: the period and survey asked for, the API's figures for them."""

    period: Period
    survey_id: str | None
    values: dict[str, str]
    errors: dict[str, str]
    explicit_interval: bool
    figures: dict[str, Any]

    @property
    def filters(self) -> dict[str, str]:
        """The URL parameters of this view (for links that keep it)."""
        out = {**self.period.params(), "surveyId": self.survey_id or ""}
        if self.explicit_interval:
            out["interval"] = self.period.interval
        return out

    @property
    def feed_filters(self) -> dict[str, str]:
        """The same answers in the feed: the period and the survey."""
        return {**self.period.params(), "surveyId": self.survey_id or ""}


FILTER_NAMES = ("period", "since", "until", "interval", "surveyId")


def overview_view(request: Request, user: PageUser, session: Session) -> OverviewView:
    """Parse the filters, then ask the metrics service exactly as the API would for them."""
    values = query_values(request, FILTER_NAMES)
    period, errors = parse_period(values, utcnow().date())
    survey_id, problem = check_survey(session, user.org_id, values.get("surveyId", ""))
    if problem:
        errors["surveyId"] = problem
    previous = period.previous()
    query = metrics.MetricsQuery(
        since=period.since,
        until=period.until,
        survey_ids=[survey_id] if survey_id else None,
        interval=period.interval,
        group_by="survey",
        compare_since=previous.since if previous else None,
        compare_until=previous.until if previous else None,
    )
    figures = metrics.nps_metrics(session, user.org_id, query)
    explicit = bool(values.get("interval")) and "interval" not in errors
    return OverviewView(period, survey_id, values, errors, explicit, figures)


def figures_context(view: OverviewView) -> dict[str, Any]:
    """The live block's context: the figures, their charts, and the links into the feed."""
    m = view.figures
    feed = view.feed_filters
    interval_name = INTERVALS[view.period.interval].lower()
    return {
        "view": view,
        "m": m,
        "comparison": m.get("comparison"),
        "previous": view.period.previous(),
        "trend": trend_chart(
            m["trend"], "NPS trend", note=f"by {interval_name}, with its 95% confidence band"
        ),
        "distribution": distribution_chart(
            m["distribution"], href=lambda score: with_query("/app/responses", feed, score=score)
        ),
        **category_tiles(feed),
        "feed_link": with_query("/app/responses", feed),
        "live_url": with_query("/app/overview/live", view.filters, v=digest(m)),
        "live_every": LIVE_EVERY,
        "intervals": INTERVALS,
        "interval_links": {key: with_query("/app", view.filters, interval=key) for key in INTERVALS},
    }


def group_name(group: Mapping[str, Any]) -> str:
    """How a group of the by-survey table is named: the survey, the campaign id it was imported
    with, or "No survey" for answers without one (never blank)."""
    if group.get("name"):
        return str(group["name"])
    if group.get("key"):
        return f"Campaign {group['key']}"
    return "No survey"


@router.get("/app", response_class=HTMLResponse)
def overview(request: Request, user: PageViewer, session: ReadSession) -> HTMLResponse:
    """The organization's NPS at a glance, for a period and optionally one survey."""
    view = overview_view(request, user, session)
    context = {
        **figures_context(view),
        "values": view.values,
        "errors": view.errors,
        "presets": [(key, label) for key, (label, _) in PRESETS.items()],
        "preset_links": {
            key: with_query("/app", view.filters, period=key, since=None, until=None) for key in PRESETS
        },
        "surveys": survey_options(session, user.org_id, view.survey_id),
        "group_name": group_name,
        "insights": insights_of(session, user.org_id, view.period, view.survey_id),
    }
    return render(request, "overview.html", context, user=user, status=400 if view.errors else 200)


@router.get("/app/overview/live", response_class=HTMLResponse)
def overview_live(request: Request, user: PageViewer, session: ReadSession, v: str = "") -> Response:
    """The figures block again when its figures changed since digest ``v``, else 204."""
    view = overview_view(request, user, session)
    if view.errors:
        return Response(status_code=204)  # the page shows the problem; polling changes nothing
    if digest(view.figures) == v:
        return Response(status_code=204)
    context = {**figures_context(view), "group_name": group_name, "updated": utcnow()}
    return render(request, "_overview_figures.html", context, user=user)
