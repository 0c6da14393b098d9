"""Companies and contacts: ``/app/companies``, ``/app/companies/{id}``, ``/app/contacts/{id}``.

Two figures people compare, both shown and each labelled with what it counts:

- the metrics grouped by company (every answer of the chosen period):
  :func:`npsd.analytics.metrics.nps_metrics` with ``group_by="company"``, exactly what
  ``GET /v1/nps-surveys/nps-metrics?groupBy=company`` returns for the same period; answers
  without a company are its null-key group, shown as "No company";
- a company's Planhat ``nps`` (each contact's latest answer of the last 360 days, whatever the
  period), as ``GET /companies/{id}`` reports it.

The small trend line of each row comes from ONE roll-up query for the companies of the page
(:mod:`npsd.analytics.trends`), never one query per company. Sorting happens here, over rows the
services computed: the table is sorted by a figure of the period, which no SQL column holds.

A company or contact in the path is found through ``kit.lookup.resolve`` in the signed-in
person's organization: another organization's id is the same 404 page as an unknown one.
Deleting (admins only) calls the API's own service functions; a company or contact with answers
needs the ``cascade`` box ticked, as ``DELETE /companies/{id}?cascade=true`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from npsd.analytics import metrics, trends
from npsd.analytics.nps import category
from npsd.contacts import service as contacts
from npsd.kit.errors import BadRequest, NotFound, NpsdError
from npsd.kit.http import DbSession, ReadSession
from npsd.kit.ids import is_id
from npsd.kit.listing import page_count
from npsd.kit.lookup import resolve
from npsd.kit.models import Company, Enduser
from npsd.kit.timeutil import utcnow
from npsd.web import insights_section as insights
from npsd.web.charts import distribution_chart, sparkline, trend_chart
from npsd.web.filters import INTERVALS, PRESETS, parse_period
from npsd.web.forms import form_text
from npsd.web.render import PageRoute, category_tiles, field_errors, render, with_query
from npsd.web.session import PageAdmin, PageUser, PageViewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 50  # companies per page, contacts per page of a company, answers per page of a contact
LATEST_ANSWERS = 10  # answers on a company's page (the feed has them all)
TREND_MONTHS = 12  # the small trend line of each company
MAX_PAGE = 1_000_000
MAX_FIELD = 200  # a parameter longer than any date, sort or number is refused before any query
NO_COMPANY = "No company"
FILTER_NAMES = ("period", "since", "until", "interval")


# ------------------------------------------------------------------------------ query parameters


async def submitted_form(request: Request) -> FormData:
    """The POSTed form (already read once for its CSRF token; Starlette keeps it on the request),
    read in the event loop so the handler itself can run in a worker thread like every page."""
    return await request.form()


Form = Annotated[FormData, Depends(submitted_form)]


def query_values(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The page's parameters as typed (stripped; the last one of a repeated name)."""
    params = request.query_params
    return {name: params[name].strip()[: MAX_FIELD + 1] for name in names if name in params}


def page_number(raw: str | None, name: str) -> int:
    """A page number from the URL (1 when absent); anything else than 1, 2, 3... is a 400
    naming the parameter, never a 500."""
    if raw is None or raw.strip() == "":
        return 1
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise BadRequest.field(name, f"must be a page number from 1 to {MAX_PAGE}")
    return int(text)


@dataclass(frozen=True)
class Sort:
    """The order of the companies table: a column and a direction (``sort=nps``, ``sort=-nps``)."""

    column: str
    descending: bool

    @property
    def param(self) -> str:
        return ("-" if self.descending else "") + self.column


SORT_COLUMNS = {"name": "Company", "nps": "NPS", "responses": "Responses"}
DEFAULT_SORT = Sort("name", False)


def parse_sort(raw: str | None) -> Sort:
    """``name``, ``nps`` or ``responses``, ``-`` first for descending; anything else is a 400
    naming ``sort``."""
    if raw is None or raw.strip() == "":
        return DEFAULT_SORT
    text = raw.strip()
    column = text.removeprefix("-")
    if column not in SORT_COLUMNS:
        raise BadRequest.field(
            "sort", "must be name, nps or responses, with a leading - for descending (e.g. -nps)"
        )
    return Sort(column, text.startswith("-"))


