"""Surveys and their responses.

A survey's responses are not a table of their own: they are the NPS records whose
``campaign_id`` is the survey's id, so an answer written through Planhat's ``/nps`` with
``campaignId`` = a survey id is that survey's response, and an answer added here shows in ``/nps``.
Every record write goes through ``records.service`` (``create_record`` / ``delete_records``), which
keeps ``nps_rollup`` and the contact and company roll-ups exact. ``responseCount`` and ``npsScore``
of a survey are read from ``nps_rollup`` (one grouped query per page of surveys), so they cost
O(days x scores), not O(answers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, Select, case, func, not_, or_, select, update
from sqlalchemy.orm import Session

from npsd.analytics.nps import EMPTY, Summary, category, in_category
from npsd.exports.service import Layout
from npsd.kit.db import lock_org_writes
from npsd.kit.errors import BadRequest, Conflict, NotFound, NpsdError
from npsd.kit.ids import is_id, new_id
from npsd.kit.models import NpsRollup, Survey
from npsd.kit.timeutil import iso, utcnow
from npsd.records import service as records
from npsd.records.schemas import NpsInput
from npsd.surveys.schemas import ResponseCreate, SurveyCreate, SurveyTexts, SurveyUpdate

T = records.T  # the nps_record table
R = NpsRollup.__table__

# ------------------------------------------------------------------------------------------- surveys


def survey_out(s: Survey, summary: Summary) -> dict[str, Any]:
    """A survey as the SalesOS JSON object, with its derived ``responseCount`` and ``npsScore``."""
    return {
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "surveyType": s.survey_type,
        "triggerEvent": s.trigger_event,
        "question": s.question,
        "followUpQuestion": s.follow_up_question,
        "isActive": s.is_active,
        "language": s.language,
        "throttleDays": s.throttle_days,
        "reminderAfterDays": s.reminder_after_days,
        "thankYouMessage": s.thank_you_message,
        "startsAt": iso(s.starts_at),
        "endsAt": iso(s.ends_at),
        "translations": s.translations or {},
        "createdAt": iso(s.created_at),
        "updatedAt": iso(s.updated_at),
        "responseCount": summary.total,
        "npsScore": summary.nps,
    }


def summaries(session: Session, org_id: str, survey_ids: Sequence[str]) -> dict[str, Summary]:
    """Score distribution of each survey, from the roll-up table, in one query."""
    if not survey_ids:
        return {}
    counts: dict[str, list[int]] = {}
    rows = session.execute(
        select(R.c.survey_id, R.c.score, func.sum(R.c.count))
        .where(R.c.org_id == org_id, R.c.survey_id.in_(list(survey_ids)))
        .group_by(R.c.survey_id, R.c.score)
    )
    for survey_id, score, n in rows:
        counts.setdefault(survey_id, [0] * 11)[score] += int(n or 0)
    return {sid: Summary.of_distribution(c) for sid, c in counts.items()}


def find_survey(session: Session, org_id: str, key: str, lock: str | None = None) -> Survey:
    """The organization's survey ``key``, or 404 (400 when ``key`` is not an id).

    ``lock="update"`` takes the row lock (``FOR UPDATE``) that makes update, toggle and delete
    wait for each other; ``lock="share"`` (``FOR SHARE``) lets answers be added side by side while
    a concurrent delete waits, so no answer lands on a survey deleted meanwhile. A survey deleted
    while we waited is then a 404, not a crash. SQLite writers are serialized already.
    """
    if not is_id(key):
        raise BadRequest.field("id", "must be a 24-character hexadecimal id")
    stmt = select(Survey).where(Survey.org_id == org_id, Survey.id == key)
    if lock is not None:
        stmt = stmt.with_for_update(read=lock == "share").execution_options(populate_existing=True)
    survey = session.scalar(stmt)
    if survey is None:
        raise NotFound(f"no survey {key}")
    return survey


def read_survey(session: Session, survey: Survey) -> dict[str, Any]:
    return survey_out(survey, summaries(session, survey.org_id, [survey.id]).get(survey.id, EMPTY))


def _check_window(starts_at: datetime | None, ends_at: datetime | None) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise BadRequest.field("endsAt", "must be after startsAt")


def _translations(value: Any, language: str) -> dict[str, dict[str, str]] | None:
    """The ``translations`` column from the API's object: only the texts given, no empty language,
    None for none. The survey's own language has its texts in the survey's fields: a translation
    into it is a 400 naming it (two questions for one language would contradict each other)."""
    if not value:
        return None
    own = language.replace("_", "-").split("-", 1)[0].lower()
    out: dict[str, dict[str, str]] = {}
    for lang, texts in value.items():
        if lang == own:
            raise BadRequest.field(
                f"translations.{lang}", f"is the survey's own language ({language}): set its texts directly"
            )
        given = texts.model_dump(exclude_none=True) if isinstance(texts, SurveyTexts) else dict(texts)
        if given:
            out[lang] = given
    return out or None


def create_survey(session: Session, org_id: str, data: SurveyCreate) -> dict[str, Any]:
    values = data.column_values()
    _check_window(values["starts_at"], values["ends_at"])
    values["translations"] = _translations(values["translations"], values["language"])
    now = utcnow()
    survey = Survey(id=new_id(), org_id=org_id, created_at=now, updated_at=now, **values)
    session.add(survey)
    session.flush()
    return survey_out(survey, EMPTY)


def update_survey(session: Session, survey: Survey, data: SurveyUpdate) -> dict[str, Any]:
    """Change the fields sent; ``updatedAt`` moves only when something changed."""
    values = data.column_values()
    starts = values.get("starts_at", survey.starts_at)
    ends = values.get("ends_at", survey.ends_at)
    _check_window(starts, ends)
    if "translations" in values or "language" in values:
        values["translations"] = _translations(
            values.get("translations", survey.translations), values.get("language", survey.language)
        )
    changed = {k: v for k, v in values.items() if getattr(survey, k) != v}
    if changed:
        for column, value in changed.items():
            setattr(survey, column, value)
        survey.updated_at = utcnow()
        session.flush()
    return read_survey(session, survey)


def toggle_survey(session: Session, survey: Survey) -> dict[str, Any]:
    """Flip ``is_active`` in one UPDATE, so two concurrent toggles flip twice."""
    session.execute(
        update(Survey)
        .where(Survey.org_id == survey.org_id, Survey.id == survey.id)
        .values(is_active=not_(Survey.is_active), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.refresh(survey)
    return read_survey(session, survey)


def delete_survey(session: Session, survey: Survey) -> int:
    """Delete the survey and its responses; every roll-up follows. Returns the responses removed."""
    lock_org_writes(session, survey.org_id)
    removed = records.delete_records(session, survey.org_id, T.c.campaign_id == survey.id)
    session.delete(survey)
    session.flush()
    return removed


SURVEY_SORT = (
    "createdAt",
    "updatedAt",
    "name",
    "surveyType",
    "isActive",
    "language",
    "startsAt",
    "endsAt",
    "throttleDays",
    "reminderAfterDays",
    "triggerEvent",
    "id",
    "responseCount",
    "npsScore",
)
_SURVEY_COLUMNS: dict[str, Any] = {
    "createdAt": Survey.created_at,
    "updatedAt": Survey.updated_at,
    "name": Survey.name,
    "surveyType": Survey.survey_type,
    "isActive": Survey.is_active,
    "language": Survey.language,
    "startsAt": Survey.starts_at,
    "endsAt": Survey.ends_at,
    "throttleDays": Survey.throttle_days,
    "reminderAfterDays": Survey.reminder_after_days,
    "triggerEvent": Survey.trigger_event,
    "id": Survey.id,
}


@dataclass(frozen=True)
class SurveyQuery:
    page: int = 1
    limit: int = 20
    sort_by: str = "createdAt"
    descending: bool = True
    is_active: bool | None = None
    survey_type: str | None = None
    q: str | None = None


def _direction(column: Any, descending: bool) -> Any:
    """Nulls last in both directions, so SQLite and PostgreSQL page the same way."""
    return (column.desc() if descending else column.asc()).nulls_last()


def list_surveys(session: Session, org_id: str, q: SurveyQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of surveys and the number matching the filters."""
    conds: list[ColumnElement[bool]] = [Survey.org_id == org_id]
    if q.is_active is not None:
        conds.append(Survey.is_active == q.is_active)
    if q.survey_type is not None:
        conds.append(Survey.survey_type == q.survey_type)
    if q.q:
        conds.append(
            or_(
                Survey.name.icontains(q.q, autoescape=True),
                Survey.description.icontains(q.q, autoescape=True),
            )
        )
    total = session.scalar(select(func.count()).select_from(Survey).where(*conds)) or 0
    stmt = select(Survey).where(*conds)
    if q.sort_by in ("responseCount", "npsScore"):
        # derived fields: join the per-survey totals of the roll-up table
        promoters = func.sum(case((in_category(R.c.score, "promoter"), R.c.count), else_=0))
        detractors = func.sum(case((in_category(R.c.score, "detractor"), R.c.count), else_=0))
        agg = (
            select(
                R.c.survey_id,
                func.sum(R.c.count).label("n"),
                (100.0 * (promoters - detractors) / func.nullif(func.sum(R.c.count), 0)).label("nps"),
            )
            .where(R.c.org_id == org_id)
            .group_by(R.c.survey_id)
            .subquery()
        )
        stmt = stmt.outerjoin(agg, agg.c.survey_id == Survey.id)
        key = func.coalesce(agg.c.n, 0) if q.sort_by == "responseCount" else agg.c.nps
    else:
        key = _SURVEY_COLUMNS[q.sort_by]
    stmt = stmt.order_by(_direction(key, q.descending), _direction(Survey.id, q.descending))
    surveys = list(session.scalars(stmt.limit(q.limit).offset((q.page - 1) * q.limit)))
    tallies = summaries(session, org_id, [s.id for s in surveys])
    return [survey_out(s, tallies.get(s.id, EMPTY)) for s in surveys], total


