"""A license's features on a device (License API v4 §3.8, §3.10, §3.13, §5.8): check one,
count consumptions on one -- the one implementation of each.

A feature is the product's definition with the license's overrides (``core.features``); its
consumption total (and when it was last counted, for a periodic reset) lives in the license's
attachment (``licenses.features``), written under the license's lock. A floating feature's
slots are ``floating_slots`` rows naming it, taken by a feature check, freed and borrowed by
``services.floating.feature_release`` / ``feature_borrow``, with the license's own rules
(``core.floating``) on the feature's settings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from licensor.core import features as feature_rules
from licensor.core.consumption import decide_consumption, effective_terms
from licensor.core.errors import LicensorError
from licensor.core.floating import refresh_due
from licensor.core.licensing import is_expired
from licensor.protocol.signing import compact_json
from licensor.services import floating
from licensor.services.consumption import Consumed, Report
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import LicenseRef
from licensor.services.seats import (
    NO_LIMITS,
    Credentials,
    RateLimits,
    Transaction,
    find,
    holding_seat,
    record_answer,
    replayed,
)
from licensor.store import activation as statements


class SlotWriteNeeded(Exception):
    """A feature check must take or refresh a floating feature's slot: run it again in a
    write transaction (``may_write``)."""


def _feature(rows: Any, code: str, now: datetime, *, include_expired: bool) -> dict[str, Any]:
    return feature_rules.license_feature(
        rows.product.features, rows.license.features, code, now, include_expired=include_expired
    )


def feature_answer(
    feature: dict[str, Any], license_id: int, slot: floating.FloatingState | None, now: datetime
) -> dict[str, Any]:
    """A feature as ``check_license_feature`` answers it (v4 §3.8): with the slots in use and
    the device's borrow when it is a floating one (``FloatingState.fields``, as a check's)."""
    body = feature_rules.feature_object(feature, feature["total_consumptions"])
    answer = {"id": body.pop("id"), "license_id": license_id, **body}
    if slot is not None:
        answer |= slot.fields(now)
    return answer


def check_feature(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    code: str,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
    include_expired: bool = False,
    may_write: bool = False,
) -> dict[str, Any]:
    """The license's feature ``code`` on a device that holds a seat (v4 §3.8), or the
    refusal (the device's as for a check, then ``invalid_license_feature_code``,
    ``license_feature_expired``, ``floating_not_available``). A floating feature's slot is
    taken or refreshed when ``may_write`` (else ``SlotWriteNeeded``); an expired license
    takes none."""
    rows, _ = find(tx, keys, who, ref, limits, use="check", now=now)
    terms, device = holding_seat(rows)
    feature = _feature(rows, code, now, include_expired=include_expired)
    slot = None
    floating_terms = feature_rules.floating_terms(feature)
    if floating_terms.is_floating_cloud and not is_expired(
        terms, rows.license.validity_period, now
    ):
        mine = floating.slot_of(
            statements.floating_slot(tx.connection, tx.dialect, device.id, code)
        )
        if refresh_due(mine, floating_terms, now):
            if not may_write:
                raise SlotWriteNeeded
            slot = floating.keep_feature(tx, rows, feature, device.id, now)
        else:
            slot = floating.FloatingState(mine, floating.in_use(tx, rows.license.id, now, code))
    return feature_answer(feature, rows.license.id, slot, now)


def add_feature_consumption(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    code: str,
    report: Report,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> Consumed:
    """Count ``report`` on the license's consumption feature ``code`` (v4 §3.10), or raise
    the refusal: the device's (as ``add_consumption``), ``unsupported_product_feature`` (no
    such feature on the product, or not a consumption feature), ``invalid_license_feature_code``
    (not attached to the license), ``license_feature_expired``,
    ``negative_consumptions_not_allowed``, ``feature_not_enough_consumptions``. The
    feature's overages, negative reports and periodic reset are its own (its definition)."""
    rows, caller = find(
        tx, keys, who, ref, limits, use="consume", now=now, idempotency_key=idempotency_key
    )
    recorded = replayed(tx, keys, rows, idempotency_key, request_hash, now)
    if recorded is not None:
        return Consumed(recorded.body, replayed=True)
    license_ = rows.license
    terms, device = holding_seat(rows)
    if is_expired(terms, license_.validity_period, now):
        raise LicensorError("license_expired")
    defined = {str(d.get("code")): d for d in rows.product.features or []}
    if code not in defined or defined[code].get("feature_type") != "consumption":
        raise LicensorError("unsupported_product_feature")
    feature = _feature(rows, code, now, include_expired=False)
    decided = effective_terms(
        feature_rules.consumption_terms(feature), report.allow_overages, report.max_overages
    )
    total = decide_consumption(
        decided,
        int(feature["total_consumptions"]),
        report.count,
        code="feature_not_enough_consumptions",
    )
    attached = dict(license_.features or {})
    attached[code] = feature_rules.counted(attached.get(code), total, now)
    statements.record_feature_consumption(
        tx.connection,
        tx.dialect,
        license_id=license_.id,
        features=attached,
        now=now,
        event={
            "license_id": license_.id,
            "device_id": device.id,
            "hardware_id": device.hardware_id,
            "feature": code,
            "event": report.event,
            "consumptions": report.count,
            "total_after": total,
            "created_at": now,
        },
    )
    body = feature_rules.feature_object({**feature, "total_consumptions": total}, total)
    fields = {
        "id": body["id"],
        "license_id": license_.id,
        "total_consumptions": total,
        "max_consumptions": body["max_consumption"],
        "allow_negative_consumptions": body["allow_negative_consumptions"],
        "allow_unlimited_consumptions": body["allow_unlimited_consumptions"],
        "allow_overages": body["allow_overages"],
        "max_overages": body["max_overages"],
        "reset_consumption": body["reset_consumption"],
        "consumption_period": body["consumption_period"],
        "is_floating": body["is_floating"],
        "is_floating_cloud": body["is_floating_cloud"],
    }
    if body["is_floating_cloud"]:
        fields |= {
            "floating_timeout": body["floating_timeout"],
            "floating_users": body["floating_users"],
        }
    content = compact_json(fields)
    if idempotency_key:
        record_answer(tx, caller, idempotency_key, request_hash, content, now)
    return Consumed(content)
