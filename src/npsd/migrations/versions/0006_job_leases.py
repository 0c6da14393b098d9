"""background work: webhook endpoint health and the owner of a pending idempotency key

Job leases need no column: ``job.locked_until`` is the lease, now short and renewed by the worker
that holds the job (``kit/jobs.py``). A webhook remembers how its endpoint fares (consecutive
failed attempts, the open circuit and its probe, ``webhooks/delivery.py``), and a pending
``Idempotency-Key`` the process that runs it (``kit/idempotency.py``), so that a retry can tell a
request that died with its process from one still running.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook") as batch:
        batch.add_column(sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("failing_since", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("circuit_opened_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("probe_delivery_id", sa.String(24), nullable=True))
        batch.add_column(sa.Column("next_probe_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("idempotency_key") as batch:
        batch.add_column(sa.Column("owner", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_key") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("webhook") as batch:
        for column in ("next_probe_at", "probe_delivery_id", "circuit_opened_at", "failing_since"):
            batch.drop_column(column)
        batch.drop_column("consecutive_failures")
