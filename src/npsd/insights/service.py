"""Comment insights of an organization: its themes, each answer's reading, the figures per theme.

Writes never wait for the analysis. A write of answers stores an ``insights.analyse`` job with the
ids it created or updated (``kit/events.py`` record listener); the job reads those comments
(only a comment whose text changed is embedded again: the stored vector is reused for a new
score or new themes) and stores one :class:`AnswerInsight` per answer, with its themes in
:class:`AnswerTheme`. A change of themes raises the organization's ``themes_version``; the
``insights.catch_up`` job then walks every answer whose reading is missing or older (keyset by
id, a time budget per run, then it queues itself again) and, once done, works out the
suggested themes from the comments that fit none.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from npsd.analytics import nps as nps_math
from npsd.analytics.metrics import (
    Interval,
    MetricsQuery,
    next_period,
    period_label,
    period_start,
    score_summary,
)
from npsd.insights import engine, suggest
from npsd.kit import events
from npsd.kit.db import Database
from npsd.kit.errors import BadRequest, NotFound
from npsd.kit.ids import new_id, new_ids
from npsd.kit.jobs import JobInfo, enqueue, handler
from npsd.kit.models import AnswerInsight, AnswerTheme, InsightState, InsightTheme, Job, NpsRecord
from npsd.kit.timeutil import iso, utcnow

log = logging.getLogger("npsd.insights")

T = NpsRecord.__table__
AI = AnswerInsight.__table__
AT = AnswerTheme.__table__
ANALYSE_JOB = events.INSIGHTS_ANALYSE_JOB  # a record listener (kit/events.py)
CATCH_UP_JOB = "insights.catch_up"
SUGGEST_JOB = "insights.suggest"
CHUNK = 200  # answers read and written per transaction
CATCH_UP_SECONDS = 20.0  # then the catch-up job queues itself again, so others get their turn
EXAMPLES_PER_THEME = 3
MAX_CUSTOM_THEMES = 50


# ------------------------------------------------------------------------------------- themes


def _default_rows(org_id: str, now: datetime) -> list[dict[str, Any]]:
    lex = engine.lexicon()
    return [
        {
            "id": theme_id,
            "org_id": org_id,
            "key": theme.key,
            "name": theme.names["en"],
            "keywords": theme.keywords["en"],
            "examples": [],
            "status": "active",
            "hidden": False,
            "merged_into_id": None,
            "centroid": None,
            "position": position,
            "created_at": now,
            "updated_at": now,
        }
        for position, (theme_id, theme) in enumerate(zip(new_ids(len(lex.themes)), lex.themes, strict=True))
    ]


def themes_version(session: Session, org_id: str) -> int:
    """The organization's themes version, creating its default themes on first use (several
    processes may race to: the unique key lets one win, the others read its rows)."""
    version = session.scalar(select(InsightState.themes_version).where(InsightState.org_id == org_id))
    if version is not None:
        return version
    now = utcnow()
    try:
        with session.begin_nested():
            session.execute(
                insert(InsightState.__table__),
                [{"org_id": org_id, "themes_version": 1, "suggested_at": None, "updated_at": now}],
            )
            session.execute(insert(InsightTheme.__table__), _default_rows(org_id, now))
    except IntegrityError:
        pass
    return session.scalar(select(InsightState.themes_version).where(InsightState.org_id == org_id)) or 1


def has_themes(session: Session, org_id: str) -> bool:
    """Whether the organization's themes exist yet (made on first use), asked without writing: a
    dashboard page that may read from the replica calls the other functions only when they do."""
    found = session.scalar(select(InsightState.org_id).where(InsightState.org_id == org_id))
    return found is not None


def bump_version(session: Session, org_id: str) -> int:
    """Mark every reading as made with older themes and queue the catch-up that re-reads them."""
    themes_version(session, org_id)
    session.execute(
        update(InsightState)
        .where(InsightState.org_id == org_id)
        .values(themes_version=InsightState.themes_version + 1, updated_at=utcnow())
    )
    queue_catch_up(session, org_id)
    return themes_version(session, org_id)


def queue_catch_up(session: Session, org_id: str, after: str = "") -> None:
    enqueue(
        session,
        CATCH_UP_JOB,
        {"after": after},
        org_id=org_id,
        dedupe_key=f"insights.catch_up:{org_id}:{themes_version(session, org_id)}:{after}",
        max_attempts=5,
    )


def all_themes(session: Session, org_id: str) -> list[InsightTheme]:
    themes_version(session, org_id)
    return list(
        session.scalars(
            select(InsightTheme)
            .where(InsightTheme.org_id == org_id)
            .order_by(InsightTheme.position, InsightTheme.created_at, InsightTheme.id)
        )
    )


def theme_phrases(theme: InsightTheme) -> list[str]:
    """What an answer is matched to for ``theme``, besides the shipped examples of a default one:
    the organization's own examples, and for a theme of its own its name."""
    phrases = [p for p in theme.examples if p.strip()]
    if theme.key is None:
        phrases.append(theme.name)
    return phrases


