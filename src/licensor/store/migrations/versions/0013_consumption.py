"""Consumption: overages, negative reports, periodic reset, and the history of reports

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 18:00:00

* licenses: ``allow_overages``, ``max_overages``, ``allow_negative_consumptions``,
  ``consumption_period`` (daily, weekly, monthly, annually; null: never reset) and
  ``consumption_counted_at`` (when the total last changed: a total counted before the current
  period started is read as 0).
* ``consumption_events``: every report counted (``add_consumption``, deactivations,
  ``add_feature_consumption``: with the feature's code).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("allow_overages", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("max_overages", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(
            "allow_negative_consumptions", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
        sa.Column("consumption_period", sa.String(10), nullable=True),
        sa.Column("consumption_counted_at", sa.DateTime(timezone=True), nullable=True),
    ]
    for column in columns:  # (ALTER TABLE ADD COLUMN: SQLite's triggers on licenses stay)
        op.add_column("licenses", column)
    op.create_table(
        "consumption_events",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "license_id", Id, sa.ForeignKey("licenses.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("device_id", Id, nullable=True),
        sa.Column("hardware_id", sa.String(256), nullable=False),
        sa.Column("feature", sa.String(100), nullable=True),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("consumptions", sa.Integer(), nullable=False),
        sa.Column("total_after", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_consumption_events_license", "consumption_events", ["license_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_consumption_events_license", table_name="consumption_events")
    op.drop_table("consumption_events")
    with op.batch_alter_table("licenses") as batch:
        for name in (
            "consumption_counted_at",
            "consumption_period",
            "allow_negative_consumptions",
            "max_overages",
            "allow_overages",
        ):
            batch.drop_column(name)
