"""Evaluating answers against alert rules, and sending the alerts: the jobs of the alerts area.

Every write of answers (``POST /nps``, bulk ``PUT /nps``, the respondent pages, survey responses,
imports) calls ``kit.events.emit``, which stores one ``alerts.evaluate`` job per chunk of created
or updated answers, in the writer's transaction, when the organization has an active rule (one
cheap query, so a bulk write of an organization without rules pays nothing more). The job
matches the answers against the rules and stores one delivery per (rule, answer, channel): the
table's unique key makes a retried evaluation, or a later update of the same answer, alert no
one twice. Each delivery is a job of its own (``alerts.email`` in the default pool,
``alerts.chat`` with the webhook deliveries, so a hanging chat receiver never holds back mail),
retried on the webhooks' schedule (5 s, 5 min, 30 min, ... about 24 hours), each attempt
counted in the delivery log.

The message is composed when it is sent, from the answer as it is then, so the log keeps no
respondent's address or comment (an erased person's answer is gone, and so is its alert). A new
answer's alert is due ``NPSD_ALERT_DELAY_SECONDS`` (30 s) after the answer was made: a respondent
clicks a score in the invitation (which makes the answer), then types the comment on the page,
and the alert carries it.

A rule on the comment's sentiment or themes is judged only on what the analysis (``insights``,
a job of its own queued by the same write) read in the comment as it is now, never on a guess:
while such an answer's comment is not analysed yet, the evaluation stores what it can decide and
is retried every :data:`INSIGHTS_RETRY` (a deferral, not a failure); after :data:`INSIGHTS_WAIT`
(the analysis failed, or is switched off with ``NPSD_INSIGHTS``) it gives up on those rules for
those answers only, with a warning in the log.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from npsd.alerts.service import Answer, Reading, channels, matches, needs_reading
from npsd.analytics.nps import category
from npsd.collect import mailer
from npsd.insights import engine
from npsd.kit import jobs
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.events import ALERTS_EVALUATE_JOB, MAX_ATTEMPTS, retry_delay
from npsd.kit.ids import new_ids
from npsd.kit.jobs import JobInfo, RetryLater, handler
from npsd.kit.models import (
    AlertDelivery,
    AlertRule,
    AnswerInsight,
    AnswerTheme,
    Company,
    Enduser,
    InsightTheme,
    Job,
    NpsRecord,
    Survey,
)
from npsd.kit.telemetry import ALERT_DELIVERIES
from npsd.kit.timeutil import iso, utcnow
from npsd.webhooks import delivery as webhooks

log = logging.getLogger("npsd.alerts")

EMAIL_JOB = "alerts.email"
CHAT_JOB = "alerts.chat"
JOB_OF = {"email": EMAIL_JOB, "chat": CHAT_JOB}
MAX_ERROR_CHARS = 500
NO_SMTP_RETRY = timedelta(minutes=1)  # how long an e-mail alert waits for NPSD_SMTP_URL to be set
INSIGHTS_RETRY = timedelta(seconds=10)  # how often an evaluation looks again for a comment's analysis
INSIGHTS_WAIT = timedelta(minutes=10)  # then it gives up on the rules that needed it


# -------------------------------------------------------------------------------------- evaluation


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert deliveries; one that exists already (same rule, answer, channel) is left alone."""
    table = AlertDelivery.__table__
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - npsd runs on these two
        stmt = insert(table)
    session.execute(stmt, rows)


@dataclass(frozen=True)
class Analysed:
    """What the analysis read in one answer's comment as it is now (themes strongest first)."""

    sentiment: str | None
    themes: list[tuple[str, str]]  # (id, name) of its visible themes


