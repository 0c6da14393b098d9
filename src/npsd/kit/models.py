"""Every table of npsd. All rows carry ``org_id``; every query filters on it.

Times are naive UTC ``datetime`` values (the API adds the ``Z``). Ids are 24-hex strings (see ids.py).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")
ID = String(24)


class Base(DeclarativeBase):
    # Every model maps a plain Table (SQLAlchemy types __table__ as any FromClause); saying so lets
    # insert(Model.__table__) and friends type-check. This is the annotation SQLAlchemy recommends.
    __table__: ClassVar[Table]


class Organization(Base):
    """A tenant. Nothing crosses from one organization to another."""

    __tablename__ = "organization"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # the profile respondents see (migration 0009): sender of survey mails, logo, colour, privacy link
    sender_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sender_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    logo_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    brand_color: Mapped[str | None] = mapped_column(String(7), nullable=True)  # #rrggbb
    privacy_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)


class User(Base):
    """A person who logs in with email and password (``/v1/auth/login``)."""

    __tablename__ = "user"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case; login needs no org
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ApiToken(Base):
    """An issued JWT, by ``jti``: lets a token be listed, revoked and checked on every request."""

    __tablename__ = "api_token"
    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ID, ForeignKey("user.id", ondelete="CASCADE"), nullable=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="api")  # api | session
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Company(Base):
    """A customer account (Planhat company) with its NPS roll-up."""

    __tablename__ = "company"
    __table_args__ = (
        UniqueConstraint("org_id", "external_id", name="uq_company_external_id"),
        UniqueConstraint("org_id", "source_id", name="uq_company_source_id"),
        Index("ix_company_org_name", "org_id", "name"),
        Index("ix_company_nps_expires", "nps_expires_at"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(500))
    domains: Mapped[list[str]] = mapped_column(JSONType, default=list)
    external_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    source_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    status: Mapped[str | None] = mapped_column(String(200), nullable=True)
    phase: Mapped[str | None] = mapped_column(String(200), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    custom: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    nps: Mapped[float | None] = mapped_column(Float, nullable=True)
    nps_responses: Mapped[int] = mapped_column(Integer, default=0)
    nps_updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # when the oldest answer counted in ``nps`` leaves the 360-day window: due for a recount
    nps_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class CompanyDomain(Base):
    """Index of ``company.domains``: matches a new contact's email domain to its company."""

    __tablename__ = "company_domain"
    org_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    company_id: Mapped[str] = mapped_column(
        ID, ForeignKey("company.id", ondelete="CASCADE"), primary_key=True
    )