# ----------------------------------------------------------------------------------------- responses


def response_out(rec: Mapping[str, Any] | RowMapping) -> dict[str, Any]:
    """An NPS record (a row of ``records.output.COLUMNS`` as a mapping) as a survey response."""
    return {
        "id": rec["id"],
        "surveyId": rec["campaign_id"],
        "enduserId": rec["enduser_id"],
        "companyId": rec["company_id"],
        "email": rec["email"],
        "score": rec["score"],
        "category": category(rec["score"]).upper(),
        "comment": rec["comment"],
        "source": rec["source"],
        "sourceId": rec["source_id"],
        "sentAt": iso(rec["date_sent"]),
        "respondedAt": iso(rec["date_answered"]),
        "createdAt": iso(rec["created_at"]),
        "updatedAt": iso(rec["updated_at"]),
        "custom": rec["custom"],
    }


# A survey's response export: the fields of response_out (the same names, in the same order; the
# export's dates are printed as iso() prints them, its category in capitals), then the names
# beside the ids. Only add fields at the end of ``names``: clients may read columns by position.
RESPONSE_EXPORT = Layout(
    fields=(
        ("id", "id"),
        ("surveyId", "campaign_id"),
        ("enduserId", "enduser_id"),
        ("companyId", "company_id"),
        ("email", "email"),
        ("score", "score"),
        ("category", "category"),
        ("comment", "comment"),
        ("source", "source"),
        ("sourceId", "source_id"),
        ("sentAt", "date_sent"),
        ("respondedAt", "date_answered"),
        ("createdAt", "created_at"),
        ("updatedAt", "updated_at"),
    ),
    names=(("surveyName", "survey_name"), ("enduserName", "enduser_name"), ("companyName", "company_name")),
)


