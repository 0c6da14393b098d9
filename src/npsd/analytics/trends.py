"""Many groups' trends at once: the monthly NPS of every company on a page, in one query.

The companies table shows a small trend line per company. Asking :func:`metrics.nps_metrics`
once per company would be one query per row; here ONE query over the roll-up sums each
company's answers per month (a conditional sum per month, grouped by company and score), so the
cost follows the number of companies and months, never the number of answers. Each month's
figure is :class:`~npsd.analytics.nps.Summary`'s NPS of that month's answers: the number the
API's ``nps-metrics?companyId=<id>&interval=month`` reports for the same month.

Read-only over ``nps_rollup``, scoped by organization, like ``metrics.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, timedelta

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from npsd.analytics.metrics import next_period, period_label, period_start
from npsd.analytics.nps import Summary
from npsd.kit.db import one_of
from npsd.kit.models import NpsRollup

R = NpsRollup.__table__
NO_COMPANY = ""  # how the roll-up stores "no company" (its key must be a primary key column)


def last_months(today: date, count: int = 12) -> list[date]:
    """The first days of the ``count`` calendar months ending with ``today``'s, oldest first."""
    starts = [period_start(today, "month")]
    while len(starts) < count:
        starts.append(period_start(starts[-1] - timedelta(days=1), "month"))
    return starts[::-1]


def month_labels(months: Sequence[date]) -> list[str]:
    """The API's period labels (``2026-03``) of month starts."""
    return [period_label(m, "month") for m in months]


def monthly_nps_by_company(
    session: Session, org_id: str, months: Sequence[date], company_ids: Collection[str | None]
) -> dict[str | None, list[float | None]]:
    """Each company's NPS per month of ``months`` (month starts, consecutive, oldest first):
    None for a month without answers. ``None`` in ``company_ids`` stands for the answers without
    a company. Companies with no answer in those months are absent from the result."""
    if not months or not company_ids:
        return {}
    first, end = months[0], next_period(months[-1], "month")
    keys = sorted({NO_COMPANY if c is None else c for c in company_ids})
    sums = [
        func.sum(case(((R.c.day >= start) & (R.c.day < next_period(start, "month")), R.c.count), else_=0))
        for start in months
    ]
    conds: list[ColumnElement[bool]] = [
        R.c.org_id == org_id,
        R.c.day >= first,
        R.c.day < end,
        one_of(session, R.c.company_id, keys),
    ]
    counts: dict[str, list[list[int]]] = {}
    for company, score, *per_month in session.execute(
        select(R.c.company_id, R.c.score, *sums).where(*conds).group_by(R.c.company_id, R.c.score)
    ):
        months_of = counts.setdefault(company, [[0] * 11 for _ in months])
        for i, n in enumerate(per_month):
            months_of[i][score] += int(n or 0)
    return {
        (None if company == NO_COMPANY else company): [Summary(tuple(d)).nps for d in dists]
        for company, dists in counts.items()
    }