def current_readings(session: Session, org_id: str, comments: dict[str, str | None]) -> dict[str, Analysed]:
    """The readings of the answers ``comments`` (id -> comment as it is now) that were made of
    that very text; an answer not analysed yet, or analysed before its comment changed, is absent."""
    wanted = {rid: engine.text_hash(c) for rid, c in comments.items() if c and c.strip()}
    if not wanted:
        return {}
    out: dict[str, Analysed] = {}
    for rid, digest, sentiment in session.execute(
        select(AnswerInsight.record_id, AnswerInsight.text_hash, AnswerInsight.sentiment).where(
            AnswerInsight.org_id == org_id, AnswerInsight.record_id.in_(list(wanted))
        )
    ):
        if wanted[rid] == digest:
            out[rid] = Analysed(sentiment, [])
    if out:
        for rid, theme_id, name in session.execute(
            select(AnswerTheme.record_id, AnswerTheme.theme_id, InsightTheme.name)
            .join(InsightTheme, InsightTheme.id == AnswerTheme.theme_id)
            .where(
                AnswerTheme.org_id == org_id,
                AnswerTheme.record_id.in_(list(out)),
                InsightTheme.hidden.is_(False),
            )
            .order_by(AnswerTheme.record_id, AnswerTheme.rank)
        ):
            out[rid].themes.append((theme_id, name))
    return out


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation stored, and what it could not decide yet."""

    delivered: list[str]  # new delivery ids
    undecided: list[tuple[str, str]]  # (rule id, answer id) waiting for the comment's analysis


def evaluate_answers(
    session: Session, org_id: str, record_ids: list[str], delay: timedelta = timedelta(0)
) -> list[str]:
    """:func:`evaluate_rules` without waiting: the new delivery ids (an answer whose comment is
    not analysed yet does not match a rule on sentiment or themes)."""
    return evaluate_rules(session, org_id, record_ids, delay).delivered


def evaluate_rules(
    session: Session, org_id: str, record_ids: list[str], delay: timedelta = timedelta(0)
) -> Evaluation:
    """Match the organization's answers ``record_ids`` against its active rules and store a
    delivery, with its job, for each (rule, answer, channel) that has none yet. Returns the new
    delivery ids, and the (rule, answer) pairs that only the analysis of the comment, not there
    yet, can decide. Set-based: a few queries and inserts whatever the number of answers.

    A delivery is due ``delay`` after its answer was created (``NPSD_ALERT_DELAY_SECONDS``), or
    now when that has passed: a respondent who clicks a score in the invitation and then types a
    comment has the comment in the alert, which is composed when it is sent."""
    rules = list(
        session.scalars(select(AlertRule).where(AlertRule.org_id == org_id, AlertRule.is_active.is_(True)))
    )
    if not rules or not record_ids:
        return Evaluation([], [])
    created: dict[str, datetime] = {}
    rows = session.execute(
        select(
            NpsRecord.id,
            NpsRecord.campaign_id,
            NpsRecord.company_id,
            NpsRecord.score,
            NpsRecord.comment,
            NpsRecord.created_at,
        ).where(NpsRecord.org_id == org_id, NpsRecord.id.in_(record_ids))
    ).all()
    readings: dict[str, Analysed] = {}
    merged_into: dict[str, str] = {}
    if any(needs_reading(rule) for rule in rules):
        readings = current_readings(session, org_id, {r.id: r.comment for r in rows})
        if any(rule.theme_ids for rule in rules):
            merged_into = {
                tid: into
                for tid, into in session.execute(
                    select(InsightTheme.id, InsightTheme.merged_into_id).where(
                        InsightTheme.org_id == org_id, InsightTheme.merged_into_id.is_not(None)
                    )
                ).tuples()
                if into is not None
            }
    answers = []
    for rid, survey_id, company_id, score, comment, created_at in rows:
        found = readings.get(rid)
        reading = None if found is None else Reading(found.sentiment, frozenset(t for t, _ in found.themes))
        answers.append(Answer(rid, survey_id, company_id, score, comment, reading))
        created[rid] = created_at
    wanted: list[tuple[str, str, str, str]] = []
    undecided: list[tuple[str, str]] = []
    for answer in answers:
        for rule in rules:
            verdict = matches(rule, answer, merged_into)
            if verdict is None:
                undecided.append((rule.id, answer.id))
            elif verdict:
                wanted.extend((rule.id, answer.id, channel, target) for channel, target in channels(rule))
    return Evaluation(_store(session, org_id, wanted, created, delay), undecided)


def _store(
    session: Session,
    org_id: str,
    wanted: list[tuple[str, str, str, str]],
    created: dict[str, datetime],
    delay: timedelta,
) -> list[str]:
    """Store a delivery and its job for each (rule, answer, channel, target) that has none yet."""
    if not wanted:
        return []
    existing = {
        tuple(row)
        for row in session.execute(
            select(AlertDelivery.rule_id, AlertDelivery.record_id, AlertDelivery.channel).where(
                AlertDelivery.org_id == org_id,
                AlertDelivery.record_id.in_({a for _, a, _, _ in wanted}),
            )
        )
    }
    fresh = [w for w in wanted if w[:3] not in existing]
    if not fresh:
        return []
    now = utcnow()
    due = [max(now, created[record_id] + delay) for _, record_id, _, _ in fresh]
    ids = new_ids(len(fresh))
    _insert_ignoring_duplicates(
        session,
        [
            {
                "id": delivery_id,
                "org_id": org_id,
                "rule_id": rule_id,
                "record_id": record_id,
                "channel": channel,
                "target": target,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": run_at,
                "last_status_code": None,
                "last_error": None,
                "sent_at": None,
                "created_at": now,
                "updated_at": now,
            }
            for delivery_id, run_at, (rule_id, record_id, channel, target) in zip(
                ids, due, fresh, strict=True
            )
        ],
    )
    # a concurrent evaluation of the same answer may have won a row: only ours get a job
    stored: dict[str, str] = {
        did: channel
        for did, channel in session.execute(
            select(AlertDelivery.id, AlertDelivery.channel).where(AlertDelivery.id.in_(ids))
        )
    }
    batches: dict[tuple[str, datetime], list[str]] = {}
    for did, run_at in zip(ids, due, strict=True):
        if did in stored:
            batches.setdefault((stored[did], run_at), []).append(did)
    for (channel, run_at), mine in batches.items():
        kind = JOB_OF[channel]
        jobs.enqueue_new(
            session,
            kind,
            [({"delivery_id": did}, f"{kind}:{did}") for did in mine],
            org_id=org_id,
            run_at=run_at,
            max_attempts=MAX_ATTEMPTS,
        )
    return [did for did in ids if did in stored]


@handler(ALERTS_EVALUATE_JOB)
def evaluate(db: Database, job: JobInfo) -> None:
    """The ``alerts.evaluate`` job a write of answers stored (see ``kit/events.py``). What it can
    decide is stored at once; while a rule on sentiment or themes waits for a comment's analysis
    the job comes back every :data:`INSIGHTS_RETRY`, up to :data:`INSIGHTS_WAIT` after the write."""
    record_ids = [str(i) for i in job.payload.get("record_ids", []) if isinstance(i, str)]
    if job.org_id is None or not record_ids:
        return
    delay = timedelta(seconds=db.config.alert_delay_seconds)
    with db.transaction() as session:
        result = evaluate_rules(session, job.org_id, record_ids, delay)
        written = session.scalar(select(Job.created_at).where(Job.id == job.id))
    if not result.undecided:
        return
    rules = sorted({rule_id for rule_id, _ in result.undecided})
    answers = len({answer_id for _, answer_id in result.undecided})
    if not db.config.insights:
        reason = "comment analysis is switched off (NPSD_INSIGHTS)"
    elif written is not None and utcnow() - written >= INSIGHTS_WAIT:
        reason = f"the comments were not analysed within {INSIGHTS_WAIT.total_seconds() / 60:g} minutes"
    else:
        raise RetryLater(INSIGHTS_RETRY, f"waiting for the analysis of {answers} comment(s)")
    log.warning(
        "alert rule(s) %s not applied to %d answer(s) of organization %s: %s",
        ", ".join(rules),
        answers,
        job.org_id,
        reason,
    )


# ----------------------------------------------------------------------------------------- content


@dataclass(frozen=True)
class Alert:
    """Everything an alert says, read when it is sent."""

    rule_name: str
    answer_id: str
    score: int
    comment: str | None
    email: str
    contact_name: str | None
    company: str | None
    survey: str | None
    answered_at: datetime
    link: str
    sentiment: str | None = None  # what the analysis read in the comment, when it did
    themes: tuple[str, ...] = ()

    @property
    def category(self) -> str:
        return category(self.score)

    @property
    def contact(self) -> str:
        return f"{self.contact_name} <{self.email}>" if self.contact_name else self.email

    def subject(self) -> str:
        who = self.company or self.contact_name or self.email
        return _one_line(f"NPS alert ({self.rule_name}): score {self.score} from {who}")

    def lines(self) -> list[tuple[str, str]]:
        """The facts, labelled, in the order both channels show them."""
        facts = [
            ("Score", f"{self.score} ({self.category})"),
            ("Comment", self.comment or "(no comment)"),
        ]
        if self.themes:
            facts.append(("Themes", ", ".join(self.themes)))
        if self.sentiment:
            facts.append(("Sentiment", self.sentiment))
        facts += [
            ("Contact", self.contact),
            ("Company", self.company or "(none)"),
            ("Survey", self.survey or "(none)"),
            ("Answered", iso(self.answered_at) or ""),
        ]
        return facts

    def text(self) -> str:
        """The e-mail's plain-text body."""
        out = [f"An answer matches the alert rule “{self.rule_name}”.", ""]
        for label, value in self.lines():
            if label == "Comment" and self.comment:
                out.append("Comment:")
                out.extend(f"  {line}" for line in self.comment.splitlines() or [""])
            else:
                out.append(f"{label}: {value}")
        out += ["", f"Open the answer: {self.link}", "", "-- ", "Sent by npsd because of an alert rule."]
        return "\n".join(out) + "\n"

    def slack(self) -> str:
        """The chat message: Slack incoming-webhook ``text`` (mrkdwn, ``<url|label>`` link)."""
        out = [f"*NPS alert: {_slack(self.rule_name)}* — score *{self.score}* ({self.category})"]
        if self.comment:
            out.extend(f">{_slack(line)}" for line in self.comment.splitlines() or [""])
        if self.themes:
            out.append(f"Themes: {_slack(', '.join(self.themes))}")
        if self.sentiment:
            out.append(f"Sentiment: {self.sentiment}")
        out.append(f"Contact: {_slack(self.contact)}")
        if self.company:
            out.append(f"Company: {_slack(self.company)}")
        if self.survey:
            out.append(f"Survey: {_slack(self.survey)}")
        out.append(f"<{self.link}|Open the answer in npsd>")
        return "\n".join(out)


