"""dynamic client registration: initial access tokens, the per-address count, and what a
registered client is known by

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 12:00:00.000000

Clients may register themselves at ``POST /oauth/register`` (RFC 7591) and manage their
registration (RFC 7592). ``registration_tokens`` holds the initial access tokens ``gateway
registration token create`` makes (their hashes); ``client_registrations`` one row per
registration by client address, for the hourly limit every replica shares. A registered client
keeps its ``client_uri``, its ``application_type`` and the hash of its registration access
token on its ``clients`` row.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("application_type", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("registration_token_hash", sa.String(length=64), nullable=True)
        )
    op.create_table(
        "registration_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("uses_allowed", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("registration_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registration_tokens_expires_at"), ["expires_at"])
    op.create_table(
        "client_registrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("client_registrations", schema=None) as batch_op:
        batch_op.create_index("ix_client_registrations_address_at", ["address", "at"])
        batch_op.create_index(batch_op.f("ix_client_registrations_expires_at"), ["expires_at"])


def downgrade() -> None:
    op.drop_table("client_registrations")
    op.drop_table("registration_tokens")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("registration_token_hash")
        batch_op.drop_column("application_type")
        batch_op.drop_column("client_uri")