RESPONSE_SORT: dict[str, Any] = {
    "respondedAt": T.c.date_answered,
    "createdAt": T.c.created_at,
    "updatedAt": T.c.updated_at,
    "sentAt": T.c.date_sent,
    "score": T.c.score,
    "email": T.c.email,
    "source": T.c.source,
    "companyId": T.c.company_id,
    "id": T.c.id,
}


@dataclass(frozen=True)
class ResponseQuery:
    """Filters and order shared by the responses list and the export."""

    score_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    company_ids: list[str] | None = None
    email: str | None = None
    q: str | None = None
    has_comment: bool | None = None
    sort_by: str = "respondedAt"
    descending: bool = True


def responses_select(org_id: str, survey_id: str, q: ResponseQuery) -> Select[Any]:
    """The ordered select of ``records.output.COLUMNS`` for the survey's matching responses."""
    return _ordered(_filtered(org_id, survey_id, q), q)


def _filtered(org_id: str, survey_id: str, q: ResponseQuery) -> Select[Any]:
    stmt = records.filtered(
        org_id,
        records.ListQuery(
            campaign_ids=[survey_id],
            company_ids=q.company_ids,
            email=q.email,
            score_type=q.score_type,
            since=q.since,
            until=q.until,
            expiry_days=None,
        ),
        utcnow(),
    )
    if q.q:
        stmt = stmt.where(T.c.comment.icontains(q.q, autoescape=True))
    if q.has_comment is True:
        stmt = stmt.where(T.c.comment.is_not(None), T.c.comment != "")
    elif q.has_comment is False:
        stmt = stmt.where(or_(T.c.comment.is_(None), T.c.comment == ""))
    return stmt