def _one_line(value: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def _slack(value: str) -> str:
    """Text as Slack shows it literally: its three control characters escaped."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def answer_link(settings: Settings, record_id: str) -> str:
    return f"{settings.base_url.rstrip('/')}/app/answers/{record_id}"


def _alert(session: Session, settings: Settings, org_id: str, rule_name: str, record_id: str) -> Alert | None:
    row = session.execute(
        select(
            NpsRecord.score,
            NpsRecord.comment,
            NpsRecord.email,
            NpsRecord.date_answered,
            Enduser.name,
            Company.name,
            Survey.name,
        )
        .outerjoin(Enduser, Enduser.id == NpsRecord.enduser_id)
        .outerjoin(Company, Company.id == NpsRecord.company_id)
        .outerjoin(Survey, (Survey.id == NpsRecord.campaign_id) & (Survey.org_id == NpsRecord.org_id))
        .where(NpsRecord.org_id == org_id, NpsRecord.id == record_id)
    ).first()
    if row is None:
        return None
    score, comment, email, answered, contact, company, survey = row
    reading = current_readings(session, org_id, {record_id: comment}).get(record_id)
    return Alert(
        rule_name, record_id, score, comment, email, contact, company, survey, answered,
        answer_link(settings, record_id),
        sentiment=None if reading is None else reading.sentiment,
        themes=() if reading is None else tuple(name for _, name in reading.themes),
    )  # fmt: skip


def compose(alert: Alert, delivery_id: str, to: list[str], mail_from: str) -> EmailMessage:
    """The alert e-mail: plain text, one message to all of the rule's addresses."""
    message = EmailMessage()
    message["Subject"] = alert.subject()
    message["From"] = mail_from
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(mail_from)[1].rpartition("@")[2]
    domain = domain if domain and all(c.isalnum() or c in ".-" for c in domain) else "npsd.localhost"
    message["Message-ID"] = f"<alert.{delivery_id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Npsd-Alert-Delivery-Id"] = delivery_id
    message["X-Npsd-Answer-Id"] = alert.answer_id
    message.set_content(alert.text(), cte="quoted-printable")
    return message