class Enduser(Base):
    """A contact (Planhat enduser), unique per organization by lower-cased email."""

    __tablename__ = "enduser"
    __table_args__ = (
        UniqueConstraint("org_id", "email_key", name="uq_enduser_email"),
        UniqueConstraint("org_id", "external_id", name="uq_enduser_external_id"),
        UniqueConstraint("org_id", "source_id", name="uq_enduser_source_id"),
        Index(
            "ix_enduser_company",
            "org_id",
            "company_id",
            sqlite_where=text("company_id IS NOT NULL"),
            postgresql_where=text("company_id IS NOT NULL"),
        ),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(500), nullable=True)
    first_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    position: Mapped[str | None] = mapped_column(String(200), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(100), nullable=True)
    primary: Mapped[bool] = mapped_column(Boolean, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    company_id: Mapped[str | None] = mapped_column(ID, ForeignKey("company.id"), nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    source_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    custom: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    nps: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    nps_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    nps_date: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    nps_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Survey(Base):
    """An NPS survey (SalesOS survey, Planhat campaign). Its responses are the records whose
    ``campaign_id`` is its id."""

    __tablename__ = "survey"
    __table_args__ = (
        Index("ix_survey_org_created", "org_id", "created_at"),
        UniqueConstraint("public_id", name="uq_survey_public_id"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    survey_type: Mapped[str] = mapped_column(String(16), default="RELATIONSHIP")
    trigger_event: Mapped[str | None] = mapped_column(String(200), nullable=True)
    question: Mapped[str] = mapped_column(Text)
    follow_up_question: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str] = mapped_column(String(16), default="en")
    throttle_days: Mapped[int] = mapped_column(Integer, default=90)
    reminder_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    thank_you_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    public_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # /s/{publicId}
    # {"de": {"question": ..., "followUpQuestion": ..., "thankYouMessage": ...}} (migration 0009)
    translations: Mapped[dict[str, dict[str, str]] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class NpsRecord(Base):
    """One answer: a score 0-10 from one contact, optionally to one survey (``campaign_id``)."""

    __tablename__ = "nps_record"
    __table_args__ = (
        UniqueConstraint("org_id", "source_id", name="uq_nps_record_source_id"),
        Index("ix_nps_record_answered", "org_id", "date_answered", "id"),
        # partial (migration 0015): an answer of no survey or no company costs these no entry;
        # records are looked up by a given survey or company (a contact's answers without a
        # company, when it moves, are found by the contact)
        Index(
            "ix_nps_record_campaign",
            "org_id",
            "campaign_id",
            "date_answered",
            sqlite_where=text("campaign_id IS NOT NULL"),
            postgresql_where=text("campaign_id IS NOT NULL"),
        ),
        Index("ix_nps_record_enduser", "enduser_id", "date_answered"),
        Index(
            "ix_nps_record_company",
            "org_id",
            "company_id",
            sqlite_where=text("company_id IS NOT NULL"),
            postgresql_where=text("company_id IS NOT NULL"),
        ),
        Index("ix_nps_record_updated", "org_id", "updated_at"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    campaign_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enduser_id: Mapped[str] = mapped_column(ID, ForeignKey("enduser.id"))
    company_id: Mapped[str | None] = mapped_column(ID, ForeignKey("company.id"), nullable=True)
    email: Mapped[str] = mapped_column(String(320))
    score: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    date_sent: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    date_reminder_sent: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    date_answered: Mapped[datetime] = mapped_column(DateTime)
    custom: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class NpsRollup(Base):
    """Answer counts per (survey, company, source, day, score), kept by delta in the same
    transaction as every record write, so metrics cost O(days), not O(answers).

    Missing dimensions are stored as ``''`` so the key can be a primary key on both databases.
    """

    __tablename__ = "nps_rollup"
    __table_args__ = {"sqlite_with_rowid": False}
    org_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    survey_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    source: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    score: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Invitation(Base):
    """One survey invitation to one address: sent by e-mail, answered through ``/r/{token}``.

    Only a SHA-256 of the token is stored; the token itself (>= 128 random bits) lives in the
    e-mailed links. One invitation has at most one answer record (``record_id``).
    """

    __tablename__ = "invitation"
    __table_args__ = (
        Index("ix_invitation_survey", "org_id", "survey_id", "status"),
        Index("ix_invitation_throttle", "org_id", "email_key", "sent_at"),
        Index("ix_invitation_due", "status", "send_at"),
        Index("ix_invitation_created", "created_at"),  # retention (migration 0007)
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    survey_id: Mapped[str] = mapped_column(ID, ForeignKey("survey.id", ondelete="CASCADE"))
    enduser_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("enduser.id", ondelete="SET NULL"), nullable=True
    )
    company_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(500), nullable=True)
    locale: Mapped[str | None] = mapped_column(String(16), nullable=True)
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(
        String(16), default="queued"
    )  # queued sent failed answered reminded cancelled
    send_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    failed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    record_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Unsubscribe(Base):
    """An address that asked for no more surveys from this organization.

    Only a one-way hash of the address is kept (``email_key``: HMAC-SHA256 of the normalized
    address under the signing key, see ``collect.service.address_hash``), so the list still
    refuses an address after its person was erased, without holding the address (migration 0007).
    """

    __tablename__ = "unsubscribe"
    org_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    email_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # link | one-click | api
    invitation_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Webhook(Base):
    """A subscription: events of this organization are POSTed, signed, to ``url``."""

    __tablename__ = "webhook"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSONType)
    survey_ids: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    secret: Mapped[str] = mapped_column(String(100))  # whsec_<base64>, shown once
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # The endpoint's health (migration 0006, webhooks/delivery.py): consecutive failed attempts
    # across its deliveries; past NPSD_WEBHOOK_CIRCUIT_FAILURES the circuit is open and only the
    # probe delivery is tried (on its own retry schedule), the others wait until a probe succeeds.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    circuit_opened_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    probe_delivery_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    next_probe_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class WebhookDelivery(Base):
    """One event to one webhook; retried with backoff for 24 hours."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_hook", "webhook_id", "created_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)  # also the webhook-id header (msg id)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    webhook_id: Mapped[str] = mapped_column(ID, ForeignKey("webhook.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # the exact JSON body that is signed and sent
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending succeeded failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery, as shown by ``GET /v1/webhooks/{id}/deliveries``."""

    __tablename__ = "webhook_attempt"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(
        ID, ForeignKey("webhook_delivery.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(DateTime)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class Job(Base):
    """Durable background work (e-mails, reminders, webhook deliveries); survives restarts.

    Workers claim due jobs with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (a lease on SQLite),
    so two workers never run the same job.
    """

    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_due", "status", "run_at"),
        UniqueConstraint("dedupe_key", name="uq_job_dedupe_key"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued running done failed
    run_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    locked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class IdempotencyKey(Base):
    """A remembered reply to a POST or bulk PUT carrying ``Idempotency-Key``."""

    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_expires", "expires_at"),)  # retention (migration 0007)
    org_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    body_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # pending | done
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    # The process running a pending request (migration 0006, kit/idempotency.py): "host:pid:start",
    # so a retry can tell a dead first request from a live one; NULL for rows written before.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Erasure(Base):
    """A request to erase one person (``/v1/erasures``, ``npsd erase``) and what it removed.

    The address is never stored: ``email_hash`` is the same keyed hash as ``unsubscribe.email_key``,
    enough to answer whether an erasure was for a given address. The job that does the work
    carries the address in its payload only until it has run (it blanks it in its own transaction).
    """

    __tablename__ = "erasure"
    __table_args__ = (
        Index("ix_erasure_org_created", "org_id", "created_at"),
        Index("ix_erasure_org_hash", "org_id", "email_hash"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    email_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued running done failed
    source: Mapped[str] = mapped_column(String(16))  # api | cli
    requested_by: Mapped[str | None] = mapped_column(ID, nullable=True)  # the user, for API requests
    answers: Mapped[int] = mapped_column(Integer, default=0)
    contacts: Mapped[int] = mapped_column(Integer, default=0)
    invitations: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_replies: Mapped[int] = mapped_column(Integer, default=0)
    webhook_deliveries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RateLimit(Base):
    """Requests per token per minute window; shared by every process on PostgreSQL."""

    __tablename__ = "rate_limit"
    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class DataImport(Base):
    """One upload of another tool's export (``POST /v1/imports``), run by the job worker.

    The file itself is kept here (not on a disk) so that any worker on any machine can run it,
    and dropped once the import ends: it holds people's addresses, which an erasure must not
    miss. Progress (``rows_done`` and the counts) is written with each batch of records, in the
    batch's own transaction, so a worker that dies resumes after the last batch it committed.
    """

    __tablename__ = "data_import"
    __table_args__ = (Index("ix_data_import_org_created", "org_id", "created_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    layout: Mapped[str] = mapped_column(String(32))  # the layout recognised or named at upload
    filename: Mapped[str | None] = mapped_column(String(500), nullable=True)
    survey_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    score_column: Mapped[str | None] = mapped_column(String(500), nullable=True)
    comment_column: Mapped[str | None] = mapped_column(String(500), nullable=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued running done failed
    content: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)  # the first ones
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


# The comment search index (migration 0005) is not a model: on SQLite the FTS5 table
# ``nps_record_fts`` (with its shadow tables ``nps_record_fts_*``) kept by triggers, on PostgreSQL
# a GIN index over ``npsd_comment_words(comment)``. Neither has a SQLAlchemy form to declare.
SEARCH_INDEX_OBJECTS = ("nps_record_fts", "ix_nps_record_comment_search")


# --- organization profile and survey questions per language (migration 0009) ---
# (no tables of their own: columns of ``organization`` and ``survey.translations`` above)


# --- follow-up of answers: tags, notes, status (migration 0010) ---
# Each row hangs off one answer with ON DELETE CASCADE: deleting an answer (the API, a contact's
# or company's cascade, an erasure, retention) removes its tags, notes and follow-up with it.
# Who did something is kept twice: the user's id (NULL once the user is deleted, or for an API
# token without a user) and a label that outlives it: the user's address at the time, else the
# token's name, else "api".


class AnswerTag(Base):
    """One tag of one answer, unique per answer regardless of case (``tag_key`` is lower-case)."""

    __tablename__ = "answer_tag"
    __table_args__ = (Index("ix_answer_tag_org_key", "org_id", "tag_key"),)
    record_id: Mapped[str] = mapped_column(
        ID, ForeignKey("nps_record.id", ondelete="CASCADE"), primary_key=True
    )
    tag_key: Mapped[str] = mapped_column(String(200), primary_key=True)  # casefold() may lengthen
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(50))
    created_by_user_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("user.id", ondelete="SET NULL"), nullable=True
    )
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AnswerNote(Base):
    """A note a team member wrote on an answer."""

    __tablename__ = "answer_note"
    __table_args__ = (
        Index("ix_answer_note_record", "record_id", "created_at"),
        Index("ix_answer_note_org", "org_id", "record_id"),  # which answers have notes (exports)
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    record_id: Mapped[str] = mapped_column(ID, ForeignKey("nps_record.id", ondelete="CASCADE"))
    author_user_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("user.id", ondelete="SET NULL"), nullable=True
    )
    author_email: Mapped[str] = mapped_column(String(320))  # the address at the time, or the token's label
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AnswerFollowUp(Base):
    """Where the follow-up of an answer stands: open, contacted or resolved, and who has it.
    No row: nobody has set a status yet."""

    __tablename__ = "answer_follow_up"
    __table_args__ = (
        Index("ix_answer_follow_up_status", "org_id", "status"),
        Index("ix_answer_follow_up_assignee", "org_id", "assignee_user_id"),
    )
    record_id: Mapped[str] = mapped_column(
        ID, ForeignKey("nps_record.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))  # open | contacted | resolved
    assignee_user_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("user.id", ondelete="SET NULL"), nullable=True
    )
    updated_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class AnswerFollowUpChange(Base):
    """One change of an answer's follow-up: the status and assignee it set, by whom, when."""

    __tablename__ = "answer_follow_up_change"
    __table_args__ = (Index("ix_answer_follow_up_change_record", "record_id", "changed_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    record_id: Mapped[str] = mapped_column(ID, ForeignKey("nps_record.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    assignee_email: Mapped[str | None] = mapped_column(String(320), nullable=True)  # at the time
    changed_by_user_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("user.id", ondelete="SET NULL"), nullable=True
    )
    changed_by: Mapped[str] = mapped_column(String(320))
    changed_at: Mapped[datetime] = mapped_column(DateTime)


# --- alert rules and deliveries (migration 0011) ---


class AlertRule(Base):
    """When an answer of the organization matches (survey, company, score at most, words in the
    comment, the comment's sentiment and themes; all that are set), tell people: an e-mail to
    ``emails`` and/or a chat message to ``chat_webhook_url``, once per answer (``alerts/``). A rule
    scoped to a survey or company is deleted with it (it could never match again)."""

    __tablename__ = "alert_rule"
    __table_args__ = (Index("ix_alert_rule_org", "org_id", "created_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    survey_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("survey.id", ondelete="CASCADE"), nullable=True
    )
    company_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("company.id", ondelete="CASCADE"), nullable=True
    )
    score_at_most: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    comment_contains: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    # what the comment analysis read (#13): negative/neutral/positive; the organization's theme ids
    sentiments: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    theme_ids: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    emails: Mapped[list[str]] = mapped_column(JSONType)
    chat_webhook_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class AlertDelivery(Base):
    """One alert about one answer on one channel (``email`` or ``chat``). Unique per rule, answer
    and channel: a retried evaluation or an updated answer never alerts twice. ``record_id`` is
    no foreign key: the log outlives a deleted answer."""

    __tablename__ = "alert_delivery"
    __table_args__ = (
        UniqueConstraint("rule_id", "record_id", "channel", name="uq_alert_delivery_once"),
        Index("ix_alert_delivery_rule", "rule_id", "created_at"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    rule_id: Mapped[str] = mapped_column(ID, ForeignKey("alert_rule.id", ondelete="CASCADE"))
    record_id: Mapped[str] = mapped_column(ID)
    channel: Mapped[str] = mapped_column(String(8))  # email chat
    target: Mapped[str] = mapped_column(Text)  # the addresses, or the chat URL
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending sent failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


# --- digests (migration 0012) ---


class Digest(Base):
    """A daily or weekly summary e-mail of one survey (or the whole organization) to a few
    addresses, at a local hour in an IANA time zone (``/v1/digests``, ``digests/``).

    ``next_due_at`` is the next local send time in UTC, recomputed from the time zone after every
    send (so DST changes move it); a worker claims a due digest by moving it forward with a
    conditional UPDATE, so several workers send each period once.
    """

    __tablename__ = "digest"
    __table_args__ = (
        Index("ix_digest_org_created", "org_id", "created_at"),
        Index("ix_digest_due", "is_active", "next_due_at"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    survey_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("survey.id", ondelete="CASCADE"), nullable=True
    )
    frequency: Mapped[str] = mapped_column(String(16))  # daily | weekly
    weekday: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)  # 0 = Monday (weekly)
    hour: Mapped[int] = mapped_column(SmallInteger)
    time_zone: Mapped[str] = mapped_column(String(64))
    emails: Mapped[list[str]] = mapped_column(JSONType)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    next_due_at: Mapped[datetime] = mapped_column(DateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class DigestDelivery(Base):
    """One digest mail: scheduled (one per digest and period: ``period_key`` is unique with the
    digest) or a preview sent on request (``period_key`` NULL); its figures once sent."""

    __tablename__ = "digest_delivery"
    __table_args__ = (
        UniqueConstraint("digest_id", "period_key", name="uq_digest_delivery_period"),
        Index("ix_digest_delivery_digest", "digest_id", "created_at"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    digest_id: Mapped[str] = mapped_column(ID, ForeignKey("digest.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # scheduled | preview
    period_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    period_since: Mapped[date] = mapped_column(Date)
    period_until: Mapped[date] = mapped_column(Date)
    emails: Mapped[list[str]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending sent failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    subject: Mapped[str | None] = mapped_column(String(300), nullable=True)
    nps_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    responses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


# --- comment insights (migration 0013) ---


class InsightTheme(Base):
    """A theme the comments of an organization are matched against (``insights/``).

    ``key`` names one of the default themes (``price``, ``support``, ...: their descriptions in
    en/de/fr/es ship with npsd) and is NULL for a theme the organization added with its own
    ``examples``. ``status`` is ``active`` (answers are matched to it) or ``suggested`` (a group
    of comments that fit no theme, labelled by its ``keywords``, with its ``centroid``; an admin
    adopts it). A theme ``merged_into`` another counts as that one; a ``hidden`` theme is neither
    matched nor listed.
    """

    __tablename__ = "insight_theme"
    __table_args__ = (
        UniqueConstraint("org_id", "key", name="uq_insight_theme_key"),
        Index("ix_insight_theme_org", "org_id", "status", "position"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    key: Mapped[str | None] = mapped_column(String(40), nullable=True)
    name: Mapped[str] = mapped_column(String(80))
    keywords: Mapped[list[str]] = mapped_column(JSONType)
    examples: Mapped[list[str]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suggested
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    merged_into_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("insight_theme.id", ondelete="SET NULL"), nullable=True
    )
    centroid: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class AnswerInsight(Base):
    """What the analysis read in one answer's comment: its sentiment, whether it said nothing
    (``is_empty``), the comment's embedding (float16, so a change of themes re-matches without
    the model) and the hash of the text it was computed from (only a changed comment is embedded
    again). ``themes_version`` is the organization's themes version it was matched with."""

    __tablename__ = "answer_insight"
    __table_args__ = (Index("ix_answer_insight_org", "org_id", "sentiment"),)
    record_id: Mapped[str] = mapped_column(
        ID, ForeignKey("nps_record.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    text_hash: Mapped[str] = mapped_column(String(32))
    is_empty: Mapped[bool] = mapped_column(Boolean)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    sentiment: Mapped[str | None] = mapped_column(String(8), nullable=True)  # negative neutral positive
    sentiment_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    themes_version: Mapped[int] = mapped_column(Integer, default=0)
    analysed_at: Mapped[datetime] = mapped_column(DateTime)


class AnswerTheme(Base):
    """One theme of one answer, ``rank`` 0 the strongest; ``similarity`` how close it came."""

    __tablename__ = "answer_theme"
    __table_args__ = (Index("ix_answer_theme_theme", "org_id", "theme_id", "record_id"),)
    record_id: Mapped[str] = mapped_column(
        ID, ForeignKey("answer_insight.record_id", ondelete="CASCADE"), primary_key=True
    )
    theme_id: Mapped[str] = mapped_column(
        ID, ForeignKey("insight_theme.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organization.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(SmallInteger)
    similarity: Mapped[float] = mapped_column(Float)


class InsightState(Base):
    """Per organization: the version of its themes (raised by every change to them, so answers
    matched with an older one are re-matched) and when suggestions were last worked out."""

    __tablename__ = "insight_state"
    org_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    themes_version: Mapped[int] = mapped_column(Integer, default=1)
    suggested_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


def declared_by_models(name: str | None, type_: str, parent_names: Any) -> bool:
    """Whether a database object is one these models declare (Alembic's ``include_name`` hook):
    everything but the comment search index, so comparing the migrated schema with the models
    (or autogenerating a migration) leaves it alone."""
    return not (name and name.startswith(SEARCH_INDEX_OBJECTS))