def theme_index(session: Session, org_id: str) -> engine.ThemeIndex:
    """The active, visible themes of the organization, each with the examples of the themes merged
    into it."""
    themes = [t for t in all_themes(session, org_id) if t.status == "active"]
    targets = [t for t in themes if not t.hidden and t.merged_into_id is None]
    merged: dict[str, list[InsightTheme]] = defaultdict(list)
    for theme in themes:
        if theme.merged_into_id is not None:
            merged[theme.merged_into_id].append(theme)
    ids: list[str] = []
    matrices: list[engine.Vectors] = []
    own: set[str] = set()
    for target in targets:
        parts = []
        for theme in [target, *merged.get(target.id, [])]:
            if theme.key is not None:
                parts.append(engine.default_theme_vectors(theme.key))
            phrases = theme_phrases(theme)
            if phrases:
                parts.append(engine.EMBEDDER.embed(phrases))
        matrix = np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
        if len(matrix):
            ids.append(target.id)
            matrices.append(matrix)
            if target.key is None:
                own.add(target.id)
    return engine.ThemeIndex(ids, matrices, frozenset(own))


def find_theme(session: Session, org_id: str, theme_id: str) -> InsightTheme:
    theme = session.scalar(
        select(InsightTheme).where(InsightTheme.org_id == org_id, InsightTheme.id == theme_id)
    )
    if theme is None:
        raise NotFound(f"no theme {theme_id!r}")
    return theme


def create_theme(
    session: Session, org_id: str, name: str, examples: list[str], keywords: list[str]
) -> InsightTheme:
    """A theme of the organization's own, matched by its name and example phrases."""
    themes = all_themes(session, org_id)
    if sum(1 for t in themes if t.key is None and t.status == "active") >= MAX_CUSTOM_THEMES:
        raise BadRequest.field("name", f"an organization has at most {MAX_CUSTOM_THEMES} themes of its own")
    _check_name(themes, name, None)
    now = utcnow()
    theme = InsightTheme(
        id=new_id(),
        org_id=org_id,
        key=None,
        name=name,
        keywords=keywords,
        examples=examples,
        status="active",
        hidden=False,
        merged_into_id=None,
        centroid=None,
        position=max((t.position for t in themes), default=0) + 1,
        created_at=now,
        updated_at=now,
    )
    session.add(theme)
    session.flush()
    bump_version(session, org_id)
    return theme


def _check_name(themes: Sequence[InsightTheme], name: str, own_id: str | None) -> None:
    taken = {t.name.casefold() for t in themes if t.id != own_id and t.status == "active"}
    if name.casefold() in taken:
        raise BadRequest.field("name", "another theme has this name")


def update_theme(session: Session, org_id: str, theme: InsightTheme, changes: dict[str, Any]) -> InsightTheme:
    """Rename, reword (keywords, examples), hide or show a theme. A change to what is matched
    (examples, hidden) re-reads every answer in the background; a new name or keywords do not."""
    if theme.status != "active":
        raise BadRequest.field("id", "a suggested theme is adopted first (POST .../adopt)")
    if "name" in changes:
        _check_name(all_themes(session, org_id), changes["name"], theme.id)
    rematch = False
    for field_name in ("name", "keywords", "examples", "hidden"):
        if field_name in changes and getattr(theme, field_name) != changes[field_name]:
            setattr(theme, field_name, changes[field_name])
            rematch = (
                rematch
                or field_name in ("examples", "hidden")
                or (field_name == "name" and theme.key is None)
            )
    theme.updated_at = utcnow()
    session.flush()
    if rematch:
        bump_version(session, org_id)
    return theme


