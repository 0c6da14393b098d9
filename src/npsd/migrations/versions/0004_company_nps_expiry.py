"""company.nps_expires_at: when a company's NPS must be recounted because an answer aged out

A company's ``nps`` counts its contacts' latest answers of the last 360 days. Answers leave that
window with time, not with a write, so each company records when its oldest counted answer
leaves it, and the worker recounts the companies whose moment has come (one index range).
Existing companies with answers are marked due now, so the first pass recounts them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("company") as batch:
        batch.add_column(sa.Column("nps_expires_at", sa.DateTime(), nullable=True))
        batch.create_index("ix_company_nps_expires", ["nps_expires_at"])
    op.execute("UPDATE company SET nps_expires_at = nps_updated_at WHERE nps_responses > 0")


def downgrade() -> None:
    with op.batch_alter_table("company") as batch:
        batch.drop_index("ix_company_nps_expires")
        batch.drop_column("nps_expires_at")
