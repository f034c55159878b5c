"""SQLite: count the changes a check answer is made of, not "last seen" records

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:00:00

SQLite's ``PRAGMA data_version`` (store/changes.py) moves for any commit of another
connection, so recording a device's "last seen" time -- every 5 minutes per device, in batches
of a second (api/v4/check.py) -- made every worker read all its kept check answers again:
measured on a 1,000-device steady check load, p99 143 ms in the minute devices were first
seen against 15-28 ms after. Here row triggers on the tables a check reads add one to a
single-row ``change_counter`` (what PostgreSQL's migration 0008 triggers notify), except an
update of a device that changes nothing but ``last_check_at``; store/changes.py reads the
counter when ``data_version`` has moved. PostgreSQL needs nothing here (0008).

The devices update trigger names the columns it compares (SQLite has no row-to-JSON
comparison): a later migration that adds a column to devices must recreate it
(tests/server/test_check_cache.py checks that every column but last_check_at is compared).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# the tables of store/snapshot.py's check statement (as 0008)
TABLES = (
    "companies",
    "api_keys",
    "products",
    "product_releases",
    "customers",
    "licenses",
    "devices",
    "blacklist",
)
COUNT = "UPDATE change_counter SET value = value + 1 WHERE id = 1"
NOT_COMPARED = "last_check_at"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TABLE change_counter (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "value INTEGER NOT NULL)"
    )
    op.execute("INSERT INTO change_counter (id, value) VALUES (1, 0)")
    for table in TABLES:
        events = ("INSERT", "DELETE") if table == "devices" else ("INSERT", "UPDATE", "DELETE")
        for event in events:
            op.execute(
                f"CREATE TRIGGER licensor_changes_{table}_{event.lower()} AFTER {event} "
                f"ON {table} BEGIN {COUNT}; END"
            )
    columns = [c["name"] for c in sa.inspect(bind).get_columns("devices")]
    changed = " OR ".join(f'NEW."{c}" IS NOT OLD."{c}"' for c in columns if c != NOT_COMPARED)
    op.execute(
        "CREATE TRIGGER licensor_changes_devices_update AFTER UPDATE ON devices "
        f"WHEN {changed} BEGIN {COUNT}; END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS licensor_changes_{table}_{event}")
    op.execute("DROP TABLE IF EXISTS change_counter")
