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

from licensor.core import features as feature_rules
from licensor.core.errors import LicensorError
from licensor.core.floating import (
    FeatureFloating,
    FloatingTerms,
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
    terms: FloatingTerms,
    license_id: int,
    device_id: int,
    now: datetime,
    *,
    lend_until: datetime | None = None,
    feature: str = "",
) -> Slot:
    """Take, or refresh, the device's slot of the license (``feature``: of that floating
    feature; ``lend_until``: borrowed until then), under the license's lock;
    ``floating_not_available`` when every slot is held by others."""
    statements.lock_license(tx.connection, tx.dialect, license_id)
    mine = slot_of(statements.floating_slot(tx.connection, tx.dialect, device_id, feature))
    others = statements.slots_held(
        tx.connection, tx.dialect, license_id, now, feature=feature, other=device_id
    )
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
            "feature": feature,
            "taken_at": slot.taken_at,
            "refreshed_at": slot.refreshed_at,
            "expires_at": slot.expires_at,
            "borrowed_until": slot.borrowed_until,
        },
        known=mine is not None,
    )
    return slot


def in_use(tx: Transaction, license_id: int, now: datetime, feature: str = "") -> int:
    """How many devices hold one of the license's slots (``feature``: of that feature) at
    ``now``."""
    return statements.slots_held(tx.connection, tx.dialect, license_id, now, feature=feature)


def free(tx: Transaction, device_id: int, feature: str = "") -> bool:
    """Free the device's slot of the license (``feature``: of that feature); whether it had a
    slot row."""
    return statements.free_slot(tx.connection, tx.dialect, device_id, feature)


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


# -- floating features (v4 §3.8, §3.13) -----------------------------------------------------------


def _floating_feature(
    rows: Any, code: str, now: datetime
) -> tuple[dict[str, Any], FeatureFloating]:
    # the license's feature ``code`` (expired ones refused) and its floating terms;
    # ``feature_not_floating`` for a feature that is not a floating one
    feature = feature_rules.license_feature(
        rows.product.features, rows.license.features, code, now, include_expired=False
    )
    terms = feature_rules.floating_terms(feature)
    if not terms.is_floating_cloud:
        raise LicensorError("feature_not_floating")
    return feature, terms


def keep_feature(
    tx: Transaction, rows: Any, feature: dict[str, Any], device_id: int, now: datetime
) -> FloatingState | None:
    """A feature check's slot: taken or refreshed for a floating feature (``None`` for any
    other); ``floating_not_available`` when every one is held by other devices."""
    terms = feature_rules.floating_terms(feature)
    if not terms.is_floating_cloud:
        return None
    code = str(feature["code"])
    license_id = rows.license.id
    slot = keep(tx, terms, license_id, device_id, now, feature=code)
    return FloatingState(slot, in_use(tx, license_id, now, code))


def feature_release(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    code: str,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
) -> bytes:
    """Free the device's slot of the floating feature ``code`` at once
    (``/floating/feature_release``); the answer (an empty string). Refusals:
    ``invalid_license_feature_code``, ``feature_not_floating``,
    ``floating_feature_device_not_in_use`` (the device holds none)."""
    rows, device, _, _ = _floating_device(tx, keys, who, ref, limits, now)
    _floating_feature(rows, code, now)
    statements.lock_license(tx.connection, tx.dialect, rows.license.id)
    mine = slot_of(statements.floating_slot(tx.connection, tx.dialect, device.id, code))
    if not held(mine, now):
        raise LicensorError("floating_feature_device_not_in_use")
    free(tx, device.id, code)
    return RELEASED


def feature_borrow(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    code: str,
    asked: datetime | None,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
) -> bytes:
    """Keep the device's slot of the floating feature ``code`` until ``asked`` (``None``: as
    long as the feature's ``max_borrow_time`` allows), taking it if needed
    (``/floating/feature_borrow``); the answer's bytes as ``borrow``'s, with the feature's
    code. Refusals: ``license_expired``, ``invalid_license_feature_code``,
    ``feature_not_floating``, ``license_borrow_not_allowed``, ``borrow_until_not_valid``,
    ``floating_not_available``."""
    rows, device, license_terms, _ = _floating_device(tx, keys, who, ref, limits, now)
    license_ = rows.license
    if is_expired(license_terms, license_.validity_period, now):
        raise LicensorError("license_expired")
    _, terms = _floating_feature(rows, code, now)
    until = borrow_until(terms, asked, now)
    keep(tx, terms, license_.id, device.id, now, lend_until=until, feature=code)
    return compact_json(
        {
            "borrowed_until": iso_ms_z(until),
            "max_borrow_time": terms.max_borrow_hours,
            "device_id": device.id,
            "license_id": license_.id,
            "feature": code,
        }
    )
