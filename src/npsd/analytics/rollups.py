"""Roll-ups kept exact by every write path, in the writer's own transaction.

* ``nps_rollup``: answer counts per (survey, company, source, day, score), updated by delta.
* enduser: ``nps``, ``nps_comment``, ``nps_date``, ``nps_id`` of its latest answer.
* company: NPS over its endusers' latest answers of the last 360 days, and how many it counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from npsd.analytics.nps import nps
from npsd.models import Company, Enduser, NpsRecord, NpsRollup
from npsd.timeutil import utcnow

COMPANY_NPS_WINDOW = timedelta(days=360)
CHUNK = 900

RollupKey = tuple[str, str, str, date, int]  # survey, company, source, day, score


def rollup_key(campaign_id: str | None, company_id: str | None, source: str | None,
               date_answered: datetime, score: int) -> RollupKey:
    return (campaign_id or "", company_id or "", source or "", date_answered.date(), score)


def chunks(values: Collection[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def apply_deltas(session: Session, org_id: str, deltas: Counter[RollupKey]) -> None:
    """Add ``deltas`` to ``nps_rollup`` (insert or increment), then drop buckets that reached 0."""
    rows = [
        {"org_id": org_id, "survey_id": k[0], "company_id": k[1], "source": k[2], "day": k[3], "score": k[4],
         "count": n}
        for k, n in deltas.items() if n
    ]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(NpsRollup)
    stmt = stmt.on_conflict_do_update(
        index_elements=["org_id", "survey_id", "company_id", "source", "day", "score"],
        set_={"count": NpsRollup.count + stmt.excluded.count},
    )
    session.execute(stmt, rows)
    if any(r["count"] < 0 for r in rows):
        session.execute(NpsRollup.__table__.delete().where(NpsRollup.org_id == org_id, NpsRollup.count <= 0))


def refresh_endusers(session: Session, org_id: str, enduser_ids: Collection[str]) -> set[str]:
    """Recompute each enduser's latest answer; return the ids of the companies they belong to."""
    if not enduser_ids:
        return set()
    latest: dict[str, tuple[Any, ...]] = {}
    for part in chunks(enduser_ids):
        ranked = (
            select(
                NpsRecord.enduser_id, NpsRecord.id, NpsRecord.score, NpsRecord.comment, NpsRecord.date_answered,
                func.row_number().over(
                    partition_by=NpsRecord.enduser_id,
                    order_by=(NpsRecord.date_answered.desc(), NpsRecord.id.desc()),
                ).label("rank"),
            )
            .where(NpsRecord.org_id == org_id, NpsRecord.enduser_id.in_(part))
            .subquery()
        )
        for row in session.execute(select(ranked).where(ranked.c.rank == 1)):
            latest[row[0]] = row
    params = []
    for eid in enduser_ids:
        row = latest.get(eid)
        params.append({
            "eid": eid,
            "nps": row[2] if row else None,
            "nps_comment": row[3] if row else None,
            "nps_date": row[4] if row else None,
            "nps_id": row[1] if row else None,
        })
    table = Enduser.__table__
    session.execute(
        update(table).where(and_(table.c.id == bindparam("eid"), table.c.org_id == org_id)).values(
            nps=bindparam("nps"), nps_comment=bindparam("nps_comment"), nps_date=bindparam("nps_date"),
            nps_id=bindparam("nps_id"),
        ).execution_options(synchronize_session=False),
        params,
    )
    companies: set[str] = set()
    for part in chunks(enduser_ids):
        companies.update(
            cid for cid in session.scalars(
                select(Enduser.company_id).where(Enduser.org_id == org_id, Enduser.id.in_(part)).distinct()
            ) if cid
        )
    return companies


def refresh_companies(session: Session, org_id: str, company_ids: Collection[str]) -> None:
    """Recompute each company's NPS from its endusers' latest answers of the last 360 days."""
    if not company_ids:
        return
    now = utcnow()
    since = now - COMPANY_NPS_WINDOW
    tallies: dict[str, tuple[int, int, int]] = {}
    for part in chunks(company_ids):
        query = (
            select(
                Enduser.company_id,
                func.sum(_case(Enduser.nps >= 9)),
                func.sum(_case(and_(Enduser.nps >= 7, Enduser.nps <= 8))),
                func.sum(_case(Enduser.nps <= 6)),
            )
            .where(Enduser.org_id == org_id, Enduser.company_id.in_(part), Enduser.nps.is_not(None),
                   Enduser.nps_date >= since)
            .group_by(Enduser.company_id)
        )
        for cid, p, m, d in session.execute(query):
            tallies[cid] = (int(p or 0), int(m or 0), int(d or 0))
    params = []
    for cid in company_ids:
        p, m, d = tallies.get(cid, (0, 0, 0))
        params.append({"cid": cid, "nps": nps(p, m, d), "nps_responses": p + m + d, "nps_updated_at": now})
    table = Company.__table__
    session.execute(
        update(table).where(and_(table.c.id == bindparam("cid"), table.c.org_id == org_id)).values(
            nps=bindparam("nps"), nps_responses=bindparam("nps_responses"),
            nps_updated_at=bindparam("nps_updated_at"),
        ),
        params,
    )


def _case(condition: Any) -> Any:
    return case((condition, 1), else_=0)
