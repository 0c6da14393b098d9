"""What the comments say (#13): the themes section of the overview, a survey and a company; the
themes page ``/app/themes`` and one theme's page ``/app/themes/{id}``.

Every figure is the insights service's (``GET /v1/insights/themes`` and ``.../trend`` call the
same functions with the same filters), so a page and the API cannot disagree. Everyone signed
in reads; admins shape the themes (rename, hide, show, merge, add, delete their own, adopt a
suggestion) with forms that carry the API's field names, CSRF-checked like every dashboard form,
and a refusal is shown next to the field it names.

A page that may read from the replica never writes: an organization's themes are made on first
use, so until they exist (no answer read yet) the section says so instead of asking the service.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from npsd.insights import service
from npsd.insights.schemas import ThemeCreate, ThemeUpdate
from npsd.kit.errors import BadRequest, NpsdError, validation_details
from npsd.kit.http import DbSession, ReadSession
from npsd.kit.lookup import resolve
from npsd.kit.models import InsightTheme
from npsd.kit.timeutil import utcnow
from npsd.records.output import record_row, to_output
from npsd.records.service import find_record
from npsd.web.charts import sentiment_bar, theme_trend_chart
from npsd.web.filters import INTERVALS, PRESETS, Period, parse_period
from npsd.web.forms import form_text
from npsd.web.insights_section import SENTIMENT_LABELS, THEMES_PATH, insights_of, section_context
from npsd.web.pages.overview import check_company, check_survey, query_values, survey_options
from npsd.web.render import FEED_PATH, PageRoute, field_errors, render, with_query
from npsd.web.session import PageAdmin, PageUser, PageViewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SENTIMENT_OPTIONS = [("", "All"), *SENTIMENT_LABELS.items()]


@router.get("/app/themes/section", response_class=HTMLResponse)
def themes_section(request: Request, user: PageViewer, session: ReadSession) -> Response:
    """The section alone (the poll while comments are being read), for the period, survey and
    company of the URL; 204 for a filter that is not understood (the page shows the problem)."""
    values = query_values(request, ("period", "since", "until", "surveyId", "companyId"))
    period, errors = parse_period(values, utcnow().date(), default="all")
    survey_id, problem = check_survey(session, user.org_id, values.get("surveyId", ""))
    company_id, other = check_company(session, user.org_id, values.get("companyId", ""))
    if errors or problem or other:
        return Response(status_code=204)
    context = {"insights": insights_of(session, user.org_id, period, survey_id, company_id)}
    return render(request, "_themes_section.html", context, user=user)


# ------------------------------------------------------------------------------ the feed


def theme_options(session: Session, org_id: str, chosen: str | None) -> list[tuple[str, str]]:
    """("", "All") and the organization's visible themes by name, for the feed's select (the
    chosen one always listed, even hidden)."""
    if not service.has_themes(session, org_id):
        return [("", "All")]
    themes = [
        t
        for t in service.all_themes(session, org_id)
        if t.id == chosen or (t.status == "active" and not t.hidden and t.merged_into_id is None)
    ]
    return [("", "All"), *sorted(((t.id, t.name) for t in themes), key=lambda o: o[1].casefold())]


def check_theme(session: Session, org_id: str, raw: str) -> tuple[str | None, str | None]:
    """(the theme id, None) for one of the organization's themes; (None, message) otherwise:
    another organization's theme is unknown here, exactly like an id nobody has."""
    if not raw:
        return None, None
    try:
        return resolve(session, InsightTheme, org_id, raw, "theme", prefixes=False).id, None
    except NpsdError:
        return None, "Choose one of your themes."


def check_sentiment(raw: str) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    if raw in SENTIMENT_LABELS:
        return raw, None
    return None, "Choose Negative, Neutral or Positive."


# ------------------------------------------------------------------------- the themes page


async def submitted_form(request: Request) -> FormData:
    """The POSTed form (already read once for its CSRF token; Starlette keeps it on the request)."""
    return await request.form()


Form = Annotated[FormData, Depends(submitted_form)]

