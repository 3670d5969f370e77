"""resources: what each code, grant and consent is for, and what each client may ask for

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 03:00:00.000000

Tokens may now be bound to the protected resources a client names (RFC 8707): an authorization
code and a grant keep the resources they were made for, a remembered consent the resources the
user allowed, and a client the resources it may ask for at all. Each is a JSON list; NULL on a
code, grant or consent means no resource was named (the default audience, as every row before
this revision), and on a client any resource the gateway serves.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TABLES = ("authorization_codes", "grants", "consents", "clients")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("resources")
