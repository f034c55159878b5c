"""Product features (JSON on products and licenses), license policies, and one company-wide
blacklist entry per hardware id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 19:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("features", sa.JSON(), server_default="[]", nullable=False))

    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("features", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("policy_id", Id, nullable=True))

    op.create_table(
        "license_policies",
        sa.Column("id", Id, nullable=False),
        sa.Column("company_id", Id, nullable=False),
        sa.Column("product_id", Id, nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("license_type", sa.String(length=20), nullable=False),
        sa.Column("max_activations", sa.Integer(), nullable=False),
        sa.Column("allow_unlimited_activations", sa.Boolean(), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=True),
        sa.Column("validity_period", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_trial", sa.Boolean(), nullable=False),
        sa.Column("trial_days", sa.Integer(), nullable=True),
        sa.Column("max_transfers", sa.Integer(), nullable=False),
        sa.Column("prevent_vm", sa.Boolean(), nullable=True),
        sa.Column("grace_period", sa.Integer(), nullable=False),
        sa.Column("maintenance_days", sa.Integer(), nullable=True),
        sa.Column("custom_fields", sa.JSON(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_license_policies_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_license_policies_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_policies")),
        sa.UniqueConstraint("product_id", "code", name=op.f("uq_license_policies_product_id_code")),
    )
    # at most one default policy per product
    op.create_index(
        "uq_license_policies_default",
        "license_policies",
        ["product_id"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )

    # The unique constraint (company, hardware id, product) lets NULL products repeat, so two
    # racing company-wide adds could both land: keep the oldest of any such pair, then index.
    op.execute(
        "DELETE FROM blacklist WHERE product_id IS NULL AND id NOT IN ("
        " SELECT keep FROM (SELECT MIN(id) AS keep FROM blacklist WHERE product_id IS NULL"
        " GROUP BY company_id, hardware_id) AS oldest)"
    )
    op.create_index(
        "uq_blacklist_company_wide",
        "blacklist",
        ["company_id", "hardware_id"],
        unique=True,
        sqlite_where=sa.text("product_id IS NULL"),
        postgresql_where=sa.text("product_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_blacklist_company_wide", table_name="blacklist")
    op.drop_index("uq_license_policies_default", table_name="license_policies")
    op.drop_table("license_policies")
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.drop_column("policy_id")
        batch_op.drop_column("features")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("features")
