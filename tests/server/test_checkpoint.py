"""SQLite's write-ahead log is copied back into the database file by a thread of the server's
own (``store/db.py`` Checkpointer), not inside a writer's commit; other processes (the CLI)
keep SQLite's default."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from licensor.api.state import AppState
from licensor.settings import Settings
from licensor.store.db import Database
from tests.server.support import eventually


def _autocheckpoint(db: Database) -> int:
    with db.write_engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def _write(db: Database, commits: int) -> None:
    """``commits`` transactions of 4 KB each: ~1 page of the log apiece."""
    with db.transaction(write=True) as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS t (x BLOB)"))
    for _ in range(commits):
        with db.transaction(write=True) as session:
            session.execute(text("INSERT INTO t VALUES (randomblob(4000))"))


def test_the_log_goes_back_into_the_file_from_the_thread_not_the_commits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "licensor.db"
    db = Database(f"sqlite:///{path}", background_checkpoint=True)
    try:
        assert db.checkpointer is not None
        assert _autocheckpoint(db) == 0  # the writers never checkpoint
        db.checkpointer.close()  # stopped: nothing copies the log now
        _write(db, 1500)
        assert path.stat().st_size < 1_000_000  # 6 MB written, all of it still in the log
        assert (tmp_path / "licensor.db-wal").stat().st_size > 6_000_000
    finally:
        db.dispose()

    db = Database(f"sqlite:///{path}", background_checkpoint=True)
    try:
        checkpointer = db.checkpointer
        assert checkpointer is not None
        _write(db, 1500)
        # the thread copies it back while the writers go on, and the file holds it all
        eventually(lambda: path.stat().st_size > 12_000_000)
        assert checkpointer.checkpoints >= 1
        idle = checkpointer.checkpoints
        time.sleep(0.5)  # no commit since: the thread does not checkpoint again
        assert checkpointer.checkpoints in (idle, idle + 1)
        with db.transaction() as session:
            assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 3000
    finally:
        db.dispose()
    assert not any(t.name == "licensor-sqlite-checkpoint" for t in threading.enumerate())


def test_without_it_sqlite_checkpoints_in_the_commits(tmp_path: Path) -> None:
    path = tmp_path / "licensor.db"
    db = Database(f"sqlite:///{path}")  # the CLI's and the tools' database: SQLite's default
    try:
        assert db.checkpointer is None
        assert _autocheckpoint(db) == 1000
        _write(db, 1500)
        assert path.stat().st_size > 4_000_000  # copied back by the commits themselves
    finally:
        db.dispose()


def test_the_server_setting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'licensor.db'}"
    for enabled in (True, False):
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            sqlite_background_checkpoint=enabled,
        )
        state = AppState.open(settings)
        try:
            assert (state.db.checkpointer is not None) is enabled
            assert _autocheckpoint(state.db) == (0 if enabled else 1000)
        finally:
            state.close()
