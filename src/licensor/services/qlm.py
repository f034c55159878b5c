"""QLM-style activation (DECISIONS §5): the ways to find a license and the Computer Key answer.

Every activation here ends in ``activation.activate_in_session``, every validation in
``check.check_in_session``, releases in ``activation.deactivate_in_session``: the License API's rules, with
QLM's options (re-activation of the same computer without a new seat, ``maxActivationsPerSystem``,
release limits, the Deactivation Verification Code). This module adds only how the license is
found (by key, authorization code, order or receipt field, customer account) and the signed
Computer Key. Functions run inside the caller's transaction; the front commits, then mails.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.core.licensing import AuthorizationMethod, LicenseType, expires_at
from licensor.protocol.computer_key import (
    ComputerKey,
    ComputerKeyError,
    LicenseModel,
    computer_id_hash,
    decode_computer_key,
    encode_computer_key,
)
from licensor.protocol.signing import PublicKeySet
from licensor.services import activation, audit, check, floating, licensing, rate_limit
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import (
    Activated,
    ActivationExtras,
    DeviceInfo,
    LicenseRef,
    password_hasher,
)
from licensor.services.mail import AuthorizationCodeMail
from licensor.services.seats import RateLimits, transaction_of
from licensor.store import repository
from licensor.store.models import AuthorizationCode, Customer, Device, License, Product

AUTHORIZATION_CODE_TTL = timedelta(minutes=10)
AUTHORIZATION_CODE_MAX_TRIES = 5
DEFAULT_LOOKUP_FIELDS = ("OrderID", "ReceiptID")
COMPUTER_TYPES = ("", "PC", "VM")
_LATEST_KEY_TIME = datetime(2106, 2, 7, tzinfo=UTC)  # what a Computer Key's u32 can carry
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
_DUMMY_HASH = password_hasher.hash("licensor: no such customer account")


# -- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComputerKeyGrant:
    """A computer that holds a seat, with its signed Computer Key; fronts render it."""

    computer_key: str
    product: Product
    license: License
    device: Device
    customer: Customer | None
    reactivated: bool
    issued_at: datetime
    expires_at: datetime | None  # when the license stops being valid, grace included

    @property
    def license_model(self) -> LicenseModel:
        return license_model(self.license, self.product)

    @property
    def floating_seats(self) -> int:
        """QLM's ``FloatingSeats``: the seats in use at once of a cloud floating license."""
        terms = licensing.terms_of(self.license, self.product)
        return terms.floating_users if terms.is_floating_cloud else 0


@dataclass(frozen=True, slots=True)
class CodeRefused:
    """A refused authorization code. Returned, not raised: the counted try must be committed."""

    code: str


@dataclass(frozen=True, slots=True)
class CustomerDetails:
    """``ActivateLicenseForUser*``: who activates, recorded with the customer."""

    email: str
    full_name: str = ""
    company: str = ""
    privacy_consent: bool | None = None


# -- Computer Keys -----------------------------------------------------------------------------


def license_model(license_: License, product: Product) -> LicenseModel:
    """QLM's model of a license: trial, subscription or permanent, ``*_cloud`` for a floating
    cloud license (its seats are Licensor's floating slots)."""
    cloud = licensing.terms_of(license_, product).is_floating_cloud
    if license_.is_trial:
        return LicenseModel.TRIAL_CLOUD if cloud else LicenseModel.TRIAL
    if license_.license_type in (LicenseType.SUBSCRIPTION, LicenseType.TIME_LIMITED):
        return LicenseModel.SUBSCRIPTION_CLOUD if cloud else LicenseModel.SUBSCRIPTION
    return LicenseModel.PERMANENT_CLOUD if cloud else LicenseModel.PERMANENT


def trusted_keys(keys: ServerKeys) -> PublicKeySet:
    """The server's Ed25519 keys (active and retired) that Computer Keys are signed with."""
    return PublicKeySet(
        {
            kid: key.private_key.public_key()
            for kid, key in keys.keyring.keys.items()
            if isinstance(key.private_key, ed25519.Ed25519PrivateKey)
        }
    )


