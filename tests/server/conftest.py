from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.support import Server, shared_keys_dir, start_server


@pytest.fixture
def server(
    database_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from start_server(
        database_url, tmp_path / "data", shared_keys_dir(tmp_path_factory.getbasetemp())
    )


@pytest.fixture
def sqlite_server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """For tests of the HTTP front that do not depend on the database kind."""
    yield from start_server(
        f"sqlite:///{tmp_path / 'licensor.db'}",
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
    )
