"""NPS metrics and survey statistics, read from the daily roll-up, never from the records.

``nps_rollup`` holds answer counts per (survey, company, source, day, score). Every query here
sums it grouped by day (or by one dimension) and score, so its cost follows the number of
roll-up cells (at most days x surveys x companies x sources x 11), not the number of answers.
Days are then bucketed into weeks or months in Python, which keeps the SQL identical on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from npsd.analytics.nps import Summary, change, is_significant
from npsd.kit.db import one_of
from npsd.kit.models import Company, Invitation, NpsRollup, Survey

R = NpsRollup.__table__
S = Survey.__table__

Interval = Literal["day", "week", "month"]
GroupBy = Literal["survey", "company", "source"]
RECENT_DAYS = 30


@dataclass(frozen=True)
class MetricsQuery:
    """Filters of ``nps-metrics``. ``since``/``until`` are whole UTC days, both included."""

    since: date | None = None
    until: date | None = None
    survey_ids: list[str] | None = None
    company_ids: list[str] | None = None
    source: str | None = None
    interval: Interval = "month"
    group_by: GroupBy | None = None
    # the period to compare with (opt-in: ``comparison`` is reported when either is set); the
    # other filters (surveys, companies, source) apply to both periods alike
    compare_since: date | None = None
    compare_until: date | None = None

    @property
    def compares(self) -> bool:
        return self.compare_since is not None or self.compare_until is not None

    def compared(self) -> MetricsQuery:
        """The same filters over the comparison period."""
        return replace(
            self, since=self.compare_since, until=self.compare_until, compare_since=None, compare_until=None
        )


# ------------------------------------------------------------------------------------------- periods


def period_start(day: date, interval: Interval) -> date:
    """First day of the period holding ``day``: itself, its ISO week's Monday, or the 1st of its month."""
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period(start: date, interval: Interval) -> date:
    """First day of the period after the one starting on ``start``."""
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    return date(start.year + 1, 1, 1) if start.month == 12 else date(start.year, start.month + 1, 1)


def period_label(start: date, interval: Interval) -> str:
    """``2024-03-05`` (day), ``2024-W10`` (ISO week) or ``2024-03`` (month)."""
    if interval == "day":
        return start.isoformat()
    if interval == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start.year:04d}-{start.month:02d}"


def periods(first: date, last: date, interval: Interval) -> Iterable[date]:
    """Every period start from the period of ``first`` to the period of ``last``, gaps included."""
    start = period_start(first, interval)
    while start <= last:
        yield start
        start = next_period(start, interval)


# ------------------------------------------------------------------------------------------- queries


def _conditions(org_id: str, q: MetricsQuery) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [R.c.org_id == org_id]
    if q.since is not None:
        conds.append(R.c.day >= q.since)
    if q.until is not None:
        conds.append(R.c.day <= q.until)
    if q.survey_ids:
        conds.append(R.c.survey_id.in_(q.survey_ids))
    if q.company_ids:
        conds.append(R.c.company_id.in_(q.company_ids))
    if q.source is not None:
        conds.append(R.c.source == q.source)
    return conds


def summary_fields(s: Summary) -> dict[str, Any]:
    """The NPS breakdown of one set of answers, in the API's field names."""
    return {
        "npsScore": s.nps,
        "totalResponses": s.total,
        "promoters": s.promoters,
        "passives": s.passives,
        "detractors": s.detractors,
        "promoterPercentage": s.percentage(s.promoters),
        "passivePercentage": s.percentage(s.passives),
        "detractorPercentage": s.percentage(s.detractors),
        "averageScore": s.average,
        "distribution": list(s.distribution),
        "marginOfError": s.margin_of_error,
        "confidenceInterval": _interval(s),
        "lowSample": s.low_sample,
    }


