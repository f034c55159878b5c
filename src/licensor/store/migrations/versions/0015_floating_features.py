"""Floating features: a slot names the feature it holds ('' for the license's own)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 21:30:00

A device holds at most one slot of its license and one of each floating feature; the unique
constraint moves from ``device_id`` to ``(device_id, feature)``. On SQLite the table is
rebuilt (a constraint cannot be altered there), which drops its triggers: they are made again
as 0014 made them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COUNT = "UPDATE change_counter SET value = value + 1 WHERE id = 1"


def _sqlite_triggers() -> None:
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


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("floating_slots") as batch:
        batch.add_column(sa.Column("feature", sa.String(100), nullable=False, server_default=""))
        batch.drop_constraint("uq_floating_slots_device_id", type_="unique")
        batch.create_unique_constraint(
            "uq_floating_slots_device_id_feature", ["device_id", "feature"]
        )
    if sqlite:
        _sqlite_triggers()


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute("DELETE FROM floating_slots WHERE feature <> ''")
    with op.batch_alter_table("floating_slots") as batch:
        batch.drop_constraint("uq_floating_slots_device_id_feature", type_="unique")
        batch.create_unique_constraint("uq_floating_slots_device_id", ["device_id"])
        batch.drop_column("feature")
    if sqlite:
        _sqlite_triggers()
