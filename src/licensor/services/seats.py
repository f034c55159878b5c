"""What every use case on a license and a device starts with: find the rows the request
names, or the refusal, in the documented evaluation order (v4 §4.3 and DECISIONS): one read
(``store/activation.py`` ``seat_rows``) of the product, the license, the device, the
blacklist, the rate-limit counters and whatever the use case answers with, and a second one
(``product_rows``) only to name a refusal when it found nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Dialect
from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.core.keys import bundle_key_lookup, normalize_license_key
from licensor.core.licensing import AuthorizationMethod, LicenseTerms, decide_device_access
from licensor.services import auth, rate_limit
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import LicenseRef, password_hasher, product_refusal, terms_of
from licensor.store import activation as statements
from licensor.store.activation import DbapiConnection
from licensor.store.models import Product

if TYPE_CHECKING:
    from licensor.store.db import Database


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

    def count(self, db: Database, now: datetime, code: str) -> None:
        """Count a refusal with ``code`` in these buckets if it reveals a wrong guess
        (``rate_limit.COUNTED``), in a write transaction of its own: the refused one was
        rolled back."""
        if self.policy is None or not self.buckets or code not in rate_limit.COUNTED:
            return
        with db.transaction(write=True) as session:
            rate_limit.record_failure(session, self.policy, self.buckets, now, code)


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
    use: str,
    app_ver: str,
    idempotency_key: str | None,
) -> statements.SeatRows | None:
    scope_customer = scope_license = None
    if isinstance(who, Caller):
        scope_customer, scope_license = who.scope_customer_id, who.scope_license_id
    if by_user:
        lookup: dict[str, Any] = {"email": _username(ref)}
    else:
        lookup = {"key_lookup": key_lookup_of(ref)}
    return statements.seat_rows(
        tx.connection,
        tx.dialect,
        use=use,
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


def key_lookup_of(ref: LicenseRef) -> str:
    """The lookup form of the license key ``ref`` names: of its bundle's sub-license for its
    product when it names a ``bundle_code``."""
    found = normalize_license_key(ref.license_key or "")
    if ref.bundle_code:
        return bundle_key_lookup(found, ref.bundle_code, ref.product)
    return found


def over_limits(
    limits: RateLimits, counters: dict[str, tuple[datetime, int]], now: datetime
) -> LicensorError | None:
    """The 429 of a request over its rate limits, from the counters read with its rows."""
    if limits.policy is None or not limits.buckets:
        return None
    return rate_limit.refusal(limits.policy, limits.buckets, counters, now)


def find(
    tx: Transaction,
    keys: ServerKeys | None,
    who: Caller | Credentials,
    ref: LicenseRef,
    limits: RateLimits,
    *,
    use: str,
    now: datetime,
    app_ver: str = "",
    idempotency_key: str | None = None,
) -> tuple[statements.SeatRows, Caller]:
    """The rows ``ref`` names for a ``use`` ("activate", "deactivate", "check") and the
    caller, or the refusal, in the documented order: the credentials (``Credentials``), too
    many failures (429), a read-only key (activations and deactivations), the product, the
    license (by key, or by license user for user-based products), the user's password
    (activations: the other uses name the user they were activated for)."""
    read = dict(use=use, app_ver=app_ver, idempotency_key=idempotency_key)
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
    refused = over_limits(limits, counters, now)
    if refused is not None and use != "check":
        raise refused
    try:
        return _named(tx, ref, limits, rows, caller, product, use=use, read=read)
    except LicensorError:
        # a check over the limits is refused only when it would fail: a device that holds
        # its seat tells a guesser nothing, and keeps working
        if refused is not None:
            raise refused from None
        raise


def _named(
    tx: Transaction,
    ref: LicenseRef,
    limits: RateLimits,
    rows: statements.SeatRows | None,
    caller: Caller,
    product: Product | None,
    *,
    use: str,
    read: dict[str, Any],
) -> tuple[statements.SeatRows, Caller]:
    """The rest of ``find``: the refusals after the rate limits'."""
    writes = use != "check"
    verify_password = use == "activate"
    username = _username(ref)
    by_user = username is not None and not ref.license_key
    if writes and caller.read_only:
        raise LicensorError("read_only_api_key")
    if product is None:
        raise LicensorError(
            "unknown_product", f"Provided product code '{ref.product}' was not found."
        )
    refusal = product_refusal(product, caller)
    if refusal is not None:
        raise LicensorError(refusal)
    if product.bundle_items is not None:
        raise LicensorError("bundle_activation_required")
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
        rows = _read(tx, caller, ref, limits, by_user=user_based, **read)
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


# -- Idempotency-Key records -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """The answer recorded for an Idempotency-Key."""

    status: int
    body: bytes


def replayed(
    tx: Transaction,
    keys: ServerKeys,
    rows: statements.SeatRows,
    idempotency_key: str | None,
    request_hash: str,
    now: datetime,
) -> Recorded | None:
    """The answer recorded for the request's Idempotency-Key, if it has one still kept
    (``recorded_answer`` on the record read with the rows)."""
    if not idempotency_key or rows.idempotency is None:
        return None
    return recorded_answer(tx, keys, rows.idempotency, request_hash, now)


def holding_seat(rows: statements.SeatRows) -> tuple[LicenseTerms, Any]:
    """The license's terms and the device, which must hold a seat (``decide_device_access``:
    ``license_not_enabled``, ``blacklisted``, ``license_not_active``, ``device_not_found``)."""
    terms = terms_of(rows.license, rows.product)
    device = rows.device
    decide_device_access(
        terms, device_active=device is not None and device.active, blacklisted=rows.blacklisted
    )
    return terms, device


def recorded_answer(
    tx: Transaction, keys: ServerKeys, record: Any, request_hash: str, now: datetime
) -> Recorded | None:
    """The answer recorded for the request's Idempotency-Key (its record, read with the
    rows), or ``None`` when the record outlived its time to live (then forgotten, and the
    request runs); ``idempotency_key_reused`` when the key came with another request."""
    age_hours = (now - record.created_at).total_seconds() / 3600
    if age_hours > keys.settings.idempotency_ttl_hours:
        statements.forget_idempotency(tx.connection, tx.dialect, record.id)
        return None
    if record.request_hash != request_hash:
        raise LicensorError("idempotency_key_reused")
    return Recorded(record.status, bytes(record.body))


def record_answer(
    tx: Transaction, caller: Caller, key: str, request_hash: str, body: bytes, now: datetime
) -> None:
    """Record the answer ``body`` (status 200) of a request with an Idempotency-Key."""
    statements.record_idempotency(
        tx.connection,
        tx.dialect,
        {
            "company_id": caller.company_id,
            "key": key,
            "request_hash": request_hash,
            "status": 200,
            "body": body,
            "created_at": now,
        },
    )
