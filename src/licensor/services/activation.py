"""Activation and deactivation: the one implementation of each use case, for every front.

``activate`` and ``deactivate`` decide with ``core.licensing`` and read and write through the
prepared statements of ``store/activation.py`` -- one read of everything the decision and the
answer need, under the license's lock, and a few writes -- inside the caller's write
transaction (``Transaction``). Every case goes through here: license keys and license users,
single sign-on users (``LicenseRef.verified_username``), API keys and OAuth callers, QLM's
options (``ActivationExtras``), device variables, Idempotency-Key replays, release limits and
Deactivation Verification Codes, and every refusal, named in the documented evaluation order
(v4 §4.3 and DECISIONS).

The License API front (``api/v4/activation.py``) runs them in ``Database.fast_write``; the QLM
front, the Computer Key endpoints and the management API run them inside their ORM session's
transaction (``in_session``), on the same connection.

Measured in process (bench/profile_activation.py, SQLite, 1,000 licenses, signature headers
included): 0.44 ms of CPU per Ed25519 activation, 1.0 ms with RSA (two signatures), in 5
statements and 1 transaction plus one autocommit read of the API key; the ORM endpoint this
replaced spent ~4 ms in 18 statements and 3 transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy.orm import Session

from licensor.core import features as feature_rules
from licensor.core.errors import LicensorError
from licensor.core.licensing import (
    DeviceFacts,
    UserTerms,
    decide_activation,
    decide_offline_activation,
    decide_release,
    release_window_start,
)
from licensor.protocol.computer_key import verify_deactivation_code
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import consumption, licensing
from licensor.services.consumption import Report
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import (
    DEVICE_INFO_FIELDS,
    ActivationExtras,
    DeviceInfo,
    LicenseRef,
    actor_of,
    license_answer,
    terms_of,
)
from licensor.services.payload import license_signing_bytes
from licensor.services.seats import (
    NO_LIMITS,
    Credentials,
    RateLimits,
    Transaction,
    find,
    holding_seat,
    record_answer,
    recorded_answer,
    transaction_of,
)
from licensor.store import activation as statements
from licensor.store.models import Device, License, Product, utcnow

# -- activate --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activated:
    """A committed activation (views of the rows as written). ``content``: the answer's bytes
    when they were made inside the transaction (an Idempotency-Key's record, or a replay of
    one: ``replayed``), else ``render`` makes them."""

    caller: Caller
    license: Any
    product: Any
    device: Any
    customer: Any
    user: Any
    release: Any
    variables: list[Any]
    now: datetime
    reactivated: bool = False  # the device already held a seat (QLM's reactivation)
    content: bytes | None = None
    status: int = 200
    replayed: bool = False

    def render(self, keys: ServerKeys, algorithm: SignatureAlgorithm) -> bytes:
        if self.content is not None:
            return self.content
        return compact_json(self.body(keys, algorithm))

    def body(
        self, keys: ServerKeys, algorithm: SignatureAlgorithm, request: str = "activation"
    ) -> dict[str, Any]:
        """The answer's license object (``request``: "activation", or "offline_activation"
        for a license file: with ``offline_signature`` and ``license_signature_v2``)."""
        return license_answer(
            keys,
            request=request,
            caller=self.caller,
            algorithm=algorithm,
            license_=self.license,
            product=self.product,
            customer=self.customer,
            user=self.user,
            device=self.device,
            release=self.release,
            variables=self.variables,
            now=self.now,
        )


def _replay(
    tx: Transaction,
    keys: ServerKeys,
    record: Any,
    request_hash: str,
    caller: Caller,
    now: datetime,
) -> Activated | None:
    """The recorded answer of an Idempotency-Key as an activation, or ``None``
    (``seats.recorded_answer``)."""
    recorded = recorded_answer(tx, keys, record, request_hash, now)
    if recorded is None:
        return None
    nothing = SimpleNamespace()
    return Activated(
        caller=caller,
        license=nothing,
        product=nothing,
        device=nothing,
        customer=None,
        user=None,
        release=None,
        variables=[],
        now=now,
        content=recorded.body,
        status=recorded.status,
        replayed=True,
    )


def activate(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    info: DeviceInfo,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
    extras: ActivationExtras = ActivationExtras(),
    variables: dict[str, str] | None = None,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    idempotency_key: str | None = None,
    request_hash: str = "",
    keeps_signature: bool = True,
    offline: bool = False,
) -> Activated:
    """Bind the license of ``ref`` to its hardware id, or raise the refusal (nothing written
    then: the caller rolls back). With ``idempotency_key`` the answer is recorded, signed with
    ``algorithm``, and a retry of the same request gets it again. With ``keeps_signature``
    the answer's ``license_signature`` (``algorithm``) is made here and kept on the device,
    for its checks (``Device.license_signature``). ``offline``: a request
    file's activation (``services/offline.py``), refused where offline activation is not
    allowed."""
    rows, caller = find(
        tx,
        keys,
        who,
        ref,
        limits,
        use="activate",
        now=now,
        app_ver=info.app_ver,
        idempotency_key=idempotency_key,
    )
    if idempotency_key and rows.idempotency is not None:
        replayed = _replay(tx, keys, rows.idempotency, request_hash, caller, now)
        if replayed is not None:
            return replayed
    product, license_, known = rows.product, rows.license, rows.device
    user: Any = rows.user
    is_vm = info.is_vm or extras.computer_type == "VM"
    terms = terms_of(license_, product)
    if offline:
        decide_offline_activation(terms)
    decision = decide_activation(
        terms,
        device=DeviceFacts(
            hardware_id=ref.hardware_id,
            is_vm=is_vm,
            app_ver=info.app_ver or None,
            app_release_date=rows.app_release_date if info.app_ver else None,
            activation_count=known.activation_count if known is not None else 0,
        ),
        device_active=known is not None and known.active,
        blacklisted=rows.blacklisted,
        user=UserTerms(
            user.max_activations, user.allow_unlimited_activations, user.total_activations
        )
        if user is not None
        else None,
        now=now,
        allow_reactivation=extras.allow_reactivation,
        counts_activation=extras.increment_activation_count,
    )
    device = _device_values(
        license_.id, ref.hardware_id, known, replace(info, is_vm=is_vm), extras, now
    )
    audit_row = {
        "company_id": caller.company_id,
        "actor": actor_of(caller),
        "object_type": "device",
        "before": None,
        "after": {
            "license_id": license_.id,
            "hardware_id": ref.hardware_id,
            "transfer": decision.counts_transfer,
        },
        "created_at": now,
    }
    event = {"license_id": license_.id, "hardware_id": ref.hardware_id, "created_at": now}
    changed: dict[str, Any] = {}

    def keep_signature() -> None:  # (once the license's new values are known)
        if keeps_signature:
            signed = license_signing_bytes(
                SimpleNamespace(**{**vars(license_), **changed}), user, ref.hardware_id
            )
            device["license_signature"] = keys.keyring.stored_signature(algorithm, signed)

    if decision.takes_seat:
        device["active"] = True
        device["deactivated_at"] = None
        device["license_user_id"] = user.id if user is not None else None
        # the license's new values
        changed = {
            "times_activated": license_.times_activated + 1,
            "transfer_count": license_.transfer_count + (1 if decision.counts_transfer else 0),
            "last_deactivated_hardware_id": None,
            "validity_period": license_.validity_period
            if license_.validity_period is not None
            else decision.validity_period,
            "first_activated_at": license_.first_activated_at or now,
            "updated_at": utcnow(),
        }
        keep_signature()
        events = [{**event, "event": "activation"}]
        if decision.counts_transfer:
            events.append({**event, "event": "transfer"})
        device_id = statements.record_activation(
            tx.connection,
            tx.dialect,
            statements.Seat(
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
                **audit_row,
                "action": "device.activate_offline" if offline else "device.activate",
            },
        )
        if device_id is None:  # the guarded UPDATE found no seat left after all
            raise LicensorError("license_activated_max_times")
        if user is not None:
            statements.count_user_activation(tx.connection, tx.dialect, user.id, 1)
            user = SimpleNamespace(
                **{**vars(user), "total_activations": user.total_activations + 1}
            )
    else:  # the device holds its seat: activated again, no seat taken (QLM)
        assert known is not None
        device_id = known.id
        keep_signature()
        statements.record_reactivation(
            tx.connection,
            tx.dialect,
            device,
            event={**event, "device_id": device_id, "event": "reactivation"},
            audit={**audit_row, "action": "device.reactivate", "object_id": str(device_id)},
        )
    if variables:
        statements.set_variables(tx.connection, tx.dialect, device_id, variables, now)
    # the device's variables, for the answer (a new device without any has none)
    found_variables = (
        statements.variables(tx.connection, tx.dialect, device_id)
        if known is not None or variables
        else []
    )
    activated = Activated(
        caller=caller,
        license=SimpleNamespace(**{**vars(license_), **changed}),
        product=product,
        device=SimpleNamespace(**{**device, "id": device_id}),
        customer=rows.customer,
        user=user,
        release=rows.release,
        variables=found_variables,
        now=now,
        reactivated=not decision.takes_seat,
    )
    if not idempotency_key:
        return activated
    # The record holds the answer itself, so it is made (and signed) inside the transaction.
    content = activated.render(keys, algorithm)
    record_answer(tx, caller, idempotency_key, request_hash, content, now)
    return replace(activated, content=content)


# what a request may tell of a device (all but is_vm, which is always set)
_DEVICE_FACTS = tuple(name for name in DEVICE_INFO_FIELDS if name != "is_vm")


def _device_values(
    license_id: int,
    hardware_id: str,
    known: Any,
    info: DeviceInfo,
    extras: ActivationExtras,
    now: datetime,
) -> dict[str, Any]:
    """Every column of the device after this activation: facts the request gives replace the
    recorded ones (``is_vm`` always), QLM's options likewise; a new device starts from the
    model's defaults."""
    if known is None:
        base: dict[str, Any] = {
            "license_id": license_id,
            "license_user_id": None,
            "hardware_id": hardware_id,
            "active": True,
            "is_vm": False,
            **dict.fromkeys(_DEVICE_FACTS, ""),
            "first_activated_at": now,
            "last_activated_at": now,
            "last_check_at": None,
            "deactivated_at": None,
            "computer_type": "",
            "affiliate_id": "",
            "user_data": "",
            "activation_count": 0,
            "computer_key": None,
            "license_signature": None,
        }
    else:
        base = dict(vars(known))
    facts = {name: getattr(info, name) or base[name] for name in _DEVICE_FACTS}
    return {
        **base,
        "is_vm": info.is_vm,
        **facts,
        "computer_type": extras.computer_type or base["computer_type"],
        "affiliate_id": extras.affiliate_id or base["affiliate_id"],
        "user_data": extras.user_data or base["user_data"],
        "last_activated_at": now,
        "activation_count": base["activation_count"]
        + (1 if extras.increment_activation_count else 0),
    }


