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

from dataclasses import dataclass, field, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Dialect
from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.core.licensing import (
    AuthorizationMethod,
    DeviceFacts,
    UserTerms,
    decide_activation,
    decide_device_access,
    decide_release,
    release_window_start,
)
from licensor.protocol.computer_key import verify_deactivation_code
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import auth, licensing, rate_limit
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import (
    DEVICE_INFO_FIELDS,
    ActivationExtras,
    DeviceInfo,
    LicenseRef,
    actor_of,
    license_answer,
    password_hasher,
    product_refusal,
    terms_of,
)
from licensor.store import activation as statements
from licensor.store.activation import DbapiConnection
from licensor.store.models import Device, License, Product, utcnow


@dataclass(frozen=True, slots=True)
class Transaction:
    """A write transaction's DBAPI connection and its dialect."""

    connection: DbapiConnection
    dialect: Dialect


def transaction_of(session: Session) -> Transaction:
    """The transaction of an ORM session (flushed first: the statements run after what the
    session has pending, on the same connection)."""
    session.flush()
    connection = session.connection()
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    return Transaction(dbapi, connection.dialect)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The request's failure buckets (``rate_limit.buckets``) and their policy: a bucket over
    its limit refuses the request (429) before anything else is decided."""

    policy: rate_limit.Policy | None = None
    buckets: list[tuple[str, int]] = field(default_factory=list)


NO_LIMITS = RateLimits()


@dataclass(frozen=True, slots=True)
class Credentials:
    """An HMAC request's credentials, checked inside the write transaction with the rows
    (PostgreSQL: one round trip fewer). ``company_id``: the API key's company as an earlier
    request of this process found it -- a hint the read checks (no row if it is wrong)."""

    pairs: dict[str, str]
    date_value: str
    company_id: int


# -- the seat read ---------------------------------------------------------------------------


def _username(ref: LicenseRef) -> str | None:
    name = ref.verified_username or ref.username
    return name.strip().lower() if name else None


def _read(
    tx: Transaction,
    who: Caller | Credentials,
    ref: LicenseRef,
    limits: RateLimits,
    *,
    by_user: bool,
    for_answer: bool,
    app_ver: str,
    idempotency_key: str | None,
) -> statements.SeatRows | None:
    scope_customer = scope_license = None
    if isinstance(who, Caller):
        scope_customer, scope_license = who.scope_customer_id, who.scope_license_id
    if by_user:
        lookup: dict[str, Any] = {"email": _username(ref)}
    else:
        lookup = {"key_lookup": normalize_license_key(ref.license_key or "")}
    return statements.seat_rows(
        tx.connection,
        tx.dialect,
        for_answer=for_answer,
        company_id=who.company_id,
        product=ref.product,
        hardware_id=ref.hardware_id,
        scope_customer_id=scope_customer,
        scope_license_id=scope_license,
        pinned_id=ref.license_id,
        app_ver=app_ver,
        idempotency_key=idempotency_key,
        buckets=[bucket for bucket, _ in limits.buckets],
        api_key=who.pairs["apikey"] if isinstance(who, Credentials) else None,
        **lookup,
    )


def _seat(
    tx: Transaction,
    keys: ServerKeys | None,
    who: Caller | Credentials,
    ref: LicenseRef,
    limits: RateLimits,
    *,
    now: datetime,
    writes: bool,
    verify_password: bool,
    for_answer: bool = False,
    app_ver: str = "",
    idempotency_key: str | None = None,
) -> tuple[statements.SeatRows, Caller]:
    """The seat rows of ``ref`` and the caller, or the refusal, in the documented order: too
    many failures (429), a read-only key (``writes``), the product, the license (by key, or by
    license user for user-based products), the user's password."""
    read = dict(for_answer=for_answer, app_ver=app_ver, idempotency_key=idempotency_key)
    username = _username(ref)
    by_user = username is not None and not ref.license_key  # (the product may say otherwise)
    rows = _read(tx, who, ref, limits, by_user=by_user, **read)  # type: ignore[arg-type]
    if isinstance(who, Caller):
        caller = who
    elif keys is None:
        raise TypeError("credentials are checked with the server's keys")
    elif rows is not None and rows.credential is not None:
        caller = auth.credential_caller(keys, rows.credential, who.pairs, who.date_value, now)
    else:  # no row: the key, its signature or the company hint is wrong, or there is no seat
        caller = auth.hmac_request_caller(
            tx.connection, tx.dialect, keys, pairs=who.pairs, date_value=who.date_value, now=now
        )
        if caller.company_id != who.company_id:
            rows = _read(tx, caller, ref, limits, by_user=by_user, **read)  # type: ignore[arg-type]
    if rows is not None:
        product: Product | None = rows.product
        counters = rows.rate_counters
    else:
        found = statements.product_rows(
            tx.connection,
            tx.dialect,
            company_id=caller.company_id,
            product=ref.product,
            buckets=[bucket for bucket, _ in limits.buckets],
        )
        product, counters = found.product, found.rate_counters
    if limits.policy is not None and limits.buckets:
        refused = rate_limit.refusal(limits.policy, limits.buckets, counters, now)
        if refused is not None:
            raise refused
    if writes and caller.read_only:
        raise LicensorError("read_only_api_key")
    if product is None:
        raise LicensorError(
            "unknown_product", f"Provided product code '{ref.product}' was not found."
        )
    refusal = product_refusal(product, caller)
    if refusal is not None:
        raise LicensorError(refusal)
    user_based = product.authorization_method == AuthorizationMethod.USER
    if user_based:
        if username is None:
            raise LicensorError(
                "license_key_or_license_user_required",
                "A username is required: this product uses user-based licenses",
            )
        verify_password = verify_password and ref.verified_username is None
        if verify_password and not ref.password:
            raise LicensorError(
                "missing_parameters", "Some parameters are missing in the request: password."
            )
    elif not ref.license_key:
        raise LicensorError("license_key_required")
    if user_based != by_user:  # read again, the way this product finds its licenses
        rows = _read(tx, caller, ref, limits, by_user=user_based, **read)  # type: ignore[arg-type]
    if rows is None:
        if user_based:
            raise LicensorError("license_not_found")
        raise LicensorError("license_not_found", "License not found")
    if user_based and verify_password:
        assert rows.user is not None
        try:
            password_hasher.verify(rows.user.password_hash, ref.password or "")
        except (VerificationError, InvalidHashError):
            raise LicensorError("invalid_credentials") from None
    return rows, caller


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

    def body(self, keys: ServerKeys, algorithm: SignatureAlgorithm) -> dict[str, Any]:
        return license_answer(
            keys,
            request="activation",
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
    """The recorded answer of an Idempotency-Key, or ``None`` when it outlived its time to live
    (then forgotten, and the request runs)."""
    age_hours = (now - record.created_at).total_seconds() / 3600
    if age_hours > keys.settings.idempotency_ttl_hours:
        statements.forget_idempotency(tx.connection, tx.dialect, record.id)
        return None
    if record.request_hash != request_hash:
        raise LicensorError("idempotency_key_reused")
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
        content=bytes(record.body),
        status=record.status,
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
) -> Activated:
    """Bind the license of ``ref`` to its hardware id, or raise the refusal (nothing written
    then: the caller rolls back). With ``idempotency_key`` the answer is recorded, signed with
    ``algorithm``, and a retry of the same request gets it again."""
    rows, caller = _seat(
        tx,
        keys,
        who,
        ref,
        limits,
        now=now,
        writes=True,
        verify_password=True,
        for_answer=True,
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
    decision = decide_activation(
        terms_of(license_, product),
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
            audit={**audit_row, "action": "device.activate"},
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
    statements.record_idempotency(
        tx.connection,
        tx.dialect,
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
) -> Caller:
    """Free the seat of ``ref``'s device, online or with a Deactivation Verification Code
    (QLM style; required when the product says so), within MaxReleaseCount in
    MaxReleasePeriodInDays; or raise the refusal. The answer is ``"license_deactivated"``."""
    rows, caller = _seat(tx, keys, who, ref, limits, now=now, writes=True, verify_password=False)
    product, license_, device = rows.product, rows.license, rows.device
    terms = terms_of(license_, product)
    decide_device_access(
        terms, device_active=device is not None and device.active, blacklisted=rows.blacklisted
    )
    assert device is not None
    method = "online"
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
            "action": "device.deactivate",
            "object_type": "device",
            "object_id": str(device.id),
            "before": None,
            "after": {"license_id": license_.id, "hardware_id": ref.hardware_id},
            "created_at": now,
        },
    )
    if not released:  # (cannot happen under the license's lock; named as if it had not held)
        raise LicensorError("device_not_found")
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
) -> licensing.Activated:
    """``activate`` inside the session's transaction, for fronts that render something else
    than the License API answer (a Computer Key)."""
    done = activate(transaction_of(session), keys, caller, ref, info, now=now, extras=extras)
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
) -> None:
    deactivate(
        transaction_of(session), None, caller, ref, now=now, deactivation_code=deactivation_code
    )
    session.expire_all()
