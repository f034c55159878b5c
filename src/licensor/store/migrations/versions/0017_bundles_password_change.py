"""Bundle products; a company's switch for license users' password changes

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 00:40:00

``products.bundle_items``: the short codes of a bundle product's sub-products, in order (null: not a
bundle). A bundle license is a license of the bundle product; each of its sub-licenses is a
license of a sub-product with the same key text, found by ``core.keys.bundle_key_lookup``.
``companies.allow_password_change``: whether license users may change their password through
``POST /api/v4/change_password``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("products", sa.Column("bundle_items", sa.JSON(), nullable=True))
    op.add_column(
        "companies",
        sa.Column("allow_password_change", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    # (a plain DROP COLUMN: a batch rebuild would drop SQLite's change-counter triggers of
    # both tables, 0009; SQLite has it since 3.35)
    op.execute("ALTER TABLE companies DROP COLUMN allow_password_change")
    op.execute("ALTER TABLE products DROP COLUMN bundle_items")
