"""Alert rules ``/app/settings/alerts`` (admins only): the rules, a form to make or change one,
and each rule's delivery log.

The pages call the same service as ``/v1/alert-rules`` and their forms carry the API's field
names, so a refusal (a schema's or the service's) lands next to the field it names. A form sends
text: the e-mail addresses are one per line (or separated by commas), the comment words are
separated by commas, an empty survey, company, score or chat URL means "no condition"; the
sentiments are checkboxes and the themes a multiple choice (none chosen: no condition).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from npsd.alerts import service
from npsd.alerts.schemas import AlertRuleCreate, AlertRuleUpdate
from npsd.kit.errors import NpsdError, validation_details
from npsd.kit.http import AppSettings, DbSession, app_settings
from npsd.kit.listing import PageParam, page_count
from npsd.kit.lookup import resolve
from npsd.kit.models import AlertRule
from npsd.web.forms import form_text
from npsd.web.render import PageRoute, field_errors, render
from npsd.web.session import PageAdmin, PageUser

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 20
FIELDS = ("name", "surveyId", "companyId", "scoreAtMost", "commentContains", "emails", "chatWebhookUrl")
SCORE_OPTIONS = [("", "Any score"), *[(str(n), f"{n} or lower") for n in range(10, -1, -1)]]
SENTIMENT_OPTIONS = [("negative", "Negative"), ("neutral", "Neutral"), ("positive", "Positive")]
LISTS = ("sentiments", "themeIds")  # fields sent once per chosen value
_LIST_SEPARATORS = re.compile(r"[,;\s]+")


async def submitted_form(request: Request) -> FormData:
    """The POSTed form (already read once for its CSRF token; Starlette keeps it on the request)."""
    return await request.form()


Form = Annotated[FormData, Depends(submitted_form)]


def _errors_by_field(exc: ValidationError) -> dict[str, str]:
    """A schema's refusal as one message per form field (``emails.0`` belongs to ``emails``)."""
    errors: dict[str, str] = {}
    for detail in validation_details(list(exc.errors())):
        errors.setdefault(detail["field"].split(".")[0], detail["issue"])
    return errors


def _values(form: FormData) -> dict[str, Any]:
    """What the person typed, as the form shows it again."""
    values: dict[str, Any] = {name: form_text(form, name).strip() for name in FIELDS}
    values["isActive"] = form_text(form, "isActive") in ("true", "on")
    for name in LISTS:
        values[name] = [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]
    return values


def _body(values: dict[str, Any]) -> dict[str, Any]:
    """The form's text as the API's body: empty means no condition; lists split on separators."""
    score: Any = values["scoreAtMost"] or None
    if isinstance(score, str) and score.isdigit():
        score = int(score)  # anything else goes through as text, for the schema to refuse by name
    words = [w.strip() for w in values["commentContains"].split(",") if w.strip()]
    return {
        "name": values["name"],
        "surveyId": values["surveyId"] or None,
        "companyId": values["companyId"] or None,
        "scoreAtMost": score,
        "commentContains": words or None,
        "sentiments": values["sentiments"] or None,
        "themeIds": values["themeIds"] or None,
        "emails": [e for e in _LIST_SEPARATORS.split(values["emails"]) if e],
        "chatWebhookUrl": values["chatWebhookUrl"] or None,
        "isActive": values["isActive"],
    }


def _form_values(rule: dict[str, Any]) -> dict[str, Any]:
    """A stored rule as the edit form shows it."""
    return {
        "name": rule["name"],
        "surveyId": rule["surveyId"] or "",
        "companyId": rule["companyId"] or "",
        "scoreAtMost": "" if rule["scoreAtMost"] is None else str(rule["scoreAtMost"]),
        "commentContains": ", ".join(rule["commentContains"] or []),
        "sentiments": list(rule["sentiments"] or []),
        "themeIds": list(rule["themeIds"] or []),
        "emails": "\n".join(rule["emails"]),
        "chatWebhookUrl": rule["chatWebhookUrl"] or "",
        "isActive": rule["isActive"],
    }


def _pages(total: int, page: int) -> dict[str, int]:
    return {"page": page, "pages": page_count(total, PAGE_SIZE), "total": total}


def _choices(request: Request, session: Session, org_id: str) -> dict[str, Any]:
    surveys, companies = service.scope_choices(session, org_id)
    themes = service.theme_choices(session, org_id)
    return {
        "survey_options": [("", "All surveys"), *surveys],
        "company_options": [("", "All companies"), *companies],
        "score_options": SCORE_OPTIONS,
        "survey_names": dict(surveys),
        "company_names": dict(companies),
        "sentiment_options": SENTIMENT_OPTIONS,
        "theme_options": themes,
        "theme_names": dict(themes),
        "insights_on": app_settings(request).insights,
    }


def _rule(session: Session, user: PageUser, rule_id: str) -> AlertRule:
    """The rule of the path, in the user's organization: another's is a 404 like an unknown one."""
    return resolve(session, AlertRule, user.org_id, rule_id, "alert rule", prefixes=False)


