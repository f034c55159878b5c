"""Has anything a check answer is made of changed? A cheap, process-wide answer.

``version()`` returns a number that changes whenever another connection (this process's
others, other worker processes, the command line) commits a change, or ``None`` when that
cannot be known (the answer cache then trusts nothing it holds). Read it *before* reading the
rows an answer is made of; an answer made then stays right while ``version()`` returns the
same number.

* SQLite: ``PRAGMA data_version`` on a connection of its own (a few microseconds; it changes
  whenever another connection commits), then, when it has changed, migration 0009's
  ``change_counter``, which its triggers move for the changes a check reads and not for a
  device's "last seen" time.
* PostgreSQL: a thread ``LISTEN``s on ``licensor_changes``, which the triggers of migration
  0008 notify at the commit of any change to the tables a check reads. While the listening
  connection is down (database restarting, ...) the version is ``None``; when it is back, it
  moves on (notifications may have been missed meanwhile). A commit made in this process
  moves it at once; another process's commit, when its notification arrives (a
  millisecond or so later on one machine), or up to ``COALESCE_SECONDS`` after that in a burst
  of commits: a check answered in between is answered as if it had come just before the
  commit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextvars import ContextVar
from typing import Protocol

from sqlalchemy.engine import make_url

log = logging.getLogger("licensor.store")

CHANNEL = "licensor_changes"
APPLICATION_NAME = "licensor-changes"  # (the listening connections, in pg_stat_activity)

# Commits made through this process's engines (db.Database counts them on PostgreSQL): a
# change this process made moves the version at once, before its notification comes back.
_local_commits = 0
# Set by a write transaction that changed nothing a check answer is made of (a floating slot's
# refresh: the notification triggers skip it too); ``Database.fast_write`` then does not move
# the version -- a refresh per device per minute would otherwise make every kept answer of the
# process be read again, many times a second.
_quiet: ContextVar[bool] = ContextVar("licensor_quiet_commit", default=False)


def committed() -> None:
    global _local_commits
    _local_commits += 1


def quiet_commit() -> None:
    """The write transaction under way (``Database.fast_write``) changes nothing a check
    answer is made of."""
    _quiet.set(True)


class ChangeWatcher(Protocol):
    def version(self) -> int | None: ...

    def close(self) -> None: ...


class Unknown:
    """A database whose changes cannot be watched (in-memory SQLite): nothing is trusted."""

    def version(self) -> int | None:
        return None

    def close(self) -> None:
        return None


class SqliteChanges:
    """``PRAGMA data_version`` says that another connection committed; migration 0009's
    ``change_counter`` says whether that commit changed what a check reads (recording a
    device's "last seen" time does not). The counter is read only when ``data_version`` has
    moved. The version is the counter's value, or -- a database without the counter (before
    migration 0009) -- the data version itself, negated."""

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._data_version: int | None = None
        self._version: int | None = None

    def version(self) -> int | None:
        with self._lock:
            try:
                data_version = int(self._connection.execute("PRAGMA data_version").fetchone()[0])
                if data_version != self._data_version or self._version is None:
                    self._version = self._counter(data_version)
                    self._data_version = data_version
            except sqlite3.Error:
                self._data_version = self._version = None
                return None
            return self._version

    def _counter(self, data_version: int) -> int:
        try:
            row = self._connection.execute("SELECT value FROM change_counter").fetchone()
        except sqlite3.OperationalError:  # (no such table: not migrated to 0009)
            return -data_version
        return int(row[0]) if row is not None else -data_version

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class PostgresChanges:
    POLL_SECONDS = 1.0  # how often the listener also checks that its connection is alive
    RETRY_SECONDS = 0.5
    # Every commit notifies every worker's listener; woken once per commit, its thread took the
    # GIL from the event loop each time. Taking a burst's notifications together, at most one
    # wake-up per 3 ms, measured (bench/activation_ab.py --warm-check, PostgreSQL, 2 workers,
    # 3 rounds) +4% activations (1,000-1,062 against 971-1,011 per second) and +7% deactivations
    # (1,196-1,203 against 1,074-1,177). The price: a change made in another process moves the
    # version up to 3 ms later than its notification arrives.
    COALESCE_SECONDS = 0.003

    def __init__(self, conninfo: str, connect_timeout: int) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self._version = 0
        self._listening = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="licensor-changes", daemon=True)
        self._thread.start()

    def version(self) -> int | None:
        return self._version + _local_commits if self._listening else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=self._connect_timeout,
                    application_name=APPLICATION_NAME,
                ) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._version += 1  # (changes made while nobody listened)
                    self._listening = True
                    pinged = time.monotonic()
                    while not self._stop.is_set():
                        # the first notification moves the version at once; those that come in
                        # the next COALESCE_SECONDS are taken together
                        for _ in connection.notifies(timeout=self.POLL_SECONDS, stop_after=1):
                            self._version += 1
                            time.sleep(self.COALESCE_SECONDS)
                        for _ in connection.notifies(timeout=0):
                            self._version += 1
                        if time.monotonic() - pinged >= self.POLL_SECONDS:
                            connection.execute("SELECT 1")  # a dead connection raises here
                            pinged = time.monotonic()
            except Exception as exc:
                if self._listening:
                    log.warning("changes.listener_lost", extra={"error": type(exc).__name__})
            finally:
                self._listening = False
                self._version += 1
            self._stop.wait(self.RETRY_SECONDS)


def watch(url: str, *, connect_timeout: int = 3) -> ChangeWatcher:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return Unknown()
        return SqliteChanges(database)
    if parsed.get_backend_name() == "postgresql":
        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresChanges(conninfo, connect_timeout)
    return Unknown()