def merge_theme(session: Session, org_id: str, theme: InsightTheme, into: InsightTheme) -> InsightTheme:
    """Fold ``theme`` into ``into``: its answers count as ``into``'s at once (moved in one
    statement), its examples match as ``into``'s from now on, and it leaves the list."""
    if theme.id == into.id:
        raise BadRequest.field("into", "a theme cannot be merged into itself")
    if into.status != "active" or into.merged_into_id is not None or into.hidden:
        raise BadRequest.field("into", "merge into an active, visible theme")
    if theme.status != "active":
        raise BadRequest.field("id", "a suggested theme is adopted first")
    # themes merged into ``theme`` follow it
    session.execute(
        update(InsightTheme)
        .where(InsightTheme.org_id == org_id, InsightTheme.merged_into_id == theme.id)
        .values(merged_into_id=into.id, updated_at=utcnow())
    )
    theme.merged_into_id = into.id
    theme.updated_at = utcnow()
    both = select(AT.c.record_id).where(AT.c.org_id == org_id, AT.c.theme_id == into.id)
    session.execute(
        delete(AT).where(AT.c.org_id == org_id, AT.c.theme_id == theme.id, AT.c.record_id.in_(both))
    )
    session.execute(
        update(AT).where(AT.c.org_id == org_id, AT.c.theme_id == theme.id).values(theme_id=into.id)
    )
    session.flush()
    bump_version(session, org_id)
    return into


def delete_theme(session: Session, org_id: str, theme: InsightTheme) -> None:
    """Delete a theme of the organization's own or a suggestion (a default theme is hidden
    instead, so it can be shown again)."""
    if theme.key is not None:
        raise BadRequest.field("id", "a default theme cannot be deleted; hide it (PATCH hidden: true)")
    session.execute(
        update(InsightTheme)
        .where(InsightTheme.org_id == org_id, InsightTheme.merged_into_id == theme.id)
        .values(merged_into_id=None, updated_at=utcnow())
    )
    session.delete(theme)
    session.flush()
    if theme.status == "active":
        bump_version(session, org_id)


def adopt_suggestion(session: Session, org_id: str, theme: InsightTheme, name: str | None) -> InsightTheme:
    """Make a suggested theme an active one, matched by the comments it was formed from."""
    if theme.status != "suggested":
        raise BadRequest.field("id", "only a suggested theme can be adopted")
    themes = all_themes(session, org_id)
    new_name = name or theme.name
    _check_name(themes, new_name, theme.id)
    theme.status = "active"
    theme.name = new_name
    theme.position = max((t.position for t in themes), default=0) + 1
    theme.updated_at = utcnow()
    session.flush()
    bump_version(session, org_id)
    return theme


# ------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Stored:
    text_hash: str
    vector: bytes | None
    version: int


def _read(
    rows: Sequence[Any], stored: dict[str, Stored], index: engine.ThemeIndex
) -> dict[str, tuple[str, engine.Reading]]:
    """Readings of ``rows`` (id, comment, score): a comment whose text is unchanged reuses its
    stored vector (no model), the others are embedded in one batch."""
    out: dict[str, tuple[str, engine.Reading]] = {}
    fresh: list[Any] = []
    reused: list[tuple[Any, engine.Vectors]] = []
    for row in rows:
        digest = engine.text_hash(row.comment or "")
        old = stored.get(row.id)
        if engine.is_empty(row.comment):
            out[row.id] = (digest, engine.Reading(True, [], None, None, None))
        elif old is not None and old.text_hash == digest and old.vector is not None:
            reused.append((row, engine.from_bytes(old.vector)))
        else:
            fresh.append(row)
    if reused:
        vectors = np.stack([v for _, v in reused])
        for (row, vector), (themes, label, value) in zip(
            reused, engine.read_vectors(vectors, [r.score for r, _ in reused], index), strict=True
        ):
            out[row.id] = (
                engine.text_hash(row.comment or ""),
                engine.Reading(False, themes, label, value, vector),
            )
    if fresh:
        readings = engine.analyse([r.comment for r in fresh], [r.score for r in fresh], index)
        for row, reading in zip(fresh, readings, strict=True):
            out[row.id] = (engine.text_hash(row.comment or ""), reading)
    return out