# ------------------------------------------------------------------------------------------- list


def _rules_page(
    request: Request,
    user: PageUser,
    session: Session,
    page: int = 1,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    deleted: bool = False,
    status: int = 200,
) -> HTMLResponse:
    rules, total = service.list_rules(session, user.org_id, page, PAGE_SIZE)
    context = {
        "section": "alerts",
        "rules": rules,
        "pager": _pages(total, page),
        "values": values if values is not None else {"scoreAtMost": "6", "isActive": True},
        "errors": errors or {},
        "deleted": deleted,
        **_choices(request, session, user.org_id),
    }
    return render(request, "settings_alerts.html", context, user=user, status=status)


@router.get("/app/settings/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request, user: PageAdmin, session: DbSession, page: PageParam = 1, deleted: str | None = None
) -> HTMLResponse:
    """The organization's alert rules, newest first, and the form that makes one."""
    return _rules_page(request, user, session, page, deleted=deleted == "1")


@router.post("/app/settings/alerts", response_class=HTMLResponse)
def create_rule(
    request: Request, user: PageAdmin, session: DbSession, form: Form, settings: AppSettings
) -> Response:
    """Make a rule (as ``POST /v1/alert-rules``), then show it."""
    values = _values(form)
    try:
        body = AlertRuleCreate.model_validate(_body(values))
        created = service.create_rule(session, user.org_id, body, settings.webhook_allow_private)
    except ValidationError as exc:
        return _rules_page(request, user, session, values=values, errors=_errors_by_field(exc), status=400)
    except NpsdError as exc:
        session.rollback()
        errors = field_errors(exc)
        return _rules_page(request, user, session, values=values, errors=errors, status=exc.status)
    return RedirectResponse(f"/app/settings/alerts/{created['id']}?created=1", status_code=303)


# -------------------------------------------------------------------------------------------- one


def _rule_page(
    request: Request,
    user: PageUser,
    session: Session,
    rule: AlertRule,
    page: int = 1,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    out = service.rule_out(rule)
    log, total = service.list_deliveries(session, rule, service.DeliveryQuery(page=page, limit=PAGE_SIZE))
    context = {
        "section": "alerts",
        "rule": out,
        "deliveries": log,
        "pager": _pages(total, page),
        "values": values if values is not None else _form_values(out),
        "errors": errors or {},
        "notice": notice,
        **_choices(request, session, user.org_id),
    }
    return render(request, "settings_alert.html", context, user=user, status=status)


@router.get("/app/settings/alerts/{rule_id}", response_class=HTMLResponse)
def rule_page(
    request: Request,
    rule_id: str,
    user: PageAdmin,
    session: DbSession,
    page: PageParam = 1,
    created: str | None = None,
    saved: str | None = None,
) -> HTMLResponse:
    """One rule: what it watches, where it tells, its form, and its delivery log (newest first)."""
    rule = _rule(session, user, rule_id)
    notice = "The rule is saved." if created == "1" or saved == "1" else None
    return _rule_page(request, user, session, rule, page, notice=notice)


@router.post("/app/settings/alerts/{rule_id}", response_class=HTMLResponse)
def update_rule(
    request: Request, rule_id: str, user: PageAdmin, session: DbSession, form: Form, settings: AppSettings
) -> Response:
    """Change a rule (as ``PATCH /v1/alert-rules/{id}`` with every field of the form)."""
    rule = _rule(session, user, rule_id)
    values = _values(form)
    try:
        body = AlertRuleUpdate.model_validate(_body(values))
        service.update_rule(session, rule, body, settings.webhook_allow_private)
    except ValidationError as exc:
        return _rule_page(
            request, user, session, rule, values=values, errors=_errors_by_field(exc), status=400
        )
    except NpsdError as exc:
        session.rollback()
        rule = _rule(session, user, rule_id)
        errors = field_errors(exc)
        return _rule_page(request, user, session, rule, values=values, errors=errors, status=exc.status)
    return RedirectResponse(f"/app/settings/alerts/{rule.id}?saved=1", status_code=303)


@router.get("/app/settings/alerts/{rule_id}/delete", response_class=HTMLResponse)
def delete_rule_page(request: Request, rule_id: str, user: PageAdmin, session: DbSession) -> HTMLResponse:
    """Ask before deleting a rule and its delivery log."""
    rule = _rule(session, user, rule_id)
    context = {"section": "alerts", "rule": service.rule_out(rule)}
    return render(request, "settings_alert_delete.html", context, user=user)


@router.post("/app/settings/alerts/{rule_id}/delete")
def delete_rule(rule_id: str, user: PageAdmin, session: DbSession) -> Response:
    """Delete a rule with its delivery log (as ``DELETE /v1/alert-rules/{id}``)."""
    rule = _rule(session, user, rule_id)
    service.delete_rule(session, rule)
    return RedirectResponse("/app/settings/alerts?deleted=1", status_code=303)
