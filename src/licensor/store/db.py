"""Engines and transactions.

SQLite: WAL mode; write transactions start with ``BEGIN IMMEDIATE`` so two writers never
deadlock upgrading a read lock (``SELECT ... FOR UPDATE`` is a no-op there). PostgreSQL: row locks.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session

from licensor.store import changes
from licensor.store.changes import ChangeWatcher

log = logging.getLogger("licensor.store")

SQLITE_BUSY_TIMEOUT_MS = 30_000
_SQLITE_BUSY = 5  # sqlite3.SQLITE_BUSY
_BUSY_RETRY_SECONDS = 0.0005
_PG_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE


def _sqlite_engine(
    url: str,
    begin: str | None,
    busy_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    *,
    autocheckpoint: bool = True,
) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer does it
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

    return engine


class WriterBusy(Exception):
    """SQLite's write lock is held by another writer and the caller asked not to wait."""


class WriterQueue:
    """Queues this path's SQLite writers so the write lock passes straight to the next one.

    SQLite lets one writer in at a time and the others poll with growing sleeps (Python's
    sqlite3: 1, 2, 5, ... 100 ms), so under a burst most waiting is sleeping past a free lock:
    that made activations' p99 about 1.5 s. Threads of a process wait on a lock, processes on an
    exclusive ``flock`` of a file beside the database; both wake the next writer as soon as the
    lock is released, and a process that dies releases its ``flock`` with it. (An earlier
    version around the ORM transactions measured no gain: those were ~5 ms long, so the sleeps
    were a small share; around the sub-millisecond transactions of ``fast_write`` they
    dominate.) Other writers (ORM transactions, other tools) still meet SQLite's busy timeout.
    The lock may be released by another thread than the one that took it.
    """

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    def _file(self) -> int | None:
        if self._path is not None and self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def try_acquire(self) -> bool:
        """Take the lock if it is free at once; whether it was taken."""
        if not self._thread_lock.acquire(blocking=False):
            return False
        try:
            fd = self._file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._thread_lock.release()
            return False
        except BaseException:
            self._thread_lock.release()
            raise
        return True

    def acquire(self) -> None:
        self._thread_lock.acquire()
        try:
            fd = self._file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _begin_immediate(dbapi: Any, driver: Any, *, wait: bool) -> None:
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            dbapi.execute("BEGIN IMMEDIATE")
            return
        except driver.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != _SQLITE_BUSY:
                raise
            if not wait:
                raise WriterBusy from None
            if time.monotonic() > deadline:
                raise
        time.sleep(_BUSY_RETRY_SECONDS)