def analyse(db: Database, org_id: str, record_ids: Sequence[str], suggest_after: bool = True) -> int:
    """Read the answers ``record_ids`` of ``org_id`` and store what was read. The model runs
    outside any transaction; the write checks each answer still has the text that was read (an
    answer changed meanwhile is left to the job its change queued). A comment that fits no theme
    queues the suggestions' refresh (``suggest_after``). Returns answers stored."""
    if not record_ids:
        return 0
    with db.transaction() as session:
        version = themes_version(session, org_id)
        index = theme_index(session, org_id)
        rows = session.execute(
            select(T.c.id, T.c.comment, T.c.score).where(T.c.org_id == org_id, T.c.id.in_(record_ids))
        ).all()
        stored = {
            r.record_id: Stored(r.text_hash, r.vector, r.themes_version)
            for r in session.execute(
                select(AI.c.record_id, AI.c.text_hash, AI.c.vector, AI.c.themes_version).where(
                    AI.c.org_id == org_id, AI.c.record_id.in_(record_ids)
                )
            )
        }
    readings = _read(rows, stored, index)
    with db.transaction() as session:
        if themes_version(session, org_id) != version:
            return 0  # themes changed meanwhile: the catch-up reads these again
        current = {
            r.id: engine.text_hash(r.comment or "")
            for r in session.execute(
                select(T.c.id, T.c.comment).where(T.c.org_id == org_id, T.c.id.in_(list(readings)))
            )
        }
        keep = {rid: rd for rid, rd in readings.items() if current.get(rid) == rd[0]}
        _store(session, org_id, keep, version)
        if suggest_after and any(not rd.is_empty and not rd.themes for _, rd in keep.values()):
            queue_suggestions(session, org_id)
    return len(keep)


def queue_suggestions(session: Session, org_id: str) -> None:
    """Queue the refresh of the suggested themes, at most one a minute per organization (a
    steady stream of answers regroups the unmatched comments once a minute, not once per answer)."""
    minute = utcnow().strftime("%Y%m%d%H%M")
    enqueue(
        session, SUGGEST_JOB, {}, org_id=org_id, dedupe_key=f"{SUGGEST_JOB}:{org_id}:{minute}", max_attempts=3
    )


def _store(
    session: Session, org_id: str, readings: dict[str, tuple[str, engine.Reading]], version: int
) -> None:
    if not readings:
        return
    ids = list(readings)
    session.execute(delete(AT).where(AT.c.org_id == org_id, AT.c.record_id.in_(ids)))
    session.execute(delete(AI).where(AI.c.org_id == org_id, AI.c.record_id.in_(ids)))
    now = utcnow()
    session.execute(
        insert(AI),
        [
            {
                "record_id": rid,
                "org_id": org_id,
                "text_hash": digest,
                "is_empty": rd.is_empty,
                "language": None,
                "sentiment": rd.sentiment,
                "sentiment_score": rd.sentiment_score,
                "vector": None if rd.vector is None else engine.to_bytes(rd.vector),
                "themes_version": version,
                "analysed_at": now,
            }
            for rid, (digest, rd) in readings.items()
        ],
    )
    theme_rows = [
        {"record_id": rid, "theme_id": theme_id, "org_id": org_id, "rank": rank, "similarity": round(sim, 4)}
        for rid, (_, rd) in readings.items()
        for rank, (theme_id, sim) in enumerate(rd.themes)
    ]
    if theme_rows:
        session.execute(insert(AT), theme_rows)


