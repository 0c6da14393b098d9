"""alert rules and their deliveries

``alert_rule``: conditions on an answer (survey, company, score at most, words in the comment)
and where to tell (e-mail addresses, a chat webhook URL). ``alert_delivery``: one alert about one
answer on one channel, unique per (rule, answer, channel) so that an answer never alerts twice.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alert_rule",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "org_id", sa.String(24), sa.ForeignKey("organization.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("survey_id", sa.String(24), sa.ForeignKey("survey.id", ondelete="CASCADE"), nullable=True),
        sa.Column(
            "company_id", sa.String(24), sa.ForeignKey("company.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("score_at_most", sa.SmallInteger(), nullable=True),
        sa.Column("comment_contains", JSON, nullable=True),
        sa.Column("emails", JSON, nullable=False),
        sa.Column("chat_webhook_url", sa.String(2048), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_alert_rule_org", "alert_rule", ["org_id", "created_at"])
    op.create_table(
        "alert_delivery",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "org_id", sa.String(24), sa.ForeignKey("organization.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "rule_id", sa.String(24), sa.ForeignKey("alert_rule.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("record_id", sa.String(24), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("rule_id", "record_id", "channel", name="uq_alert_delivery_once"),
    )
    op.create_index("ix_alert_delivery_rule", "alert_delivery", ["rule_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_delivery_rule", table_name="alert_delivery")
    op.drop_table("alert_delivery")
    op.drop_index("ix_alert_rule_org", table_name="alert_rule")
    op.drop_table("alert_rule")