# -- deactivate ------------------------------------------------------------------------------


def deactivate(
    tx: Transaction,
    keys: ServerKeys | None,
    who: Caller | Credentials,
    ref: LicenseRef,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
    deactivation_code: str | None = None,
    offline: bool = False,
    consumptions: int | None = None,
) -> Caller:
    """Free the seat of ``ref``'s device, online or with a Deactivation Verification Code
    (QLM style; required when the product says so), within MaxReleaseCount in
    MaxReleasePeriodInDays; or raise the refusal. The answer is ``"license_deactivated"``.
    ``consumptions``: units the device used since its last report, counted first
    (``consumption.count``: refused as a report would be)."""
    rows, caller = find(tx, keys, who, ref, limits, use="deactivate", now=now)
    product, license_ = rows.product, rows.license
    terms, device = holding_seat(rows)
    method = "offline" if offline else "online"
    if deactivation_code is not None or product.release_requires_deactivation_code:
        if not (
            deactivation_code
            and device.computer_key
            and verify_deactivation_code(
                deactivation_code, device.computer_key, ref.hardware_id, now.date()
            )
        ):
            raise LicensorError("wrong_deactivation_verification_code")
        method = "deactivation_code"
    if terms.max_release_count >= 0:
        decide_release(
            terms,
            releases_in_window=statements.release_count(
                tx.connection, tx.dialect, license_.id, since=release_window_start(terms, now)
            ),
        )
    if consumptions:
        report = Report(consumptions, event="offline_deactivation" if offline else "deactivation")
        consumption.count(tx, terms, license_, device, report, now=now)
    released = statements.record_deactivation(
        tx.connection,
        tx.dialect,
        license_id=license_.id,
        device_id=device.id,
        hardware_id=device.hardware_id,
        now=now,
        updated_at=utcnow(),
        release={
            "license_id": license_.id,
            "device_id": device.id,
            "hardware_id": ref.hardware_id,
            "method": method,
            "released_at": now,
        },
        audit={
            "company_id": caller.company_id,
            "actor": actor_of(caller),
            "action": "device.deactivate_offline" if offline else "device.deactivate",
            "object_type": "device",
            "object_id": str(device.id),
            "before": None,
            "after": {"license_id": license_.id, "hardware_id": ref.hardware_id},
            "created_at": now,
        },
    )
    if not released:  # (cannot happen under the license's lock; named as if it had not held)
        raise LicensorError("device_not_found")
    if terms.is_floating_cloud or feature_rules.any_floating(rows.product.features):
        statements.free_slots(tx.connection, tx.dialect, device.id)  # (its features' too)
    if device.license_user_id is not None:
        statements.count_user_activation(tx.connection, tx.dialect, device.license_user_id, -1)
    return caller


