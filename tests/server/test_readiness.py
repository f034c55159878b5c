"""What an operator asks before sending traffic, on SQLite and PostgreSQL: ``/ready`` answers
only when the database answers and its schema is this version's (``/health`` stays the
liveness check); ``licensor migrate --check`` tells whether a migration is pending without
changing anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from licensor.cli.main import app
from licensor.store import migrate
from tests.server.support import Server

runner = CliRunner()


def test_ready_when_the_schema_is_current(server: Server) -> None:
    answer = server.client.get("/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json()["schema"] == migrate.head_revision()
    server.sql("UPDATE alembic_version SET version_num = '0016'")
    behind = server.client.get("/ready")
    assert behind.status_code == 503 and behind.json()["code"] == "service_unavailable"
    assert "0016" in behind.json()["message"]
    assert server.client.get("/health").status_code == 200  # (alive all the same)


def test_migrate_check_changes_nothing(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LICENSOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LICENSOR_DATABASE_URL", database_url)
    migrate.upgrade(database_url, "0016")
    pending = runner.invoke(app, ["migrate", "--check", "--json"])
    assert pending.exit_code == 1, pending.output
    assert json.loads(pending.stdout) == {
        "current": "0016",
        "head": migrate.head_revision(),
        "pending": True,
    }
    assert migrate.pending(database_url)[0] == "0016"  # (nothing applied)
    assert runner.invoke(app, ["migrate", "--json"]).exit_code == 0
    done = runner.invoke(app, ["migrate", "--check"])
    assert done.exit_code == 0 and "up to date" in done.stdout
