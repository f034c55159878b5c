"""Check: the license on a device that holds a seat -- the one implementation, for every front.

``check`` finds the rows in one read (``seats.find``: the same statements and refusals as an
activation's, without the lock), decides with ``core.licensing.decide_device_access`` and
answers with the license (``Checked.body``). It writes only what the request tells that is new
about the device (its facts: a write transaction, asked for with ``DeviceTouchNeeded`` when
``may_write`` is false); the device's "last seen" time is the front's to record, when due
(``Checked.seen_due_at``: the License API front batches it; ``in_session`` writes it at once).

The License API front (``api/v4/check.py``) runs checks on an autocommit connection and
keeps the signed answers it made (``Checked.fingerprint``, ``fresh_until``); the QLM front,
the Computer Key endpoints and the device-variable endpoints run them inside their
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from licensor.core import features as feature_rules
from licensor.core.consumption import next_period_start
from licensor.core.errors import LicensorError
from licensor.core.floating import refresh_due, refresh_interval
from licensor.core.licensing import LicenseTerms, decide_device_access, expires_at, is_expired
from licensor.protocol.signing import SignatureAlgorithm
from licensor.services import floating, licensing, payload
from licensor.services.context import Caller, ServerKeys
from licensor.services.floating import FloatingState
from licensor.services.licensing import DEVICE_INFO_FIELDS, DeviceInfo, LicenseRef
from licensor.services.seats import (
    NO_LIMITS,
    Credentials,
    RateLimits,
    Transaction,
    find,
    over_limits,
    transaction_of,
)
from licensor.store import activation as statements
from licensor.store import changes, snapshot
from licensor.store.models import Device, License, Product

# A check records "last seen" at most this often; other checks are read-only (no write lock).
CHECK_TOUCH_INTERVAL = timedelta(minutes=5)


class DeviceTouchNeeded(Exception):
    """A check on a read-only connection found device facts to record: run it writable."""


@dataclass(frozen=True, slots=True)
class Checked:
    """A device that holds a seat, as checked: what the answer is made of and how long an
    answer made of it stays right."""

    rows: statements.SeatRows
    caller: Caller
    terms: LicenseTerms
    device: Any
    # when the device's "last seen" is next due (None: a read-only key never records it)
    seen_due_at: datetime | None
    # a floating cloud license's slots (None: not floating, or expired: no slot taken)
    floating: FloatingState | None = None

    @property
    def fingerprint(self) -> bytes:
        """Equal fingerprints, equal rows read (bar "last seen"): the same answer."""
        if self.floating is None:
            return self.rows.fingerprint
        return self.rows.fingerprint + self.floating.in_use.to_bytes(8, "big")

    def body(
        self,
        keys: ServerKeys,
        *,
        now: datetime,
        algorithm: SignatureAlgorithm,
        include_expired_features: bool = False,
    ) -> dict[str, Any]:
        """The signed check answer at ``now``."""
        rows = self.rows
        return licensing.license_answer(
            keys,
            request="check",
            caller=self.caller,
            algorithm=algorithm,
            license_=rows.license,
            product=rows.product,
            customer=rows.customer,
            user=rows.user,
            device=self.device,
            release=rows.release,
            variables=None,
            now=now,
            include_expired_features=include_expired_features,
            floating=self.floating,
        )

    def fresh_until(self, keys: ServerKeys, now: datetime) -> datetime:
        """Until when an answer rendered at ``now`` stays the right answer (as long as the
        rows do not change): the end of its date step, or the next instant at which the
        license or one of its features expires, or the API key's rotated-away secret stops
        being accepted, whichever comes first."""
        rows = self.rows
        step = keys.settings.answer_date_step_seconds
        until = payload.next_step(payload.answer_date(now, self.device.hardware_id, step), step)
        license_ = rows.license
        ends = [
            expires_at(self.terms, license_.validity_period),
            # a consumption total starts again from 0 (judged when read)
            next_period_start(license_.consumption_period, now)
            if license_.consumption_period and license_.total_consumptions
            else None,
            feature_rules.next_expiry(rows.product.features, rows.license.features, now),
            rows.credential.api_key.previous_valid_until if rows.credential else None,
            # a floating slot's next refresh is due (the next check records it)
            self.floating.slot.refreshed_at + refresh_interval(self.terms)
            if self.floating is not None and self.floating.slot is not None
            else None,
        ]
        for end in ends:
            if end is not None and now < end < until:
                until = end
        return until


def check(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    info: DeviceInfo | None,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
    may_write: bool = False,
) -> Checked:
    """The license on ``ref``'s device, or the refusal. New device facts in ``info`` are
    recorded (with "last seen") when ``may_write``; else ``DeviceTouchNeeded``. ``info``
    None: nothing to record (the device-variable endpoints)."""
    rows, caller = find(tx, keys, who, ref, limits, use="check", now=now)
    terms = licensing.terms_of(rows.license, rows.product)
    device: Any = rows.device
    try:
        decide_device_access(
            terms, device_active=device is not None and device.active, blacklisted=rows.blacklisted
        )
    except LicensorError:
        refused = over_limits(limits, rows.rate_counters, now)  # (see seats.find)
        if refused is not None:
            raise refused from None
        raise
    assert device is not None
    seen_due_at: datetime | None = None
    changed: dict[str, Any] = {}
    if info is not None and not caller.read_only:
        changed = _device_info_changes(device, info)
        if changed:
            if not may_write:
                raise DeviceTouchNeeded
            device = SimpleNamespace(**{**vars(device), **changed, "last_check_at": now})
            statements.record_device_facts(
                tx.connection, tx.dialect, device.id, {**changed, "last_check_at": now}
            )
        seen_due_at = (
            device.last_check_at + CHECK_TOUCH_INTERVAL if device.last_check_at is not None else now
        )
    floating_state = None
    if terms.is_floating_cloud and not is_expired(terms, rows.license.validity_period, now):
        slot = floating.slot_of(rows.slot)
        if refresh_due(slot, terms, now):  # (take the slot, or record a refresh)
            if not may_write:
                raise DeviceTouchNeeded
            slot = floating.keep(tx, terms, rows.license.id, device.id, now)
            if slot.taken_at != now and not changed:  # (a refresh only: no answer changes)
                changes.quiet_commit()
        floating_state = FloatingState(slot, floating.in_use(tx, rows.license.id, now))
    return Checked(rows, caller, terms, device, seen_due_at, floating_state)


def _device_info_changes(device: Any, info: DeviceInfo) -> dict[str, Any]:
    """The device's columns the request's facts change (``is_vm`` always counts, the other
    facts when given)."""
    changed = {}
    for name in DEVICE_INFO_FIELDS:  # (not asdict: it deep-copies, on every check)
        value = getattr(info, name)
        if (name == "is_vm" or value) and getattr(device, name) != value:
            changed[name] = value
    return changed


def record_seen(connection: Connection, device_ids: Sequence[int], now: datetime) -> bool:
    """Record the "last seen" time of devices checks answered (best effort)."""
    return snapshot.touch_devices(connection, device_ids, now)


def check_in_session(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    info: DeviceInfo,
    *,
    now: datetime,
) -> licensing.Activated:
    """``check`` inside the session's write transaction, "last seen" recorded when due, for
    fronts that render something else than the License API answer (a Computer Key)."""
    tx = transaction_of(session)
    checked = check(tx, keys, caller, ref, info, now=now, may_write=True)
    if checked.seen_due_at is not None and now >= checked.seen_due_at:
        statements.record_device_facts(
            tx.connection, tx.dialect, checked.device.id, {"last_check_at": now}
        )
    session.expire_all()  # (the statements wrote past the session's identity map)
    product = session.get(Product, checked.rows.product.id)
    license_ = session.get(License, checked.rows.license.id)
    device = session.get(Device, checked.device.id)
    assert product is not None and license_ is not None and device is not None
    return licensing.Activated(product, license_, device, reactivated=False)


def device_in_session(
    session: Session, keys: ServerKeys, caller: Caller, ref: LicenseRef, *, now: datetime
) -> Checked:
    """The checked device of ``ref`` inside the session's transaction, nothing recorded (the
    device-variable endpoints)."""
    return check(transaction_of(session), keys, caller, ref, None, now=now)
