"""The migrations make exactly the schema the models describe, on SQLite and PostgreSQL: a
column, index or constraint added to one and not the other fails here, not on an operator's
upgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from licensor.store import migrate
from licensor.store.models import Base

# made by the migrations only, on purpose: SQLite's change counter (0009), kept by triggers
MIGRATION_ONLY = {"change_counter"}


def _compared(obj: object, name: str | None, kind: str, reflected: bool, _other: object) -> bool:
    return not (kind == "table" and reflected and name in MIGRATION_ONLY)


def test_the_migrations_make_the_models_schema(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": False,
                    "compare_server_default": False,
                    "include_object": _compared,
                },
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
