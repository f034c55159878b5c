"""The PostgreSQL change watcher (``store/changes.py``) against a real server: every
notification moves the version, a burst is taken without losing any, and a lost listening
connection makes the version unknown until it is back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from licensor.store import changes
from tests.harness.postgres import PostgresServer
from tests.server.support import eventually


@dataclass
class Watched:
    watcher: changes.PostgresChanges
    connection: psycopg.Connection[Any]  # another connection to the watched database
    first: int  # the version once the watcher listened


def _listening(watcher: changes.PostgresChanges) -> int:
    """The version, once the watcher listens."""
    eventually(lambda: watcher.version() is not None)
    version = watcher.version()
    assert version is not None
    return version


@pytest.fixture
def watched(postgres: PostgresServer) -> Iterator[Watched]:
    name = "changes_" + uuid.uuid4().hex[:8]
    url = postgres.create_database(name)
    watcher = changes.watch(url)
    assert isinstance(watcher, changes.PostgresChanges)
    try:
        with postgres.connect(name, autocommit=True) as connection:
            yield Watched(watcher, connection, _listening(watcher))
    finally:
        watcher.close()
        postgres.drop_database(name)


def test_every_notification_moves_the_version_even_in_a_burst(watched: Watched) -> None:
    watcher, connection = watched.watcher, watched.connection
    connection.execute(f"NOTIFY {changes.CHANNEL}")
    eventually(lambda: (watcher.version() or 0) > watched.first)
    before = _listening(watcher)
    for index in range(200):  # a burst of commits, each notifying (payloads keep them apart)
        connection.execute(f"NOTIFY {changes.CHANNEL}, 'c{index}'")
    eventually(lambda: watcher.version() == before + 200)


def test_a_lost_listener_makes_the_version_unknown_until_it_is_back(watched: Watched) -> None:
    watched.connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (changes.APPLICATION_NAME,),
    )
    eventually(lambda: watched.watcher.version() != watched.first)
    # back, and moved on (changes may have been missed meanwhile)
    assert _listening(watched.watcher) > watched.first