def _ordered(stmt: Select[Any], q: ResponseQuery) -> Select[Any]:
    return stmt.order_by(_direction(RESPONSE_SORT[q.sort_by], q.descending), _direction(T.c.id, q.descending))


def breakdown(summary: Summary) -> dict[str, Any]:
    interval = summary.confidence_interval
    return {
        "total": summary.total,
        "promoters": summary.promoters,
        "passives": summary.passives,
        "detractors": summary.detractors,
        "promoterPercentage": summary.percentage(summary.promoters),
        "passivePercentage": summary.percentage(summary.passives),
        "detractorPercentage": summary.percentage(summary.detractors),
        "npsScore": summary.nps,
        "averageScore": summary.average,
        "distribution": list(summary.distribution),
        "marginOfError": summary.margin_of_error,
        "confidenceInterval": list(interval) if interval else None,
        "lowSample": summary.low_sample,
    }


def list_responses(
    session: Session, org_id: str, survey_id: str, q: ResponseQuery, page: int, limit: int
) -> dict[str, Any]:
    """One page of responses, with the breakdown over every matching response (one GROUP BY)."""
    base = _filtered(org_id, survey_id, q)
    counts = [0] * 11
    for score, n in session.execute(base.with_only_columns(T.c.score, func.count()).group_by(T.c.score)):
        counts[score] += int(n)
    summary = Summary.of_distribution(counts)
    rows = []
    if summary.total > (page - 1) * limit:
        stmt = _ordered(base, q).limit(limit).offset((page - 1) * limit)
        rows = [response_out(row._mapping) for row in session.execute(stmt)]
    return {
        "responses": rows,
        "breakdown": breakdown(summary),
        "pagination": {"page": page, "limit": limit, "total": summary.total},
    }


def is_open(survey: Survey, now: datetime) -> tuple[bool, str, str]:
    """Whether the survey accepts an answer at ``now``, and if not, which field says why."""
    if not survey.is_active:
        return False, "isActive", "the survey is switched off"
    if survey.starts_at is not None and now < survey.starts_at:
        return False, "startsAt", f"the survey opens at {iso(survey.starts_at)}"
    if survey.ends_at is not None and now > survey.ends_at:
        return False, "endsAt", f"the survey closed at {iso(survey.ends_at)}"
    return True, "", ""


def add_response(session: Session, survey: Survey, data: ResponseCreate) -> dict[str, Any]:
    """Record one answer to an open survey (409 otherwise) through the one record write path."""
    ok, field, issue = is_open(survey, utcnow())
    if not ok:
        raise Conflict("survey is not active", [{"field": field, "issue": issue}])
    values: dict[str, Any] = {"email": data.email, "score": data.score, "campaignId": survey.id}
    optional = {
        "comment": "comment",
        "companyId": "cId",
        "source": "source",
        "sourceId": "sourceId",
        "sentAt": "dateSent",
        "respondedAt": "dateAnswered",
        "custom": "custom",
    }
    for name, planhat in optional.items():
        if name in data.model_fields_set and getattr(data, name) is not None:
            values[planhat] = getattr(data, name)
    try:
        record = records.create_record(session, survey.org_id, NpsInput.model_validate(values))
    except NpsdError as exc:  # name the fields as this API does
        for detail in exc.details:
            detail["field"] = _RECORD_FIELDS.get(detail["field"], detail["field"])
        exc.message = " ".join(_RECORD_FIELDS.get(w, w) for w in exc.message.split(" "))
        raise
    return response_out(record)


_RECORD_FIELDS = {"cId": "companyId", "dateSent": "sentAt", "dateAnswered": "respondedAt"}