# ----------------------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    final: bool = False  # retrying cannot help


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _send_email(settings: Settings, alert: Alert, delivery_id: str, target: str) -> Outcome:
    if not settings.smtp_url:
        raise RetryLater(NO_SMTP_RETRY, "NPSD_SMTP_URL is not set; the alert waits for it")
    config = mailer.SmtpConfig.from_url(settings.smtp_url)
    to = [a.strip() for a in target.split(",") if a.strip()]
    try:
        mailer.send(config, compose(alert, delivery_id, to, settings.mail_from))
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(False, error=_clip(mailer.describe(exc)), final=mailer.is_permanent(exc))
    return Outcome(True)


def _send_chat(settings: Settings, alert: Alert, target: str) -> Outcome:
    body = orjson.dumps({"text": alert.slack()})
    result = webhooks.post(
        target,
        body,
        lambda: {"content-type": "application/json"},
        settings.webhook_allow_private,
        webhooks.timeouts(settings),
    )
    return Outcome(result.ok, result.status_code, result.error)


def _settle(db: Database, delivery_id: str, reason: str) -> None:
    """The delivery is ``failed`` without an attempt (or after its last one)."""
    with db.transaction() as session:
        session.execute(
            update(AlertDelivery)
            .where(AlertDelivery.id == delivery_id, AlertDelivery.status == "pending")
            .values(status="failed", next_attempt_at=None, last_error=_clip(reason), updated_at=utcnow())
        )


