"""Engines and transactions.

SQLite: WAL mode; write transactions start with ``BEGIN IMMEDIATE`` so two writers never
deadlock upgrading a read lock (``SELECT ... FOR UPDATE`` is a no-op there). PostgreSQL: row locks.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000


class WriterLock:
    """Queues SQLite writers so the lock passes straight to the next one.

    SQLite lets one writer in at a time and makes the others poll with growing sleeps (1, 2, 5,
    ... 100 ms): under a burst of activations most of the time went to sleeping, not working.
    Here the threads of a process wait on a lock and the processes on an exclusive ``flock`` of
    a file beside the database; both wake the next writer as soon as the lock is released, and a
    process that dies releases its ``flock`` with it. Writers from outside (another tool on the
    same file) still meet SQLite's own busy timeout.
    """

    def __init__(self, path: str | None) -> None:
        self._thread_lock = threading.RLock()
        self._local = threading.local()
        self._fd: int | None = None
        if path is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def _enter(self, *, blocking: bool) -> bool:
        if not self._thread_lock.acquire(blocking=blocking):
            return False
        depth = getattr(self._local, "depth", 0)
        if depth == 0 and self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                self._thread_lock.release()
                return False
        self._local.depth = depth + 1
        return True

    def _exit(self) -> None:
        self._local.depth -= 1
        if self._local.depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        self._enter(blocking=True)
        try:
            yield
        finally:
            self._exit()

    @contextmanager
    def try_held(self) -> Iterator[bool]:
        """Yields whether the lock was free (then it is held for the block)."""
        acquired = self._enter(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                self._exit()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _sqlite_path(url: str) -> str | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database + "-writer.lock"


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
        self.writer_lock: WriterLock | None = None
        if self.is_sqlite:
            self.writer_lock = WriterLock(_sqlite_path(url))
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
        self._snapshot_engine: Engine | None = None
        self._snapshot_idle: list[Connection] = []

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

    @property
    def snapshot_engine(self) -> Engine:
        """Autocommit connections for single read statements (``store.snapshot``): no BEGIN,
        no pre-ping round trip. A connection that fails is invalidated by SQLAlchemy and the
        caller falls back to a normal transaction, which reconnects."""
        if self._snapshot_engine is None:
            if self.is_sqlite:
                # used on the event loop: never wait for the write lock (WAL reads do not)
                engine = _sqlite_engine(self.url, None, busy_ms=0)
            else:
                engine = create_engine(
                    self.url,
                    pool_size=2,
                    max_overflow=8,
                    pool_timeout=10,
                    connect_args={"connect_timeout": self.connect_timeout},
                )
            self._snapshot_base = engine
            self._snapshot_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._snapshot_engine

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception."""
        if write and self.writer_lock is not None:
            with self.writer_lock.held(), self._session(self.write_engine) as session:
                yield session
        else:
            with self._session(self.write_engine if write else self.read_engine) as session:
                yield session

    @contextmanager
    def _session(self, engine: Engine) -> Iterator[Session]:
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
        while self._snapshot_idle:
            self._snapshot_idle.pop().close()
        if self._snapshot_engine is not None:
            self._snapshot_base.dispose()
        self.write_engine.dispose()
        if self.writer_lock is not None:
            self.writer_lock.close()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
