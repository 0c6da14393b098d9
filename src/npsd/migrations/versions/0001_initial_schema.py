"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 04:25:47.189181
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "organization",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "company",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("org_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column(
            "domains",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("external_id", sa.String(length=500), nullable=True),
        sa.Column("source_id", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=200), nullable=True),
        sa.Column("phase", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "custom",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("nps", sa.Float(), nullable=True),
        sa.Column("nps_responses", sa.Integer(), nullable=False),
        sa.Column("nps_updated_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "external_id", name="uq_company_external_id"),
        sa.UniqueConstraint("org_id", "source_id", name="uq_company_source_id"),
    )
    with op.batch_alter_table("company", schema=None) as batch_op:
        batch_op.create_index("ix_company_org_name", ["org_id", "name"], unique=False)

    op.create_table(
        "nps_rollup",
        sa.Column("org_id", sa.String(length=24), nullable=False),
        sa.Column("survey_id", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("org_id", "survey_id", "company_id", "source", "day", "score"),
    )
    op.create_table(
        "survey",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("org_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("survey_type", sa.String(length=16), nullable=False),
        sa.Column("trigger_event", sa.String(length=200), nullable=True),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("follow_up_question", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("throttle_days", sa.Integer(), nullable=False),
        sa.Column("reminder_after_days", sa.Integer(), nullable=True),
        sa.Column("thank_you_message", sa.Text(), nullable=True),
        sa.Column("starts_at", sa.DateTime(), nullable=True),
        sa.Column("ends_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("survey", schema=None) as batch_op:
        batch_op.create_index("ix_survey_org_created", ["org_id", "created_at"], unique=False)

    op.create_table(
        "user",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("org_id", sa.String(length=24), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_org_id"), ["org_id"], unique=False)

    op.create_table(
        "api_token",
        sa.Column("jti", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=24), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organization.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_org_id"), ["org_id"], unique=False)

    op.create_table(
        "company_domain",
        sa.Column("org_id", sa.String(length=24), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("company_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("org_id", "domain", "company_id"),
    )
    op.create_table(
        "enduser",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("org_id", sa.String(length=24), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("position", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=100), nullable=True),
        sa.Column("primary", sa.Boolean(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("company_id", sa.String(length=24), nullable=True),
        sa.Column("external_id", sa.String(length=500), nullable=True),
        sa.Column("source_id", sa.String(length=500), nullable=True),
        sa.Column(
            "custom",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("nps", sa.SmallInteger(), nullable=True),
        sa.Column("nps_comment", sa.Text(), nullable=True),
        sa.Column("nps_date", sa.DateTime(), nullable=True),
        sa.Column("nps_id", sa.String(length=24), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["company.id"],
        ),
        sa.ForeignKeyConstraint(["org_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "email_key", name="uq_enduser_email"),
        sa.UniqueConstraint("org_id", "external_id", name="uq_enduser_external_id"),
        sa.UniqueConstraint("org_id", "source_id", name="uq_enduser_source_id"),
    )
    with op.batch_alter_table("enduser", schema=None) as batch_op:
        batch_op.create_index("ix_enduser_company", ["org_id", "company_id"], unique=False)

    op.create_table(
        "nps_record",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("org_id", sa.String(length=24), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=True),
        sa.Column("enduser_id", sa.String(length=24), nullable=False),
        sa.Column("company_id", sa.String(length=24), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("source_id", sa.String(length=500), nullable=True),
        sa.Column("date_sent", sa.DateTime(), nullable=True),
        sa.Column("date_reminder_sent", sa.DateTime(), nullable=True),
        sa.Column("date_answered", sa.DateTime(), nullable=False),
        sa.Column(
            "custom",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["company.id"],
        ),
        sa.ForeignKeyConstraint(
            ["enduser_id"],
            ["enduser.id"],
        ),
        sa.ForeignKeyConstraint(["org_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "source_id", name="uq_nps_record_source_id"),
    )
    with op.batch_alter_table("nps_record", schema=None) as batch_op:
        batch_op.create_index("ix_nps_record_answered", ["org_id", "date_answered", "id"], unique=False)
        batch_op.create_index(
            "ix_nps_record_campaign", ["org_id", "campaign_id", "date_answered"], unique=False
        )
        batch_op.create_index("ix_nps_record_company", ["org_id", "company_id"], unique=False)
        batch_op.create_index("ix_nps_record_enduser", ["enduser_id", "date_answered"], unique=False)
        batch_op.create_index("ix_nps_record_updated", ["org_id", "updated_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("nps_record", schema=None) as batch_op:
        batch_op.drop_index("ix_nps_record_updated")
        batch_op.drop_index("ix_nps_record_enduser")
        batch_op.drop_index("ix_nps_record_company")
        batch_op.drop_index("ix_nps_record_campaign")
        batch_op.drop_index("ix_nps_record_answered")

    op.drop_table("nps_record")
    with op.batch_alter_table("enduser", schema=None) as batch_op:
        batch_op.drop_index("ix_enduser_company")

    op.drop_table("enduser")
    op.drop_table("company_domain")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_org_id"))

    op.drop_table("api_token")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_org_id"))

    op.drop_table("user")
    with op.batch_alter_table("survey", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_org_created")

    op.drop_table("survey")
    op.drop_table("nps_rollup")
    with op.batch_alter_table("company", schema=None) as batch_op:
        batch_op.drop_index("ix_company_org_name")

    op.drop_table("company")
    op.drop_table("organization")
