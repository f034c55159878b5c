"""Activation and deactivation of license-key licenses in one short write transaction of
prepared statements (``store/activation.py``).

The same use cases as ``licensing.activate`` / ``licensing.deactivate`` for their common case --
HMAC authentication, a license key, a device that holds no seat (activation: new to the
license, or known and deactivated earlier) or one that does (deactivation), no variables, no
QLM options -- with the same rules (``auth.hmac_caller``, ``licensing.terms_of``,
``core.licensing.decide_activation`` / ``decide_device_access``) and the same answer
(``payload.license_body``). Anything else raises ``Declined`` before anything is written, and the
front hands the request to the full endpoint, which answers exactly as before: every error
(named in the documented evaluation order, and counted by the rate limits), user-based
licenses, single sign-on, idempotent replays, release limits and deactivation codes, a
locked-out client, an audit listener.

Measured in process (bench/profile_activation.py, SQLite, 1,000 licenses, signature headers
included): the full endpoint function spends ~4 ms of CPU per activation in 18 statements and
3 transactions; this path 0.44 ms (Ed25519) / 1.0 ms (RSA: two signatures) in 5 statements and
1 transaction plus one autocommit read of the API key, with the answer rendered and signed after
the commit, outside the write lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Dialect

from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.core.licensing import (
    AuthorizationMethod,
    DeviceFacts,
    decide_activation,
    decide_device_access,
)
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import audit, auth, rate_limit
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import (
    DEVICE_INFO_FIELDS,
    DeviceInfo,
    LicenseRef,
    actor_of,
    license_answer,
    terms_of,
)
from licensor.services.licensing import (
    _product_refusal as product_refusal,
)
from licensor.store import activation
from licensor.store.activation import DbapiConnection
from licensor.store.models import utcnow


class Declined(Exception):
    """This path does not answer the request: the full endpoint does (and names any error)."""


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The request's failure buckets (``endpoints.failure_buckets``) and their policy."""

    policy: rate_limit.Policy
    buckets: list[tuple[str, int]] = field(default_factory=list)


def presented(authorization: str) -> dict[str, str]:
    """The pairs of an HMAC ``Authorization`` header naming a storable API key; ``Declined``
    otherwise (the full endpoint names the problem)."""
    try:
        pairs = auth.hmac_pairs(authorization)
    except LicensorError:
        raise Declined from None
    if not auth.storable(pairs["apikey"]):
        raise Declined
    return pairs


def authenticate(
    connection: DbapiConnection,
    dialect: Dialect,
    keys: ServerKeys,
    *,
    pairs: dict[str, str],
    date_value: str,
    now: datetime,
) -> Caller:
    """The caller of an HMAC-signed request whose key and signature check out (read outside
    the write transaction, as the full endpoint does); ``Declined`` otherwise."""
    found = activation.credential(connection, dialect, pairs["apikey"])
    if found is None:
        raise Declined
    return _caller(keys, found, pairs, date_value, now)


def _caller(
    keys: ServerKeys,
    found: activation.Credential,
    pairs: dict[str, str],
    date_value: str,
    now: datetime,
) -> Caller:
    if found.api_key.revoked:
        raise Declined
    try:
        return auth.hmac_caller(keys, found.api_key, found.oauth_required, pairs, date_value, now)
    except LicensorError:
        raise Declined from None


@dataclass(frozen=True, slots=True)
class Credentials:
    """An HMAC request's credentials, to check inside the write transaction with the rows
    (PostgreSQL: one round trip fewer). ``company_id``: the API key's company as an earlier
    request of this process found it -- a hint the read checks (no row if it is wrong)."""

    pairs: dict[str, str]
    date_value: str
    company_id: int


def _rows(
    connection: DbapiConnection,
    dialect: Dialect,
    keys: ServerKeys,
    who: Caller | Credentials,
    now: datetime,
    **read: Any,
) -> tuple[activation.SeatRows, Caller]:
    """The seat rows, and the caller (authenticated here when ``who`` is ``Credentials``)."""
    if isinstance(who, Caller):
        rows = activation.seat_rows(connection, dialect, company_id=who.company_id, **read)
        if rows is None:
            raise Declined
        return rows, who
    rows = activation.seat_rows(
        connection, dialect, company_id=who.company_id, api_key=who.pairs["apikey"], **read
    )
    if rows is None or rows.credential is None:
        raise Declined
    return rows, _caller(keys, rows.credential, who.pairs, who.date_value, now)


