"""The one write a check answered from an autocommit connection makes: the "last seen" time of
the devices it answered, batched (``api/v4/check.py``). The check's read is
``store/activation.py``'s ``seat_rows``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, update
from sqlalchemy.exc import OperationalError

from licensor.store.models import Device


def touch_devices(connection: Connection, device_ids: Sequence[int], now: datetime) -> bool:
    """Record "last seen" of several devices (autocommit, one statement per 500). Best effort:
    when another writer holds the database it gives up at once (the snapshot engine does not
    wait on SQLite's lock) and later checks try again; no answer depends on it."""
    ids = sorted(set(device_ids))
    try:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            connection.execute(update(Device).where(Device.id.in_(chunk)).values(last_check_at=now))
    except OperationalError:
        return False
    return True
