"""Migrations, not create_all: the migrated schema must equal the models on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conftest import TestDatabase
from npsd.kit.models import Base, declared_by_models
from npsd.migrations import upgrade


def test_migrated_schema_matches_models(database: TestDatabase) -> None:
    with database.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": declared_by_models})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(database: TestDatabase) -> None:
    upgrade(database.url)  # already at head: must be a no-op, not an error
    with database.db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None