def _sqlite_file(url: str) -> str | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class Checkpointer:
    """Copies SQLite's write-ahead log back into the database file from a thread of its own.

    SQLite's default (``wal_autocheckpoint``) does it inside the commit that takes the log past
    1,000 pages, while that writer still holds the write lock: every other writer, in every
    process, waits for it. How long depends on how many distinct pages the log holds, so it grows
    with the data: with 1,000,000 licenses each write touches other pages, with 1,000 the same
    few again and again. Measured (bench/run.py --endpoints deactivate_license --repeat 5,
    SQLite, 2 workers): deactivations at 1M were 1.19x slower than at 1k (1.09-1.31); with no
    checkpoint at all, 1.06x. The connections of a ``Database`` made with
    ``background_checkpoint`` leave it to this thread, which wakes every ``interval`` seconds
    and, when some connection of any process has committed since (``PRAGMA data_version``), runs
    a PASSIVE checkpoint: it never takes the write lock, so writers go on meanwhile (SQLite
    releases the GIL while it copies pages).
    """

    RETRY_LIMIT_SECONDS = 5.0  # after failures, tries further and further apart, up to this

    def __init__(self, path: str, interval: float = 0.1) -> None:
        # (mode=rw: a database file that went away is not created again, empty)
        self._uri = Path(path).resolve().as_uri() + "?mode=rw"
        self._interval = interval
        self._stop = threading.Event()
        self.checkpoints = 0  # PASSIVE checkpoints run (tests)
        self._thread = threading.Thread(
            target=self._run, name="licensor-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        version = None
        delay = self._interval
        while not self._stop.wait(delay):
            try:
                if connection is None:
                    connection = sqlite3.connect(self._uri, uri=True, isolation_level=None)
                now = connection.execute("PRAGMA data_version").fetchone()[0]
                if now != version:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    version = now
                    self.checkpoints += 1
                delay = self._interval
            except sqlite3.Error as exc:  # e.g. the file went away: a new connection, later
                log.warning("sqlite.checkpoint_failed", extra={"error": type(exc).__name__})
                if connection is not None:
                    connection.close()
                    connection = None
                delay = min(delay * 2, self.RETRY_LIMIT_SECONDS)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout: int = 3,
        background_checkpoint: bool = False,
    ) -> None:
        """``background_checkpoint`` (SQLite files; servers): ``Checkpointer``, not SQLite's
        checkpoints inside a writer's commit."""
        self.url = url
        self.connect_timeout = connect_timeout
        self.is_sqlite = url.startswith("sqlite")
        sqlite_path = _sqlite_file(url) if self.is_sqlite else None
        auto = not (background_checkpoint and sqlite_path is not None)
        if self.is_sqlite:
            self.write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE", autocheckpoint=auto)
            self.read_engine = _sqlite_engine(url, "BEGIN", autocheckpoint=auto)
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
            snapshot_base = _sqlite_engine(url, None, busy_ms=0, autocheckpoint=auto)
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
        # Short write transactions of prepared statements (``fast_write``). SQLite: a
        # connection that emits its own BEGIN IMMEDIATE, behind the writer queue.
        if self.is_sqlite:
            # (no busy handler: fast_write waits for other writers itself)
            self._fast_write_engine = _sqlite_engine(url, None, busy_ms=0, autocheckpoint=auto)
            self.writer_queue = WriterQueue(sqlite_path + "-writer.lock" if sqlite_path else None)
        else:
            self._fast_write_engine = create_engine(
                url,
                pool_size=2,
                max_overflow=8,
                pool_timeout=10,
                connect_args={"connect_timeout": connect_timeout},
            )
            self.writer_queue = WriterQueue(None)
        self._fast_write_idle: list[Connection] = []
        self._changes: ChangeWatcher | None = None
        self._changes_lock = threading.Lock()
        self.checkpointer = None if auto or sqlite_path is None else Checkpointer(sqlite_path)

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
        uses (a pool checkout and its reset cost more than the statement -- on PostgreSQL a
        new connection also prepares every statement again: measured ~30 ms per floating
        check that had to write, when each refusal or ``DeviceTouchNeeded`` raised in the
        block closed its connection); one whose driver failed is closed, not reused."""
        try:
            connection = self._snapshot_idle.pop()
        except IndexError:
            connection = self.snapshot_engine.connect()
        try:
            yield connection
        except BaseException as exc:
            if isinstance(exc, Exception) and self._clean(connection):
                self._snapshot_idle.append(connection)  # (a refusal, not the connection's)
            else:
                connection.invalidate()
                connection.close()
            raise
        self._snapshot_idle.append(connection)

    def _clean(self, connection: Connection) -> bool:
        """Whether an autocommit connection is usable after an error raised while it was out:
        open, and in no transaction (a driver error on it: not reused)."""
        if connection.invalidated:
            return False
        dbapi = connection.connection.dbapi_connection
        if dbapi is None:
            return False
        if self.is_sqlite:
            return not dbapi.in_transaction
        return not dbapi.closed and bool(dbapi.info.transaction_status == _PG_IDLE)

    @property
    def dialect(self) -> Dialect:
        return self.write_engine.dialect

    @contextmanager
    def fast_write(self, *, wait: bool = True, queue_held: bool = False) -> Iterator[Any]:
        """A DBAPI connection inside a write transaction, for prepared statements
        (``store.activation``): committed when the block ends, rolled back on any exception.
        SQLite: ``BEGIN IMMEDIATE`` behind the writer queue (taken here unless the caller
        holds it: ``queue_held``), so the lock is held for the whole block: keep it short.
        When another kind of writer holds the database: ``WriterBusy`` at once with
        ``wait=False``, else retried every half millisecond (SQLite's own busy handler sleeps
        up to 100 ms between tries). PostgreSQL: an ordinary transaction (row locks). A
        connection whose driver failed is closed, not reused."""
        idle = self._fast_write_idle
        try:
            connection = idle.pop()
        except IndexError:
            connection = self._fast_write_engine.connect()
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        queued = self.is_sqlite and not queue_held
        quiet = changes._quiet.set(False)
        try:
            with self.writer_queue.held() if queued else nullcontext():
                if self.is_sqlite:
                    _begin_immediate(dbapi, self._fast_write_engine.dialect.loaded_dbapi, wait=wait)
                yield dbapi
                dbapi.commit()
            if not self.is_sqlite and not changes._quiet.get():
                # (as the write engine's commits: this process's answer cache sees it at once;
                # SQLite's data_version moves by itself for a commit on another connection)
                changes.committed()
        except BaseException:
            if not self._rolled_back(dbapi):
                connection.invalidate()
                connection.close()
            else:
                idle.append(connection)
            raise
        finally:
            changes._quiet.reset(quiet)
        idle.append(connection)

    def _rolled_back(self, dbapi: Any) -> bool:
        """Roll back after a failure; whether the connection is clean for reuse."""
        try:
            dbapi.rollback()
        except Exception:
            return False
        if self.is_sqlite:
            return not dbapi.in_transaction
        return bool(dbapi.info.transaction_status == _PG_IDLE)

    @contextmanager
    def transaction(self, *, write: bool = False, queued: bool = False) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception. ``queued`` (a
        write of the License API's use cases, under load): on SQLite behind the writer queue,
        as ``fast_write``, so writers take turns instead of racing for the lock (the queue is
        not re-entrant: never inside ``fast_write``)."""
        engine = self.write_engine if write else self.read_engine
        with self.writer_queue.held() if queued and write and self.is_sqlite else nullcontext():
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
        if self.checkpointer is not None:
            self.checkpointer.close()
            self.checkpointer = None
        if self._changes is not None:
            self._changes.close()
            self._changes = None
        while self._snapshot_idle:
            self._snapshot_idle.pop().close()
        while self._fast_write_idle:
            self._fast_write_idle.pop().close()
        self._snapshot_base.dispose()
        self._fast_write_engine.dispose()
        self.writer_queue.close()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
