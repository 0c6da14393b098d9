"""Alembic environment: runs against the URL handed over by :func:`npsd.migrations.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from npsd.kit.models import Base, declared_by_models

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(
            connection=connectable,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_name=declared_by_models,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:  # npsd.migrations.upgrade always sets it
        raise RuntimeError("sqlalchemy.url is not set; run migrations with npsd.migrations.upgrade")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_name=declared_by_models,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        include_name=declared_by_models,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
