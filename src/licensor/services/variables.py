"""Device variables (``track_device_variables``, ``get_device_variables``): values an
application records on a device that holds a seat, returned with its activations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.services import check, payload
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import LicenseRef
from licensor.services.seats import transaction_of
from licensor.store import activation as statements


def track(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    values: dict[str, str],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """Set the variables of ``ref``'s device (it must hold a seat); all of them, by name."""
    if caller.read_only:
        raise LicensorError("read_only_api_key")
    checked = check.device_in_session(session, keys, caller, ref, now=now)
    tx = transaction_of(session)
    statements.set_variables(tx.connection, tx.dialect, checked.device.id, values, now)
    return payload.variable_objects(
        statements.variables(tx.connection, tx.dialect, checked.device.id)
    )


def get(
    session: Session, keys: ServerKeys, caller: Caller, ref: LicenseRef, *, now: datetime
) -> list[dict[str, Any]]:
    """The variables of ``ref``'s device (it must hold a seat), by name."""
    checked = check.device_in_session(session, keys, caller, ref, now=now)
    tx = transaction_of(session)
    return payload.variable_objects(
        statements.variables(tx.connection, tx.dialect, checked.device.id)
    )
