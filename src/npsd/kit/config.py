"""Settings, read from the environment with the ``NPSD_`` prefix.

Every setting here is listed in the README; keep the two in step.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration of one npsd process."""

    model_config = SettingsConfigDict(env_prefix="NPSD_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./npsd.db", description="SQLAlchemy URL; sqlite:/// or postgresql://"
    )
    secret_key: str | None = Field(
        None, description="HMAC key for tokens; generated beside the database if unset"
    )
    base_url: str = Field("http://127.0.0.1:8000", description="Public URL used in links")
    jwt_issuer: str = "npsd"
    jwt_audience: str = "npsd-api"
    login_ttl_hours: int = Field(12, ge=1, description="Lifetime of tokens issued by /v1/auth/login")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    db_pool_size: int = Field(10, ge=1)
    log_level: str = "info"
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
    # exports
    export_workers: int = Field(
        default_factory=lambda: min(os.cpu_count() or 1, 4),
        ge=0,
        description="Processes writing one large CSV export on SQLite (0 or 1: the server writes it alone)",
    )
    export_parallel_rows: int = Field(
        50_000, ge=1, description="Rows from which a CSV export on SQLite uses the export workers"
    )

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
        key_file = (db_file.parent if db_file else Path(".")) / ".npsd-secret-key"
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