def nps_metrics(session: Session, org_id: str, q: MetricsQuery) -> dict[str, Any]:
    """Overall NPS, the trend per period and (with ``group_by``) one line per survey, company or source."""
    conds = _conditions(org_id, q)
    by_period: dict[date, list[int]] = {}
    first: date | None = None
    last: date | None = None
    rows = session.execute(
        select(R.c.day, R.c.score, func.sum(R.c.count)).where(*conds).group_by(R.c.day, R.c.score)
    )
    for day, score, n in rows:
        if not n:
            continue
        start = period_start(day, q.interval)
        counts = by_period.get(start)
        if counts is None:
            counts = by_period[start] = [0] * 11
        counts[score] += int(n)
        first = day if first is None or day < first else first
        last = day if last is None or day > last else last

    total = Summary((0,) * 11)
    trend: list[dict[str, Any]] = []
    if first is not None and last is not None:
        previous: Summary | None = None
        for start in periods(first, last, q.interval):
            current = Summary(tuple(by_period.get(start, (0,) * 11)))
            total = total + current
            trend.append(
                {
                    "period": period_label(start, q.interval),
                    "start": start.isoformat(),
                    "end": (next_period(start, q.interval) - timedelta(days=1)).isoformat(),
                    "npsScore": current.nps,
                    "responses": current.total,
                    "promoters": current.promoters,
                    "passives": current.passives,
                    "detractors": current.detractors,
                    "marginOfError": current.margin_of_error,
                    "confidenceInterval": _interval(current),
                    "change": change(previous.nps, current.nps) if previous is not None else None,
                    "significant": is_significant(previous.triple, current.triple)
                    if previous is not None
                    else None,
                }
            )
            previous = current

    body = summary_fields(total)
    body["responseRate"] = response_rate_percent(session, org_id, q.survey_ids, q.since, q.until)
    body["trend"] = trend
    body["groups"] = _groups(session, org_id, q, conds) if q.group_by else []
    if q.compares:
        body["comparison"] = compare_periods(session, org_id, q, total)
    return body


def _interval(s: Summary) -> list[float] | None:
    """The 95% interval as the API prints it: [lower, upper] around the adjusted estimate (so
    not simply npsScore ± marginOfError), or None without answers."""
    ci = s.confidence_interval
    return list(ci) if ci is not None else None


def score_summary(session: Session, org_id: str, q: MetricsQuery) -> Summary:
    """The answers ``q`` selects, as one summary (one roll-up query grouped by score)."""
    dist = [0] * 11
    for score, n in session.execute(
        select(R.c.score, func.sum(R.c.count)).where(*_conditions(org_id, q)).group_by(R.c.score)
    ):
        dist[score] += int(n or 0)
    return Summary(tuple(dist))


def compare_periods(
    session: Session, org_id: str, q: MetricsQuery, current: Summary | None = None
) -> dict[str, Any]:
    """The answers of ``q`` against those of its comparison period (``compare_since`` to
    ``compare_until``, same surveys, companies and source): the earlier period's figures, the
    change of the NPS and whether it is beyond chance at 95% (:func:`nps.is_significant`).

    The one place this comparison is made: ``nps-metrics?compareSince=...&compareUntil=...``
    and the dashboard's overview both report it from here, so they cannot disagree. ``current``
    is ``q``'s own summary when the caller has it already (``nps_metrics`` does).
    """
    now = current if current is not None else score_summary(session, org_id, q)
    before = score_summary(session, org_id, q.compared())
    body = summary_fields(before)
    return {
        "since": q.compare_since.isoformat() if q.compare_since else None,
        "until": q.compare_until.isoformat() if q.compare_until else None,
        **body,
        "change": change(before.nps, now.nps),
        "significant": is_significant(before.triple, now.triple),
    }


_GROUP_COLUMN = {"survey": R.c.survey_id, "company": R.c.company_id, "source": R.c.source}


def _groups(
    session: Session, org_id: str, q: MetricsQuery, conds: list[ColumnElement[bool]]
) -> list[dict[str, Any]]:
    assert q.group_by is not None
    column = _GROUP_COLUMN[q.group_by]
    counts: dict[str, list[int]] = {}
    for key, score, n in session.execute(
        select(column, R.c.score, func.sum(R.c.count)).where(*conds).group_by(column, R.c.score)
    ):
        if n:
            counts.setdefault(key, [0] * 11)[score] += int(n)
    names = _names(session, org_id, q.group_by, [k for k in counts if k])
    groups: list[dict[str, Any]] = []
    for key, dist in counts.items():
        s = Summary(tuple(dist))
        groups.append(
            {
                "key": key or None,
                "name": names.get(key) if key else None,
                "npsScore": s.nps,
                "responses": s.total,
                "promoters": s.promoters,
                "passives": s.passives,
                "detractors": s.detractors,
                "marginOfError": s.margin_of_error,
            }
        )
    groups.sort(key=lambda g: (-g["responses"], g["key"] or ""))
    return groups


