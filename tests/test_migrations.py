"""Migrations, not create_all: the migrated schema must equal the models on both databases."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from conftest import TestDatabase
from npsd.kit.db import normalize_url
from npsd.kit.models import Base, declared_by_models
from npsd.migrations import alembic_config, upgrade


def test_migrated_schema_matches_models(database: TestDatabase) -> None:
    with database.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": declared_by_models})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(database: TestDatabase) -> None:
    upgrade(database.url)  # already at head: must be a no-op, not an error
    with database.db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None


def test_postgresql_contacts_keep_half_of_each_page_for_their_next_latest_answer(fresh_pg_url: str) -> None:
    """Migration 0016: every answer rewrites its contact's latest answer (no indexed column), which
    PostgreSQL writes beside the old row, without index entries, only while the page has room
    (the speed is ``bench/bulk_upsert.py``'s; here the setting, both ways)."""

    def fill_factor() -> list[str] | None:
        engine = create_engine(normalize_url(fresh_pg_url))
        try:
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT reloptions FROM pg_class WHERE oid = 'enduser'::regclass")
                ).scalar_one()
        finally:
            engine.dispose()

    upgrade(fresh_pg_url, "0015")
    assert fill_factor() == ["fillfactor=80"]
    upgrade(fresh_pg_url)
    assert fill_factor() == ["fillfactor=50"]
    command.downgrade(alembic_config(fresh_pg_url), "0015")
    assert fill_factor() == ["fillfactor=80"]
