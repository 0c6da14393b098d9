"""Roll-ups kept exact by every write path, in the writer's own transaction.

* ``nps_rollup``: answer counts per (survey, company, source, day, score), updated by delta.
* enduser: ``nps``, ``nps_comment``, ``nps_date``, ``nps_id`` of its latest answer.
* company: NPS over its endusers' latest answers of the last 360 days, and how many it counts.
  Answers also leave that window with time alone: each company keeps ``nps_expires_at``, when
  its oldest counted answer turns 360 days old, and the job worker recounts the companies
  whose moment has passed (:func:`recount_aged_companies`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from npsd.analytics.nps import in_category, nps
from npsd.kit.db import Database, lock_org_writes, one_of
from npsd.kit.jobs import periodic
from npsd.kit.models import Company, Enduser, NpsRecord, NpsRollup
from npsd.kit.timeutil import utcnow
from npsd.records.fastsql import add_many, update_many

COMPANY_NPS_WINDOW = timedelta(days=360)

RollupKey = tuple[str, str, str, date, int]  # survey, company, source, day, score
# A contact's latest answer, ordered as the roll-up orders them: by date answered, then record id.
Latest = tuple[datetime, str, int, str | None]  # date_answered, record id, score, comment
ROLLUP = NpsRollup.__table__
ROLLUP_KEY = ("org_id", "survey_id", "company_id", "source", "day", "score")  # its primary key
ENDUSER = Enduser.__table__


def rollup_key(
    campaign_id: str | None, company_id: str | None, source: str | None, date_answered: datetime, score: int
) -> RollupKey:
    return (campaign_id or "", company_id or "", source or "", date_answered.date(), score)


def apply_deltas(session: Session, org_id: str, deltas: Counter[RollupKey]) -> None:
    """Add ``deltas`` to ``nps_rollup`` (insert or increment), then drop buckets that reached 0."""
    rows: list[dict[str, Any]] = [
        {
            "org_id": org_id,
            "survey_id": k[0],
            "company_id": k[1],
            "source": k[2],
            "day": k[3],
            "score": k[4],
            "count": n,
        }
        for k, n in deltas.items()
        if n
    ]
    if not rows:
        return
    add_many(session, ROLLUP, ROLLUP_KEY, "count", rows)
    if any(r["count"] < 0 for r in rows):
        session.execute(ROLLUP.delete().where(ROLLUP.c.org_id == org_id, ROLLUP.c.count <= 0))


@dataclass
class ContactState:
    """What the roll-up needs of one contact: its company and its stored latest answer."""

    id: str
    company_id: str | None
    latest: Latest | None
    is_new: bool = False
    email_key: str = ""


def contact_state(row: Any) -> ContactState:
    """A :class:`ContactState` from ``(id, company_id, nps, nps_comment, nps_date, nps_id)``."""
    eid, cid, score, comment, answered, rid = row
    return ContactState(eid, cid, (answered, rid, score, comment) if rid is not None else None)


CONTACT_STATE_COLUMNS = (
    ENDUSER.c.id,
    ENDUSER.c.company_id,
    ENDUSER.c.nps,
    ENDUSER.c.nps_comment,
    ENDUSER.c.nps_date,
    ENDUSER.c.nps_id,
)


def plan_latest(
    states: Mapping[str, ContactState], written: Iterable[dict[str, Any]], replaced: Iterable[dict[str, Any]]
) -> tuple[dict[str, Latest | None], set[str]]:
    """Each touched contact's new latest answer, from its stored one and the batch alone.

    ``written`` are record rows as they will be after the batch (creates and updated rows),
    ``replaced`` the rows that updates replace. The stored latest answer is the maximum of the
    contact's records, so the new one is the maximum of it and the written rows, unless an update
    moved the stored latest back in time or to another contact: then older records that are not
    in the batch may win, and the contact is returned in the second set, to be recomputed from
    the table (:func:`refresh_endusers`). The first result holds only contacts whose latest answer
    changes (new contacts always).
    """
    candidates: dict[str, list[Latest]] = {}
    after_of: dict[str, dict[str, Any]] = {}
    for row in written:
        rid = row["id"]
        after_of[rid] = row
        latest = (row["date_answered"], rid, row["score"], row["comment"])
        if (found := candidates.get(row["enduser_id"])) is None:
            candidates[row["enduser_id"]] = [latest]
        else:
            found.append(latest)
    recompute: set[str] = set()
    replaced_ids: set[str] = set()
    for before in replaced:
        replaced_ids.add(before["id"])
        state = states.get(before["enduser_id"])
        if state is None or state.latest is None or state.latest[1] != before["id"]:
            candidates.setdefault(before["enduser_id"], [])
            continue
        after = after_of.get(before["id"])
        if (
            after is None
            or after["enduser_id"] != before["enduser_id"]
            or (after["date_answered"], after["id"]) < state.latest[:2]
        ):
            recompute.add(before["enduser_id"])
    changed: dict[str, Latest | None] = {}
    for eid, cands in candidates.items():
        if eid in recompute:
            continue
        state = states[eid]
        stored = state.latest
        if stored is not None and stored[1] not in replaced_ids:
            cands = [*cands, stored]
        # (date answered, id) decides, and ids are unique: comparing whole tuples is the same
        best = (cands[0] if len(cands) == 1 else max(cands)) if cands else None
        if state.is_new or best != stored:
            changed[eid] = best
    return changed, recompute


def write_latest(session: Session, org_id: str, changed: Mapping[str, Latest | None]) -> None:
    """Store the latest answers :func:`plan_latest` found for existing contacts (one executemany)."""
    if not changed:
        return
    rows = []
    for eid, latest in changed.items():
        row = latest_params(eid, latest)
        row["id"] = row.pop("eid")
        row["org_id"] = org_id
        rows.append(row)
    update_many(session, ENDUSER, ("nps", "nps_comment", "nps_date", "nps_id"), ("id", "org_id"), rows)


def latest_params(eid: str, latest: Latest | None) -> dict[str, Any]:
    answered, rid, score, comment = latest if latest is not None else (None, None, None, None)
    return {"eid": eid, "nps": score, "nps_comment": comment, "nps_date": answered, "nps_id": rid}


def refresh_endusers(session: Session, org_id: str, enduser_ids: Collection[str]) -> set[str]:
    """Recompute each enduser's latest answer; return the ids of the companies they belong to."""
    if not enduser_ids:
        return set()
    latest: dict[str, Any] = {}  # enduser id -> its latest record (a row of ``ranked``)
    ranked = (
        select(
            NpsRecord.enduser_id,
            NpsRecord.id,
            NpsRecord.score,
            NpsRecord.comment,
            NpsRecord.date_answered,
            func.row_number()
            .over(
                partition_by=NpsRecord.enduser_id,
                order_by=(NpsRecord.date_answered.desc(), NpsRecord.id.desc()),
            )
            .label("rank"),
        )
        .where(NpsRecord.org_id == org_id, one_of(session, NpsRecord.enduser_id, enduser_ids))
        .subquery()
    )
    for ranked_row in session.execute(select(ranked).where(ranked.c.rank == 1)):
        latest[ranked_row[0]] = ranked_row
    write_latest(
        session,
        org_id,
        {
            eid: (row[4], row[1], row[2], row[3]) if (row := latest.get(eid)) is not None else None
            for eid in enduser_ids
        },
    )
    return {
        cid
        for cid in session.scalars(
            select(Enduser.company_id)
            .where(Enduser.org_id == org_id, one_of(session, Enduser.id, enduser_ids))
            .distinct()
        )
        if cid
    }


