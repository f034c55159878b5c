"""Floating cloud licenses: slots taken by checks, freed by ``/floating/release`` or their
timeout, kept by ``/floating/borrow`` (v4 §3.4, §3.11-3.12, §5.5) -- the one implementation.

A slot is taken or refreshed under the license's lock (``store.activation.lock_license``: the
row lock on PostgreSQL, the exclusive write transaction on SQLite) after counting the slots
other devices hold, so concurrent devices never hold more than ``floating_users``. The rules
are ``core.floating``'s; a check calls ``keep`` when ``core.floating.refresh_due`` (to take the
slot, or to record a refresh at most once per ``refresh_interval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from licensor.core.errors import LicensorError
from licensor.core.floating import (
    Slot,
    borrow_until,
    borrowed,
    decide_take,
    held,
    timeout,
)
from licensor.core.licensing import LicenseTerms, is_expired
from licensor.protocol.signing import compact_json, iso_ms_z
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import LicenseRef
from licensor.services.seats import (
    NO_LIMITS,
    Credentials,
    RateLimits,
    Transaction,
    find,
    holding_seat,
)
from licensor.store import activation as statements

RELEASED = compact_json("")


@dataclass(frozen=True, slots=True)
class FloatingState:
    """What a license answer says of the device's slot and the license's slots in use."""

    slot: Slot | None
    in_use: int

    def fields(self, now: datetime) -> dict[str, Any]:
        """The answer's fields of the slots (``floating_users`` is the license's terms')."""
        until = self.slot.borrowed_until if self.slot is not None else None
        lent = borrowed(self.slot, now) and until is not None
        return {
            "floating_in_use_devices": self.in_use,
            "is_borrowed": lent,
            "borrowed_until": iso_ms_z(until) if lent and until is not None else None,
        }


def slot_of(view: Any) -> Slot | None:
    """The ``core.floating.Slot`` of a slot row as read (``SeatRows.slot``)."""
    if view is None:
        return None
    return Slot(
        device_id=view.device_id,
        taken_at=view.taken_at,
        refreshed_at=view.refreshed_at,
        expires_at=view.expires_at,
        borrowed_until=view.borrowed_until,
    )


def keep(
    tx: Transaction,
    terms: LicenseTerms,
    license_id: int,
    device_id: int,
    now: datetime,
    *,
    lend_until: datetime | None = None,
) -> Slot:
    """Take, or refresh, the device's slot (``lend_until``: borrowed until then), under the
    license's lock; ``floating_not_available`` when every slot is held by others."""
    statements.lock_license(tx.connection, tx.dialect, license_id)
    mine = slot_of(statements.floating_slot(tx.connection, tx.dialect, device_id))
    others = statements.slots_held(tx.connection, tx.dialect, license_id, now, other=device_id)
    decide_take(terms, mine, others, now)
    keeps = held(mine, now)
    slot = Slot(
        device_id=device_id,
        taken_at=mine.taken_at if keeps and mine is not None else now,
        refreshed_at=now,
        expires_at=now + timeout(terms),
        borrowed_until=lend_until
        if lend_until is not None
        else (mine.borrowed_until if keeps and mine is not None else None),
    )
    statements.keep_slot(
        tx.connection,
        tx.dialect,
        {
            "license_id": license_id,
            "device_id": device_id,
            "taken_at": slot.taken_at,
            "refreshed_at": slot.refreshed_at,
            "expires_at": slot.expires_at,
            "borrowed_until": slot.borrowed_until,
        },
        known=mine is not None,
    )
    return slot


def in_use(tx: Transaction, license_id: int, now: datetime) -> int:
    """How many devices hold one of the license's slots at ``now``."""
    return statements.slots_held(tx.connection, tx.dialect, license_id, now)


def free(tx: Transaction, device_id: int) -> bool:
    """Free the device's slot (a deactivation, a release); whether it had a slot row."""
    return statements.free_slot(tx.connection, tx.dialect, device_id)


def _floating_device(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    limits: RateLimits,
    now: datetime,
) -> tuple[Any, Any, LicenseTerms, Caller]:
    rows, caller = find(tx, keys, who, ref, limits, use="float", now=now)
    terms, device = holding_seat(rows)
    return rows, device, terms, caller


def release(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
) -> bytes:
    """Free the device's slot at once (``/floating/release``); the answer (an empty string).
    ``floating_not_available`` when the device holds no slot (or the license is not a
    floating one)."""
    rows, device, terms, _ = _floating_device(tx, keys, who, ref, limits, now)
    if not terms.is_floating_cloud:
        raise LicensorError("floating_not_available", "This license is not a floating license")
    if not held(slot_of(rows.slot), now):
        raise LicensorError("floating_not_available", "This device holds no floating slot")
    statements.lock_license(tx.connection, tx.dialect, rows.license.id)
    free(tx, device.id)
    return RELEASED


def borrow(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    asked: datetime | None,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
) -> bytes:
    """Keep the device's slot until ``asked`` (``None``: now + ``max_borrow_time`` hours),
    taking it if needed (``/floating/borrow``); the answer's bytes: ``borrowed_until``,
    ``max_borrow_time``, ``device_id``, ``license_id``. Refusals: ``license_expired``,
    ``license_borrow_not_allowed``, ``borrow_until_not_valid``, ``floating_not_available``."""
    rows, device, terms, _ = _floating_device(tx, keys, who, ref, limits, now)
    license_ = rows.license
    if is_expired(terms, license_.validity_period, now):
        raise LicensorError("license_expired")
    if not terms.is_floating_cloud:
        raise LicensorError("license_borrow_not_allowed", "This license is not a floating license")
    until = borrow_until(terms, asked, now)
    keep(tx, terms, license_.id, device.id, now, lend_until=until)
    return compact_json(
        {
            "borrowed_until": iso_ms_z(until),
            "max_borrow_time": terms.max_borrow_hours,
            "device_id": device.id,
            "license_id": license_.id,
        }
    )