def _names(session: Session, org_id: str, group_by: GroupBy, keys: list[str]) -> dict[str, str]:
    """Display names of group keys: the survey's or company's name, the source itself."""
    if group_by == "source":
        return {k: k for k in keys}
    model: Any = Survey if group_by == "survey" else Company
    rows = session.execute(
        select(model.id, model.name).where(model.org_id == org_id, one_of(session, model.id, keys))
    )
    return {key: name for key, name in rows}


def survey_choices(session: Session, org_id: str, limit: int) -> list[tuple[str, str]]:
    """The organization's surveys as (id, name), by name: the choices of a survey filter, named
    like the metrics' survey groups. Names only: ``surveys.service.list_surveys`` also sums each
    survey's answers, a roll-up scan a filter's list does not need (it was a third of the
    overview's time at a million answers)."""
    rows = session.execute(
        select(Survey.id, Survey.name)
        .where(Survey.org_id == org_id)
        .order_by(Survey.name, Survey.id)
        .limit(limit)
    )
    return [(sid, name) for sid, name in rows]


def survey_stats(session: Session, org_id: str, today: date) -> dict[str, Any]:
    """Survey counts and the NPS of the organization's survey responses (see the route's text)."""
    total, active = session.execute(
        select(func.count(), func.coalesce(func.sum(case((S.c.is_active, 1), else_=0)), 0)).where(
            S.c.org_id == org_id
        )
    ).one()
    cutoff = today - timedelta(days=RECENT_DAYS - 1)
    dist = [0] * 11
    recent = 0
    survey_ids = select(S.c.id).where(S.c.org_id == org_id)
    for score, n, n_recent in session.execute(
        select(R.c.score, func.sum(R.c.count), func.sum(case((R.c.day >= cutoff, R.c.count), else_=0)))
        .where(R.c.org_id == org_id, R.c.survey_id.in_(survey_ids))
        .group_by(R.c.score)
    ):
        dist[score] += int(n or 0)
        recent += int(n_recent or 0)
    s = Summary(tuple(dist))
    return {
        "total": int(total),
        "active": int(active),
        "inactive": int(total) - int(active),
        "totalResponses": s.total,
        "responsesLast30Days": recent,
        "averageScore": s.average,
        "npsScore": s.nps,
        "responseRate": response_rate_percent(session, org_id),
    }


def response_rate_percent(
    session: Session,
    org_id: str,
    survey_ids: list[str] | None = None,
    since: date | None = None,
    until: date | None = None,
) -> float | None:
    """Answered invitations per invitation sent, in percent (one decimal); None while none was sent."""
    rate = response_rate(session, org_id, survey_ids, since, until)
    return None if rate is None else round(100.0 * rate, 1)


def response_rate(
    session: Session,
    org_id: str,
    survey_ids: list[str] | None,
    since: date | None = None,
    until: date | None = None,
) -> float | None:
    """Answered invitations over sent ones (a fraction from 0 to 1), for the given surveys or all,
    of the invitations sent from ``since`` to ``until`` (whole UTC days, both included).

    None while nothing has been sent. An invitation counts as sent once its mail was accepted by
    the SMTP server (reminded and answered ones included); queued, failed and cancelled ones do not.
    An invitation sent in the period counts as answered whenever its answer came.
    """
    conds: list[ColumnElement[bool]] = [Invitation.org_id == org_id, Invitation.sent_at.is_not(None)]
    if survey_ids is not None:
        if not survey_ids:
            return None
        conds.append(Invitation.survey_id.in_(survey_ids))
    if since is not None:
        conds.append(Invitation.sent_at >= datetime.combine(since, time.min))
    if until is not None:
        conds.append(Invitation.sent_at < datetime.combine(until + timedelta(days=1), time.min))
    sent, answered = session.execute(
        select(func.count(), func.count(Invitation.answered_at)).where(*conds)
    ).one()
    return answered / sent if sent else None
