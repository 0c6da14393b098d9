"""Alert rules: create, read, update, delete, list their deliveries; and which answers match.

Callers pass rules already resolved in the caller's organization (``routes.rule_by_id``), so
nothing here can reach another tenant's rule. Sending is ``delivery.py``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from npsd.alerts.schemas import AlertRuleCreate, AlertRuleUpdate
from npsd.kit.errors import BadRequest, NotFound
from npsd.kit.ids import new_id
from npsd.kit.listing import newest_page
from npsd.kit.models import AlertDelivery, AlertRule, Company, Survey
from npsd.kit.timeutil import iso, utcnow
from npsd.webhooks import guard


def check_chat_url(url: str, allow_private: bool) -> None:
    """400 naming ``chatWebhookUrl`` unless it is a safe target: the webhooks' SSRF guard, checked
    again at every delivery since DNS answers change (``NPSD_WEBHOOK_ALLOW_PRIVATE`` lifts it)."""
    try:
        if allow_private:
            guard.check_syntax(url)
        else:
            guard.check_target(url, allow_private=False)
    except guard.UnsafeTarget as exc:
        raise BadRequest.field("chatWebhookUrl", str(exc)) from exc


def _check_scope(session: Session, org_id: str, values: dict[str, Any]) -> None:
    """A survey or company a rule names must be one of the organization's (404 naming the field)."""
    survey_id = values.get("survey_id")
    if survey_id is not None and (
        session.scalar(select(Survey.id).where(Survey.org_id == org_id, Survey.id == survey_id)) is None
    ):
        raise NotFound.field("surveyId", f"no survey {survey_id} in this organization")
    company_id = values.get("company_id")
    if company_id is not None and (
        session.scalar(select(Company.id).where(Company.org_id == org_id, Company.id == company_id)) is None
    ):
        raise NotFound.field("companyId", f"no company {company_id} in this organization")


def _check_channels(emails: list[str], chat_url: str | None) -> None:
    if not emails and not chat_url:
        raise BadRequest.field("emails", "give at least one address, or a chatWebhookUrl")


def rule_out(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "surveyId": rule.survey_id,
        "companyId": rule.company_id,
        "scoreAtMost": rule.score_at_most,
        "commentContains": rule.comment_contains,
        "emails": list(rule.emails or ()),
        "chatWebhookUrl": rule.chat_webhook_url,
        "isActive": rule.is_active,
        "createdAt": iso(rule.created_at),
        "updatedAt": iso(rule.updated_at),
    }


def create_rule(session: Session, org_id: str, data: AlertRuleCreate, allow_private: bool) -> dict[str, Any]:
    """Store a new rule; it applies to answers written from now on."""
    values = data.column_values()
    _check_channels(values["emails"], values["chat_webhook_url"])
    _check_scope(session, org_id, values)
    if values["chat_webhook_url"] is not None:
        check_chat_url(values["chat_webhook_url"], allow_private)
    now = utcnow()
    rule = AlertRule(id=new_id(), org_id=org_id, created_at=now, updated_at=now, **values)
    session.add(rule)
    session.flush()
    return rule_out(rule)


def update_rule(
    session: Session, rule: AlertRule, data: AlertRuleUpdate, allow_private: bool
) -> dict[str, Any]:
    """Change the fields sent; the rule must keep a channel. A new chat URL is checked like a new one."""
    values = data.column_values()
    _check_channels(
        values.get("emails", rule.emails or []), values.get("chat_webhook_url", rule.chat_webhook_url)
    )
    _check_scope(session, rule.org_id, values)
    url = values.get("chat_webhook_url")
    if url is not None and url != rule.chat_webhook_url:
        check_chat_url(url, allow_private)
    for column, value in values.items():
        setattr(rule, column, value)
    if values:
        rule.updated_at = utcnow()
    session.flush()
    return rule_out(rule)


def delete_rule(session: Session, rule: AlertRule) -> None:
    """Delete the rule; its delivery log goes with it, and queued sends find nothing to send."""
    session.execute(delete(AlertRule).where(AlertRule.id == rule.id, AlertRule.org_id == rule.org_id))


def list_rules(session: Session, org_id: str, page: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the organization's rules, newest first, and their total number."""
    rows, total = newest_page(session, AlertRule, org_id, page, limit)
    return [rule_out(row) for row in rows], total


@dataclass(frozen=True)
class DeliveryQuery:
    page: int
    limit: int
    status: str | None = None
    channel: str | None = None


def delivery_out(row: AlertDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "ruleId": row.rule_id,
        "answerId": row.record_id,
        "channel": row.channel,
        "target": row.target,
        "status": row.status,
        "attempts": row.attempts,
        "nextAttemptAt": iso(row.next_attempt_at),
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "sentAt": iso(row.sent_at),
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


def list_deliveries(session: Session, rule: AlertRule, q: DeliveryQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of the rule's deliveries, newest first, and how many match the filters."""
    conds = [AlertDelivery.rule_id == rule.id, AlertDelivery.org_id == rule.org_id]
    if q.status is not None:
        conds.append(AlertDelivery.status == q.status)
    if q.channel is not None:
        conds.append(AlertDelivery.channel == q.channel)
    total = session.scalar(select(func.count()).select_from(AlertDelivery).where(*conds)) or 0
    rows = session.scalars(
        select(AlertDelivery)
        .where(*conds)
        .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc())
        .limit(q.limit)
        .offset((q.page - 1) * q.limit)
    )
    return [delivery_out(r) for r in rows], total


# ------------------------------------------------------------------------------------------ matching


@lru_cache(maxsize=1024)
def _pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """Any of ``words`` as whole words, ignoring case; inner spaces match any run of white space."""
    alternatives = "|".join(r"\s+".join(re.escape(part) for part in w.split()) for w in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def comment_matches(words: list[str] | None, comment: str | None) -> bool:
    """Whether ``comment`` contains one of ``words`` as whole words (no filter: always)."""
    if not words:
        return True
    return comment is not None and _pattern(tuple(words)).search(comment) is not None


@dataclass(frozen=True)
class Answer:
    """What a rule looks at in an answer."""

    id: str
    survey_id: str | None
    company_id: str | None
    score: int
    comment: str | None


def matches(rule: AlertRule, answer: Answer) -> bool:
    """Whether ``answer`` meets every condition ``rule`` sets."""
    return (
        (rule.survey_id is None or rule.survey_id == answer.survey_id)
        and (rule.company_id is None or rule.company_id == answer.company_id)
        and (rule.score_at_most is None or answer.score <= rule.score_at_most)
        and comment_matches(rule.comment_contains, answer.comment)
    )


def channels(rule: AlertRule) -> list[tuple[str, str]]:
    """``(channel, target)`` of each way the rule tells people."""
    out = []
    if rule.emails:
        out.append(("email", ", ".join(rule.emails)))
    if rule.chat_webhook_url:
        out.append(("chat", rule.chat_webhook_url))
    return out


MAX_CHOICES = 1000


def scope_choices(session: Session, org_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(id, name)`` of the organization's surveys and companies a rule may be limited to, by
    name (the dashboard's form offers them; at most :data:`MAX_CHOICES` of each)."""
    surveys = session.execute(
        select(Survey.id, Survey.name)
        .where(Survey.org_id == org_id)
        .order_by(Survey.name, Survey.id)
        .limit(MAX_CHOICES)
    )
    companies = session.execute(
        select(Company.id, Company.name)
        .where(Company.org_id == org_id)
        .order_by(Company.name, Company.id)
        .limit(MAX_CHOICES)
    )
    return [(i, n) for i, n in surveys], [(i, n) for i, n in companies]