def release_seat(session: Session, license_: License, device: Device, *, now: datetime) -> None:
    """A vendor frees an active device's seat (management API): the writes of ``deactivate``
    but the release record and its audit row (the management use case writes its own)."""
    tx = transaction_of(session)
    statements.record_deactivation(
        tx.connection,
        tx.dialect,
        license_id=license_.id,
        device_id=device.id,
        hardware_id=device.hardware_id,
        now=now,
        updated_at=utcnow(),
        release=None,
        audit=None,
    )
    if device.license_user_id is not None:
        statements.count_user_activation(tx.connection, tx.dialect, device.license_user_id, -1)
    statements.free_slots(tx.connection, tx.dialect, device.id)  # (floating slots, if any)
    for row in (license_, device):
        session.expire(row)


# -- inside an ORM session (QLM, Computer Keys) ----------------------------------------------


def activate_in_session(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    info: DeviceInfo,
    extras: ActivationExtras,
    *,
    now: datetime,
    limits: RateLimits = NO_LIMITS,
    offline: bool = False,
) -> licensing.Activated:
    """``activate`` inside the session's transaction, for fronts that render something else
    than the License API answer (a Computer Key); ``offline``: for a computer without
    internet (refused where offline activation is not allowed)."""
    done = activate(
        transaction_of(session),
        keys,
        caller,
        ref,
        info,
        limits,
        now=now,
        extras=extras,
        keeps_signature=False,  # (no License API answer: checks sign it when asked)
        offline=offline,
    )
    session.expire_all()  # (the statements wrote past the session's identity map)
    product = session.get(Product, done.product.id)
    license_ = session.get(License, done.license.id)
    device = session.get(Device, done.device.id)
    assert product is not None and license_ is not None and device is not None
    return licensing.Activated(product, license_, device, reactivated=done.reactivated)


def deactivate_in_session(
    session: Session,
    caller: Caller,
    ref: LicenseRef,
    *,
    now: datetime,
    deactivation_code: str | None = None,
    limits: RateLimits = NO_LIMITS,
) -> None:
    deactivate(
        transaction_of(session),
        None,
        caller,
        ref,
        limits,
        now=now,
        deactivation_code=deactivation_code,
    )
    session.expire_all()
