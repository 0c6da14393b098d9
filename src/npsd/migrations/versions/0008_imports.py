"""data_import: uploads of other tools' exports, run as jobs (``POST /v1/imports``)

The uploaded file is stored in the row (``content``) so that any worker on any machine can run
the import; it is dropped when the import ends.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_import",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "org_id", sa.String(24), sa.ForeignKey("organization.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("layout", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(500), nullable=True),
        sa.Column("survey_id", sa.String(24), nullable=True),
        sa.Column("score_column", sa.String(500), nullable=True),
        sa.Column("comment_column", sa.String(500), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column(
            "errors",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_data_import_org_created", "data_import", ["org_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_data_import_org_created", table_name="data_import")
    op.drop_table("data_import")
