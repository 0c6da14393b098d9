"""comment insights: themes, each answer's analysis and themes, the per-organization state

``insight_theme`` holds an organization's themes (the defaults, its own, suggested ones);
``answer_insight`` one row per analysed answer (sentiment, embedding, text hash); ``answer_theme``
the themes of each answer, strongest first; ``insight_state`` the version of the themes.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _org() -> sa.Column[str]:
    return sa.Column(
        "org_id", sa.String(24), sa.ForeignKey("organization.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "insight_theme",
        sa.Column("id", sa.String(24), primary_key=True),
        _org(),
        sa.Column("key", sa.String(40), nullable=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("keywords", _json(), nullable=False),
        sa.Column("examples", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column(
            "merged_into_id",
            sa.String(24),
            sa.ForeignKey("insight_theme.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("centroid", sa.LargeBinary(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("org_id", "key", name="uq_insight_theme_key"),
    )
    op.create_index("ix_insight_theme_org", "insight_theme", ["org_id", "status", "position"])
    op.create_table(
        "answer_insight",
        sa.Column(
            "record_id",
            sa.String(24),
            sa.ForeignKey("nps_record.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _org(),
        sa.Column("text_hash", sa.String(32), nullable=False),
        sa.Column("is_empty", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("sentiment", sa.String(8), nullable=True),
        sa.Column("sentiment_score", sa.Float(), nullable=True),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("themes_version", sa.Integer(), nullable=False),
        sa.Column("analysed_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_answer_insight_org", "answer_insight", ["org_id", "sentiment"])
    op.create_table(
        "answer_theme",
        sa.Column(
            "record_id",
            sa.String(24),
            sa.ForeignKey("answer_insight.record_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "theme_id",
            sa.String(24),
            sa.ForeignKey("insight_theme.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _org(),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
    )
    op.create_index("ix_answer_theme_theme", "answer_theme", ["org_id", "theme_id", "record_id"])
    op.create_table(
        "insight_state",
        sa.Column(
            "org_id",
            sa.String(24),
            sa.ForeignKey("organization.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("themes_version", sa.Integer(), nullable=False),
        sa.Column("suggested_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("insight_state")
    op.drop_index("ix_answer_theme_theme", table_name="answer_theme")
    op.drop_table("answer_theme")
    op.drop_index("ix_answer_insight_org", table_name="answer_insight")
    op.drop_table("answer_insight")
    op.drop_index("ix_insight_theme_org", table_name="insight_theme")
    op.drop_table("insight_theme")
