"""The feed of answers ``/app/responses``: newest first, filtered, paged, downloadable, live.

The filters live in the URL so a filtered view can be shared, with the API's names where the API
has them: ``surveyId``, ``category`` (``scoreType`` of ``GET /nps``), ``score``, ``companyId``,
``period`` or ``since``/``until`` (whole UTC days, both included), ``search`` (in comments),
what the team did with an answer (``tag``, ``followUpStatus``: open, contacted, resolved or none,
``assigneeEmail``: a user of the organization; see npsd.followup), what its comment says (``theme``:
one of the organization's themes, ``sentiment``: negative, neutral or positive; see npsd.insights)
and ``page``. They become one :class:`~npsd.records.service.ListQuery`, the query ``GET /nps`` and
``GET /nps/export`` use, so the rows, the count ("N responses") and the downloads hold the same
answers. A malformed filter (a score of 11, a date that is not one, a survey or company that is
not the organization's) is named next to its field with status 400, and no answer is listed.

Live: on the first page the feed polls ``/app/responses/live`` (htmx, every few seconds) with a
digest of the rows it shows; the reply is 204 (htmx keeps the feed) until the newest answers
change. Later pages do not poll: new answers would shift the rows under the reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from npsd.analytics.nps import CATEGORY_RANGES
from npsd.contacts.service import record_answers
from npsd.exports.service import check_format, stream_records
from npsd.followup import service as followup
from npsd.followup.schemas import MAX_TAG_LENGTH, STATUSES
from npsd.followup.service import NO_STATUS
from npsd.insights import service as insights
from npsd.kit.errors import BadRequest
from npsd.kit.http import ReadDatabase, ReadSession
from npsd.kit.listing import page_count
from npsd.kit.timeutil import utcnow
from npsd.records.queries import SEARCH_MAX_LENGTH
from npsd.records.service import ListQuery, count_records, filtered, list_records, ordered
from npsd.web.filters import PRESETS, Period, parse_period
from npsd.web.insights_section import SENTIMENT_LABELS, with_readings
from npsd.web.pages.insights import SENTIMENT_OPTIONS, check_sentiment, check_theme, theme_options
from npsd.web.pages.overview import (
    LIVE_EVERY,
    MAX_FIELD,
    check_company,
    check_survey,
    company_options,
    digest,
    query_values,
    survey_options,
)
from npsd.web.render import CATEGORY_LABELS, PageRoute, render, with_query
from npsd.web.session import PageUser, PageViewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 25
MAX_PAGE = 1_000_000
FORMATS = ("csv", "xlsx", "json", "ndjson")
FILTER_NAMES = (
    "period",
    "since",
    "until",
    "surveyId",
    "category",
    "score",
    "companyId",
    "search",
    "tag",
    "followUpStatus",
    "assigneeEmail",
    "theme",
    "sentiment",
)
FOLLOW_UP_OPTIONS = [
    ("", "All"),
    (NO_STATUS, "No status"),
    ("open", "Open"),
    ("contacted", "Contacted"),
    ("resolved", "Resolved"),
]
CATEGORY_OPTIONS = [("", "All"), *CATEGORY_LABELS.items()]
SCORE_OPTIONS = [("", "All"), *((str(s), str(s)) for s in range(11))]


@dataclass(frozen=True)
class Feed:
    """The answers asked for: the filters as understood, what was typed, and the problems."""

    period: Period
    survey_id: str | None
    company_id: str | None
    category: str | None
    score: int | None
    search: str | None
    page: int
    values: dict[str, str]
    errors: dict[str, str]
    tag: str | None = None
    follow_up_status: str | None = None
    assignee_email: str | None = None
    theme: str | None = None  # a theme's id (npsd.insights)
    sentiment: str | None = None
    conditions: tuple[Any, ...] = ()  # the five above, as conditions on the records

    @property
    def filters(self) -> dict[str, str]:
        """The URL parameters of these answers (without the page): links keep them."""
        return {
            **self.period.params(),
            "surveyId": self.survey_id or "",
            "category": self.category or "",
            "score": "" if self.score is None else str(self.score),
            "companyId": self.company_id or "",
            "search": self.search or "",
            "tag": self.tag or "",
            "followUpStatus": self.follow_up_status or "",
            "assigneeEmail": self.assignee_email or "",
            "theme": self.theme or "",
            "sentiment": self.sentiment or "",
        }

    def list_query(self, limit: int = PAGE_SIZE) -> ListQuery:
        """The ``GET /nps`` query of these answers: every age (no 360-day default), newest first."""
        return ListQuery(
            company_ids=[self.company_id] if self.company_id else None,
            campaign_ids=[self.survey_id] if self.survey_id else None,
            score_type=self.category,
            since=datetime.combine(self.period.since, time.min) if self.period.since else None,
            until=end_of_day(self.period.until) if self.period.until else None,
            expiry_days=None,
            limit=limit,
            offset=(self.page - 1) * limit,
            search=self.search,
            score=self.score,
            conditions=self.conditions,
        )


def end_of_day(day: date) -> datetime:
    """The last instant of a UTC day: ``until`` names whole days, ``GET /nps`` an instant."""
    return datetime.combine(day, time.max)


def parse_feed(request: Request, session: Session, user: PageUser) -> Feed:
    """The filters of the URL, each checked; problems are kept by field, never raised."""
    values = query_values(request, FILTER_NAMES)
    period, errors = parse_period(values, utcnow().date(), default="all")
    survey_id, problem = check_survey(session, user.org_id, values.get("surveyId", ""))
    if problem:
        errors["surveyId"] = problem
    company_id, problem = check_company(session, user.org_id, values.get("companyId", ""))
    if problem:
        errors["companyId"] = problem
    category = values.get("category") or None
    if category is not None and category not in CATEGORY_RANGES:
        errors["category"] = "Choose Promoters, Passives or Detractors."
        category = None
    score: int | None = None
    raw_score = values.get("score", "")
    if raw_score:
        if raw_score.isdigit() and 0 <= int(raw_score) <= 10:
            score = int(raw_score)
        else:
            errors["score"] = "Choose a score from 0 to 10."
    search = values.get("search") or None
    if search is not None and len(search) > SEARCH_MAX_LENGTH:
        errors["search"] = f"Search for at most {SEARCH_MAX_LENGTH} characters."
        search = None
    elif search is not None and "\x00" in search:
        errors["search"] = "Search for words, without control characters."
        search = None
    tag = values.get("tag", "").strip() or None
    if tag is not None and (len(tag) > MAX_TAG_LENGTH or "\x00" in tag):
        errors["tag"] = f"Choose a tag of at most {MAX_TAG_LENGTH} characters."
        tag = None
    status = values.get("followUpStatus") or None
    if status is not None and status not in (NO_STATUS, *STATUSES):
        errors["followUpStatus"] = "Choose No status, Open, Contacted or Resolved."
        status = None
    assignee = values.get("assigneeEmail", "").strip().lower() or None
    if assignee is not None and assignee not in {
        email for _, email in followup.org_users(session, user.org_id)
    }:
        errors["assigneeEmail"] = "Choose a user of your organization."
        assignee = None
    theme, problem = check_theme(session, user.org_id, values.get("theme", ""))
    if problem:
        errors["theme"] = problem
    sentiment, problem = check_sentiment(values.get("sentiment", ""))
    if problem:
        errors["sentiment"] = problem
    raw_page = request.query_params.get("page", "").strip()[: MAX_FIELD + 1]
    page = 1
    if raw_page:
        if raw_page.isdigit() and 1 <= int(raw_page) <= MAX_PAGE:
            page = int(raw_page)
        else:
            errors["page"] = f"Choose a page from 1 to {MAX_PAGE}."
    conditions = (
        *followup.answer_conditions(user.org_id, tag, status, assignee),
        *insights.answer_conditions(user.org_id, theme, sentiment),
    )
    return Feed(
        period,
        survey_id,
        company_id,
        category,
        score,
        search,
        page,
        values,
        errors,
        tag,
        status,
        assignee,
        theme,
        sentiment,
        conditions,
    )


# ----------------------------------------------------------------------------------------- pages


def survey_label(answer: Mapping[str, Any]) -> str:
    """The survey of an answer: its name, the campaign id it was imported with, or "No survey"."""
    if answer.get("surveyName"):
        return str(answer["surveyName"])
    if answer.get("campaignId"):
        return f"Campaign {answer['campaignId']}"
    return "No survey"


def feed_context(feed: Feed, answers: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """The context of the feed's live block: the count, the rows, the pager."""
    pages = page_count(total, PAGE_SIZE)
    live = feed.page == 1 and not feed.errors
    return {
        "feed": feed,
        "answers": answers,
        "total": total,
        "pages": pages,
        "previous_link": with_query(
            "/app/responses", feed.filters, page=feed.page - 1 if feed.page > 2 else None
        )
        if feed.page > 1
        else None,
        "next_link": with_query("/app/responses", feed.filters, page=feed.page + 1)
        if feed.page < pages
        else None,
        "live_url": with_query("/app/responses/live", feed.filters, v=rows_digest(answers)) if live else None,
        "live_every": LIVE_EVERY,
        "survey_label": survey_label,
        "sentiment_labels": SENTIMENT_LABELS,
        "theme_link": lambda theme_id: with_query("/app/responses", feed.filters, theme=theme_id, page=None),
    }


