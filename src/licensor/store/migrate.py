"""Run the Alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


@cache
def head_revision() -> str:
    """The newest schema revision this version of Licensor knows."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The schema revision of the database ``connection`` is on (``None``: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def pending(url: str) -> tuple[str | None, str]:
    """The database's revision and the head: a migration is pending when they differ."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return current_revision(connection), head_revision()
    finally:
        engine.dispose()
