"""refresh tokens remember their successor

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:45:00.000000

A rotated refresh token records the hash of the one it was exchanged for, so that within
``tokens.refresh_reuse_grace`` a second presentation (two tabs refreshing at once) is handed
the same successor again instead of being treated as reuse. Rows rotated before this revision
have none: presenting them again is reuse, as it always was.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("successor_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("successor_hash")
