"""What a server process does once at start-up."""

from __future__ import annotations

import gc

from tests.server.support import Server


def test_startup_objects_are_out_of_the_collectors_sight(sqlite_server: Server) -> None:
    """api/app.py freezes what start-up made (a full collection visiting it all took ~200 ms
    and was the first minute's check p99); nothing else in the process freezes objects."""
    assert gc.get_freeze_count() > 0
