"""known-device cookies: failures remember the device they came with; devices forgotten

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00.000000

The per-user delay of the login throttle now holds at every address, and a known-device cookie
(set at a successful sign-in on the login page) skips it. A failure made with such a cookie
counts against that device (``login_failures.device_id``, nullable: rows made before, and
every failure without a cookie, have none), and ``gateway user devices forget`` records when
a user's devices stopped counting (``device_resets``), for every replica to read.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_login_failures_device_id_at", ["device_id", "at"], unique=False)
    op.create_table(
        "device_resets",
        sa.Column("user_key", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("user_key"),
    )


def downgrade() -> None:
    op.drop_table("device_resets")
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_login_failures_device_id_at")
        batch_op.drop_column("device_id")
