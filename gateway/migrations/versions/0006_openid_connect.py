"""openid connect: user names, the nonce and login session of a code, a grant's session

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 14:05:00.000000

ID tokens (OpenID Connect Core §2) need what the authorization request and the browser login
said: the ``nonce`` (kept with the code), the login session (``sid``: kept with the code and
then the grant, so a refresh's ID token names the same one), and the user's ``name``.
All nullable: rows made before stay valid and simply get no ``nonce``/``sid``/``name``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nonce", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("session_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_column("session_id")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("session_id")
        batch_op.drop_column("nonce")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("name")
