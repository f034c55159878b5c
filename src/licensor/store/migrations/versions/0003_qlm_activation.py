"""QLM-style activation: authorization codes, release history, per-system and release limits,
customer privacy consent and accounts, computer type / affiliate / user data on devices

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:22:41.227057
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authorization_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "license_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("hardware_id", sa.String(length=256), nullable=True),
        sa.Column("code_hash", sa.String(length=128), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_authorization_codes_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["license_id"],
            ["licenses.id"],
            name=op.f("fk_authorization_codes_license_id_licenses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_authorization_codes_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorization_codes")),
    )
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.create_index("ix_authorization_codes_email", ["company_id", "email"], unique=False)
        batch_op.create_index(
            "ix_authorization_codes_hardware", ["company_id", "hardware_id"], unique=False
        )

    op.create_table(
        "license_releases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "license_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("hardware_id", sa.String(length=256), nullable=False),
        sa.Column("method", sa.String(length=30), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["license_id"],
            ["licenses.id"],
            name=op.f("fk_license_releases_license_id_licenses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_releases")),
    )
    with op.batch_alter_table("license_releases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_license_releases_license", ["license_id", "released_at"], unique=False
        )

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("privacy_consent", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column("privacy_consent_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "allow_organization_users", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("computer_type", sa.String(length=10), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("affiliate_id", sa.String(length=200), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("user_data", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("activation_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("computer_key", sa.Text(), nullable=True))

    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("receipt_id", sa.String(length=200), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("feature_flags", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("max_activations_per_system", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_release_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_release_period_days", sa.Integer(), nullable=True))

    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "max_activations_per_system", sa.Integer(), server_default="0", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "max_activations_per_system_vm_only",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("max_release_count", sa.Integer(), server_default="-1", nullable=False)
        )
        batch_op.add_column(
            sa.Column("max_release_period_days", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "release_requires_deactivation_code",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("activation_lookup_fields", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("activation_lookup_fields")
        batch_op.drop_column("release_requires_deactivation_code")
        batch_op.drop_column("max_release_period_days")
        batch_op.drop_column("max_release_count")
        batch_op.drop_column("max_activations_per_system_vm_only")
        batch_op.drop_column("max_activations_per_system")

    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.drop_column("max_release_period_days")
        batch_op.drop_column("max_release_count")
        batch_op.drop_column("max_activations_per_system")
        batch_op.drop_column("feature_flags")
        batch_op.drop_column("receipt_id")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("computer_key")
        batch_op.drop_column("activation_count")
        batch_op.drop_column("user_data")
        batch_op.drop_column("affiliate_id")
        batch_op.drop_column("computer_type")

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("password_hash")
        batch_op.drop_column("allow_organization_users")
        batch_op.drop_column("privacy_consent_at")
        batch_op.drop_column("privacy_consent")

    with op.batch_alter_table("license_releases", schema=None) as batch_op:
        batch_op.drop_index("ix_license_releases_license")

    op.drop_table("license_releases")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_authorization_codes_hardware")
        batch_op.drop_index("ix_authorization_codes_email")

    op.drop_table("authorization_codes")