def with_badges(session: Session, org_id: str, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers with their ``followUp`` badges (tags, status, assignee), in two queries a page."""
    found = followup.badges(session, org_id, [a["_id"] for a in answers])
    for a in answers:
        a["followUp"] = found.get(a["_id"])
    return answers


def rows_digest(answers: list[dict[str, Any]]) -> str:
    """The fingerprint of a first page: its answers and their versions. The count is left out,
    so a poll that finds the same rows costs one indexed query of 25 rows, never a count."""
    return digest([(a["_id"], a["__v"]) for a in answers])


@router.get("/app/responses", response_class=HTMLResponse)
def responses(request: Request, user: PageViewer, session: ReadSession) -> HTMLResponse:
    """The feed: every answer that matches the filters, newest first, 25 per page."""
    feed = parse_feed(request, session, user)
    answers: list[dict[str, Any]] = []
    total = 0
    if not feed.errors:
        answers = with_badges(session, user.org_id, record_answers(session, user.org_id, feed.list_query()))
        answers = with_readings(session, user.org_id, answers)
        total = count_records(session, user.org_id, feed.list_query())
    users = [email for _, email in followup.org_users(session, user.org_id)]
    tags = followup.org_tags(session, user.org_id)
    if feed.tag and feed.tag.casefold() not in {t.casefold() for t in tags}:
        tags.append(feed.tag)
    context = {
        **feed_context(feed, answers, total),
        "values": feed.values,
        "errors": feed.errors,
        "presets": [(key, label) for key, (label, _) in PRESETS.items()],
        "preset_links": {
            key: with_query("/app/responses", feed.filters, period=key, since=None, until=None)
            for key in PRESETS
        },
        "surveys": survey_options(session, user.org_id, feed.survey_id),
        "companies": company_options(session, user.org_id, feed.company_id),
        "categories": CATEGORY_OPTIONS,
        "scores": SCORE_OPTIONS,
        "tags": [("", "All"), *((t, t) for t in tags)],
        "follow_up_statuses": FOLLOW_UP_OPTIONS,
        "assignees": [("", "Anyone"), *((e, e) for e in users)],
        "themes": theme_options(session, user.org_id, feed.theme),
        "sentiments": SENTIMENT_OPTIONS,
        "downloads": [
            (fmt.upper(), with_query(f"/app/responses/export.{fmt}", feed.filters)) for fmt in FORMATS
        ],
    }
    return render(request, "responses.html", context, user=user, status=400 if feed.errors else 200)


@router.get("/app/responses/live", response_class=HTMLResponse)
def responses_live(request: Request, user: PageViewer, session: ReadSession, v: str = "") -> Response:
    """The first page of the feed again when its rows changed since digest ``v``, else 204."""
    feed = replace(parse_feed(request, session, user), page=1)
    if feed.errors:
        return Response(status_code=204)
    if rows_digest(list_records(session, user.org_id, feed.list_query())) == v:
        return Response(status_code=204)
    answers = with_badges(session, user.org_id, record_answers(session, user.org_id, feed.list_query()))
    answers = with_readings(session, user.org_id, answers)
    total = count_records(session, user.org_id, feed.list_query())
    context = {**feed_context(feed, answers, total), "updated": utcnow()}
    return render(request, "_responses_feed.html", context, user=user)


@router.get("/app/responses/export.{fmt}")
def export_responses(
    request: Request, fmt: str, user: PageViewer, session: ReadSession, db: ReadDatabase
) -> StreamingResponse:
    """The feed's answers (every page) as a download: the file ``GET /nps/export`` writes for the
    same filters."""
    check_format(fmt)
    feed = parse_feed(request, session, user)
    if feed.errors:
        name, issue = next(iter(feed.errors.items()))
        raise BadRequest(
            f"{name}: {issue}", [{"field": key, "issue": message} for key, message in feed.errors.items()]
        )
    stmt = ordered(filtered(user.org_id, feed.list_query(), utcnow()), None)
    return stream_records(db, stmt, fmt, "nps-responses")