@dataclass(frozen=True, slots=True)
class Activated:
    """A committed activation; ``content`` is the answer's bytes when they had to be made
    inside the transaction (an Idempotency-Key's record), else ``render`` makes them."""

    caller: Caller
    license: Any
    product: Any
    device: Any
    customer: Any
    release: Any
    variables: list[Any]
    now: datetime
    content: bytes | None = None

    def render(self, keys: ServerKeys, algorithm: SignatureAlgorithm) -> bytes:
        if self.content is not None:
            return self.content
        return compact_json(_body(self, keys, algorithm))


def _body(activated: Activated, keys: ServerKeys, algorithm: SignatureAlgorithm) -> dict[str, Any]:
    return license_answer(
        keys,
        request="activation",
        caller=activated.caller,
        algorithm=algorithm,
        license_=activated.license,
        product=activated.product,
        customer=activated.customer,
        user=None,
        device=activated.device,
        release=activated.release,
        variables=activated.variables,
        now=activated.now,
    )


def _common_refusal(
    caller: Caller, rows: activation.SeatRows, limits: RateLimits, now: datetime
) -> bool:
    """Whether the full endpoint must answer for reasons both use cases share."""
    return (
        caller.read_only
        or rate_limit.refusal(limits.policy, limits.buckets, rows.rate_counters, now) is not None
        or product_refusal(rows.product, caller) is not None
        or rows.product.authorization_method == AuthorizationMethod.USER
        or audit.has_listeners()
    )


def _key_lookup(ref: LicenseRef) -> str:
    if not ref.license_key or ref.username or ref.license_id is not None:
        raise Declined
    return normalize_license_key(ref.license_key)


