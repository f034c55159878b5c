"""PostgreSQL: notify listeners when the rows a check answer is made of change

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:20:00

Each server process keeps signed check answers in memory (api/v4/fast_check.py) and serves
one again only while the data it was made of is unchanged. On PostgreSQL, a statement-level
trigger on each table a check reads sends ``NOTIFY licensor_changes`` (delivered at commit,
one per transaction however many rows changed); store/changes.py listens. SQLite needs
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
        op.execute(
            f"CREATE TRIGGER licensor_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION licensor_notify_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS licensor_changes ON {table}")
    op.execute("DROP FUNCTION IF EXISTS licensor_notify_change()")
