"""License policies hold consumption and floating terms too

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 21:50:00

``max_consumptions``, ``allow_unlimited_consumptions``, ``allow_overages``, ``max_overages``,
``allow_negative_consumptions``, ``consumption_period``; ``is_floating_cloud``,
``floating_users``, ``floating_timeout``, ``can_borrow``, ``max_borrow_time`` (null: the
product's, as on a license).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COLUMNS = (
    "max_consumptions",
    "allow_unlimited_consumptions",
    "allow_overages",
    "max_overages",
    "allow_negative_consumptions",
    "consumption_period",
    "is_floating_cloud",
    "floating_users",
    "floating_timeout",
    "can_borrow",
    "max_borrow_time",
)


def upgrade() -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("max_consumptions", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(
            "allow_unlimited_consumptions", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
        sa.Column("allow_overages", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("max_overages", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(
            "allow_negative_consumptions", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
        sa.Column("consumption_period", sa.String(10), nullable=True),
        sa.Column("is_floating_cloud", sa.Boolean(), nullable=True),
        sa.Column("floating_users", sa.Integer(), nullable=True),
        sa.Column("floating_timeout", sa.Integer(), nullable=True),
        sa.Column("can_borrow", sa.Boolean(), nullable=True),
        sa.Column("max_borrow_time", sa.Integer(), nullable=True),
    ]
    for column in columns:
        op.add_column("license_policies", column)


def downgrade() -> None:
    with op.batch_alter_table("license_policies") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
