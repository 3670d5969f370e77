"""clients share one grant across their client_credentials tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:30:00.000000

A client_credentials token used to get a ``grants`` row of its own, written (and synced to
disk) before the answer. Now every such token of a client carries the ``sid`` of one grant,
made at the client's first token and named here. Grants written before stay valid and
revocable (by client) until they expire.
"""

import time

import sqlalchemy as sa
from alembic import op

#: before this revision a grant always expired; a client's grant lasts until revoked
#: (``expires_at`` infinite): on the way down it gets a day, well past its tokens' lifetime
DOWNGRADED_LIFETIME = 86400.0

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credentials_grant_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    grants = sa.table("grants", sa.column("expires_at", sa.Float))
    op.execute(
        grants.update()
        .where(grants.c.expires_at > 1e300)
        .values(expires_at=time.time() + DOWNGRADED_LIFETIME)
    )
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("credentials_grant_id")
