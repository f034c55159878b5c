"""Single sign-on: customer accounts with their OpenID Connect provider

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:58:11.469240
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_accounts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("oidc_issuer", sa.String(length=500), nullable=True),
        sa.Column("oidc_client_id", sa.String(length=200), nullable=True),
        sa.Column("oidc_client_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("oidc_redirect_uris", sa.JSON(), nullable=False),
        sa.Column("oidc_email_claim", sa.String(length=100), nullable=False),
        sa.Column(
            "auto_create_license_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["auto_create_license_id"],
            ["licenses.id"],
            name=op.f("fk_customer_accounts_auto_create_license_id_licenses"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_customer_accounts_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_accounts")),
        sa.UniqueConstraint(
            "company_id", "code", name=op.f("uq_customer_accounts_company_id_code")
        ),
    )


def downgrade() -> None:
    op.drop_table("customer_accounts")