def issue_computer_key(
    session: Session, keys: ServerKeys, activated: Activated, *, now: datetime
) -> ComputerKeyGrant:
    """Sign a Computer Key for the device's computer and remember it on the device."""
    license_, product, device = activated.license, activated.product, activated.device
    signer = keys.keyring.ed25519
    assert isinstance(signer.private_key, ed25519.Ed25519PrivateKey)
    ends = expires_at(licensing.terms_of(license_, product), license_.validity_period)
    issued = now.replace(microsecond=0)
    text = encode_computer_key(
        ComputerKey(
            license_id=license_.id,
            product=product.short_code,
            computer_hash=computer_id_hash(device.hardware_id),
            license_model=license_model(license_, product),
            license_type=license_.license_type,
            features=license_.feature_flags,
            issued_at=issued,
            expires_at=min(ends, _LATEST_KEY_TIME) if ends is not None else None,
            kid=signer.kid,
        ),
        signer.private_key,
    )
    device.computer_key = text
    session.flush()
    return ComputerKeyGrant(
        computer_key=text,
        product=product,
        license=license_,
        device=device,
        customer=repository.customer(session, license_.customer_id),
        reactivated=activated.reactivated,
        issued_at=issued,
        expires_at=ends,
    )


# -- finding the license -----------------------------------------------------------------------


def resolve_product(session: Session, caller: Caller, value: str) -> Product:
    """A product by short code, or by numeric id (QLM's ``is_productid``)."""
    if value.isdigit() and len(value) < 19:
        found = repository.product_in_company(session, caller.company_id, int(value))
        if found is not None:
            return licensing.resolve_product(session, caller, found.short_code)
    return licensing.resolve_product(session, caller, value)


def key_ref(
    session: Session,
    caller: Caller,
    *,
    license_key: str,
    hardware_id: str,
    product: str | None,
) -> LicenseRef:
    """The license of a key; QLM calls may omit the product (keys are unique per company)."""
    if product:
        return LicenseRef(
            product=resolve_product(session, caller, product).short_code,
            hardware_id=hardware_id,
            license_key=license_key,
        )
    found = repository.license_by_key_in_company(
        session, caller.company_id, normalize_license_key(license_key)
    )
    if found is None:
        raise LicensorError("license_not_found", "License not found")
    owner = repository.product_in_company(session, caller.company_id, found.product_id)
    assert owner is not None
    return LicenseRef(product=owner.short_code, hardware_id=hardware_id, license_key=license_key)


def _ref_of(license_: License, product: Product, hardware_id: str) -> LicenseRef:
    return LicenseRef(
        product=product.short_code,
        hardware_id=hardware_id,
        license_key=license_.license_key,
        license_id=license_.id,
    )


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > 320 or _EMAIL.fullmatch(value) is None:
        raise LicensorError("validation_error", "email: not an e-mail address")
    return value


def _products(session: Session, caller: Caller, product: str | None) -> list[Product]:
    if product:
        return [resolve_product(session, caller, product)]
    return [
        p
        for p in repository.products(session, caller.company_id)
        if p.enabled
        and not p.archived
        and p.authorization_method == AuthorizationMethod.LICENSE_KEY
        and (caller.allowed_product_ids is None or p.id in caller.allowed_product_ids)
    ]


def _pick(licenses: Sequence[License]) -> License | None:
    """An enabled license with a free seat first; else any enabled one (its error is clearer)."""
    enabled = [lic for lic in licenses if lic.enabled]
    for license_ in enabled:
        if license_.allow_unlimited_activations or (
            license_.times_activated < license_.max_activations
        ):
            return license_
    return enabled[0] if enabled else (licenses[0] if licenses else None)


def _customer_licenses(
    session: Session, caller: Caller, customers: Sequence[Customer], products: Sequence[Product]
) -> Sequence[License]:
    return repository.licenses_of_customers(
        session,
        caller.company_id,
        [c.id for c in customers],
        [p.id for p in products],
        only_customer_id=caller.scope_customer_id,
        only_license_id=caller.scope_license_id,
    )


def license_for_email(
    session: Session, caller: Caller, email: str, products: Sequence[Product]
) -> License:
    """A license owned by the customer with this e-mail, else by its organisation: a customer of
    the same e-mail domain that lets its organisation's users acquire its licenses."""
    owner = repository.customer_by_email(session, caller.company_id, email)
    found = _pick(_customer_licenses(session, caller, [owner] if owner else [], products))
    if found is None:
        domain = email.rpartition("@")[2]
        organisation = [
            c
            for c in repository.organization_customers(session, caller.company_id)
            if c.email.rpartition("@")[2] == domain
        ]
        found = _pick(_customer_licenses(session, caller, organisation, products))
    if found is None:
        raise LicensorError("license_not_found", "No license is registered to this e-mail address")
    return found


