"""Offline activation: the switch, one-shot request ids, OAuth secrets that can sign files

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 08:00:00

* ``allow_offline_activation`` on products (on by default), policies and licenses (null: the
  product's), as ``prevent_vm``.
* ``offline_requests``: the ``request_id`` of every offline request file taken, unique per
  license, so that a file sent twice changes nothing the second time.
* ``oauth_clients.secret_encrypted`` (and the previous secret's): an offline request file in
  OAuth mode is signed with the client secret (v4 §2.4), which only a keyed hash of was kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "products",
        sa.Column(
            "allow_offline_activation", sa.Boolean(), nullable=False, server_default=sa.true()
        ),
    )
    op.add_column("licenses", sa.Column("allow_offline_activation", sa.Boolean(), nullable=True))
    op.add_column(
        "license_policies", sa.Column("allow_offline_activation", sa.Boolean(), nullable=True)
    )
    op.add_column("oauth_clients", sa.Column("secret_encrypted", sa.LargeBinary(), nullable=True))
    op.add_column(
        "oauth_clients", sa.Column("previous_secret_encrypted", sa.LargeBinary(), nullable=True)
    )
    op.create_table(
        "offline_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "license_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("licenses.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("request", sa.String(20), nullable=False),
        sa.Column("hardware_id", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "license_id", "request_id", name="uq_offline_requests_license_id_request_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("offline_requests")
    for table, column in (
        ("oauth_clients", "previous_secret_encrypted"),
        ("oauth_clients", "secret_encrypted"),
        ("license_policies", "allow_offline_activation"),
        ("licenses", "allow_offline_activation"),
        ("products", "allow_offline_activation"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
