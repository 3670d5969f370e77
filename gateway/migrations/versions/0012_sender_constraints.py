"""DPoP bindings, pushed authorization requests and client assertions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 04:20:00.000000

RFC 9449 (DPoP): a client may have to prove a key at every token request
(``clients.require_dpop``); an authorization code may be bound to a key at the authorization
request (``authorization_codes.dpop_jkt``); a public client's refresh tokens are bound to the
key of its first proof (``refresh_tokens.dpop_jkt``). RFC 9126 (PAR): pushed requests wait in
``pushed_requests`` for one redemption; ``clients.require_par``. RFC 7523 (``private_key_jwt``):
a client's keys (``clients.jwks`` or ``clients.jwks_uri``) and the ``jti`` of each assertion
accepted (``client_assertion_uses``, unique per client).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("require_dpop", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("require_par", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("jwks", sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column("jwks_uri", sa.Text(), nullable=True))
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))
    op.create_table(
        "pushed_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_uri_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=512), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_uri_hash"),
    )
    with op.batch_alter_table("pushed_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pushed_requests_expires_at"), ["expires_at"])
    op.create_table(
        "client_assertion_uses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=512), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "jti"),
    )
    with op.batch_alter_table("client_assertion_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_client_assertion_uses_expires_at"), ["expires_at"])


def downgrade() -> None:
    op.drop_table("client_assertion_uses")
    op.drop_table("pushed_requests")
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("dpop_jkt")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("dpop_jkt")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("jwks_uri")
        batch_op.drop_column("jwks")
        batch_op.drop_column("require_par")
        batch_op.drop_column("require_dpop")