@handler(ANALYSE_JOB, pool="insights")
def analyse_job(db: Database, job: JobInfo) -> None:
    """The ``insights.analyse`` job a write of answers stored (see ``kit/events.py``)."""
    record_ids = [str(i) for i in job.payload.get("record_ids", []) if isinstance(i, str)]
    if job.org_id is not None:
        analyse(db, job.org_id, record_ids)


def _needing_work(session: Session, org_id: str, version: int, after: str, limit: int) -> list[str]:
    """Ids after ``after`` (in id order) of answers without a reading, or read with older themes."""
    return list(
        session.scalars(
            select(T.c.id)
            .select_from(T.outerjoin(AI, AI.c.record_id == T.c.id))
            .where(
                T.c.org_id == org_id,
                T.c.id > after,
                (AI.c.record_id.is_(None)) | (AI.c.themes_version < version),
            )
            .order_by(T.c.id)
            .limit(limit)
        )
    )


@handler(CATCH_UP_JOB, pool="insights")
def catch_up_job(db: Database, job: JobInfo) -> None:
    """Read every answer of the organization without a current reading, in id order, for at most
    ``CATCH_UP_SECONDS``; then queue the rest, or (all read) work out the suggested themes."""
    if job.org_id is None:
        return
    org_id = job.org_id
    after = str(job.payload.get("after") or "")
    started = time.monotonic()
    while True:
        with db.transaction() as session:
            version = themes_version(session, org_id)
            ids = _needing_work(session, org_id, version, after, CHUNK)
        if not ids:
            break
        analyse(db, org_id, ids, suggest_after=False)
        after = ids[-1]
        if time.monotonic() - started > CATCH_UP_SECONDS:
            with db.transaction() as session:
                queue_catch_up(session, org_id, after)
            return
    with db.transaction() as session:
        refresh_suggestions(session, org_id)


# --------------------------------------------------------------------------------- suggestions


@handler(SUGGEST_JOB, pool="insights")
def suggest_job(db: Database, job: JobInfo) -> None:
    """Regroup the comments that fit no theme after new ones arrived (see :func:`queue_suggestions`)."""
    if job.org_id is not None:
        with db.transaction() as session:
            refresh_suggestions(session, job.org_id)


SUGGESTION_SAMPLE = 2000  # the newest unmatched comments grouped
MIN_SUGGESTION_ANSWERS = 3


def _unmatched(session: Session, org_id: str) -> tuple[list[Any], engine.Vectors]:
    """The newest comments that fit no theme and are about something (see
    :func:`engine.is_general`), with their vectors: what suggestions are made of and counted by."""
    rows = session.execute(
        select(AI.c.record_id, AI.c.vector, T.c.comment)
        .join(T, T.c.id == AI.c.record_id)
        .where(
            AI.c.org_id == org_id,
            AI.c.is_empty.is_(False),
            AI.c.vector.is_not(None),
            ~AI.c.record_id.in_(select(AT.c.record_id).where(AT.c.org_id == org_id)),
        )
        .order_by(T.c.date_answered.desc())
        .limit(SUGGESTION_SAMPLE)
    ).all()
    if not rows:
        return [], np.zeros((0, 384), dtype=np.float32)
    vectors = np.stack([engine.from_bytes(r.vector) for r in rows])
    keep = [i for i, general in enumerate(engine.is_general(vectors)) if not general]
    return [rows[i] for i in keep], vectors[keep]


def refresh_suggestions(session: Session, org_id: str) -> int:
    """Group the newest comments that fit no theme into suggested themes (replacing the previous
    suggestions), each labelled by its characteristic words. Returns how many were suggested."""
    rows, vectors = _unmatched(session, org_id)
    session.execute(
        delete(InsightTheme).where(InsightTheme.org_id == org_id, InsightTheme.status == "suggested")
    )
    groups = suggest.group(list(vectors), [r.comment or "" for r in rows], MIN_SUGGESTION_ANSWERS)
    now = utcnow()
    taken = {t.name.casefold() for t in all_themes(session, org_id)}
    added = 0
    for position, found in enumerate(groups):
        if found.label.casefold() in taken:
            continue
        taken.add(found.label.casefold())
        session.add(
            InsightTheme(
                id=new_id(),
                org_id=org_id,
                key=None,
                name=found.label,
                keywords=found.keywords,
                examples=list(dict.fromkeys(rows[i].comment or "" for i in found.members))[:8],
                status="suggested",
                hidden=False,
                merged_into_id=None,
                centroid=engine.to_bytes(found.centroid),
                position=1000 + position,
                created_at=now,
                updated_at=now,
            )
        )
        added += 1
    session.execute(update(InsightState).where(InsightState.org_id == org_id).values(suggested_at=now))
    session.flush()
    return added


