"""The themes section that the overview, a survey's page and a company's page show ("What the
comments say"), and what the feed shows of each answer's reading: from the insights service,
for the page's filters. See ``pages/insights.py`` for the themes pages.

A page that may read from the replica never writes: an organization's themes are made on first
use, so until they exist (no answer read yet) the section says so instead of asking the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from npsd.insights import service
from npsd.web.charts import sentiment_bar
from npsd.web.filters import Period
from npsd.web.render import FEED_PATH, with_query

SECTION_THEMES = 8  # themes a section shows (the themes page lists them all)
READING_EVERY = "5s"  # a section polls while comments are being read
SENTIMENT_LABELS = {"negative": "Negative", "neutral": "Neutral", "positive": "Positive"}
THEMES_PATH = "/app/themes"


def section_context(
    session: Session,
    org_id: str,
    filters: service.Filters,
    feed: Mapping[str, str],
    *,
    limit: int | None = SECTION_THEMES,
) -> dict[str, Any]:
    """What ``_themes_section.html`` shows for ``filters`` (and ``feed``: the same answers'
    filters in the feed, which every theme's link keeps): the report's themes with answers, the
    analysis' progress, and the URL the section polls while comments are being read."""
    out: dict[str, Any] = {
        "ready": False,
        "report": None,
        "themes": [],
        "more": 0,
        "status": None,
        "reading": False,
        "links": {},
        "bars": {},
        "themes_link": with_query(THEMES_PATH, feed),
        "poll_url": None,
        "poll_every": READING_EVERY,
    }
    if not service.has_themes(session, org_id):
        return out
    report = service.themes_report(session, org_id, filters)
    status = service.status(session, org_id)
    with_answers = [t for t in report["themes"] if t["answers"]]
    shown = with_answers if limit is None else with_answers[:limit]
    reading = bool(status["pending"] and status["queuedJobs"])
    out.update(
        ready=True,
        report=report,
        themes=shown,
        more=len(with_answers) - len(shown),
        status=status,
        reading=reading,
        links={t["id"]: with_query(FEED_PATH, feed, theme=t["id"]) for t in shown},
        sentiment_links={
            (t["id"], key): with_query(FEED_PATH, feed, theme=t["id"], sentiment=key)
            for t in shown
            for key in SENTIMENT_LABELS
        },
        bars={t["id"]: sentiment_bar(t["sentiment"], f"Sentiment of {t['name']}") for t in shown},
        poll_url=with_query("/app/themes/section", feed) if reading else None,
    )
    return out


def insights_of(
    session: Session, org_id: str, period: Period, survey_id: str | None = None, company_id: str | None = None
) -> dict[str, Any]:
    """The section for a page's period and its survey or company."""
    filters = service.Filters(
        survey_ids=[survey_id] if survey_id else None,
        company_ids=[company_id] if company_id else None,
        since=period.since,
        until=period.until,
    )
    feed = {**period.params(), "surveyId": survey_id or "", "companyId": company_id or ""}
    return section_context(session, org_id, filters, feed)


def with_readings(session: Session, org_id: str, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers with what was read in their comments (``insight``: themes, sentiment; None
    while not read), in two queries a page."""
    found = service.readings_of(session, org_id, [a["_id"] for a in answers])
    for a in answers:
        a["insight"] = found.get(a["_id"])
    return answers