def refresh_companies(session: Session, org_id: str, company_ids: Collection[str]) -> None:
    """Recompute each company's NPS from its endusers' latest answers of the last 360 days, and
    when the oldest of those answers will leave the window."""
    if not company_ids:
        return
    now = utcnow()
    since = now - COMPANY_NPS_WINDOW
    tallies: dict[str, tuple[int, int, int, datetime | None]] = {}
    query = (
        select(
            Enduser.company_id,
            func.sum(_case(in_category(Enduser.nps, "promoter"))),
            func.sum(_case(in_category(Enduser.nps, "passive"))),
            func.sum(_case(in_category(Enduser.nps, "detractor"))),
            func.min(Enduser.nps_date),
        )
        .where(
            Enduser.org_id == org_id,
            one_of(session, Enduser.company_id, company_ids),
            Enduser.nps.is_not(None),
            Enduser.nps_date >= since,
        )
        .group_by(Enduser.company_id)
    )
    for cid, p, m, d, oldest in session.execute(query):
        tallies[cid] = (int(p or 0), int(m or 0), int(d or 0), oldest)
    params = []
    for cid in company_ids:
        p, m, d, oldest = tallies.get(cid, (0, 0, 0, None))
        params.append(
            {
                "cid": cid,
                "nps": nps(p, m, d),
                "nps_responses": p + m + d,
                "nps_updated_at": now,
                "nps_expires_at": None if oldest is None else oldest + COMPANY_NPS_WINDOW,
            }
        )
    table = Company.__table__
    session.execute(
        update(table)
        .where(and_(table.c.id == bindparam("cid"), table.c.org_id == org_id))
        .values(
            nps=bindparam("nps"),
            nps_responses=bindparam("nps_responses"),
            nps_updated_at=bindparam("nps_updated_at"),
            nps_expires_at=bindparam("nps_expires_at"),
        ),
        params,
    )


@periodic
def recount_aged_companies(db: Database, limit: int = 1000) -> int:
    """Recount the companies (at most ``limit`` per call) whose oldest counted answer has left
    the 360-day window since their NPS was computed; returns how many were recounted.

    Checking costs one index range read, so the worker runs it on every poll.
    """
    now = utcnow()
    with db.transaction(write=False) as session:
        due = session.execute(
            select(Company.org_id, Company.id).where(Company.nps_expires_at <= now).limit(limit)
        ).all()
    if not due:
        return 0
    by_org: dict[str, list[str]] = {}
    for org_id, company_id in due:
        by_org.setdefault(org_id, []).append(company_id)
    for org_id, company_ids in sorted(by_org.items()):
        # one short transaction per organization: never two organizations' write locks at once
        with db.transaction(write=True) as session:
            lock_org_writes(session, org_id)  # queue behind the organization's record writers
            refresh_companies(session, org_id, company_ids)
    return len(due)


def _case(condition: Any) -> Any:
    return case((condition, 1), else_=0)