def suggestion_members(
    session: Session, org_id: str, themes: Sequence[InsightTheme], limit: int
) -> dict[str, tuple[int, list[str]]]:
    """Per suggested theme (by id): how many unmatched answers are close to it, and the ids of the
    closest few. The unmatched comments are read once for all of them."""
    rows, vectors = _unmatched(session, org_id)
    points = suggest.centred(vectors)
    out: dict[str, tuple[int, list[str]]] = {}
    for theme in themes:
        if theme.centroid is None or not rows:
            out[theme.id] = (0, [])
            continue
        sims = points @ engine.from_bytes(theme.centroid)
        close = [i for i in np.argsort(-sims) if sims[i] >= suggest.MEMBER_MIN]
        out[theme.id] = (len(close), [rows[i].record_id for i in close[:limit]])
    return out


# ------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Filters:
    """The filters of the metrics API, on answers: surveys, companies, whole UTC days."""

    survey_ids: list[str] | None = None
    company_ids: list[str] | None = None
    since: date | None = None
    until: date | None = None

    def conditions(self, org_id: str) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = [T.c.org_id == org_id]
        if self.survey_ids:
            conds.append(T.c.campaign_id.in_(self.survey_ids))
        if self.company_ids:
            conds.append(T.c.company_id.in_(self.company_ids))
        if self.since is not None:
            conds.append(T.c.date_answered >= datetime.combine(self.since, datetime.min.time()))
        if self.until is not None:
            conds.append(
                T.c.date_answered < datetime.combine(self.until + timedelta(days=1), datetime.min.time())
            )
        return conds

    def metrics(self) -> MetricsQuery:
        return MetricsQuery(
            since=self.since, until=self.until, survey_ids=self.survey_ids, company_ids=self.company_ids
        )


def _visible(session: Session, org_id: str) -> list[InsightTheme]:
    return [
        t
        for t in all_themes(session, org_id)
        if t.status == "active" and not t.hidden and t.merged_into_id is None
    ]


def themes_report(session: Session, org_id: str, filters: Filters) -> dict[str, Any]:
    """Per visible theme: its answers, share of the commented answers, NPS with margin, sentiment
    counts, impact on the overall NPS with margin, and a few of its most typical answers."""
    themes = _visible(session, org_id)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * 11)
    feelings: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(engine.SENTIMENTS, 0))
    cond = and_(*filters.conditions(org_id))
    for theme_id, score, sentiment, n in session.execute(
        select(AT.c.theme_id, T.c.score, AI.c.sentiment, func.count())
        .select_from(AT.join(T, T.c.id == AT.c.record_id).join(AI, AI.c.record_id == AT.c.record_id))
        .where(AT.c.org_id == org_id, cond)
        .group_by(AT.c.theme_id, T.c.score, AI.c.sentiment)
    ):
        counts[theme_id][score] += n
        if sentiment in feelings[theme_id]:
            feelings[theme_id][sentiment] += n
    commented = (
        session.scalar(
            select(func.count())
            .select_from(AI.join(T, T.c.id == AI.c.record_id))
            .where(AI.c.org_id == org_id, AI.c.is_empty.is_(False), cond)
        )
        or 0
    )
    overall = score_summary(session, org_id, filters.metrics())
    examples = _examples(session, org_id, cond)
    out: list[dict[str, Any]] = []
    for theme in themes:
        summary = nps_math.Summary.of_distribution(counts[theme.id])
        moved, margin = nps_math.impact(overall.triple, summary.triple) if summary.total else (None, None)
        out.append(
            {
                "id": theme.id,
                "key": theme.key,
                "name": theme.name,
                "keywords": theme.keywords,
                "answers": summary.total,
                "share": round(summary.total / commented, 4) if commented else None,
                "npsScore": summary.nps,
                "marginOfError": summary.margin_of_error,
                "promoters": summary.promoters,
                "passives": summary.passives,
                "detractors": summary.detractors,
                "sentiment": feelings[theme.id],
                "impact": moved,
                "impactMarginOfError": margin,
                "exampleAnswerIds": examples.get(theme.id, []),
            }
        )
    out.sort(key=lambda t: (-int(t["answers"]), str(t["name"]).casefold()))
    return {
        "answers": overall.total,
        "npsScore": overall.nps,
        "commentedAnswers": commented,
        "themes": out,
    }


