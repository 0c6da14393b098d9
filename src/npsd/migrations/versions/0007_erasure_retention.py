"""erasure requests, hashed unsubscribes, indexes for retention

* ``erasure``: one row per request to erase a person; it keeps a keyed hash of the address,
  never the address.
* ``unsubscribe.email_key`` becomes HMAC-SHA256 of the normalized address under the signing key
  and ``unsubscribe.email`` goes: the list keeps refusing an address without holding it, also
  after its person was erased. Existing rows are converted here, in Python (neither database
  has HMAC built in), with the key the servers use: ``NPSD_SECRET_KEY``, else the key file
  beside the SQLite database. Run ``npsd migrate`` with the same settings as ``npsd serve``.
* indexes that let the retention task find old invitations and expired idempotency keys by a
  range read instead of a scan.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import hashlib
import hmac

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def address_hash(key: str, email: str) -> str:
    """A frozen copy of ``collect.service.address_hash`` (a migration must not change when the
    code moves on); ``tests/test_privacy.py`` checks that the two agree."""
    normalized = email.strip().lower()
    return hmac.new(key.encode(), b"npsd/address/" + normalized.encode(), hashlib.sha256).hexdigest()


def _signing_key(bind: sa.Connection) -> str:
    """The signing key the servers of this database use (from the environment, as they read it)."""
    from npsd.kit.config import Settings

    url = bind.engine.url.render_as_string(hide_password=False)
    try:
        return Settings(database_url=url).signing_key
    except RuntimeError as exc:  # PostgreSQL without NPSD_SECRET_KEY
        raise RuntimeError(f"migration 0007 hashes the unsubscribe list: {exc}") from exc


def upgrade() -> None:
    op.create_table(
        "erasure",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "org_id", sa.String(24), sa.ForeignKey("organization.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(24), nullable=True),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("invitations", sa.Integer(), nullable=False),
        sa.Column("idempotency_replies", sa.Integer(), nullable=False),
        sa.Column("webhook_deliveries", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_erasure_org_created", "erasure", ["org_id", "created_at"])
    op.create_index("ix_erasure_org_hash", "erasure", ["org_id", "email_hash"])
    op.create_index("ix_invitation_created", "invitation", ["created_at"])
    op.create_index("ix_idempotency_key_expires", "idempotency_key", ["expires_at"])

    bind = op.get_bind()
    unsubscribe = sa.table("unsubscribe", sa.column("org_id", sa.String), sa.column("email_key", sa.String))
    rows = bind.execute(sa.select(unsubscribe.c.org_id, unsubscribe.c.email_key)).all()
    if rows:
        key = _signing_key(bind)
        bind.execute(
            unsubscribe.update()
            .where(unsubscribe.c.org_id == sa.bindparam("o"), unsubscribe.c.email_key == sa.bindparam("k"))
            .values(email_key=sa.bindparam("h")),
            [{"o": org_id, "k": k, "h": address_hash(key, k)} for org_id, k in rows],
        )
    with op.batch_alter_table("unsubscribe") as batch:
        batch.drop_column("email")


def downgrade() -> None:
    # The addresses cannot come back (that is the point): the old column gets the hash.
    with op.batch_alter_table("unsubscribe") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=False, server_default=""))
    op.execute("UPDATE unsubscribe SET email = email_key")
    op.drop_index("ix_idempotency_key_expires", "idempotency_key")
    op.drop_index("ix_invitation_created", "invitation")
    op.drop_index("ix_erasure_org_hash", "erasure")
    op.drop_index("ix_erasure_org_created", "erasure")
    op.drop_table("erasure")
