"""room on every contact's page for its next latest answer (PostgreSQL fill factor 50)

Every answer rewrites its contact's latest answer (``nps``, ``nps_comment``, ``nps_date``,
``nps_id``, none of them indexed). PostgreSQL writes the new row version beside the old one (a
HOT update, no entry in any of the contact's five indexes) only while the page has room for it.
0015 left a fifth of each page free: enough for contacts that answer now and then, but a bulk
update that gives every contact of a page a new latest answer (a re-sync by ``sourceId``) still
added index entries for four rows in five. With half of each page free every row of it can take
its new version there, and the page is pruned before the next round. Measured with
``bench/bulk_upsert.py`` (5,000 updated records through HTTP, same run): 348 ms at 80, 289 ms at
60, 275 ms at 50. The price is a contacts table up to twice as large, the smaller of the two
tables that answers write.

Pages written from now on keep the room; ``VACUUM FULL enduser`` gives it to existing pages too
(it locks the table while it rewrites it). SQLite rewrites a row in place: nothing to do there.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE enduser SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE enduser SET (fillfactor = 80)")
