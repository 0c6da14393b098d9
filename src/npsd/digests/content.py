"""What a digest says and how its mail looks.

The figures are the metrics API's own: ``analytics.metrics.score_summary``, ``summary_fields``
and ``compare_periods`` over the period's whole UTC days, exactly what
``GET /v1/nps-surveys/nps-metrics?since=..&until=..&compareSince=..&compareUntil=..`` reports
for the same survey, so a digest and the API cannot disagree. The newest detractors are
``GET /nps``'s query (``contacts.service.record_answers``), and the link opens the dashboard's
feed with the same filters.

Sections beyond these are added by registering a :data:`Section` with :func:`section`: each
returns a title and lines, or None when it has nothing to say, and the mail shows what they
return after the detractors. :func:`what_the_comments_say` is one (#13): the period's top themes
with their answers, share and impact, from ``insights.service.themes_report`` over the digest's
survey and days (what ``GET /v1/insights/themes?surveyId=..&since=..&until=..`` reports), and
the number of negative comments; nothing when no comment of the period was analysed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from npsd.analytics import metrics
from npsd.contacts.service import record_answers
from npsd.digests.schedule import Period
from npsd.insights import service as insights
from npsd.kit.models import AnswerInsight, NpsRecord
from npsd.records.service import ListQuery

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    keep_trailing_newline=True,
)
NEWEST_DETRACTORS = 5
TOP_THEMES = 3
COMMENT_CHARS = 500  # a long comment is cut in the mail; the feed link shows it whole


@dataclass(frozen=True)
class Scope:
    """Whose answers a digest covers, and when."""

    org_id: str
    survey_id: str | None
    period: Period


@dataclass(frozen=True)
class SectionContent:
    title: str
    lines: list[str]


Section = Callable[[Session, Scope], SectionContent | None]
SECTIONS: list[Section] = []


def section(fn: Section) -> Section:
    """Register an extra section of every digest (see the module docstring)."""
    SECTIONS.append(fn)
    return fn


@dataclass
class Content:
    figures: dict[str, Any]
    sections: list[SectionContent] = field(default_factory=list)


def _period(p: Period) -> dict[str, str]:
    return {"since": p.since.isoformat(), "until": p.until.isoformat()}


def feed_url(base_url: str, scope: Scope) -> str:
    """The dashboard's feed of the period's detractors (the feed's own filter names)."""
    params = {
        "since": scope.period.since.isoformat(),
        "until": scope.period.until.isoformat(),
        "category": "detractor",
    }
    if scope.survey_id:
        params["surveyId"] = scope.survey_id
    return f"{base_url.rstrip('/')}/app/responses?{urlencode(params)}"


def figures(session: Session, scope: Scope, base_url: str) -> Content:
    """The digest's figures for ``scope`` (see the module docstring) and its extra sections."""
    period, previous = scope.period, scope.period.previous
    query = metrics.MetricsQuery(
        since=period.since,
        until=period.until,
        survey_ids=[scope.survey_id] if scope.survey_id else None,
        compare_since=previous.since,
        compare_until=previous.until,
    )
    current = metrics.score_summary(session, scope.org_id, query)
    now = metrics.summary_fields(current)
    before = metrics.compare_periods(session, scope.org_id, query, current)
    answers = record_answers(
        session,
        scope.org_id,
        ListQuery(
            campaign_ids=[scope.survey_id] if scope.survey_id else None,
            score_type="detractor",
            since=datetime.combine(period.since, time.min),
            until=datetime.combine(period.until, time.max),
            expiry_days=None,
            limit=NEWEST_DETRACTORS,
        ),
    )
    detractors = [
        {
            "id": a["_id"],
            "dateAnswered": a["dateAnswered"],
            "score": a["score"],
            "comment": a["comment"],
            "contact": a["contactName"],
            "email": a["email"],
            "company": a["companyName"],
        }
        for a in answers
    ]
    body = {
        "period": _period(period),
        "previousPeriod": _period(previous),
        "npsScore": now["npsScore"],
        "marginOfError": now["marginOfError"],
        "confidenceInterval": now["confidenceInterval"],
        "responses": now["totalResponses"],
        "promoters": now["promoters"],
        "passives": now["passives"],
        "detractors": now["detractors"],
        "previousNpsScore": before["npsScore"],
        "change": before["change"],
        "significant": before["significant"],
        "newestDetractors": detractors,
        "feedUrl": feed_url(base_url, scope),
    }
    extra = [s for s in (fn(session, scope) for fn in SECTIONS) if s is not None]
    return Content(body, extra)


# ------------------------------------------------------------------------------------------- mail


def _one_line(value: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def _points(value: float | None) -> str:
    return "no answers" if value is None else f"{value:+.1f}".replace("+0.0", "0.0")


def _day(value: str) -> str:
    return datetime.fromisoformat(value).strftime("%a %d %b %Y")


def period_label(period: dict[str, str]) -> str:
    if period["since"] == period["until"]:
        return _day(period["since"])
    return f"{_day(period['since'])} to {_day(period['until'])}"


def subject(org_name: str, frequency: str, survey_name: str | None, content: Content) -> str:
    f = content.figures
    what = survey_name or "all answers"
    nps = "no answers" if f["npsScore"] is None else f"NPS {f['npsScore']:.1f}"
    return _one_line(f"{org_name} {frequency} NPS digest ({what}), {period_label(f['period'])}: {nps}")[:300]


def sender(org_name: str, sender_name: str | None, sender_email: str | None, mail_from: str) -> str:
    """The organization's sender when its profile has one; else the server's address, named
    after the organization."""
    address = sender_email or parseaddr(mail_from)[1] or "npsd@localhost"
    return formataddr((_one_line(sender_name or org_name), address))


def compose(
    *,
    delivery_id: str,
    org_name: str,
    from_header: str,
    digest_name: str | None,
    frequency: str,
    survey_name: str | None,
    emails: list[str],
    content: Content,
    preview: bool,
) -> EmailMessage:
    """A multipart/alternative message (plain text, then HTML) to every address of the digest."""
    f = content.figures
    title = subject(org_name, frequency, survey_name, content)
    context: dict[str, Any] = {
        "org_name": org_name,
        "digest_name": digest_name,
        "frequency": frequency,
        "survey_name": survey_name,
        "f": f,
        "sections": content.sections,
        "period": period_label(f["period"]),
        "previous_period": period_label(f["previousPeriod"]),
        "change": _points(f["change"]),
        "preview": preview,
        "subject": title,
        "cut": lambda text: text if len(text) <= COMMENT_CHARS else text[: COMMENT_CHARS - 1] + "…",
    }
    message = EmailMessage()
    message["Subject"] = ("[Preview] " if preview else "") + title
    message["From"] = from_header
    message["To"] = ", ".join(emails)
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(from_header)[1].rpartition("@")[2] or "npsd.localhost"
    message["Message-ID"] = f"<digest.{delivery_id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Npsd-Digest-Delivery-Id"] = delivery_id
    message.set_content(TEMPLATES.get_template("digest.txt").render(context), cte="quoted-printable")
    message.add_alternative(
        TEMPLATES.get_template("digest.html").render(context), subtype="html", cte="quoted-printable"
    )
    return message


# ------------------------------------------------------------------------------ extra sections


def _impact(points: float | None, margin: float | None) -> str:
    """A theme's impact in words: positive impact means the theme pulls the score down."""
    if points is None:
        return "impact unknown"
    plus_minus = f" (± {margin:.1f})" if margin is not None else ""
    if points > 0:
        return f"pulls the NPS down by {points:.1f} points{plus_minus}"
    if points < 0:
        return f"lifts the NPS by {-points:.1f} points{plus_minus}"
    return f"no effect on the NPS{plus_minus}"


@section
def what_the_comments_say(session: Session, scope: Scope) -> SectionContent | None:
    """The period's :data:`TOP_THEMES` themes by answers, each with its answers, share of the
    commented answers and impact on the NPS, then the negative comments; None when no comment of
    the period was analysed (nothing is written here: a digest is composed in a read-only
    transaction, and an analysed comment means the organization's themes exist)."""
    filters = insights.Filters(
        survey_ids=[scope.survey_id] if scope.survey_id else None,
        since=scope.period.since,
        until=scope.period.until,
    )
    ai, nps = AnswerInsight.__table__, NpsRecord.__table__
    commented, negative = session.execute(
        select(func.count(), func.count().filter(ai.c.sentiment == "negative"))
        .select_from(ai.join(nps, nps.c.id == ai.c.record_id))
        .where(ai.c.org_id == scope.org_id, ai.c.is_empty.is_(False), *filters.conditions(scope.org_id))
    ).one()
    if not commented:
        return None
    report = insights.themes_report(session, scope.org_id, filters)
    top = [t for t in report["themes"] if t["answers"]][:TOP_THEMES]
    lines = [
        f"{t['name']}: {t['answers']} answer{'s' if t['answers'] != 1 else ''}"
        f" ({(t['share'] or 0) * 100:.0f}% of the commented), "
        + _impact(t["impact"], t["impactMarginOfError"])
        for t in top
    ]
    if not top:
        lines.append("No comment of the period fits a theme")
    lines.append(f"Negative comments: {negative} of {commented} commented answers")
    return SectionContent("What the comments say", lines)
