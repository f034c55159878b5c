"""Consumption: a device reports units used on its license (``POST /api/v4/add_consumption``,
v4 §3.9, §5.7) -- the one implementation, for every front and for the reports that come with
a deactivation.

``add_consumption`` reads the rows with the license locked (``seats.find(use="consume")``: the
same statement and refusals as the other use cases), decides with ``core.consumption`` on the
total as it stands now (a period's reset judged when read) and writes the new total with the
report's event (``store.activation.record_consumption``). With an Idempotency-Key the answer
is recorded in the same transaction, so a retried report never counts twice.

Refusals, in this order after those of ``seats.find``: ``license_not_enabled``,
``blacklisted``, ``license_not_active`` / ``device_not_found`` (the device must hold a seat),
``license_expired``, ``license_not_consumption``, ``negative_consumptions_not_allowed``,
``license_not_enough_consumptions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from licensor.core.consumption import ConsumptionTerms, decide_consumption, effective_terms
from licensor.core.errors import LicensorError
from licensor.core.licensing import LicenseTerms, is_expired
from licensor.protocol.signing import compact_json
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import LicenseRef
from licensor.services.payload import consumption_fields, total_now
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

EVENTS = ("consumption_add", "offline_floating_consumptions_sync")


@dataclass(frozen=True, slots=True)
class Report:
    """What a consumption report asks: ``count`` units (negative: a refund), overages asked
    for (never more than the license allows), the event it is recorded as."""

    count: int = 1
    allow_overages: bool | None = None
    max_overages: int | None = None
    event: str = "consumption_add"


@dataclass(frozen=True, slots=True)
class Consumed:
    """A counted report: the answer's bytes (recorded, or replayed, with an
    Idempotency-Key)."""

    content: bytes
    replayed: bool = False


def consumption_terms(license_: Any) -> ConsumptionTerms:
    """The license's consumption terms (its columns)."""
    return ConsumptionTerms(
        max_consumptions=license_.max_consumptions,
        allow_unlimited=license_.allow_unlimited_consumptions,
        allow_overages=license_.allow_overages,
        max_overages=license_.max_overages,
        allow_negative=license_.allow_negative_consumptions,
        period=license_.consumption_period,
    )


def add_consumption(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    report: Report,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> Consumed:
    """Count ``report`` on the license of ``ref``'s device, or raise the refusal (nothing
    written then: the caller rolls back)."""
    rows, caller = find(
        tx, keys, who, ref, limits, use="consume", now=now, idempotency_key=idempotency_key
    )
    recorded = replayed(tx, keys, rows, idempotency_key, request_hash, now)
    if recorded is not None:
        return Consumed(recorded.body, replayed=True)
    license_ = rows.license
    terms, device = holding_seat(rows)
    total = count(tx, terms, license_, device, report, now=now)
    body = {
        "id": license_.id,
        **consumption_fields(_counted(license_, total, now), now),
        "company": {"id": caller.company_id},
    }
    content = compact_json(body)
    if idempotency_key:
        record_answer(tx, caller, idempotency_key, request_hash, content, now)
    return Consumed(content)


def count(
    tx: Transaction,
    terms: LicenseTerms,
    license_: Any,
    device: Any,
    report: Report,
    *,
    now: datetime,
) -> int:
    """Decide and write ``report`` on the license (its row locked by the caller's read) for
    ``device``; the new total. Also the step of a deactivation that carries consumptions."""
    if is_expired(terms, license_.validity_period, now):
        raise LicensorError("license_expired")
    if license_.license_type != "consumption":
        raise LicensorError("license_not_consumption")
    decided = effective_terms(
        consumption_terms(license_), report.allow_overages, report.max_overages
    )
    total = decide_consumption(
        decided, total_now(license_, now), report.count, code="license_not_enough_consumptions"
    )
    statements.record_consumption(
        tx.connection,
        tx.dialect,
        license_id=license_.id,
        total=total,
        now=now,
        event={
            "license_id": license_.id,
            "device_id": device.id,
            "hardware_id": device.hardware_id,
            "feature": None,
            "event": report.event,
            "consumptions": report.count,
            "total_after": total,
            "created_at": now,
        },
    )
    return total


def _counted(license_: Any, total: int, now: datetime) -> Any:
    return SimpleNamespace(
        **{**vars(license_), "total_consumptions": total, "consumption_counted_at": now}
    )
