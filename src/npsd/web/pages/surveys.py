"""The Surveys section: ``/app/surveys``, a new survey, a survey's page and what editors and
admins do there.

Every figure comes from the services the API calls: the list from
:func:`npsd.surveys.service.list_surveys` and its roll-up summaries, a survey's figures and charts
from :func:`npsd.analytics.metrics.nps_metrics` with ``survey_ids=[id]`` (for all time these are
the numbers of ``GET /v1/nps-surveys/{id}`` and its responses breakdown), invitations,
reminders and the public link from :mod:`npsd.collect.service`, downloads from the same export
writers as ``GET /v1/nps-surveys/{id}/responses/export``. The survey in the path is found by
:func:`~npsd.surveys.service.find_survey`, so another organization's survey is a 404 page
exactly like an unknown one.

Forms use the API's field names, so a service's refusal lands next to the field it names
(:func:`~npsd.web.render.field_errors`); the web layer only turns what a browser sends (text,
checkboxes, dates, a file) into the API's values. Roles: viewers read; editors create, change,
switch on and off and invite; admins also delete. The pages show only what the role allows and
the server refuses the rest (403) whatever a page showed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from npsd.analytics import metrics
from npsd.collect import service as collect
from npsd.collect.schemas import InvitationsCreate
from npsd.exports.service import FORMATS, stream_records
from npsd.kit.config import Settings
from npsd.kit.errors import NpsdError, validation_details
from npsd.kit.http import AppSettings, DbSession, ReadDatabase, ReadSession
from npsd.kit.listing import PageParam, ParamStr, page_count
from npsd.kit.models import Survey
from npsd.kit.timeutil import utcnow
from npsd.surveys import service as surveys
from npsd.surveys.schemas import SurveyCreate, SurveyUpdate
from npsd.web import insights_section as insights
from npsd.web.charts import distribution_chart, trend_chart
from npsd.web.filters import INTERVALS, PRESETS, parse_period
from npsd.web.forms import form_file, form_text
from npsd.web.render import PageRoute, category_tiles, field_errors, render, with_query
from npsd.web.session import PageAdmin, PageEditor, PageUser, PageViewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LIST_LIMIT = 20
INVITATIONS_LIMIT = 20
MAX_FIELD = 200  # a filter value longer than any date or preset is refused before any query
TYPE_LABELS = {"RELATIONSHIP": "Relationship", "TRANSACTIONAL": "Transactional"}
FORMAT_LABELS = {fmt: fmt.upper() for fmt in FORMATS}  # CSV, XLSX, JSON, NDJSON
PERIOD_NAMES = ("period", "since", "until", "interval")
TextParam = Annotated[ParamStr, Query(max_length=MAX_FIELD)]  # no NUL: PostgreSQL refuses it
M = TypeVar("M", bound=BaseModel)


async def submitted_form(request: Request) -> FormData:
    """The submitted form (already read, and cached, by the CSRF check of the page role)."""
    return await request.form()


PageForm = Annotated[FormData, Depends(submitted_form)]


# ------------------------------------------------------------------------ the survey form's fields

# The fields of SurveyCreate / SurveyUpdate, in the form's order, with their label and control.
SURVEY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("name", "Name", "text"),
    ("description", "Description", "textarea"),
    ("surveyType", "Type", "select"),
    ("triggerEvent", "Trigger event", "text"),
    ("question", "Question", "textarea"),
    ("followUpQuestion", "Follow-up question", "textarea"),
    ("isActive", "Active: accepts answers and sends invitations", "checkbox"),
    ("language", "Language", "text"),
    ("throttleDays", "Throttle (days)", "number"),
    ("reminderAfterDays", "Reminder after (days)", "number"),
    ("thankYouMessage", "Thank-you message", "textarea"),
    ("startsAt", "Starts on", "date"),
    ("endsAt", "Ends on", "date"),
)
FIELD_HINTS = {
    "surveyType": "Relationship: asked periodically. Transactional: asked after an event.",
    "triggerEvent": "For a transactional survey: the event that sends it, e.g. ticket.closed.",
    "followUpQuestion": "Asked after the score; leave empty for none.",
    "language": "A language tag: en, de, fr, es, pt-BR, ...",
    "throttleDays": "Days before the same person may be asked again, by any survey.",
    "reminderAfterDays": "Days after the invitation before one reminder; leave empty for none.",
    "startsAt": "Answers are accepted from the start of this day (UTC); empty: from now.",
    "endsAt": "...until the end of this day (UTC); empty: no end.",
}
# A survey's texts in other languages (``translations``): one textarea per language and text,
# named as the API names the field (``translations.de.question``), so a refusal lands next to it.
TRANSLATION_LANGUAGES: tuple[tuple[str, str], ...] = (
    ("en", "English"),
    ("de", "Deutsch"),
    ("fr", "Français"),
    ("es", "Español"),
)
TRANSLATION_TEXTS: tuple[tuple[str, str], ...] = (
    ("question", "Question"),
    ("followUpQuestion", "Follow-up question"),
    ("thankYouMessage", "Thank-you message"),
)
TRANSLATION_NAMES = tuple(
    f"translations.{lang}.{key}" for lang, _ in TRANSLATION_LANGUAGES for key, _ in TRANSLATION_TEXTS
)
REQUIRED_TEXT = frozenset({"name", "question", "language"})
OPTIONAL_TEXT = frozenset({"description", "triggerEvent", "followUpQuestion", "thankYouMessage"})
_WHOLE_NUMBER = re.compile(r"^-?\d{1,9}$")
END_OF_DAY = time(23, 59, 59)


def form_defaults() -> dict[str, str]:
    """A new survey's form, filled with the API's defaults (SurveyCreate's)."""
    values: dict[str, str] = {}
    for name, _, control in SURVEY_FIELDS:
        info = SurveyCreate.model_fields[name]
        default = None if info.is_required() else info.default
        values[name] = _shown(default, control)
    values.update(dict.fromkeys(TRANSLATION_NAMES, ""))
    return values


def _shown(value: Any, control: str) -> str:
    """A field's value as its control shows it."""
    if control == "checkbox":
        return "true" if value else ""
    if value is None:
        return ""
    if control == "date":
        return str(value)[:10]
    return str(value)


def form_values_of(survey: Mapping[str, Any]) -> dict[str, str]:
    """A survey (as the API reads it) as its edit form shows it."""
    values = {name: _shown(survey[name], control) for name, _, control in SURVEY_FIELDS}
    translations = survey.get("translations") or {}
    for name in TRANSLATION_NAMES:
        _, lang, key = name.split(".")
        values[name] = (translations.get(lang) or {}).get(key) or ""
    return values


def typed_values(form: FormData) -> dict[str, str]:
    """What the person typed, kept as typed (a textarea's CRLF, a browser's line break, as LF)."""
    values: dict[str, str] = {}
    for name, _, control in SURVEY_FIELDS:
        raw = form_text(form, name)
        values[name] = ("true" if raw in ("true", "on") else "") if control == "checkbox" else raw
        if control in ("text", "textarea"):
            values[name] = values[name].replace("\r\n", "\n")
    for name in TRANSLATION_NAMES:
        values[name] = form_text(form, name).replace("\r\n", "\n")
    return values


def _to_api(name: str, control: str, raw: str) -> Any:
    """One typed value as the API's field takes it; ValueError with the person's message."""
    if control == "checkbox":
        return raw == "true"
    if name in OPTIONAL_TEXT:
        return raw if raw.strip() else None
    if control == "number":
        text = raw.strip()
        if not text:
            if name == "reminderAfterDays":
                return None
            raise ValueError("Enter a number of days.")
        if not _WHOLE_NUMBER.match(text):
            raise ValueError("Enter a whole number of days.")
        return int(text)
    if control == "date":
        text = raw.strip()
        if not text:
            return None
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError("Enter a date as YYYY-MM-DD.") from None
        return datetime.combine(day, END_OF_DAY if name == "endsAt" else time.min)
    return raw  # name, question, language, surveyType: the API checks them


def api_fields(
    values: Mapping[str, str], only: set[str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body for the typed ``values`` (only the fields in ``only``, if given) and the
    fields the browser sent in a form the API cannot take (not a number, not a date)."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, _, control in SURVEY_FIELDS:
        if only is not None and name not in only:
            continue
        try:
            data[name] = _to_api(name, control, values[name])
        except ValueError as exc:
            errors[name] = str(exc)
    if only is None or only & set(TRANSLATION_NAMES):  # the API replaces the translations whole
        translations: dict[str, dict[str, str]] = {}
        for name in TRANSLATION_NAMES:
            if values.get(name, "").strip():
                _, lang, key = name.split(".")
                translations.setdefault(lang, {})[key] = values[name]
        data["translations"] = translations or None
    return data, errors


def _form_field(api_field: str) -> str:
    """The form field an API field name belongs to: itself for a translation's text
    (``translations.de.question``), else the top-level field (``events.0`` is ``events``)."""
    parts = api_field.split(".")
    return ".".join(parts[:3]) if parts[0] == "translations" and len(parts) >= 3 else parts[0]


def validated(model: type[M], data: dict[str, Any], errors: dict[str, str]) -> M | None:
    """``data`` as the API's ``model``, adding the API's refusals by field to ``errors``;
    None when anything was refused (fields that could not even be read are left out of
    ``data``, so the others are still checked and every problem is shown at once)."""
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        for detail in validation_details(list(exc.errors())):
            errors.setdefault(_form_field(detail["field"]), detail["issue"])
        return None
    return None if errors else body


def form_context(values: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "fields": SURVEY_FIELDS,
        "hints": FIELD_HINTS,
        "type_options": list(TYPE_LABELS.items()),
        "translation_languages": TRANSLATION_LANGUAGES,
        "translation_texts": TRANSLATION_TEXTS,
        "values": values,
        "errors": errors,
    }


def refusal(exc: NpsdError, known: set[str]) -> dict[str, str]:
    """A service's refusal as a form shows it: each problem next to the field it names when the
    form has that field, the others at the top of the form in the API's words."""
    # a translation refused as a whole (``translations.en``) is shown at its question
    named = {
        (f"{name}.question" if f"{name}.question" in known else name): issue
        for name, issue in field_errors(exc).items()
    }
    errors = {name: issue for name, issue in named.items() if name in known}
    others = [issue for name, issue in named.items() if name not in known and name]
    if others or not errors:
        errors[""] = exc.message + (": " + "; ".join(others) if others else "")
    return errors


# --------------------------------------------------------------------------------------- the list


@router.get("/app/surveys", response_class=HTMLResponse)
def survey_list(
    request: Request,
    user: PageViewer,
    session: ReadSession,
    page: PageParam = 1,
    q: TextParam = "",
    isActive: Literal["", "true", "false"] = "",
    surveyType: Literal["", "RELATIONSHIP", "TRANSACTIONAL"] = "",
    deleted: TextParam = "",
) -> HTMLResponse:
    """Every survey: name, type, active, answers and NPS ± margin, newest first, paged."""
    query = surveys.SurveyQuery(
        page=page,
        limit=LIST_LIMIT,
        is_active=None if not isActive else isActive == "true",
        survey_type=surveyType or None,
        q=q.strip() or None,
    )
    rows, total = surveys.list_surveys(session, user.org_id, query)
    tallies = surveys.summaries(session, user.org_id, [row["id"] for row in rows])
    filters = {"q": q.strip(), "isActive": isActive, "surveyType": surveyType}
    pages = page_count(total, LIST_LIMIT)
    context = {
        "rows": rows,
        "margins": {sid: s.margin_of_error for sid, s in tallies.items()},
        "total": total,
        "page": page,
        "pages": pages,
        "filters": filters,
        "filtered": any(filters.values()),
        "type_labels": TYPE_LABELS,
        "prev_link": with_query("/app/surveys", filters, page=page - 1) if page > 1 else None,
        "next_link": with_query("/app/surveys", filters, page=page + 1) if page < pages else None,
        "deleted": deleted,
    }
    return render(request, "surveys.html", context, user=user)


# ------------------------------------------------------------------------------------ a new survey


@router.get("/app/surveys/new", response_class=HTMLResponse)
def new_survey_form(request: Request, user: PageEditor) -> HTMLResponse:
    """The form for a new survey, with every field the API takes and its defaults."""
    return render(
        request, "survey_form.html", {"survey": None, **form_context(form_defaults(), {})}, user=user
    )


@router.post("/app/surveys", response_class=HTMLResponse)
def create_survey(request: Request, user: PageEditor, session: DbSession, form: PageForm) -> Response:
    """Create the survey as ``POST /v1/nps-surveys`` does; then its page (303)."""
    values = typed_values(form)
    data, errors = api_fields(values)
    body = validated(SurveyCreate, data, errors)
    status = 400
    if body is not None:
        try:
            created = surveys.create_survey(session, user.org_id, body)
        except NpsdError as exc:
            session.rollback()
            errors, status = refusal(exc, set(values)), exc.status
        else:
            return RedirectResponse(f"/app/surveys/{created['id']}", status_code=303)
    context = {"survey": None, **form_context(values, errors)}
    return render(request, "survey_form.html", context, user=user, status=status)


# ------------------------------------------------------------------------------- a survey's page


def period_values(params: Mapping[str, str]) -> dict[str, str]:
    return {name: params[name].strip()[: MAX_FIELD + 1] for name in PERIOD_NAMES if params.get(name)}


def page_context(
    session: Session,
    settings: Settings,
    user: PageUser,
    survey: Survey,
    *,
    period_params: Mapping[str, str] | None = None,
    invitations_page: int = 1,
) -> dict[str, Any]:
    """Everything a survey's page shows, from the services the API calls."""
    values = period_values(period_params or {})
    period, period_errors = parse_period(values, utcnow().date(), default="all")
    explicit_interval = bool(values.get("interval")) and "interval" not in period_errors
    view = {**period.params(), **({"interval": period.interval} if explicit_interval else {})}
    here = f"/app/surveys/{survey.id}"
    feed = {"surveyId": survey.id, **period.params()}
    figures = metrics.nps_metrics(
        session,
        user.org_id,
        metrics.MetricsQuery(
            since=period.since, until=period.until, survey_ids=[survey.id], interval=period.interval
        ),
    )
    invitations, invitations_total = collect.list_invitations(
        session,
        user.org_id,
        survey.id,
        collect.InvitationQuery(page=invitations_page, limit=INVITATIONS_LIMIT),
    )
    pages = page_count(invitations_total, INVITATIONS_LIMIT)

    def invitations_link(page: int) -> str:
        return with_query(here, view, page=page) + "#invitations"

    interval_name = INTERVALS[period.interval].lower()
    return {
        "survey": surveys.read_survey(session, survey),
        "survey_id": survey.id,
        "here": here,
        "type_labels": TYPE_LABELS,
        "period": period,
        "period_values": values,
        "period_errors": period_errors,
        "explicit_interval": explicit_interval,
        "presets": [(key, label) for key, (label, _) in PRESETS.items()],
        "preset_links": {key: with_query(here, view, period=key, since=None, until=None) for key in PRESETS},
        "intervals": INTERVALS,
        "interval_links": {key: with_query(here, view, interval=key) for key in INTERVALS},
        "m": figures,
        "trend": trend_chart(
            figures["trend"], "NPS trend", note=f"by {interval_name}, with its 95% confidence band"
        ),
        "distribution": distribution_chart(
            figures["distribution"], href=lambda score: with_query("/app/responses", feed, score=score)
        ),
        **category_tiles(feed),
        "feed_link": with_query("/app/responses", feed),
        "invitations": invitations,
        "invitations_total": invitations_total,
        "invitations_page": invitations_page,
        "invitations_pages": pages,
        "invitations_prev": invitations_link(invitations_page - 1) if invitations_page > 1 else None,
        "invitations_next": invitations_link(invitations_page + 1) if invitations_page < pages else None,
        "insights": insights.insights_of(session, user.org_id, period, survey_id=survey.id),
        "public_url": collect.public_url(settings, survey.public_id) if survey.public_id else None,
        "downloads": [(label, f"{here}/export.{fmt}") for fmt, label in FORMAT_LABELS.items()],
        "invite_values": {},
        "invite_errors": {},
        "outcome": None,
        "reminded": None,
        "remind_error": None,
        "recipients_hint": RECIPIENTS_HINT,
        "file_hint": FILE_HINT,
    }


RECIPIENTS_HINT = (
    "One address per line. To add a name: Ada Lovelace <ada@example.com>; "
    "a name and a language: ada@example.com, Ada Lovelace, en."
)
FILE_HINT = (
    f"Or a CSV file whose header row names the columns email, name, locale (name and locale may be "
    f"left out), separated by commas or semicolons; at most "
    f"{collect.MAX_RECIPIENT_FILE_BYTES // (1024 * 1024)} MB. Its rows are invited after the addresses above."
)


@router.get("/app/surveys/{id}", response_class=HTMLResponse)
def survey_page(
    request: Request,
    id: str,
    user: PageViewer,
    session: ReadSession,
    settings: AppSettings,
    page: PageParam = 1,
    period: TextParam = "",
    since: TextParam = "",
    until: TextParam = "",
    interval: TextParam = "",
) -> HTMLResponse:
    """A survey's figures and charts, its invitations, its link, its downloads and its settings."""
    survey = surveys.find_survey(session, user.org_id, id)
    params = {"period": period, "since": since, "until": until, "interval": interval}
    context = page_context(session, settings, user, survey, period_params=params, invitations_page=page)
    return render(
        request, "survey_page.html", context, user=user, status=400 if context["period_errors"] else 200
    )


# ------------------------------------------------------------------------ changing a survey


@router.get("/app/surveys/{id}/edit", response_class=HTMLResponse)
def edit_survey_form(request: Request, id: str, user: PageEditor, session: DbSession) -> HTMLResponse:
    """The survey's settings in the same form as a new survey's."""
    survey = surveys.read_survey(session, surveys.find_survey(session, user.org_id, id))
    context = {"survey": survey, **form_context(form_values_of(survey), {})}
    return render(request, "survey_form.html", context, user=user)


@router.post("/app/surveys/{id}/edit", response_class=HTMLResponse)
def edit_survey(request: Request, id: str, user: PageEditor, session: DbSession, form: PageForm) -> Response:
    """Change the settings as ``PATCH /v1/nps-surveys/{id}`` does: only the fields whose value
    differs from what the form showed are sent, so an untouched field keeps its exact stored
    value (a window end set by the API at 14:00 stays 14:00)."""
    survey = surveys.find_survey(session, user.org_id, id, lock="update")
    current = surveys.read_survey(session, survey)
    values = typed_values(form)
    shown = form_values_of(current)
    changed = {name for name in values if values[name] != shown[name]}
    data, errors = api_fields(values, only=changed)
    body = validated(SurveyUpdate, data, errors)
    status = 400
    if body is not None:
        try:
            surveys.update_survey(session, survey, body)
        except NpsdError as exc:
            session.rollback()
            errors, status = refusal(exc, set(values)), exc.status
        else:
            return RedirectResponse(f"/app/surveys/{survey.id}", status_code=303)
    context = {"survey": current, **form_context(values, errors)}
    return render(request, "survey_form.html", context, user=user, status=status)


@router.post("/app/surveys/{id}/toggle")
def toggle_survey(id: str, user: PageEditor, session: DbSession) -> Response:
    """Switch the survey on or off, as ``POST /v1/nps-surveys/{id}/toggle``; back to its page."""
    survey = surveys.find_survey(session, user.org_id, id, lock="update")
    surveys.toggle_survey(session, survey)
    return RedirectResponse(f"/app/surveys/{survey.id}", status_code=303)


@router.post("/app/surveys/{id}/link")
def create_public_link(id: str, user: PageEditor, session: DbSession) -> Response:
    """Create the survey's public link (a write, so a button, never a GET); back to its page."""
    survey = surveys.find_survey(session, user.org_id, id)
    collect.ensure_public_id(session, user.org_id, survey.id)
    return RedirectResponse(f"/app/surveys/{survey.id}#link", status_code=303)


@router.get("/app/surveys/{id}/delete", response_class=HTMLResponse)
def delete_survey_confirm(request: Request, id: str, user: PageAdmin, session: DbSession) -> HTMLResponse:
    """Ask before deleting: the survey goes with every one of its answers."""
    survey = surveys.read_survey(session, surveys.find_survey(session, user.org_id, id))
    return render(request, "survey_delete.html", {"survey": survey}, user=user)


@router.post("/app/surveys/{id}/delete")
def delete_survey(id: str, user: PageAdmin, session: DbSession) -> Response:
    """Delete the survey and its answers, as ``DELETE /v1/nps-surveys/{id}`` (admins only)."""
    survey = surveys.find_survey(session, user.org_id, id, lock="update")
    surveys.delete_survey(session, survey)
    return RedirectResponse("/app/surveys?deleted=1", status_code=303)


# ------------------------------------------------------------------------------ inviting people


def read_upload(form: FormData) -> tuple[bytes, str] | None:
    """The chosen CSV file's bytes (at most one byte more than any file accepted, so a huge
    upload is refused without reading it all) and its name."""
    upload = form_file(form, "file")
    if upload is None:
        return None
    return upload.file.read(collect.MAX_RECIPIENT_FILE_BYTES + 1), upload.filename or ""


INVITE_FIELDS = {"recipients", "file"}


@router.post("/app/surveys/{id}/invitations", response_class=HTMLResponse)
def invite(
    request: Request, id: str, user: PageEditor, session: DbSession, settings: AppSettings, form: PageForm
) -> HTMLResponse:
    """Invite the pasted addresses and the rows of the CSV file, as
    ``POST /v1/nps-surveys/{id}/invitations``; the page then shows the outcome per recipient,
    exactly as the API reports it."""
    survey = surveys.find_survey(session, user.org_id, id)
    typed = form_text(form, "recipients").replace("\r\n", "\n")
    errors: dict[str, str] = {}
    recipients = collect.recipients_from_lines(typed)
    upload = read_upload(form)
    if upload is not None:
        try:
            recipients += collect.recipients_from_csv(*upload)
        except NpsdError as exc:
            errors.update(refusal(exc, INVITE_FIELDS))
    if not errors and not recipients:
        errors["recipients"] = "Enter at least one address, or choose a CSV file."
    outcome: list[dict[str, Any]] | None = None
    status = 400
    body = validated(InvitationsCreate, {"recipients": recipients}, errors) if not errors else None
    if body is not None:
        try:
            outcome = collect.create_invitations(session, settings, survey, body)
            status = 200
        except NpsdError as exc:
            session.rollback()
            errors, status = refusal(exc, INVITE_FIELDS), exc.status
    context = page_context(session, settings, user, survey)
    context.update(
        outcome=outcome,
        invite_values={"recipients": typed} if outcome is None else {},
        invite_errors=errors,
    )
    return render(request, "survey_page.html", context, user=user, status=status)


@router.post("/app/surveys/{id}/reminders", response_class=HTMLResponse)
def send_reminders(
    request: Request, id: str, user: PageEditor, session: DbSession, settings: AppSettings
) -> HTMLResponse:
    """Send the reminders now, as ``POST /v1/nps-surveys/{id}/reminders``; the page says how
    many were queued."""
    survey = surveys.find_survey(session, user.org_id, id)
    reminded: int | None = None
    problem: str | None = None
    status = 200
    try:
        reminded = collect.remind_now(session, settings, survey)
    except NpsdError as exc:
        session.rollback()
        problem, status = refusal(exc, set())[""], exc.status
    context = page_context(session, settings, user, survey)
    context.update(reminded=reminded, remind_error=problem)
    return render(request, "survey_page.html", context, user=user, status=status)


# -------------------------------------------------------------------------------------- downloads


@router.get("/app/surveys/{id}/export.{fmt}")
def export_answers(id: str, fmt: str, user: PageViewer, session: ReadSession, db: ReadDatabase) -> Response:
    """Every answer of the survey as CSV, XLSX, JSON or NDJSON: the same file, streamed by the
    same writers, as ``GET /v1/nps-surveys/{id}/responses/export?format=...`` (which takes API
    tokens only), for a signed-in person. Another format is a 400 naming the accepted ones."""
    survey = surveys.find_survey(session, user.org_id, id)
    stmt = surveys.responses_select(user.org_id, survey.id, surveys.ResponseQuery())
    return stream_records(db, stmt, fmt, f"nps-survey-{survey.id}-responses", surveys.RESPONSE_EXPORT)