def _product_of(session: Session, caller: Caller, license_: License) -> Product:
    product = repository.product_in_company(session, caller.company_id, license_.product_id)
    assert product is not None
    return product


# -- activation variants -----------------------------------------------------------------------


def activate_by_key(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    ref: LicenseRef,
    info: DeviceInfo,
    extras: ActivationExtras,
    *,
    customer: CustomerDetails | None = None,
    now: datetime,
) -> ComputerKeyGrant:
    """``ActivateLicense``, ``...Ex``, ``...ForUser``, ``...ForUserEx``/``Ex2``/``Ex3``."""
    activated = activation.activate_in_session(session, keys, caller, ref, info, extras, now=now)
    if customer is not None:
        register_customer(session, caller, activated.license, customer, now=now)
    return issue_computer_key(session, keys, activated, now=now)


def activate_by_field(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    *,
    product: str,
    field: str,
    value: str,
    email: str,
    hardware_id: str,
    info: DeviceInfo,
    extras: ActivationExtras,
    now: datetime,
) -> ComputerKeyGrant:
    """``ActivateLicenseByField``: the license whose OrderID or ReceiptID is ``value`` and whose
    customer has this e-mail. Which fields may be used is the product's choice."""
    found_product = resolve_product(session, caller, product)
    allowed = [str(f) for f in (found_product.activation_lookup_fields or DEFAULT_LOOKUP_FIELDS)]
    wanted = field.strip().lower()
    if wanted not in {f.lower() for f in allowed} or wanted not in repository.LOOKUP_COLUMNS:
        raise LicensorError(
            "activation_field_not_allowed",
            f"field: {field!r} cannot find a license; allowed: {', '.join(allowed)}",
        )
    address = normalize_email(email)
    if not value.strip():
        raise LicensorError("missing_parameters", "Some parameters are missing: value.")
    scope = repository.LicenseScope(
        company_id=caller.company_id,
        product_id=found_product.id,
        customer_id=caller.scope_customer_id,
        license_id=caller.scope_license_id,
    )
    matches = [
        license_
        for license_, owner in repository.licenses_by_field(session, scope, wanted, value.strip())
        if owner is not None and owner.email == address
    ]
    license_ = _pick(matches)
    if license_ is None:
        raise LicensorError("license_not_found", f"No license with this {field} and e-mail")
    activated = activation.activate_in_session(
        session, keys, caller, _ref_of(license_, found_product, hardware_id), info, extras, now=now
    )
    return issue_computer_key(session, keys, activated, now=now)


def activate_by_credentials(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    *,
    username: str,
    password: str,
    product: str | None,
    hardware_id: str,
    info: DeviceInfo,
    extras: ActivationExtras,
    now: datetime,
) -> ComputerKeyGrant:
    """``ActivateLicenseByBasicAuthentication``: a customer account (e-mail + password) finds
    the customer's license."""
    products = _products(session, caller, product)
    try:
        email = normalize_email(username)
    except LicensorError:
        raise LicensorError("invalid_credentials") from None
    customer = repository.customer_by_email(session, caller.company_id, email)
    try:
        password_hasher.verify(
            customer.password_hash if customer and customer.password_hash else _DUMMY_HASH,
            password,
        )
    except (VerificationError, InvalidHashError):
        raise LicensorError("invalid_credentials") from None
    if customer is None or customer.password_hash is None:
        raise LicensorError("invalid_credentials")
    license_ = _pick(_customer_licenses(session, caller, [customer], products))
    if license_ is None:
        raise LicensorError("license_not_found", "This customer account holds no license")
    activated = activation.activate_in_session(
        session,
        keys,
        caller,
        _ref_of(license_, _product_of(session, caller, license_), hardware_id),
        info,
        extras,
        now=now,
    )
    return issue_computer_key(session, keys, activated, now=now)


# -- authorization codes -----------------------------------------------------------------------


def _code_hash(keys: ServerKeys, email: str, code: str) -> str:
    # Keyed with the master key: a database dump alone cannot brute-force the 10^6 codes.
    return keys.master_key.hash_secret(f"authorization-code|{email}|{code}")


