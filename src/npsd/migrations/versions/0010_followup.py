"""tags, notes and follow-up of answers

Four tables hanging off ``nps_record`` with ON DELETE CASCADE, so that every path that deletes
an answer (the API, a contact's or company's cascade, an erasure, retention) removes them too:

* ``answer_tag``: an answer's tags, unique per answer regardless of case;
* ``answer_note``: notes written on an answer;
* ``answer_follow_up``: the answer's status (open, contacted, resolved) and assignee;
* ``answer_follow_up_change``: the history of that status and assignee.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _org() -> sa.Column[str]:
    return sa.Column(
        "org_id", sa.String(24), sa.ForeignKey("organization.id", ondelete="CASCADE"), nullable=False
    )


def _record(primary: bool = False) -> sa.Column[str]:
    return sa.Column(
        "record_id",
        sa.String(24),
        sa.ForeignKey("nps_record.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary,
    )


def _user(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(24), sa.ForeignKey("user.id", ondelete="SET NULL"), nullable=True)


def upgrade() -> None:
    op.create_table(
        "answer_tag",
        _record(primary=True),
        sa.Column("tag_key", sa.String(200), primary_key=True),
        _org(),
        sa.Column("tag", sa.String(50), nullable=False),
        _user("created_by_user_id"),
        sa.Column("created_by", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_answer_tag_org_key", "answer_tag", ["org_id", "tag_key"])
    op.create_table(
        "answer_note",
        sa.Column("id", sa.String(24), primary_key=True),
        _org(),
        _record(),
        _user("author_user_id"),
        sa.Column("author_email", sa.String(320), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_answer_note_record", "answer_note", ["record_id", "created_at"])
    op.create_index("ix_answer_note_org", "answer_note", ["org_id", "record_id"])
    op.create_table(
        "answer_follow_up",
        _record(primary=True),
        _org(),
        sa.Column("status", sa.String(16), nullable=False),
        _user("assignee_user_id"),
        sa.Column("updated_by", sa.String(320), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_answer_follow_up_status", "answer_follow_up", ["org_id", "status"])
    op.create_index("ix_answer_follow_up_assignee", "answer_follow_up", ["org_id", "assignee_user_id"])
    op.create_table(
        "answer_follow_up_change",
        sa.Column("id", sa.String(24), primary_key=True),
        _org(),
        _record(),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee_email", sa.String(320), nullable=True),
        _user("changed_by_user_id"),
        sa.Column("changed_by", sa.String(320), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_answer_follow_up_change_record", "answer_follow_up_change", ["record_id", "changed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_answer_follow_up_change_record", table_name="answer_follow_up_change")
    op.drop_table("answer_follow_up_change")
    op.drop_index("ix_answer_follow_up_assignee", table_name="answer_follow_up")
    op.drop_index("ix_answer_follow_up_status", table_name="answer_follow_up")
    op.drop_table("answer_follow_up")
    op.drop_index("ix_answer_note_org", table_name="answer_note")
    op.drop_index("ix_answer_note_record", table_name="answer_note")
    op.drop_table("answer_note")
    op.drop_index("ix_answer_tag_org_key", table_name="answer_tag")
    op.drop_table("answer_tag")
