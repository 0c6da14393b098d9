"""organization profile and survey questions per language

The organization's profile (sender, logo, brand colour, privacy link) is five nullable columns of
``organization``; a survey's texts in other languages are one JSON column of ``survey``, read
with the survey wherever it is (mail jobs, respondent pages, lists) and never queried by language.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PROFILE = (
    ("sender_name", 200),
    ("sender_email", 320),
    ("logo_url", 2000),
    ("brand_color", 7),
    ("privacy_url", 2000),
)


def upgrade() -> None:
    # ADD COLUMN of a nullable column is a plain ALTER on both databases (no table copy on SQLite)
    for name, length in PROFILE:
        op.add_column("organization", sa.Column(name, sa.String(length), nullable=True))
    op.add_column(
        "survey",
        sa.Column(
            "translations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("survey") as batch:
        batch.drop_column("translations")
    with op.batch_alter_table("organization") as batch:
        for name, _ in reversed(PROFILE):
            batch.drop_column(name)
