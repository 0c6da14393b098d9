"""Settings, read from the environment with the ``NPSD_`` prefix.

Every setting here is listed in the README; keep the two in step.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The signing key file beside a SQLite database (see Settings.signing_key; kit/backup.py copies it)
SECRET_KEY_FILE = ".npsd-secret-key"


class Settings(BaseSettings):
    """Runtime configuration of one npsd process."""

    model_config = SettingsConfigDict(env_prefix="NPSD_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./npsd.db", description="SQLAlchemy URL; sqlite:/// or postgresql://"
    )
    # scale-out: a PostgreSQL read replica for heavy reads (kit/db.py)
    database_read_url: str | None = Field(
        None, description="PostgreSQL read replica for exports, metrics and lists; unset: the primary"
    )
    secret_key: str | None = Field(
        None, description="HMAC key for tokens; generated beside the database if unset"
    )
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public URL used in links; unset: `npsd serve` uses http://HOST:PORT of its --host and --port",
    )
    jwt_issuer: str = "npsd"
    jwt_audience: str = "npsd-api"
    login_ttl_hours: int = Field(12, ge=1, description="Lifetime of tokens issued by /v1/auth/login")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    db_pool_size: int = Field(10, ge=1)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Least severe log records written: debug, info, warning, error, critical"
    )
    rate_limit: int = Field(200, ge=0, description="Requests per token per minute; 0 turns the limit off")
    # collecting answers
    smtp_url: str | None = Field(
        None, description="smtp://user:pass@host:port (STARTTLS when offered) or smtps://"
    )
    mail_from: str = Field("npsd <npsd@localhost>", description="Sender of survey e-mails")
    invitation_ttl_days: int = Field(30, ge=1, description="Days an invitation link stays valid")
    webhook_allow_private: bool = Field(
        False, description="Allow webhook targets on private/loopback addresses"
    )
    # background jobs
    worker: bool = Field(True, description="Run the job worker inside `npsd serve`")
    worker_poll_seconds: float = Field(1.0, gt=0, description="How often an idle worker looks for due jobs")
    # job leases and webhook deliveries (engineer B, #11)
    job_lease_seconds: float = Field(
        30.0, gt=0, description="Lease of a claimed job; its worker renews it while the job runs"
    )
    webhook_concurrency: int = Field(16, ge=1, description="Webhook deliveries in flight per worker process")
    webhook_per_endpoint: int = Field(2, ge=1, description="Deliveries in flight per receiver host")
    webhook_per_org: int = Field(8, ge=1, description="Deliveries in flight per organization, per process")
    webhook_connect_timeout: float = Field(3.0, gt=0, description="Seconds to connect to a webhook receiver")
    webhook_read_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a receiver's answer")
    webhook_circuit_failures: int = Field(
        5, ge=1, description="Consecutive failed attempts after which a webhook's circuit opens"
    )
    # comment insights (#13)
    insights: bool = Field(
        True,
        description="Read every answer's comment for its themes and sentiment, in the background "
        "(the model, about 100 MB, loads on first use); false: no new analysis",
    )
    # alerts (#12)
    alert_delay_seconds: float = Field(
        30.0,
        ge=0,
        le=50,
        description="Seconds an alert about a new answer waits, so a comment typed after the score is in it",
    )
    # exports
    export_workers: int = Field(
        default_factory=lambda: min(os.cpu_count() or 1, 4),
        ge=0,
        description="Processes writing one large CSV export on SQLite (0 or 1: the server writes it alone)",
    )
    export_parallel_rows: int = Field(
        50_000, ge=1, description="Rows from which a CSV export on SQLite uses the export workers"
    )
    # erasure and retention (privacy/)
    retention_days: int | None = Field(
        None, ge=1, description="Delete answers answered more than this many days ago; unset: keep all"
    )
    invitation_retention_days: int = Field(
        730, ge=0, description="Delete invitations created more than this many days ago (0: keep all)"
    )
    webhook_retention_days: int = Field(
        30, ge=0, description="Delete settled webhook deliveries older than this many days (0: keep all)"
    )
    job_retention_days: int = Field(
        14, ge=0, description="Delete finished jobs (done, failed) older than this many days (0: keep all)"
    )
    retention_interval_seconds: float = Field(
        300.0, ge=0, description="How often each process looks for data past its retention"
    )

    # serving and observability (kit/logs.py, kit/telemetry.py, kit/serving.py)
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one JSON object a line on stderr, for log shippers"
    )
    metrics: bool = Field(False, description="Serve GET /metrics (Prometheus) without a token")
    metrics_token: str | None = Field(
        None, description="Serve GET /metrics to `Authorization: Bearer <this value>` only (not an API token)"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="Close a connection whose request line and headers are not in after this long"
    )
    keep_alive_seconds: float = Field(
        65.0,
        gt=0,
        description="Close a kept-alive connection idle this long; longer than the client's or proxy's own",
    )
    max_connections: int = Field(
        1000, ge=1, description="Connections and requests one process takes at once; beyond: 503"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        """Refuse, in one line, what no engine of npsd can open (the URL itself is not echoed: it
        may hold a password)."""
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme == "sqlite":
            if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
                raise ValueError("a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db")
            if ":memory:" in url or "mode=memory" in url:
                raise ValueError("an in-memory SQLite database vanishes with its connection; use a file")
            return url
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            if len(url) == len(scheme) + 3:
                raise ValueError("a PostgreSQL URL is postgresql://user[:password]@host[:port]/database")
            return url
        shown = f"the scheme {scheme!r}" if scheme else "a value that is not a URL"
        raise ValueError(
            f"got {shown}; use sqlite:///path/to/npsd.db (the default) or postgresql://user@host:5432/database"
        )

    @field_validator("database_read_url")
    @classmethod
    def _replica_database(cls, url: str | None, info: ValidationInfo) -> str | None:
        """A read replica is a PostgreSQL standby of a PostgreSQL primary (the URL is not echoed)."""
        if not url:
            return None
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in ("postgresql", "postgres", "postgresql+psycopg") or len(url) == len(scheme) + 3:
            raise ValueError(
                "a read replica is a PostgreSQL URL: postgresql://user[:password]@host[:port]/database"
            )
        primary = info.data.get("database_url")
        if primary is not None and primary.startswith("sqlite"):
            raise ValueError("a read replica needs NPSD_DATABASE_URL on PostgreSQL too; unset it for SQLite")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite URL, or None for PostgreSQL or in-memory SQLite."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[1] if ":///" in self.database_url else ""
        if not path or path == ":memory:":
            return None
        return Path(path)

    @cached_property
    def signing_key(self) -> str:
        """The token signing key.

        Without ``NPSD_SECRET_KEY`` a random key is generated once and kept beside the SQLite
        file (mode 0600), so tokens survive restarts of the same installation. The file appears
        atomically (written aside, then hard-linked into place), so two processes starting
        together agree on one key and never read a half-written one. PostgreSQL deployments
        usually run several servers, which must share one key: there the setting is required.
        """
        if self.secret_key:
            return self.secret_key
        db_file = self.sqlite_path()
        if not self.is_sqlite:
            raise RuntimeError(
                "NPSD_SECRET_KEY must be set when NPSD_DATABASE_URL is PostgreSQL, "
                "so that every server signs and checks tokens with the same key"
            )
        key_file = (db_file.parent if db_file else Path(".")) / SECRET_KEY_FILE
        try:
            return _read_key(key_file)
        except FileNotFoundError:
            pass
        key_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = key_file.with_name(f"{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(48).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, key_file)  # fails if another process got there first: use its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return _read_key(key_file)


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable signing key; delete it or set NPSD_SECRET_KEY")
    return key


def get_settings() -> Settings:
    """Settings from the current environment."""
    return Settings()