def _gave_up(db: Database, job: JobInfo, reason: str) -> None:
    delivery_id = job.payload.get("delivery_id")
    if isinstance(delivery_id, str):
        _settle(db, delivery_id, reason)


class AlertFailed(Exception):
    """Raised to the job runner so that it retries on the webhooks' schedule."""


def _attempt(db: Database, job: JobInfo, channel: str) -> None:
    """One attempt of one delivery: nothing to do when it is gone (its rule was deleted) or
    settled; failed without a try when its rule is inactive or its answer was deleted."""
    delivery_id = job.payload.get("delivery_id")
    if not isinstance(delivery_id, str):
        return
    settings = db.config
    with db.transaction(write=False) as session:
        row = session.execute(
            select(
                AlertDelivery.status,
                AlertDelivery.target,
                AlertDelivery.record_id,
                AlertDelivery.org_id,
                AlertRule.name,
                AlertRule.is_active,
            )
            .join(AlertRule, AlertRule.id == AlertDelivery.rule_id)
            .where(AlertDelivery.id == delivery_id, AlertDelivery.channel == channel)
        ).first()
        if row is None or row.status != "pending":
            return
        alert = _alert(session, settings, row.org_id, row.name, row.record_id)
    if not row.is_active:
        _settle(db, delivery_id, "not sent: the rule was switched off")
        return
    if alert is None:
        _settle(db, delivery_id, "not sent: the answer was deleted")
        return
    if channel == "email":
        outcome = _send_email(settings, alert, delivery_id, row.target)
    else:
        outcome = _send_chat(settings, alert, row.target)
    ALERT_DELIVERIES.labels(channel, "sent" if outcome.ok else "failed").inc()
    final = outcome.ok or outcome.final or job.attempts >= job.max_attempts
    now = utcnow()
    with db.transaction() as session:
        session.execute(
            update(AlertDelivery)
            .where(AlertDelivery.id == delivery_id)
            .values(
                status="sent" if outcome.ok else ("failed" if final else "pending"),
                attempts=AlertDelivery.attempts + 1,
                next_attempt_at=None if final else now + retry_delay(job.attempts),
                last_status_code=outcome.status_code,
                last_error=outcome.error,
                sent_at=now if outcome.ok else None,
                updated_at=now,
            )
        )
    if not final:
        log.info("alert %s (%s) attempt %d failed: %s", delivery_id, channel, job.attempts, outcome.error)
        raise AlertFailed(outcome.error or "failed")


@handler(EMAIL_JOB, backoff=retry_delay, on_failure=_gave_up)
def send_email_alert(db: Database, job: JobInfo) -> None:
    """Send one alert e-mail (one message to all of the rule's addresses)."""
    _attempt(db, job, "email")


@handler(CHAT_JOB, backoff=retry_delay, on_failure=_gave_up, pool=webhooks.POOL)
def send_chat_alert(db: Database, job: JobInfo) -> None:
    """POST one alert to the rule's chat webhook, behind the webhooks' SSRF guard and timeouts."""
    _attempt(db, job, "chat")
