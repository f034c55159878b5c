"""Engines and transactions.

SQLite: WAL mode; write transactions start with ``BEGIN IMMEDIATE`` so two writers never
deadlock upgrading a read lock (``SELECT ... FOR UPDATE`` is a no-op there). PostgreSQL: row locks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session

from licensor.store import changes
from licensor.store.changes import ChangeWatcher

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_engine(url: str, begin: str | None, busy_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

    return engine


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: int = 3) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(url, "BEGIN")
        else:
            self.write_engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_timeout=10,
                connect_args={"connect_timeout": connect_timeout},
            )
            self.read_engine = self.write_engine
            event.listen(self.write_engine, "commit", lambda _connection: changes.committed())
        # Autocommit connections for single statements (``store.snapshot``): no BEGIN, no
        # pre-ping round trip. A connection that fails is invalidated and the caller falls back
        # to a normal transaction, which reconnects. SQLite: never wait for the write lock (WAL
        # reads do not need it; the one write, "last seen", is best effort).
        if self.is_sqlite:
            snapshot_base = _sqlite_engine(url, None, busy_ms=0)
        else:
            snapshot_base = create_engine(
                url,
                pool_size=2,
                max_overflow=8,
                pool_timeout=10,
                connect_args={"connect_timeout": connect_timeout},
            )
        self._snapshot_base = snapshot_base
        self.snapshot_engine = snapshot_base.execution_options(isolation_level="AUTOCOMMIT")
        self._snapshot_idle: list[Connection] = []
        self._changes: ChangeWatcher | None = None
        self._changes_lock = threading.Lock()

    @property
    def changes(self) -> ChangeWatcher:
        """The change watcher of this database (store/changes.py), started on first use."""
        if self._changes is None:
            with self._changes_lock:
                if self._changes is None:
                    self._changes = changes.watch(self.url, connect_timeout=self.connect_timeout)
        return self._changes

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """An autocommit connection for one read statement. Connections are kept open between
        uses (a pool checkout and its reset cost more than the statement); one that raised is
        closed, not reused."""
        try:
            connection = self._snapshot_idle.pop()
        except IndexError:
            connection = self.snapshot_engine.connect()
        try:
            yield connection
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        self._snapshot_idle.append(connection)

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception."""
        engine = self.write_engine if write else self.read_engine
        session = Session(bind=engine, expire_on_commit=False, autoflush=False)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        if self._changes is not None:
            self._changes.close()
            self._changes = None
        while self._snapshot_idle:
            self._snapshot_idle.pop().close()
        self._snapshot_base.dispose()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