def _examples(session: Session, org_id: str, cond: ColumnElement[bool]) -> dict[str, list[str]]:
    ranked = (
        select(
            AT.c.theme_id,
            AT.c.record_id,
            func.row_number()
            .over(partition_by=AT.c.theme_id, order_by=(AT.c.similarity.desc(), AT.c.record_id))
            .label("n"),
        )
        .select_from(AT.join(T, T.c.id == AT.c.record_id))
        .where(AT.c.org_id == org_id, AT.c.rank == 0, cond)
        .subquery()
    )
    out: dict[str, list[str]] = defaultdict(list)
    for theme_id, record_id in session.execute(
        select(ranked.c.theme_id, ranked.c.record_id)
        .where(ranked.c.n <= EXAMPLES_PER_THEME)
        .order_by(ranked.c.theme_id, ranked.c.n)
    ):
        out[theme_id].append(record_id)
    return out


def theme_trend(
    session: Session, org_id: str, theme: InsightTheme, filters: Filters, interval: Interval
) -> list[dict[str, Any]]:
    """Per period (day, week or month) from the first commented answer to the last: the theme's
    answers, their share of that period's commented answers, and their NPS with its margin."""
    cond = and_(*filters.conditions(org_id))
    day = func.date(T.c.date_answered)
    per_day: dict[date, list[int]] = defaultdict(lambda: [0] * 11)
    for d, score, n in session.execute(
        select(day, T.c.score, func.count())
        .select_from(AT.join(T, T.c.id == AT.c.record_id))
        .where(AT.c.org_id == org_id, AT.c.theme_id == theme.id, cond)
        .group_by(day, T.c.score)
    ):
        per_day[_as_date(d)][score] += n
    commented: dict[date, int] = defaultdict(int)
    for d, n in session.execute(
        select(day, func.count())
        .select_from(AI.join(T, T.c.id == AI.c.record_id))
        .where(AI.c.org_id == org_id, AI.c.is_empty.is_(False), cond)
        .group_by(day)
    ):
        commented[_as_date(d)] += n
    if not commented:
        return []
    first, last = min(commented), max(commented)
    out = []
    start = period_start(first, interval)
    while start <= last:
        end = next_period(start, interval)
        dist = [0] * 11
        total = 0
        for d in list(per_day):
            if start <= d < end:
                dist = [a + b for a, b in zip(dist, per_day[d], strict=True)]
        total = sum(n for d, n in commented.items() if start <= d < end)
        summary = nps_math.Summary.of_distribution(dist)
        out.append(
            {
                "period": period_label(start, interval),
                "start": start.isoformat(),
                "answers": summary.total,
                "commentedAnswers": total,
                "share": round(summary.total / total, 4) if total else None,
                "npsScore": summary.nps,
                "marginOfError": summary.margin_of_error,
            }
        )
        start = end
    return out


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# ---------------------------------------------------------------------------------- answers


def answer_conditions(
    org_id: str, theme_id: str | None = None, sentiment: str | None = None
) -> list[ColumnElement[bool]]:
    """Conditions on ``nps_record`` for the record list query (the feed's theme and sentiment
    filters): semi-joins on the indexed insight tables."""
    conds: list[ColumnElement[bool]] = []
    if theme_id:
        conds.append(
            T.c.id.in_(select(AT.c.record_id).where(AT.c.org_id == org_id, AT.c.theme_id == theme_id))
        )
    if sentiment:
        conds.append(
            T.c.id.in_(select(AI.c.record_id).where(AI.c.org_id == org_id, AI.c.sentiment == sentiment))
        )
    return conds


