"""digest schedules: daily and weekly summary e-mails (``/v1/digests``) and their deliveries

``digest.next_due_at`` is the next send time in UTC, worked out from the digest's local hour and
time zone; ``digest_delivery`` keeps one row per mail, at most one scheduled one per digest and
period (``uq_digest_delivery_period``; previews leave ``period_key`` NULL).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "digest",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "org_id", sa.String(24), sa.ForeignKey("organization.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("survey_id", sa.String(24), sa.ForeignKey("survey.id", ondelete="CASCADE"), nullable=True),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("weekday", sa.SmallInteger(), nullable=True),
        sa.Column("hour", sa.SmallInteger(), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("emails", _json(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_digest_org_created", "digest", ["org_id", "created_at"])
    op.create_index("ix_digest_due", "digest", ["is_active", "next_due_at"])
    op.create_table(
        "digest_delivery",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "org_id", sa.String(24), sa.ForeignKey("organization.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("digest_id", sa.String(24), sa.ForeignKey("digest.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("period_key", sa.String(32), nullable=True),
        sa.Column("period_since", sa.Date(), nullable=False),
        sa.Column("period_until", sa.Date(), nullable=False),
        sa.Column("emails", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("subject", sa.String(300), nullable=True),
        sa.Column("nps_score", sa.Float(), nullable=True),
        sa.Column("responses", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("digest_id", "period_key", name="uq_digest_delivery_period"),
    )
    op.create_index("ix_digest_delivery_digest", "digest_delivery", ["digest_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_digest_delivery_digest", table_name="digest_delivery")
    op.drop_table("digest_delivery")
    op.drop_index("ix_digest_due", table_name="digest")
    op.drop_index("ix_digest_org_created", table_name="digest")
    op.drop_table("digest")