def activate(
    connection: DbapiConnection,
    dialect: Dialect,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    info: DeviceInfo,
    limits: RateLimits,
    *,
    now: datetime,
    algorithm: SignatureAlgorithm,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> Activated:
    """``licensing.activate`` for a device that holds no seat on a license-key license, inside
    the caller's write transaction (``Database.fast_write``). Raises ``Declined`` before
    writing anything when the full endpoint must answer."""
    rows, caller = _rows(
        connection,
        dialect,
        keys,
        who,
        now,
        for_answer=True,
        product=ref.product,
        key_lookup=_key_lookup(ref),
        hardware_id=ref.hardware_id,
        app_ver=info.app_ver,
        idempotency_key=idempotency_key,
        buckets=[bucket for bucket, _ in limits.buckets],
    )
    if (
        _common_refusal(caller, rows, limits, now)
        or rows.idempotency_record  # a replay (or an expired record): the full path
        or (rows.device is not None and rows.device.active)  # 409 license_device_exists
    ):
        raise Declined
    product, license_, known = rows.product, rows.license, rows.device
    try:
        decision = decide_activation(
            terms_of(license_, product),
            device=DeviceFacts(
                hardware_id=ref.hardware_id,
                is_vm=info.is_vm,
                app_ver=info.app_ver or None,
                app_release_date=rows.app_release_date if info.app_ver else None,
                activation_count=known.activation_count if known is not None else 0,
            ),
            device_active=False,
            blacklisted=rows.blacklisted,
            user=None,
            now=now,
        )
    except LicensorError:
        raise Declined from None
    # The license's new values, as licensing._activate_resolved sets them.
    changed: dict[str, Any] = {
        "times_activated": license_.times_activated + 1,
        "transfer_count": license_.transfer_count + (1 if decision.counts_transfer else 0),
        "last_deactivated_hardware_id": None,
        "validity_period": license_.validity_period
        if license_.validity_period is not None
        else decision.validity_period,
        "first_activated_at": license_.first_activated_at or now,
        "updated_at": utcnow(),
    }
    if known is None:
        device: dict[str, Any] = _new_device(license_.id, ref.hardware_id, info, now)
    else:  # a known device activated again: a new activation
        device = {**vars(known), **_reactivated(known, info, now), "active": True}
    event = {"license_id": license_.id, "hardware_id": ref.hardware_id, "created_at": now}
    events = [{**event, "event": "activation"}]
    if decision.counts_transfer:
        events.append({**event, "event": "transfer"})
    device_id = activation.record_activation(
        connection,
        dialect,
        activation.Seat(
            license_id=license_.id,
            unlimited=license_.allow_unlimited_activations,
            transfer_count=changed["transfer_count"],
            validity_period=changed["validity_period"],
            first_activated_at=changed["first_activated_at"],
            updated_at=changed["updated_at"],
        ),
        device,
        known=known is not None,
        events=events,
        audit={
            "company_id": caller.company_id,
            "actor": actor_of(caller),
            "action": "device.activate",
            "object_type": "device",
            "before": None,
            "after": {
                "license_id": license_.id,
                "hardware_id": ref.hardware_id,
                "transfer": decision.counts_transfer,
            },
            "created_at": now,
        },
    )
    if device_id is None:
        raise Declined  # no seat left after all (license_activated_max_times), or a race
    # its variables, for the answer (a new device has none)
    variables = [] if known is None else activation.variables(connection, dialect, device_id)
    activated = Activated(
        caller=caller,
        license=SimpleNamespace(**{**vars(license_), **changed}),
        product=product,
        device=SimpleNamespace(**{**device, "id": device_id}),
        customer=rows.customer,
        release=rows.release,
        variables=variables,
        now=now,
    )
    if not idempotency_key:
        return activated
    # The record holds the answer itself, so it is made (and signed) inside the transaction.
    content = compact_json(_body(activated, keys, algorithm))
    activation.record_idempotency(
        connection,
        dialect,
        {
            "company_id": caller.company_id,
            "key": idempotency_key,
            "request_hash": request_hash,
            "status": 200,
            "body": content,
            "created_at": now,
        },
    )
    return replace(activated, content=content)


def _new_device(
    license_id: int, hardware_id: str, info: DeviceInfo, now: datetime
) -> dict[str, Any]:
    """Every column of a device activated for the first time (licensing._activate_resolved:
    the model's defaults, then the request's device facts)."""
    return {
        "license_id": license_id,
        "license_user_id": None,
        "hardware_id": hardware_id,
        "active": True,
        "is_vm": info.is_vm,
        "vm_info": info.vm_info,
        "os_ver": info.os_ver,
        "hostname": info.hostname,
        "ip": info.ip,
        "ip_local": info.ip_local,
        "app_ver": info.app_ver,
        "sdk_ver": info.sdk_ver,
        "mac_address": info.mac_address,
        "first_activated_at": now,
        "last_activated_at": now,
        "last_check_at": None,
        "deactivated_at": None,
        "computer_type": "",
        "affiliate_id": "",
        "user_data": "",
        "activation_count": 1,
        "computer_key": None,
    }


# what a request may tell of a device (all but is_vm, which is always set)
_DEVICE_FACTS = tuple(name for name in DEVICE_INFO_FIELDS if name != "is_vm")


def _reactivated(device: Any, info: DeviceInfo, now: datetime) -> dict[str, Any]:
    """The columns a known device's new activation changes (licensing._activate_resolved:
    device facts the request gives replace the recorded ones, ``is_vm`` always)."""
    facts = {name: getattr(info, name) or getattr(device, name) for name in _DEVICE_FACTS}
    return {
        "license_user_id": None,
        "is_vm": info.is_vm,
        **facts,
        "last_activated_at": now,
        "deactivated_at": None,
        "activation_count": device.activation_count + 1,
    }


def deactivate(
    connection: DbapiConnection,
    dialect: Dialect,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    limits: RateLimits,
    *,
    now: datetime,
) -> None:
    """``licensing.deactivate`` (online, no Deactivation Verification Code, no release limit)
    of a device holding a seat on a license-key license, inside the caller's write
    transaction. Raises ``Declined`` before writing anything when the full endpoint must
    answer. The answer is ``"license_deactivated"``."""
    rows, caller = _rows(
        connection,
        dialect,
        keys,
        who,
        now,
        for_answer=False,
        product=ref.product,
        key_lookup=_key_lookup(ref),
        hardware_id=ref.hardware_id,
        buckets=[bucket for bucket, _ in limits.buckets],
    )
    if _common_refusal(caller, rows, limits, now):
        raise Declined
    product, license_, device = rows.product, rows.license, rows.device
    if (
        device is None
        or not device.active
        or device.license_user_id is not None
        or product.release_requires_deactivation_code
    ):
        raise Declined
    terms = terms_of(license_, product)
    try:
        decide_device_access(terms, device_active=True, blacklisted=rows.blacklisted)
    except LicensorError:
        raise Declined from None
    if terms.max_release_count >= 0:
        raise Declined  # decide_release needs the release history: the full path
    # licensing.release_seat and the rest of licensing.deactivate
    released = activation.record_deactivation(
        connection,
        dialect,
        license_id=license_.id,
        device_id=device.id,
        hardware_id=device.hardware_id,
        now=now,
        updated_at=utcnow(),
        release={
            "license_id": license_.id,
            "device_id": device.id,
            "hardware_id": ref.hardware_id,
            "method": "online",
            "released_at": now,
        },
        audit={
            "company_id": caller.company_id,
            "actor": actor_of(caller),
            "action": "device.deactivate",
            "object_type": "device",
            "object_id": str(device.id),
            "before": None,
            "after": {"license_id": license_.id, "hardware_id": ref.hardware_id},
            "created_at": now,
        },
    )
    if not released:
        raise Declined  # deactivated meanwhile: the full path names it
