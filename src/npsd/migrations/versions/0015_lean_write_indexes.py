"""lighter writes: partial indexes for records and contacts, room for contacts' updates

``ix_nps_record_campaign``, ``ix_nps_record_company`` and ``ix_enduser_company`` only hold rows
whose survey or company is set: an answer or contact without one cost each of them an entry
that no query reads: records and contacts are looked up by a given survey or company (both
databases use a partial index for ``column = value``); the one query for answers without a
company, when their contact moves, finds them through the contact (``contacts/service.py``).
The figures of ``bench/bulk_upsert.py`` are the best case: its answers have neither.

PostgreSQL: ``enduser`` gets a fill factor of 80. Every answer rewrites its contact's latest
answer (``nps``, ``nps_comment``, ``nps_date``, ``nps_id``, none of them indexed); with room on
the page PostgreSQL writes the new row version beside the old (a HOT update) instead of adding
an entry to each of the contact's indexes. Pages written from now on keep the room: about one
row in five of a page can take a new version there before the page is pruned, enough for
contacts that answer now and then; a bulk update of every contact at once mostly still adds
index entries (measured: contacts' latest answers ~200 ms of a 5,000-record update).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_nps_record_campaign", "nps_record", ["org_id", "campaign_id", "date_answered"], "campaign_id"),
    ("ix_nps_record_company", "nps_record", ["org_id", "company_id"], "company_id"),
    ("ix_enduser_company", "enduser", ["org_id", "company_id"], "company_id"),
)


def upgrade() -> None:
    for name, table, columns, column in INDEXES:
        op.drop_index(name, table_name=table)
        op.execute(f"CREATE INDEX {name} ON {table} ({', '.join(columns)}) WHERE {column} IS NOT NULL")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE enduser SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE enduser RESET (fillfactor)")
    for name, table, columns, _ in INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
