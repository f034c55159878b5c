"""Floating cloud licenses: the settings, and the slots devices hold

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 19:00:00

* products: ``is_floating_cloud``, ``floating_users``, ``can_borrow``, ``max_borrow_time``
  (``floating_timeout`` was there); licenses: the same five, null = the product's.
* ``floating_slots``: one per device holding (or having held) a slot. Taking or freeing a slot
  changes what check answers say (``floating_in_use_devices``), so it moves the change
  notifications of 0008/0009; refreshing one (``refreshed_at``, ``expires_at``) does not.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
COUNT = "UPDATE change_counter SET value = value + 1 WHERE id = 1"


def upgrade() -> None:
    products: list[sa.Column[Any]] = [
        sa.Column("is_floating_cloud", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("floating_users", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("can_borrow", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("max_borrow_time", sa.Integer(), nullable=False, server_default="0"),
    ]
    for column in products:
        op.add_column("products", column)
    licenses: list[sa.Column[Any]] = [
        sa.Column("is_floating_cloud", sa.Boolean(), nullable=True),
        sa.Column("floating_users", sa.Integer(), nullable=True),
        sa.Column("floating_timeout", sa.Integer(), nullable=True),
        sa.Column("can_borrow", sa.Boolean(), nullable=True),
        sa.Column("max_borrow_time", sa.Integer(), nullable=True),
    ]
    for column in licenses:  # (ALTER TABLE ADD COLUMN: SQLite's triggers on licenses stay)
        op.add_column("licenses", column)
    op.create_table(
        "floating_slots",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "license_id", Id, sa.ForeignKey("licenses.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("device_id", Id, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("taken_at", WHEN, nullable=False),
        sa.Column("refreshed_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("borrowed_until", WHEN, nullable=True),
        sa.UniqueConstraint("device_id", name="uq_floating_slots_device_id"),
    )
    op.create_index("ix_floating_slots_license", "floating_slots", ["license_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE TRIGGER licensor_changes AFTER INSERT OR DELETE OR TRUNCATE ON "
            "floating_slots FOR EACH STATEMENT EXECUTE FUNCTION licensor_notify_change()"
        )
        op.execute(
            "CREATE TRIGGER licensor_changes_update AFTER UPDATE ON floating_slots FOR EACH ROW "
            "WHEN (OLD.taken_at IS DISTINCT FROM NEW.taken_at OR OLD.borrowed_until IS "
            "DISTINCT FROM NEW.borrowed_until) EXECUTE FUNCTION licensor_notify_change()"
        )
    elif dialect == "sqlite":
        for event in ("INSERT", "DELETE"):
            op.execute(
                f"CREATE TRIGGER licensor_changes_floating_slots_{event.lower()} AFTER {event} "
                f"ON floating_slots BEGIN {COUNT}; END"
            )
        op.execute(
            "CREATE TRIGGER licensor_changes_floating_slots_update AFTER UPDATE ON "
            "floating_slots WHEN NEW.taken_at IS NOT OLD.taken_at OR NEW.borrowed_until IS NOT "
            f"OLD.borrowed_until BEGIN {COUNT}; END"
        )


def downgrade() -> None:
    op.drop_table("floating_slots")  # (its triggers with it)
    for table, column in (
        ("licenses", "max_borrow_time"),
        ("licenses", "can_borrow"),
        ("licenses", "floating_timeout"),
        ("licenses", "floating_users"),
        ("licenses", "is_floating_cloud"),
        ("products", "max_borrow_time"),
        ("products", "can_borrow"),
        ("products", "floating_users"),
        ("products", "is_floating_cloud"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
