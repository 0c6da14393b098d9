"""Alert rules: create, read, update, delete, list their deliveries; and which answers match.

Callers pass rules already resolved in the caller's organization (``routes.rule_by_id``), so
nothing here can reach another tenant's rule. Sending is ``delivery.py``'s.

A rule's ``sentiments`` and ``theme_ids`` are judged on what the comment analysis (``insights``)
read in the comment as it is now: :func:`matches` says ``None`` (cannot tell yet) for an answer
whose comment is not analysed yet, and the evaluation waits for it (``delivery.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from npsd.alerts.schemas import AlertRuleCreate, AlertRuleUpdate
from npsd.insights import engine
from npsd.kit.errors import BadRequest, NotFound
from npsd.kit.ids import new_id
from npsd.kit.listing import newest_page
from npsd.kit.models import AlertDelivery, AlertRule, Company, InsightTheme, Survey
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


def _check_themes(session: Session, org_id: str, values: dict[str, Any]) -> None:
    """The themes a rule names must be the organization's (404 naming ``themeIds``, like an
    unknown one), and matched themes: a suggested theme is adopted first (400)."""
    theme_ids = values.get("theme_ids")
    if not theme_ids:
        return
    found = {
        theme_id: status
        for theme_id, status in session.execute(
            select(InsightTheme.id, InsightTheme.status).where(
                InsightTheme.org_id == org_id, InsightTheme.id.in_(theme_ids)
            )
        )
    }
    for theme_id in theme_ids:
        if theme_id not in found:
            raise NotFound.field("themeIds", f"no theme {theme_id} in this organization")
        if found[theme_id] != "active":
            raise BadRequest.field(
                "themeIds", f"theme {theme_id} is a suggestion: adopt it first (POST .../adopt)"
            )


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
        "sentiments": rule.sentiments,
        "themeIds": rule.theme_ids,
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
    _check_themes(session, org_id, values)
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
    _check_themes(session, rule.org_id, values)
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
class Reading:
    """What the comment analysis read in an answer's comment as it is now."""

    sentiment: str | None
    theme_ids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Answer:
    """What a rule looks at in an answer."""

    id: str
    survey_id: str | None
    company_id: str | None
    score: int
    comment: str | None
    reading: Reading | None = None  # None: its comment is not analysed (yet)


def needs_reading(rule: AlertRule) -> bool:
    """Whether the rule has a condition on what the analysis reads (sentiment, themes)."""
    return bool(rule.sentiments) or bool(rule.theme_ids)


def has_comment(comment: str | None) -> bool:
    """A comment that says something (the analysis reads none in "", "n/a", "ok" ...)."""
    return not engine.is_empty(comment)


def matches(rule: AlertRule, answer: Answer, merged_into: Mapping[str, str] | None = None) -> bool | None:
    """Whether ``answer`` meets every condition ``rule`` sets; ``None`` when only the reading of
    its comment can tell and that comment is not analysed yet. ``merged_into`` maps a theme id
    merged into another to the theme that now has its answers (a rule on it follows)."""
    plain = (
        (rule.survey_id is None or rule.survey_id == answer.survey_id)
        and (rule.company_id is None or rule.company_id == answer.company_id)
        and (rule.score_at_most is None or answer.score <= rule.score_at_most)
        and comment_matches(rule.comment_contains, answer.comment)
    )
    if not plain or not needs_reading(rule):
        return plain
    if not has_comment(answer.comment):
        return False  # no comment: no sentiment, no theme
    if answer.reading is None:
        return None
    if rule.sentiments and answer.reading.sentiment not in rule.sentiments:
        return False
    if rule.theme_ids:
        wanted = {_followed(t, merged_into or {}) for t in rule.theme_ids}
        return not wanted.isdisjoint(answer.reading.theme_ids)
    return True


def _followed(theme_id: str, merged_into: Mapping[str, str]) -> str:
    seen = {theme_id}
    while theme_id in merged_into and merged_into[theme_id] not in seen:
        theme_id = merged_into[theme_id]
        seen.add(theme_id)
    return theme_id


def channels(rule: AlertRule) -> list[tuple[str, str]]:
    """``(channel, target)`` of each way the rule tells people."""
    out = []
    if rule.emails:
        out.append(("email", ", ".join(rule.emails)))
    if rule.chat_webhook_url:
        out.append(("chat", rule.chat_webhook_url))
    return out


MAX_CHOICES = 1000


def theme_choices(session: Session, org_id: str) -> list[tuple[str, str]]:
    """``(id, name)`` of the themes a rule may name: the organization's active, visible themes,
    in their order (none before its first comment is analysed: read only, nothing created)."""
    rows = session.execute(
        select(InsightTheme.id, InsightTheme.name)
        .where(
            InsightTheme.org_id == org_id,
            InsightTheme.status == "active",
            InsightTheme.hidden.is_(False),
            InsightTheme.merged_into_id.is_(None),
        )
        .order_by(InsightTheme.position, InsightTheme.created_at, InsightTheme.id)
        .limit(MAX_CHOICES)
    )
    return [(i, n) for i, n in rows]


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
