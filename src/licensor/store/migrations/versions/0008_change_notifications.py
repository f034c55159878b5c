"""PostgreSQL: notify listeners when the rows a check answer is made of change

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:20:00

Each server process keeps signed check answers in memory (api/v4/check.py) and serves
one again only while the data it was made of is unchanged. On PostgreSQL, a statement-level
trigger on each table a check reads sends ``NOTIFY licensor_changes`` (delivered at commit,
one per transaction however many rows changed; on devices, not for an update that only
records "last seen"); store/changes.py listens. SQLite needs
nothing here: ``PRAGMA data_version`` tells a connection that another one committed.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# the tables of store/snapshot.py's check statement
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


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION licensor_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('licensor_changes', '');
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        events = (
            "INSERT OR DELETE OR TRUNCATE"
            if table == "devices"
            else ("INSERT OR UPDATE OR DELETE OR TRUNCATE")
        )
        op.execute(
            f"CREATE TRIGGER licensor_changes AFTER {events} "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION licensor_notify_change()"
        )
    # A device's "last seen" time is in no answer: recording it (every 5 minutes per device,
    # in batches) must not make every worker read its kept answers again.
    op.execute(
        "CREATE TRIGGER licensor_changes_update AFTER UPDATE ON devices FOR EACH ROW "
        "WHEN ((to_jsonb(OLD) - 'last_check_at') IS DISTINCT FROM "
        "(to_jsonb(NEW) - 'last_check_at')) EXECUTE FUNCTION licensor_notify_change()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS licensor_changes_update ON devices")
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS licensor_changes ON {table}")
    op.execute("DROP FUNCTION IF EXISTS licensor_notify_change()")
