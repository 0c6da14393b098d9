"""Reading records: the list query (``GET /nps``), whose filter and order the exports and the
survey responses share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from npsd.analytics.nps import in_category
from npsd.kit.models import Enduser
from npsd.kit.timeutil import utcnow
from npsd.kit.validation import email_key
from npsd.records.output import COLUMNS, FIELD_COLUMNS, RAW_COLUMNS, T, raw_json, raw_stamp, to_output

# output field -> column, for ``sort``


@dataclass
class ListQuery:
    company_ids: list[str] | None = None
    campaign_ids: list[str] | None = None
    email: str | None = None
    score_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    updated_since: datetime | None = None
    expiry_days: int | None = 360
    sort: str | None = None
    limit: int = 100
    offset: int = 0
    select: list[str] | None = None


def filtered(org_id: str, q: ListQuery, now: datetime) -> Select[Any]:
    """The record query for ``q`` (no paging), shared by the list and the export."""
    stmt = select(*COLUMNS).where(T.c.org_id == org_id)
    if q.company_ids:
        stmt = stmt.where(T.c.company_id.in_(q.company_ids))
    if q.campaign_ids:
        stmt = stmt.where(T.c.campaign_id.in_(q.campaign_ids))
    if q.email:
        stmt = stmt.where(
            T.c.enduser_id.in_(
                select(Enduser.id).where(Enduser.org_id == org_id, Enduser.email_key == email_key(q.email))
            )
        )
    if q.score_type:
        stmt = stmt.where(in_category(T.c.score, q.score_type))
    if q.since is not None:
        stmt = stmt.where(T.c.date_answered >= q.since)
    if q.until is not None:
        stmt = stmt.where(T.c.date_answered <= q.until)
    if q.updated_since is not None:
        stmt = stmt.where(T.c.updated_at >= q.updated_since)
    if q.expiry_days:
        stmt = stmt.where(T.c.date_answered >= now - timedelta(days=q.expiry_days))
    return stmt


def ordered(stmt: Select[Any], sort: str | None) -> Select[Any]:
    """Apply ``sort`` (``field`` or ``-field``) with ``_id`` as the tie-breaker, for stable paging."""
    if not sort:
        return stmt.order_by(T.c.date_answered.desc(), T.c.id.desc())
    descending = sort.startswith("-")
    name = sort[1:] if descending else sort
    column = FIELD_COLUMNS[name]
    if descending:
        return stmt.order_by(column.desc(), T.c.id.desc())
    return stmt.order_by(column.asc(), T.c.id.asc())


def list_records(session: Session, org_id: str, q: ListQuery) -> list[dict[str, Any]]:
    stmt = ordered(filtered(org_id, q, utcnow()), q.sort).limit(q.limit).offset(q.offset)
    if session.get_bind().dialect.name == "sqlite":
        rows = [
            to_output(row, raw_stamp, raw_json)
            for row in session.execute(stmt.with_only_columns(*RAW_COLUMNS)).all()
        ]
    else:
        rows = [to_output(row) for row in session.execute(stmt).all()]
    if q.select:
        keep = {"_id", *q.select}
        rows = [{k: v for k, v in row.items() if k in keep} for row in rows]
    return rows
