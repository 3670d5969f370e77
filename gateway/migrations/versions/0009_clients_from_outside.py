"""clients from outside: how each client came, and client_ids as long as a URL

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 02:00:00.000000

Clients may now register themselves (RFC 7591) or be named by the URL of their metadata
document: ``clients.origin`` says how each came (``cli`` for every existing row), and every
``client_id`` column widens from 64 characters to 512, enough for such a URL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CLIENT_ID_TABLES = ("clients", "grants", "authorization_codes", "refresh_tokens", "consents")


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("origin", sa.String(length=32), nullable=False, server_default="cli")
        )
    for table in _CLIENT_ID_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "client_id",
                existing_type=sa.String(length=64),
                type_=sa.String(length=512),
                existing_nullable=False,
            )


def downgrade() -> None:
    for table in _CLIENT_ID_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "client_id",
                existing_type=sa.String(length=512),
                type_=sa.String(length=64),
                existing_nullable=False,
            )
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("origin")