def list_answers(
    session: Session,
    org_id: str,
    filters: Filters,
    theme_id: str | None,
    sentiment: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Analysed answers with a comment that says something, newest first: their themes
    (strongest first), sentiment and sentiment score; and how many match in all."""
    conds = [*filters.conditions(org_id), AI.c.org_id == org_id, AI.c.is_empty.is_(False)]
    conds += answer_conditions(org_id, theme_id, sentiment)
    base = select(AI.c.record_id).select_from(AI.join(T, T.c.id == AI.c.record_id)).where(*conds)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.execute(
        select(AI.c.record_id, AI.c.sentiment, AI.c.sentiment_score)
        .select_from(AI.join(T, T.c.id == AI.c.record_id))
        .where(*conds)
        .order_by(T.c.date_answered.desc(), T.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    themes = readings_of(session, org_id, [r.record_id for r in rows])
    return [
        {
            "answerId": r.record_id,
            "themeIds": [t["id"] for t in themes.get(r.record_id, {}).get("themes", [])],
            "sentiment": r.sentiment,
            "sentimentScore": r.sentiment_score,
        }
        for r in rows
    ], total


def readings_of(session: Session, org_id: str, record_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What was read in each of ``record_ids`` (those analysed): ``themes`` (id and name,
    strongest first, visible themes only), ``sentiment``, ``sentimentScore``, ``isEmpty``. For the
    feed and an answer's page."""
    if not record_ids:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for r in session.execute(
        select(AI.c.record_id, AI.c.sentiment, AI.c.sentiment_score, AI.c.is_empty).where(
            AI.c.org_id == org_id, AI.c.record_id.in_(list(record_ids))
        )
    ):
        out[r.record_id] = {
            "themes": [],
            "sentiment": r.sentiment,
            "sentimentScore": r.sentiment_score,
            "isEmpty": r.is_empty,
        }
    for record_id, theme_id, name in session.execute(
        select(AT.c.record_id, AT.c.theme_id, InsightTheme.name)
        .join(InsightTheme, InsightTheme.id == AT.c.theme_id)
        .where(
            AT.c.org_id == org_id,
            AT.c.record_id.in_(list(record_ids)),
            InsightTheme.hidden.is_(False),
        )
        .order_by(AT.c.record_id, AT.c.rank)
    ):
        if record_id in out:
            out[record_id]["themes"].append({"id": theme_id, "name": name})
    return out


# ----------------------------------------------------------------------------------- status


def status(session: Session, org_id: str) -> dict[str, Any]:
    """How far the analysis is: answers, analysed (current themes), waiting, near-empty; the jobs
    queued; when the last answer was read."""
    version = themes_version(session, org_id)
    answers = session.scalar(select(func.count()).select_from(T).where(T.c.org_id == org_id)) or 0
    current, empty, last = session.execute(
        select(
            func.count().filter(AI.c.themes_version >= version),
            func.count().filter(AI.c.is_empty.is_(True)),
            func.max(AI.c.analysed_at),
        ).where(AI.c.org_id == org_id)
    ).one()
    jobs = (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.org_id == org_id,
                Job.kind.in_([ANALYSE_JOB, CATCH_UP_JOB]),
                Job.status.in_(["queued", "running"]),
            )
        )
        or 0
    )
    pending = max(answers - (current or 0), 0)
    return {
        "model": engine.MODEL_NAME,
        "themesVersion": version,
        "answers": answers,
        "analysed": current or 0,
        "pending": pending,
        "emptyComments": empty or 0,
        "queuedJobs": jobs,
        "state": "working" if pending or jobs else "idle",
        "lastAnalysedAt": iso(last),
    }


def refresh(session: Session, org_id: str) -> dict[str, Any]:
    """Re-read every answer with the current themes (after a change of themes; also reads
    answers written before the analysis existed)."""
    bump_version(session, org_id)
    return status(session, org_id)