NOTICES = {
    "created": "The theme was added. Every answer is read again in the background to find it.",
    "renamed": "The theme was renamed.",
    "hidden": "The theme was hidden: it is no longer matched or listed. Show it again below.",
    "shown": "The theme is shown again; answers are read again in the background.",
    "merged": "The theme was merged: its answers now count for the theme it was merged into.",
    "deleted": "The theme was deleted.",
    "adopted": "The suggestion is now one of your themes; answers are read again in the background.",
    "refreshed": "Every answer is being read again with the current themes.",
}


def _page_filters(
    request: Request, session: Session, user: PageUser
) -> tuple[Period, str | None, dict[str, str], dict[str, str]]:
    values = query_values(request, ("period", "since", "until", "surveyId", "interval"))
    period, errors = parse_period(values, utcnow().date(), default="all")
    survey_id, problem = check_survey(session, user.org_id, values.get("surveyId", ""))
    if problem:
        errors["surveyId"] = problem
    return period, survey_id, values, errors


def _themes_page(
    request: Request,
    user: PageUser,
    session: Session,
    *,
    form_values: dict[str, dict[str, str]] | None = None,
    form_errors: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    period, survey_id, values, errors = _page_filters(request, session, user)
    feed = {**period.params(), "surveyId": survey_id or ""}
    filters = service.Filters(
        survey_ids=[survey_id] if survey_id else None, since=period.since, until=period.until
    )
    service.themes_version(session, user.org_id)  # the themes exist from here on (a write session)
    insights = section_context(session, user.org_id, filters, feed, limit=None)
    report = insights["report"]
    themes = service.all_themes(session, user.org_id)
    names = {t.id: t.name for t in themes}
    visible = report["themes"] if report else []
    hidden = [t for t in themes if t.status == "active" and t.hidden and t.merged_into_id is None]
    merged = [t for t in themes if t.status == "active" and t.merged_into_id is not None]
    suggested = [t for t in themes if t.status == "suggested"]
    members = service.suggestion_members(session, user.org_id, suggested, 0)
    suggestions = [{"theme": t, "answers": members[t.id][0]} for t in suggested]
    own = {t.id for t in themes if t.key is None}
    context = {
        "insights": insights,
        "all_visible": visible,
        "all_links": {t["id"]: with_query(FEED_PATH, feed, theme=t["id"]) for t in visible},
        "theme_links": {t["id"]: with_query(f"{THEMES_PATH}/{t['id']}", feed) for t in visible},
        "all_bars": {t["id"]: sentiment_bar(t["sentiment"], f"Sentiment of {t['name']}") for t in visible},
        "own": own,
        "hidden": hidden,
        "merged": merged,
        "names": names,
        "suggestions": suggestions,
        "merge_targets": [(t["id"], t["name"]) for t in visible],
        "period": period,
        "values": values,
        "errors": errors,
        "presets": [(key, label) for key, (label, _) in PRESETS.items()],
        "preset_links": {
            key: with_query(THEMES_PATH, feed, period=key, since=None, until=None) for key in PRESETS
        },
        "surveys": survey_options(session, user.org_id, survey_id),
        "survey_id": survey_id,
        "notice": NOTICES.get(request.query_params.get("done", "")),
        "form_values": form_values or {},
        "form_errors": form_errors or {},
    }
    code = status if status != 200 else (400 if errors else 200)
    return render(request, "themes.html", context, user=user, status=code)


@router.get("/app/themes", response_class=HTMLResponse)
def themes_page(request: Request, user: PageViewer, session: DbSession) -> HTMLResponse:
    """The organization's themes with their figures for a period and survey; for admins the
    forms that shape them, and the suggested themes to adopt."""
    return _themes_page(request, user, session)


def _theme(session: Session, org_id: str, theme_id: str) -> InsightTheme:
    """The theme of the path, in the user's organization: another's is a 404 like an unknown one."""
    service.themes_version(session, org_id)
    return resolve(session, InsightTheme, org_id, theme_id, "theme", prefixes=False)


def _refused(
    request: Request,
    user: PageUser,
    session: Session,
    form: str,
    values: dict[str, str],
    errors: dict[str, str],
    status: int,
) -> HTMLResponse:
    """The themes page again with ``form``'s values and its errors next to their fields; the
    failed change is rolled back first."""
    session.rollback()
    return _themes_page(
        request, user, session, form_values={form: values}, form_errors={form: errors}, status=status
    )


def _schema_errors(exc: ValidationError) -> dict[str, str]:
    """A schema's refusal as one message per form field (``examples.2`` belongs to ``examples``)."""
    errors: dict[str, str] = {}
    for detail in validation_details(list(exc.errors())):
        name, _, rest = detail["field"].partition(".")
        issue = detail["issue"]
        if name in ("examples", "keywords") and rest.isdigit():
            issue = f"Line {int(rest) + 1}: {issue}"
        errors.setdefault(name, issue)
    return errors


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _done(what: str) -> RedirectResponse:
    return RedirectResponse(f"{THEMES_PATH}?done={what}", status_code=303)


@router.post("/app/themes", response_class=HTMLResponse)
def create_theme(request: Request, user: PageAdmin, session: DbSession, form: Form) -> Response:
    """Add a theme (as ``POST /v1/insights/themes``): a name and example phrases, one per line."""
    values = {"name": form_text(form, "name").strip(), "examples": form_text(form, "examples")}
    try:
        body = ThemeCreate.model_validate({"name": values["name"], "examples": _lines(values["examples"])})
        service.create_theme(session, user.org_id, body.name, body.examples, body.keywords)
    except ValidationError as exc:
        return _refused(request, user, session, "create", values, _schema_errors(exc), 400)
    except NpsdError as exc:
        return _refused(request, user, session, "create", values, field_errors(exc), exc.status)
    return _done("created")


@router.post("/app/themes/refresh", response_class=HTMLResponse)
def refresh(user: PageAdmin, session: DbSession) -> Response:
    """Read every answer again with the current themes (as ``POST /v1/insights/refresh``)."""
    service.refresh(session, user.org_id)
    return _done("refreshed")


@router.post("/app/themes/{theme_id}/rename", response_class=HTMLResponse)
def rename_theme(
    theme_id: str, request: Request, user: PageAdmin, session: DbSession, form: Form
) -> Response:
    """A new name (as ``PATCH /v1/insights/themes/{id}`` with ``name``)."""
    theme = _theme(session, user.org_id, theme_id)
    values = {"name": form_text(form, "name").strip()}
    key = f"rename-{theme.id}"
    try:
        body = ThemeUpdate.model_validate({"name": values["name"]})
        service.update_theme(session, user.org_id, theme, {"name": body.name})
    except ValidationError as exc:
        return _refused(request, user, session, key, values, _schema_errors(exc), 400)
    except NpsdError as exc:
        return _refused(request, user, session, key, values, field_errors(exc), exc.status)
    return _done("renamed")


@router.post("/app/themes/{theme_id}/hide", response_class=HTMLResponse)
def hide_theme(theme_id: str, user: PageAdmin, session: DbSession) -> Response:
    """Hide a theme (as ``PATCH`` with ``hidden: true``): neither matched nor listed."""
    service.update_theme(session, user.org_id, _theme(session, user.org_id, theme_id), {"hidden": True})
    return _done("hidden")


@router.post("/app/themes/{theme_id}/show", response_class=HTMLResponse)
def show_theme(theme_id: str, user: PageAdmin, session: DbSession) -> Response:
    """Show a hidden theme again (as ``PATCH`` with ``hidden: false``)."""
    service.update_theme(session, user.org_id, _theme(session, user.org_id, theme_id), {"hidden": False})
    return _done("shown")


@router.post("/app/themes/{theme_id}/merge", response_class=HTMLResponse)
def merge_theme(theme_id: str, request: Request, user: PageAdmin, session: DbSession, form: Form) -> Response:
    """Merge into another theme (as ``POST /v1/insights/themes/{id}/merge`` with ``into``)."""
    theme = _theme(session, user.org_id, theme_id)
    values = {"into": form_text(form, "into").strip()}
    key = f"merge-{theme.id}"
    try:
        if not values["into"]:
            raise BadRequest.field("into", "choose the theme to merge into")
        try:
            into = resolve(session, InsightTheme, user.org_id, values["into"], "theme", prefixes=False)
        except NpsdError as exc:
            raise BadRequest.field("into", "choose one of your themes") from exc
        service.merge_theme(session, user.org_id, theme, into)
    except NpsdError as exc:
        return _refused(request, user, session, key, values, field_errors(exc), exc.status)
    return _done("merged")


@router.post("/app/themes/{theme_id}/delete", response_class=HTMLResponse)
def delete_theme(theme_id: str, request: Request, user: PageAdmin, session: DbSession) -> Response:
    """Delete a theme of the organization's own or a suggestion (as ``DELETE``)."""
    theme = _theme(session, user.org_id, theme_id)
    try:
        service.delete_theme(session, user.org_id, theme)
    except NpsdError as exc:
        return _refused(request, user, session, f"delete-{theme.id}", {}, field_errors(exc), exc.status)
    return _done("deleted")


@router.post("/app/themes/{theme_id}/adopt", response_class=HTMLResponse)
def adopt_suggestion(
    theme_id: str, request: Request, user: PageAdmin, session: DbSession, form: Form
) -> Response:
    """Adopt a suggested theme, optionally under another name (as ``POST .../adopt``)."""
    theme = _theme(session, user.org_id, theme_id)
    values = {"name": form_text(form, "name").strip()}
    key = f"adopt-{theme.id}"
    try:
        name = ThemeUpdate.model_validate({"name": values["name"]}).name if values["name"] else None
        service.adopt_suggestion(session, user.org_id, theme, name)
    except ValidationError as exc:
        return _refused(request, user, session, key, values, _schema_errors(exc), 400)
    except NpsdError as exc:
        return _refused(request, user, session, key, values, field_errors(exc), exc.status)
    return _done("adopted")


# --------------------------------------------------------------------------- one theme


@router.get("/app/themes/{theme_id}", response_class=HTMLResponse)
def theme_page(theme_id: str, request: Request, user: PageViewer, session: ReadSession) -> HTMLResponse:
    """One theme: its figures for the period and survey, its trend (answers, share and NPS with
    its margin per period), and the answers most typical of it."""
    theme = resolve(session, InsightTheme, user.org_id, theme_id, "theme", prefixes=False)
    period, survey_id, values, errors = _page_filters(request, session, user)
    explicit_interval = bool(values.get("interval")) and "interval" not in errors
    feed = {**period.params(), "surveyId": survey_id or ""}
    view = {**feed, **({"interval": period.interval} if explicit_interval else {})}
    filters = service.Filters(
        survey_ids=[survey_id] if survey_id else None, since=period.since, until=period.until
    )
    report = service.themes_report(session, user.org_id, filters)
    figures = next((t for t in report["themes"] if t["id"] == theme.id), None)
    trend = service.theme_trend(session, user.org_id, theme, filters, period.interval)
    interval_name = INTERVALS[period.interval].lower()
    examples = [
        to_output(record_row(find_record(session, user.org_id, rid)))
        for rid in (figures or {}).get("exampleAnswerIds", [])
    ]
    here = f"{THEMES_PATH}/{theme.id}"
    context = {
        "theme": theme,
        "into_name": (
            service.find_theme(session, user.org_id, theme.merged_into_id).name
            if theme.merged_into_id
            else None
        ),
        "figures": figures,
        "report": report,
        "bar": sentiment_bar(figures["sentiment"], f"Sentiment of {theme.name}") if figures else None,
        "trend_points": trend,
        "trend": theme_trend_chart(
            trend, f"NPS of {theme.name}", note=f"by {interval_name}, with its 95% confidence band"
        ),
        "examples": examples,
        "feed_link": with_query(FEED_PATH, feed, theme=theme.id),
        "sentiment_links": {
            key: with_query(FEED_PATH, feed, theme=theme.id, sentiment=key) for key in SENTIMENT_LABELS
        },
        "sentiment_labels": SENTIMENT_LABELS,
        "period": period,
        "values": values,
        "errors": errors,
        "here": here,
        "presets": [(key, label) for key, (label, _) in PRESETS.items()],
        "preset_links": {key: with_query(here, view, period=key, since=None, until=None) for key in PRESETS},
        "intervals": INTERVALS,
        "interval_links": {key: with_query(here, view, interval=key) for key in INTERVALS},
        "surveys": survey_options(session, user.org_id, survey_id),
        "survey_id": survey_id,
        "explicit_interval": explicit_interval,
    }
    return render(request, "theme.html", context, user=user, status=400 if errors else 200)