def _limit_code_requests(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    product: Product,
    address: str,
    now: datetime,
) -> None:
    """At most ``rate_limit_code_requests`` codes per product and address and window: each
    code allows 5 guesses, so unlimited new codes would make 6 digits guessable (and flood the
    customer's mailbox). Counted in this transaction: only codes actually issued count."""
    limit = keys.settings.rate_limit_code_requests
    if limit <= 0:
        return
    policy = rate_limit.Policy.of(keys.settings)
    bucket = [
        (
            rate_limit.identity_bucket(caller.company_id, product.short_code, "code:" + address),
            limit,
        )
    ]
    rate_limit.ensure_allowed(session, policy, bucket, now)
    rate_limit.count(session, policy, bucket, now)


def request_authorization_code(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    *,
    email: str,
    product: str | None,
    hardware_id: str | None,
    now: datetime,
) -> AuthorizationCodeMail:
    """Step 1: a 6-digit code for a license of this e-mail's customer (or organisation).

    Returns the mail to send once the transaction has committed. A new code replaces the
    pending ones of the same e-mail and product.
    """
    if caller.read_only:
        raise LicensorError("read_only_api_key")
    address = normalize_email(email)
    license_ = license_for_email(session, caller, address, _products(session, caller, product))
    found_product = _product_of(session, caller, license_)
    _limit_code_requests(session, caller, keys, found_product, address, now)
    repository.expire_authorization_codes(
        session, caller.company_id, address, found_product.id, now
    )
    code = f"{secrets.randbelow(1_000_000):06d}"
    record = AuthorizationCode(
        company_id=caller.company_id,
        product_id=found_product.id,
        license_id=license_.id,
        email=address,
        hardware_id=hardware_id or None,
        code_hash=_code_hash(keys, address, code),
        failed_attempts=0,
        created_at=now,
        expires_at=now + AUTHORIZATION_CODE_TTL,
    )
    session.add(record)
    session.flush()
    audit.record(
        session,
        company_id=caller.company_id,
        actor=licensing.actor_of(caller),
        action="authorization_code.request",
        object_type="license",
        object_id=license_.id,
        after={"email": address, "authorization_code_id": record.id},
        now=now,
    )
    company = repository.company(session, caller.company_id)
    return AuthorizationCodeMail(
        to=address,
        code=code,
        product=found_product.short_code,
        product_name=found_product.name,
        company_name=company.name if company else "",
        expires_at=record.expires_at,
        minutes=int(AUTHORIZATION_CODE_TTL.total_seconds() // 60),
    )


def activate_by_authorization_code(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    *,
    code: str,
    hardware_id: str,
    email: str | None,
    product: str | None,
    info: DeviceInfo,
    extras: ActivationExtras,
    now: datetime,
) -> ComputerKeyGrant | CodeRefused:
    """Step 2: code + ComputerID → Computer Key. The newest code of the e-mail (or, without an
    e-mail, of this computer) is tried: single use, 10 minutes, locked after 5 wrong tries."""
    if caller.read_only:
        raise LicensorError("read_only_api_key")
    address = normalize_email(email) if email else None
    product_id = resolve_product(session, caller, product).id if product else None
    record = repository.latest_authorization_code(
        session,
        caller.company_id,
        email=address,
        hardware_id=None if address else hardware_id,
        product_id=product_id,
    )
    if record is None:
        return CodeRefused("authorization_code_invalid")
    if record.used_at is not None:
        return CodeRefused("authorization_code_used")
    if record.failed_attempts >= AUTHORIZATION_CODE_MAX_TRIES:
        return CodeRefused("authorization_code_locked")
    if now >= record.expires_at:
        return CodeRefused("authorization_code_expired")
    typed = code.strip().replace(" ", "").replace("-", "")
    matches = hmac.compare_digest(_code_hash(keys, record.email, typed), record.code_hash)
    if not matches or (record.hardware_id is not None and record.hardware_id != hardware_id):
        tries = record.failed_attempts + 1
        repository.count_failed_authorization_code(session, record.id)
        locked = tries >= AUTHORIZATION_CODE_MAX_TRIES
        return CodeRefused("authorization_code_locked" if locked else "authorization_code_invalid")
    if not repository.use_authorization_code(session, record.id, now):
        return CodeRefused("authorization_code_used")
    license_ = repository.license_in_company(session, caller.company_id, record.license_id)
    if license_ is None:
        raise LicensorError("license_not_found", "License not found")
    activated = activation.activate_in_session(
        session,
        keys,
        caller,
        _ref_of(license_, _product_of(session, caller, license_), hardware_id),
        info,
        extras,
        now=now,
    )
    return issue_computer_key(session, keys, activated, now=now)


# -- validation, re-issue, release -------------------------------------------------------------


def validate_computer_key(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    *,
    computer_key: str,
    hardware_id: str,
    license_key: str | None,
    product: str | None,
    info: DeviceInfo,
    now: datetime,
) -> ComputerKeyGrant:
    """``ValidateLicenseHttp`` with ``is_pckey``: the key is genuine, bound to this computer and
    this license, and the computer still holds a seat (the License API's check rules)."""
    try:
        claims = decode_computer_key(computer_key, trusted_keys(keys))
    except ComputerKeyError as exc:
        raise LicensorError(
            "computer_key_invalid", f"The Computer Key is not valid: {exc}"
        ) from None
    if not claims.is_bound_to(hardware_id):
        raise LicensorError("computer_key_mismatch", "The Computer Key belongs to another computer")
    license_ = repository.license_in_company(session, caller.company_id, claims.license_id)
    if license_ is None or (
        license_key is not None and normalize_license_key(license_key) != license_.key_lookup
    ):
        raise LicensorError("computer_key_mismatch", "The Computer Key belongs to another license")
    owner = _product_of(session, caller, license_)
    if product and resolve_product(session, caller, product).id != owner.id:
        raise LicensorError("computer_key_mismatch", "The Computer Key belongs to another product")
    checked = check.check_in_session(
        session, keys, caller, _ref_of(license_, owner, hardware_id), info, now=now
    )
    return ComputerKeyGrant(
        computer_key=checked.device.computer_key or claims.text,
        product=checked.product,
        license=checked.license,
        device=checked.device,
        customer=repository.customer(session, license_.customer_id),
        reactivated=False,
        issued_at=claims.issued_at,
        expires_at=expires_at(
            licensing.terms_of(checked.license, checked.product), checked.license.validity_period
        ),
    )


def current_computer_key(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    ref: LicenseRef,
    info: DeviceInfo,
    *,
    now: datetime,
) -> ComputerKeyGrant:
    """The Computer Key of a computer that holds a seat, re-issued with today's terms
    (``ReactivateLicense``: picks up a new expiry or features, counts no activation)."""
    checked = check.check_in_session(session, keys, caller, ref, info, now=now)
    return issue_computer_key(session, keys, checked, now=now)


def stored_computer_key(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    ref: LicenseRef,
    info: DeviceInfo,
    *,
    now: datetime,
) -> ComputerKeyGrant:
    """The Computer Key last issued to a computer that holds a seat, unchanged (a query: the
    client's Deactivation Verification Code keeps matching); issued if it never had one."""
    checked = check.check_in_session(session, keys, caller, ref, info, now=now)
    try:
        if checked.device.computer_key is None:
            raise ComputerKeyError("never issued")
        claims = decode_computer_key(checked.device.computer_key, trusted_keys(keys))
    except ComputerKeyError:  # none yet, or signed by a key this server no longer has
        return issue_computer_key(session, keys, checked, now=now)
    return ComputerKeyGrant(
        computer_key=checked.device.computer_key,
        product=checked.product,
        license=checked.license,
        device=checked.device,
        customer=repository.customer(session, checked.license.customer_id),
        reactivated=False,
        issued_at=claims.issued_at,
        expires_at=expires_at(
            licensing.terms_of(checked.license, checked.product), checked.license.validity_period
        ),
    )


def release(
    session: Session,
    caller: Caller,
    ref: LicenseRef,
    *,
    deactivation_code: str | None,
    now: datetime,
) -> None:
    activation.deactivate_in_session(
        session, caller, ref, now=now, deactivation_code=deactivation_code
    )


# -- cloud floating seats (qlm-reference §1.11: CheckoutLicense, CheckinLicense, GoOffline) ------


@dataclass(frozen=True, slots=True)
class FloatingSeat:
    """A computer's seat of a cloud floating license, as QLM's floating calls answer it."""

    floating_seats: int  # seats in use at once
    in_use: int
    held_until: datetime  # free again then unless checked out again (or borrowed longer)
    borrowed_until: datetime | None


def _seat(checked: check.Checked, now: datetime) -> FloatingSeat:
    state = checked.floating
    if not checked.terms.is_floating_cloud:
        raise LicensorError("floating_not_available", "This license is not a floating license")
    if state is None or state.slot is None:  # (expired: no slot is taken)
        raise LicensorError("license_expired")
    slot = state.slot
    lent = slot.borrowed_until if slot.borrowed_until and slot.borrowed_until > now else None
    return FloatingSeat(
        floating_seats=checked.terms.floating_users,
        in_use=state.in_use,
        held_until=max(slot.expires_at, lent) if lent is not None else slot.expires_at,
        borrowed_until=lent,
    )


def checkout(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    ref: LicenseRef,
    info: DeviceInfo,
    *,
    now: datetime,
) -> FloatingSeat:
    """QLM's ``CheckoutLicense``: the computer (activated) takes or keeps one of the license's
    floating seats -- the check's slot (``services.floating``), so a License API check and a
    QLM checkout share the seats. ``floating_not_available`` when all are held."""
    checked = check.check(transaction_of(session), keys, caller, ref, info, now=now, may_write=True)
    session.expire_all()
    return _seat(checked, now)


def checkin(
    session: Session, caller: Caller, keys: ServerKeys, ref: LicenseRef, *, now: datetime
) -> None:
    """QLM's ``CheckinLicense``: the computer's floating seat is free at once."""
    floating.release(transaction_of(session), keys, caller, ref, now=now)
    session.expire_all()


def go_offline(
    session: Session,
    caller: Caller,
    keys: ServerKeys,
    ref: LicenseRef,
    minutes: int,
    *,
    now: datetime,
) -> datetime:
    """QLM's ``GoOffline(period)``: keep the computer's seat for ``minutes`` without checking
    in (a borrow, within the license's ``max_borrow_time``); until when."""
    if minutes <= 0:
        raise LicensorError("borrow_until_not_valid", "The offline period must be positive")
    until = now + timedelta(minutes=minutes)
    floating.borrow(transaction_of(session), keys, caller, ref, until, now=now)
    session.expire_all()
    return until


# -- another computer's browser: the public /offline page ----------------------------------------

PAGE_ACTOR = "page:offline"


def page_caller(session: Session, license_key: str) -> Caller:
    """Who acts on the public page for the holder of ``license_key``: the company whose license
    it is. A key is unique per company only, so a key two vendors on this server issued is
    refused (``license_key_ambiguous``): which vendor's license is meant cannot be told."""
    found = repository.companies_of_key(session, normalize_license_key(license_key))
    if not found:
        raise LicensorError("license_not_found", "License not found")
    if len(found) > 1:
        raise LicensorError("license_key_ambiguous")
    return Caller(company_id=found[0], actor=PAGE_ACTOR)


def activate_computer(
    session: Session,
    keys: ServerKeys,
    *,
    license_key: str,
    computer_id: str,
    computer_name: str,
    limits: RateLimits,
    now: datetime,
) -> ComputerKeyGrant:
    """QLM's offline activation (``QlmWebActivation.aspx``): the Activation Key and the
    ComputerID a computer without internet shows, entered on another computer; the answer is
    that computer's Computer Key. Every activation rule applies, the offline switch too; the
    same computer asking again gets its key again without a new seat."""
    caller = page_caller(session, license_key)
    ref = key_ref(session, caller, license_key=license_key, hardware_id=computer_id, product=None)
    activated = activation.activate_in_session(
        session,
        keys,
        caller,
        ref,
        DeviceInfo(hostname=computer_name),
        ActivationExtras(allow_reactivation=True, increment_activation_count=False),
        now=now,
        limits=limits,
        offline=True,
    )
    return issue_computer_key(session, keys, activated, now=now)


def release_computer(
    session: Session,
    *,
    license_key: str,
    computer_id: str,
    deactivation_code: str,
    limits: RateLimits,
    now: datetime,
) -> None:
    """QLM's offline release (``QlmReleaseLicense.aspx``): the seat of a computer without
    internet, freed with the Deactivation Verification Code its application showed when it
    removed the license (so only the computer that gave the license up frees its seat)."""
    if not deactivation_code:
        raise LicensorError("missing_parameters", "The deactivation code is required")
    caller = page_caller(session, license_key)
    ref = key_ref(session, caller, license_key=license_key, hardware_id=computer_id, product=None)
    activation.deactivate_in_session(
        session, caller, ref, now=now, deactivation_code=deactivation_code, limits=limits
    )


# -- customers ---------------------------------------------------------------------------------


def register_customer(
    session: Session,
    caller: Caller,
    license_: License,
    details: CustomerDetails,
    *,
    now: datetime,
) -> Customer:
    """Create or update the customer who activates; the license gets it when it has none."""
    address = normalize_email(details.email)
    customer = repository.customer_by_email(session, caller.company_id, address)
    before = None if customer is None else _customer_audit(customer)
    if customer is None:
        customer = Customer(company_id=caller.company_id, email=address, created_at=now)
        session.add(customer)
    if details.full_name.strip():
        first, _, last = details.full_name.strip().partition(" ")
        customer.first_name, customer.last_name = first[:200], last.strip()[:200]
    if details.company.strip():
        customer.company_name = details.company.strip()[:200]
    if details.privacy_consent is not None:
        customer.privacy_consent = details.privacy_consent
        customer.privacy_consent_at = now
    session.flush()
    if license_.customer_id is None:
        license_.customer_id = customer.id
    audit.record(
        session,
        company_id=caller.company_id,
        actor=licensing.actor_of(caller),
        action="customer.register" if before is None else "customer.update",
        object_type="customer",
        object_id=customer.id,
        before=before,
        after=_customer_audit(customer),
        now=now,
    )
    session.flush()
    return customer


def update_privacy_consent(
    session: Session,
    caller: Caller,
    *,
    email: str,
    consent: bool,
    license_key: str | None,
    now: datetime,
) -> Customer:
    """``UpdatePrivacyConsent``: record the customer's consent (or its withdrawal) and when."""
    if caller.read_only:
        raise LicensorError("read_only_api_key")
    address = normalize_email(email)
    customer = repository.customer_by_email(session, caller.company_id, address)
    if license_key is not None:
        license_ = repository.license_by_key_in_company(
            session, caller.company_id, normalize_license_key(license_key)
        )
        if license_ is None:
            raise LicensorError("license_not_found", "License not found")
        if license_.customer_id is None:
            details = CustomerDetails(address, privacy_consent=consent)
            return register_customer(session, caller, license_, details, now=now)
        if customer is None or license_.customer_id != customer.id:
            raise LicensorError("customer_not_found", "This license belongs to another customer")
    if customer is None or (
        caller.scope_customer_id is not None and customer.id != caller.scope_customer_id
    ):
        raise LicensorError("customer_not_found")
    before = _customer_audit(customer)
    customer.privacy_consent = consent
    customer.privacy_consent_at = now
    audit.record(
        session,
        company_id=caller.company_id,
        actor=licensing.actor_of(caller),
        action="customer.privacy_consent",
        object_type="customer",
        object_id=customer.id,
        before=before,
        after=_customer_audit(customer),
        now=now,
    )
    session.flush()
    return customer


def set_customer_password(
    session: Session, company_id: int, email: str, password: str, *, now: datetime
) -> Customer:
    """Vendor side: give a customer an account for activation by username and password."""
    if len(password) < 8:
        raise LicensorError("validation_error", "password: at least 8 characters")
    address = normalize_email(email)
    customer = repository.customer_by_email(session, company_id, address)
    if customer is None:
        customer = Customer(company_id=company_id, email=address, created_at=now)
        session.add(customer)
    customer.password_hash = password_hasher.hash(password)
    session.flush()
    return customer


def _customer_audit(customer: Customer) -> dict[str, object]:
    return {
        "email": customer.email,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "company_name": customer.company_name,
        "privacy_consent": customer.privacy_consent,
        "privacy_consent_at": customer.privacy_consent_at.isoformat()
        if customer.privacy_consent_at
        else None,
    }


# -- product -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatestVersion:
    version: str
    url: str
    notes: str
    release_date: datetime | None


def latest_version(session: Session, caller: Caller, product: str) -> LatestVersion | None:
    found = resolve_product(session, caller, product)
    release = repository.latest_release(session, found.id)
    if release is None:
        return None
    return LatestVersion(
        release.version, release.full_link, release.release_notes_link, release.release_date
    )


# -- vendor side: QLM options --------------------------------------------------------------------

VENDOR_ACTOR = "vendor-cli"


def vendor_caller(company_id: int) -> Caller:
    """The vendor acting for a customer (e.g. a Computer Key for a ComputerID sent by mail)."""
    return Caller(company_id=company_id, client_id=VENDOR_ACTOR)
