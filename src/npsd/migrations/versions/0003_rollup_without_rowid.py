"""nps_rollup as a WITHOUT ROWID table on SQLite

The roll-up is read only by its primary key prefix (org, survey, company, source, day, score);
clustering the rows on that key instead of a hidden rowid makes every metrics read one B-tree
range scan. PostgreSQL is unchanged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = """
    org_id VARCHAR(24) NOT NULL,
    survey_id VARCHAR(64) NOT NULL,
    company_id VARCHAR(24) NOT NULL,
    source VARCHAR(200) NOT NULL,
    day DATE NOT NULL,
    score SMALLINT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (org_id, survey_id, company_id, source, day, score),
    FOREIGN KEY(org_id) REFERENCES organization (id) ON DELETE CASCADE
"""


def _rebuild(suffix: str) -> None:
    op.execute(f"CREATE TABLE nps_rollup_new ({COLUMNS}){suffix}")
    op.execute(
        "INSERT INTO nps_rollup_new SELECT org_id, survey_id, company_id, source, day, score, count "
        "FROM nps_rollup"
    )
    op.execute("DROP TABLE nps_rollup")
    op.execute("ALTER TABLE nps_rollup_new RENAME TO nps_rollup")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(" WITHOUT ROWID")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild("")
