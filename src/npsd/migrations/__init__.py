"""Alembic migrations, run programmatically (``npsd migrate``, ``npsd serve``, the tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, pool, text

from npsd.kit.db import normalize_url

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


# The advisory lock that serializes migrations on PostgreSQL, one per schema (the tests migrate
# many schemas of one database at once).
MIGRATION_LOCK = "npsd.migrate:"


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``, holding the database's migration lock.

    Any number of processes may start together on an empty database (two ``npsd serve`` and an
    ``npsd worker``, say): one migrates, the others wait for it and then find the schema at
    ``revision``. On PostgreSQL the lock is a session-level advisory lock held by the very
    connection that migrates (it dies with that connection, so a killed process never leaves it
    behind); on SQLite an exclusive lock on a file beside the database, for every process on
    that machine (SQLite is never shared between machines).
    """
    normalized = normalize_url(url)
    if normalized.startswith("sqlite"):
        with _file_lock(url):
            command.upgrade(alembic_config(url), revision)
        return
    engine = create_engine(normalized, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            key = {"key": MIGRATION_LOCK}
            connection.execute(
                text("SELECT pg_advisory_lock(hashtextextended(:key || current_schema(), 0))"), key
            )
            connection.commit()  # the lock is the session's; no transaction stays open around it
            try:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                connection.commit()
            finally:
                connection.rollback()
                connection.execute(
                    text("SELECT pg_advisory_unlock(hashtextextended(:key || current_schema(), 0))"), key
                )
                connection.commit()
    finally:
        engine.dispose()


@contextmanager
def _file_lock(url: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``<database>.migrate-lock`` for as long as the block runs (a
    crashed holder's lock goes with its process). Without ``fcntl`` (Windows), no lock."""
    path = Path(url.split(":///", 1)[1].split("?", 1)[0]) if ":///" in url else None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a platform npsd is deployed on
        yield
        return
    if path is None or not path.parent.is_dir():  # SQLite itself says what is wrong
        yield
        return
    lock_path = path.with_name(path.name + ".migrate-lock")
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
