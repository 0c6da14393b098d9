"""alert rules on what the comments say: sentiment and themes

Two nullable JSON columns of ``alert_rule``: ``sentiments`` (a list of negative / neutral /
positive) and ``theme_ids`` (a list of the organization's theme ids). Null: no such condition.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

COLUMNS = ("sentiments", "theme_ids")


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # ADD COLUMN of a nullable column is a plain ALTER on both databases (no table copy on SQLite)
    for name in COLUMNS:
        op.add_column("alert_rule", sa.Column(name, _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_rule") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
