"""Recompute every roll-up from the records and compare with what the write paths maintained."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from npsd.analytics.nps import nps
from npsd.kit.db import Database
from npsd.kit.models import Company, Enduser, NpsRecord, NpsRollup
from npsd.kit.timeutil import utcnow


def rollup_mismatches(db: Database, org_id: str) -> list[str]:
    """Differences between the stored roll-ups of ``org_id`` and a recomputation (empty when exact)."""
    problems: list[str] = []
    with db.transaction(write=False) as s:
        records = s.execute(
            select(
                NpsRecord.id,
                NpsRecord.campaign_id,
                NpsRecord.company_id,
                NpsRecord.source,
                NpsRecord.date_answered,
                NpsRecord.score,
                NpsRecord.enduser_id,
                NpsRecord.comment,
            ).where(NpsRecord.org_id == org_id)
        ).all()
        expected: Counter[tuple[Any, ...]] = Counter()
        for _, campaign, cid, source, answered, score, _, _ in records:
            expected[(campaign or "", cid or "", source or "", answered.date(), score)] += 1
        stored = Counter(
            {
                (r.survey_id, r.company_id, r.source, r.day, r.score): r.count
                for r in s.scalars(select(NpsRollup).where(NpsRollup.org_id == org_id))
                if r.count
            }
        )
        if stored != expected:
            problems.append(
                f"nps_rollup differs: stored-expected={stored - expected}, expected-stored={expected - stored}"
            )
        latest: dict[str, tuple[Any, ...]] = {}
        for rec in records:
            cur = latest.get(rec[6])
            if cur is None or (rec[4], rec[0]) > (cur[4], cur[0]):
                latest[rec[6]] = rec
        endusers = s.scalars(select(Enduser).where(Enduser.org_id == org_id)).all()
        for e in endusers:
            want = latest.get(e.id)
            got = (e.nps, e.nps_comment, e.nps_date, e.nps_id)
            exp = (want[5], want[7], want[4], want[0]) if want else (None, None, None, None)
            if got != exp:
                problems.append(f"enduser {e.id}: stored {got}, expected {exp}")
        since = utcnow() - timedelta(days=360)
        for c in s.scalars(select(Company).where(Company.org_id == org_id)):
            scores = [
                latest[e.id][5]
                for e in endusers
                if e.company_id == c.id and e.id in latest and latest[e.id][4] >= since
            ]
            p = sum(1 for x in scores if x >= 9)
            d = sum(1 for x in scores if x <= 6)
            exp_c = (nps(p, len(scores) - p - d, d), len(scores))
            if (c.nps, c.nps_responses) != exp_c:
                problems.append(f"company {c.id}: stored {(c.nps, c.nps_responses)}, expected {exp_c}")
    return problems
