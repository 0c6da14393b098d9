"""Alembic migrations, run programmatically (``npsd migrate``, ``npsd serve``, the tests)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from npsd.kit.db import normalize_url

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``."""
    command.upgrade(alembic_config(url), revision)


@cache
def head_revision() -> str:
    """The newest migration this build of npsd has (read once: probes ask every few seconds)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def readiness_problem(engine: Engine) -> str | None:
    """Why the database cannot serve this build (unreachable, or not migrated to its head), or
    None when it can: what ``GET /readyz`` reports."""
    from alembic.migration import MigrationContext
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        return f"the database does not answer: {type(exc.__cause__ or exc).__name__}"
    head = head_revision()
    if current != head:
        return f"the database schema is at migration {current or 'none'}, this build needs {head}: run `npsd migrate`"
    return None
