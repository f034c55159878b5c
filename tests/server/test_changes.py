"""The PostgreSQL change watcher (``store/changes.py``) against a real server: every
notification moves the version, a burst is taken without losing any, and a lost listening
connection makes the version unknown until it is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from licensor.store import changes
from tests.harness.postgres import PostgresServer


@pytest.fixture
def watched(postgres: PostgresServer) -> Iterator[tuple[changes.PostgresChanges, str]]:
    name = "changes_" + uuid.uuid4().hex[:8]
    url = postgres.create_database(name)
    watcher = changes.watch(url)
    assert isinstance(watcher, changes.PostgresChanges)
    try:
        yield watcher, name
    finally:
        watcher.close()
        postgres.drop_database(name)


def _eventually(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_every_notification_moves_the_version_even_in_a_burst(
    postgres: PostgresServer, watched: tuple[changes.PostgresChanges, str]
) -> None:
    watcher, name = watched
    _eventually(lambda: watcher.version() is not None)
    start = watcher.version()
    assert start is not None
    with postgres.connect(name, autocommit=True) as connection:
        connection.execute(f"NOTIFY {changes.CHANNEL}")
        _eventually(lambda: (watcher.version() or 0) > start)
        before = watcher.version()
        assert before is not None
        for index in range(200):  # a burst of commits, each notifying (payloads keep them apart)
            connection.execute(f"NOTIFY {changes.CHANNEL}, 'c{index}'")
    _eventually(lambda: watcher.version() == before + 200)


def test_a_lost_listener_makes_the_version_unknown_until_it_is_back(
    postgres: PostgresServer, watched: tuple[changes.PostgresChanges, str]
) -> None:
    watcher, name = watched
    _eventually(lambda: watcher.version() is not None)
    first = watcher.version()
    assert first is not None
    with postgres.connect(name, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (changes.APPLICATION_NAME,),
        )
    _eventually(lambda: watcher.version() is None or watcher.version() != first)
    _eventually(lambda: watcher.version() is not None)
    back = watcher.version()
    assert back is not None and back > first  # (changes may have been missed meanwhile)