def find_company(session: Session, org_id: str, key: str) -> Company:
    """The organization's company with id ``key``; anything else (another organization's id, an
    id nobody has, not an id at all) is the same 404 page."""
    if not is_id(key):
        raise NotFound(f"no company {key}")
    return resolve(session, Company, org_id, key, "company", prefixes=False)


def find_contact(session: Session, org_id: str, key: str) -> Enduser:
    """The organization's contact with id ``key``, else the same 404 page whatever the reason."""
    if not is_id(key):
        raise NotFound(f"no contact {key}")
    return resolve(session, Enduser, org_id, key, "contact", prefixes=False)


def contact_label(name: str | None, email: str) -> str:
    """How a contact is named on a page: its name, else its address."""
    return name or email


def survey_label(answer: Mapping[str, Any]) -> str:
    """The survey an answer was given to: its name, the campaign id it was imported with, or
    "No survey" (never blank)."""
    if answer.get("surveyName"):
        return str(answer["surveyName"])
    if answer.get("campaignId"):
        return f"Campaign {answer['campaignId']}"
    return "No survey"


def period_links(path: str, keep: Mapping[str, str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The date presets and their links (keeping the other parameters ``keep``)."""
    presets = [(key, label) for key, (label, _) in PRESETS.items()]
    links = {key: with_query(path, keep, period=key, since=None, until=None) for key in PRESETS}
    return presets, links


# ------------------------------------------------------------------------------- the companies


@dataclass
class CompanyRow:
    """One line of the companies table: a company (``key``) or the answers without one (None)."""

    key: str | None
    name: str
    nps: float | None = None  # every answer of the period (the metrics' group)
    margin: float | None = None
    responses: int = 0
    planhat_nps: float | None = None  # each contact's latest answer of 360 days (company.nps)
    planhat_responses: int | None = None
    trend: Markup | None = field(default=None)


def company_rows(companies: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[CompanyRow]:
    """Every company with its figures of the period (none: no answer in it), and the
    "No company" row when answers without a company exist in the period."""
    by_key = {g["key"]: g for g in groups}
    rows: list[CompanyRow] = []
    for c in companies:
        g = by_key.pop(c["_id"], None)
        row = CompanyRow(c["_id"], c["name"], planhat_nps=c["nps"], planhat_responses=c["npsResponses"])
        if g is not None:
            row.nps, row.margin, row.responses = g["npsScore"], g["marginOfError"], g["responses"]
        rows.append(row)
    for key, g in by_key.items():  # answers without a company (any other key has its company above)
        rows.append(
            CompanyRow(
                None if key is None else str(key),
                NO_COMPANY if key is None else str(g.get("name") or f"Company {key}"),
                g["npsScore"],
                g["marginOfError"],
                g["responses"],
            )
        )
    return rows


def _name_key(row: CompanyRow) -> tuple[bool, str, str]:
    # "No company" is not a name: it comes after every company, ascending
    return (row.key is None, row.name.casefold(), row.key or "")


def sorted_rows(rows: list[CompanyRow], sort: Sort) -> list[CompanyRow]:
    """``rows`` in the table's order. Ties (and companies without a figure, always last) follow
    the name, so the order is the same on every request and database."""
    if sort.column == "name":
        return sorted(rows, key=_name_key, reverse=sort.descending)
    sign = -1 if sort.descending else 1
    if sort.column == "nps":
        by_name = sorted(rows, key=_name_key)
        return sorted(by_name, key=lambda r: (r.nps is None, sign * (r.nps or 0.0)))
    by_name = sorted(rows, key=_name_key)
    return sorted(by_name, key=lambda r: sign * r.responses)


def sort_link(column: str, sort: Sort, keep: Mapping[str, str]) -> str:
    """The header link of ``column``: the other direction if the table is sorted by it; else
    names A-Z and figures highest first."""
    descending = not sort.descending if sort.column == column else column != "name"
    return with_query("/app/companies", keep, sort=Sort(column, descending).param, page=None)


@router.get("/app/companies", response_class=HTMLResponse)
def companies_page(request: Request, user: PageViewer, session: ReadSession) -> HTMLResponse:
    """Every company with its NPS, margin and answers for a period, sortable and paged, with a
    small monthly trend line, and its Planhat NPS beside."""
    values = query_values(request, (*FILTER_NAMES, "sort", "page", "deleted"))
    sort = parse_sort(values.get("sort"))
    page = page_number(values.get("page"), "page")
    today = utcnow().date()
    period, errors = parse_period(values, today)
    figures = metrics.nps_metrics(
        session,
        user.org_id,
        metrics.MetricsQuery(since=period.since, until=period.until, group_by="company"),
    )
    rows = sorted_rows(company_rows(contacts.company_index(session, user.org_id), figures["groups"]), sort)
    pages = page_count(len(rows), PAGE_SIZE)
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    months = trends.last_months(today, TREND_MONTHS)
    labels = trends.month_labels(months)
    monthly = trends.monthly_nps_by_company(session, user.org_id, months, [r.key for r in shown])
    for row in shown:
        row.trend = sparkline(
            monthly.get(row.key, [None] * len(months)),
            f"{row.name}, NPS by month from {labels[0]} to {labels[-1]}",
        )
    filters = period.params()
    keep = {**filters, "sort": sort.param if sort != DEFAULT_SORT else ""}
    presets, preset_links = period_links("/app/companies", keep)
    context = {
        "period": period,
        "values": values,
        "errors": errors,
        "rows": shown,
        "total_companies": sum(1 for r in rows if r.key is not None),
        "total_answers": figures["totalResponses"],
        "sort": sort,
        "sort_columns": SORT_COLUMNS,
        "sort_links": {column: sort_link(column, sort, filters) for column in SORT_COLUMNS},
        "page": page,
        "pages": pages,
        "page_link": lambda n: with_query("/app/companies", keep, page=n if n > 1 else None),
        "presets": presets,
        "preset_links": preset_links,
        "filters": filters,
        "keep_sort": keep["sort"],
        "months": labels,
        "notice": "The company was deleted." if values.get("deleted") == "1" else None,
    }
    return render(request, "companies.html", context, user=user, status=400 if errors else 200)


# ---------------------------------------------------------------------------------- one company


def company_context(request: Request, user: PageUser, session: Session, company: Company) -> dict[str, Any]:
    """What a company's page shows: its figures for the period (the API's for ``companyId``),
    trend, distribution, contacts, latest answers and Planhat NPS."""
    values = query_values(request, (*FILTER_NAMES, "contacts", "contactDeleted"))
    contacts_page = page_number(values.get("contacts"), "contacts")
    period, errors = parse_period(values, utcnow().date())
    m = metrics.nps_metrics(
        session,
        user.org_id,
        metrics.MetricsQuery(
            since=period.since, until=period.until, company_ids=[company.id], interval=period.interval
        ),
    )
    explicit_interval = bool(values.get("interval")) and "interval" not in errors
    filters = {**period.params(), **({"interval": period.interval} if explicit_interval else {})}
    feed = {**period.params(), "companyId": company.id}
    here = f"/app/companies/{company.id}"
    members, member_count = contacts.company_contacts(
        session, user.org_id, company.id, PAGE_SIZE, (contacts_page - 1) * PAGE_SIZE
    )
    presets, preset_links = period_links(here, filters)
    interval_name = INTERVALS[period.interval].lower()
    score_link: Callable[[int], str] = lambda score: with_query("/app/responses", feed, score=score)  # noqa: E731
    return {
        "company": contacts.company_out(company),
        "here": here,
        "period": period,
        "values": values,
        "errors": errors,
        "m": m,
        "filters": filters,
        "explicit_interval": explicit_interval,
        "trend": trend_chart(
            m["trend"], "NPS trend", note=f"by {interval_name}, with its 95% confidence band"
        ),
        "distribution": distribution_chart(m["distribution"], href=score_link),
        **category_tiles(feed),
        "intervals": INTERVALS,
        "interval_links": {key: with_query(here, filters, interval=key) for key in INTERVALS},
        "presets": presets,
        "preset_links": preset_links,
        "contacts": members,
        "contact_count": member_count,
        "contacts_page": contacts_page,
        "contacts_pages": page_count(member_count, PAGE_SIZE),
        "contacts_link": lambda n: with_query(here, filters, contacts=n if n > 1 else None),
        "insights": insights.insights_of(session, user.org_id, period, company_id=company.id),
        "answers": contacts.company_answers(session, user.org_id, company.id, LATEST_ANSWERS),
        "all_answers": with_query("/app/responses", {"companyId": company.id}),
        "period_answers": with_query("/app/responses", feed),
        "survey_label": survey_label,
        "contact_label": contact_label,
        "category": category,
        "notice": "The contact was deleted." if values.get("contactDeleted") == "1" else None,
        "delete_values": {},
        "delete_errors": {},
    }


@router.get("/app/companies/{key}", response_class=HTMLResponse)
def company_page(key: str, request: Request, user: PageViewer, session: ReadSession) -> HTMLResponse:
    """One company: its figures, trend and distribution for a period, its contacts with their
    latest scores, its latest answers, and its Planhat NPS."""
    company = find_company(session, user.org_id, key)
    context = company_context(request, user, session, company)
    return render(request, "company.html", context, user=user, status=400 if context["errors"] else 200)


@router.post("/app/companies/{key}/delete", response_class=HTMLResponse)
def delete_company(key: str, request: Request, user: PageAdmin, session: DbSession, form: Form) -> Response:
    """Delete a company with its contacts (admins): ``DELETE /companies/{id}``'s service; one
    with answers needs ``cascade`` (which deletes them too), else the form says so (409)."""
    cascade = form_text(form, "cascade") == "true"
    company = find_company(session, user.org_id, key)
    try:
        contacts.delete_company(session, company, cascade)
    except NpsdError as exc:
        session.rollback()
        company = find_company(session, user.org_id, key)
        context = company_context(request, user, session, company)
        context["delete_values"] = {"cascade": "true" if cascade else ""}
        context["delete_errors"] = field_errors(exc)
        return render(request, "company.html", context, user=user, status=exc.status)
    return RedirectResponse("/app/companies?deleted=1", status_code=303)


# ---------------------------------------------------------------------------------- one contact


def contact_context(request: Request, user: PageUser, session: Session, enduser: Enduser) -> dict[str, Any]:
    """A contact's page: its company, latest answer and answer history (``GET /nps?email=``)."""
    values = query_values(request, ("page",))
    page = page_number(values.get("page"), "page")
    found = contacts.contact_answers(session, user.org_id, enduser, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    company = None
    if enduser.company_id is not None:
        company = contacts.company_out(find_company(session, user.org_id, enduser.company_id))
    here = f"/app/contacts/{enduser.id}"
    return {
        "contact": contacts.enduser_out(enduser),
        "title": contact_label(enduser.name, enduser.email),
        "company": company,
        "answers": found[:PAGE_SIZE],
        "page": page,
        "has_next": len(found) > PAGE_SIZE,
        "page_link": lambda n: with_query(here, {}, page=n if n > 1 else None),
        "survey_label": survey_label,
        "category": category,
        "notice": None,
        "delete_values": {},
        "delete_errors": {},
        "here": here,
    }


@router.get("/app/contacts/{key}", response_class=HTMLResponse)
def contact_page(key: str, request: Request, user: PageViewer, session: DbSession) -> HTMLResponse:
    """One contact: its company, its latest score and its answer history, newest first."""
    enduser = find_contact(session, user.org_id, key)
    return render(request, "contact.html", contact_context(request, user, session, enduser), user=user)


@router.post("/app/contacts/{key}/delete", response_class=HTMLResponse)
def delete_contact(key: str, request: Request, user: PageAdmin, session: DbSession, form: Form) -> Response:
    """Delete a contact (admins): ``DELETE /endusers/{id}``'s service; one with answers needs
    ``cascade``, else the form says so (409)."""
    cascade = form_text(form, "cascade") == "true"
    enduser = find_contact(session, user.org_id, key)
    company_id = enduser.company_id
    try:
        contacts.delete_enduser(session, enduser, cascade)
    except NpsdError as exc:
        session.rollback()
        enduser = find_contact(session, user.org_id, key)
        context = contact_context(request, user, session, enduser)
        context["delete_values"] = {"cascade": "true" if cascade else ""}
        context["delete_errors"] = field_errors(exc)
        return render(request, "contact.html", context, user=user, status=exc.status)
    target = f"/app/companies/{company_id}" if company_id else "/app/companies"
    return RedirectResponse(target + "?contactDeleted=1", status_code=303)
