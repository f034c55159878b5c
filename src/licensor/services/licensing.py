"""License API use cases: activate, check, deactivate, device variables, trial, product details.

Each function runs inside the caller's transaction (the front opens it and commits) and follows
load → decide with ``core`` → write.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.core.floating import DEFAULT_TIMEOUT_MINUTES
from licensor.core.keys import generate_license_key, normalize_license_key
from licensor.core.licensing import (
    AuthorizationMethod,
    LicenseTerms,
    LicenseType,
)
from licensor.protocol.signing import SignatureAlgorithm, compact_json, iso_ms_z
from licensor.services import payload
from licensor.services.context import Caller, ServerKeys
from licensor.store import admin_repository, repository
from licensor.store.models import (
    Customer,
    Device,
    DeviceVariable,
    License,
    LicensePolicy,
    LicenseUser,
    Product,
    ProductRelease,
)

password_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class LicenseRef:
    """Which license a call is about: product + key, or product + license user."""

    product: str
    hardware_id: str
    license_key: str | None = None
    username: str | None = None
    password: str | None = None
    license_id: int | None = None
    # A bundle's sub-license: the bundle's product code (``license_key`` is the bundle's key).
    bundle_code: str | None = None
    # Set only by a verified single sign-on (services.sso): the user proved who they are at their
    # organisation's identity provider, so no password is asked.
    verified_username: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    is_vm: bool = False
    vm_info: str = ""
    os_ver: str = ""
    hostname: str = ""
    ip: str = ""
    ip_local: str = ""
    app_ver: str = ""
    sdk_ver: str = ""
    mac_address: str = ""


DEVICE_INFO_FIELDS = tuple(f.name for f in fields(DeviceInfo))


@dataclass(frozen=True, slots=True)
class ActivationExtras:
    """QLM-style activation options (DECISIONS §5); the defaults are the License API's rules."""

    allow_reactivation: bool = False  # same computer again: no new seat, no 409
    increment_activation_count: bool = True
    computer_type: str = ""  # "", "PC" or "VM" (VM also means is_vm)
    affiliate_id: str = ""
    user_data: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A service result the front renders as-is (already in wire shape)."""

    body: Any
    status: int = 200
    replayed: bool = False


@dataclass(slots=True)
class _Resolved:
    product: Product
    license: License
    user: LicenseUser | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Activated:
    """A device that holds a seat after an activation; ``reactivated`` = it already did."""

    product: Product
    license: License
    device: Device
    reactivated: bool


# -- resolution --------------------------------------------------------------------------------


def resolve_product(session: Session, caller: Caller, code: str) -> Product:
    product = repository.product_by_code(session, caller.company_id, code)
    if product is None:
        raise LicensorError("unknown_product", f"Provided product code '{code}' was not found.")
    refusal = product_refusal(product, caller)
    if refusal is not None:
        raise LicensorError(refusal)
    return product


def product_refusal(product: Product, caller: Caller) -> str | None:
    """Why this caller may not use this product (an error code), if it may not."""
    if product.archived:
        return "archived_product"
    if not product.enabled:
        return "disabled_product"
    if caller.allowed_product_ids is not None and product.id not in caller.allowed_product_ids:
        return "api_key_product_not_allowed"
    return None


def terms_of(license_: License, product: Product) -> LicenseTerms:
    return LicenseTerms(
        license_type=LicenseType(license_.license_type),
        enabled=license_.enabled,
        is_trial=license_.is_trial,
        trial_days=license_.trial_days,
        validity_period=license_.validity_period,
        validity_days=license_.validity_days,
        start_date=license_.start_date,
        allow_grace_period=license_.allow_grace_period,
        grace_period_hours=license_.grace_period,
        maintenance_period=license_.maintenance_period
        if license_.enable_maintenance_period
        else None,
        max_activations=license_.max_activations,
        allow_unlimited_activations=license_.allow_unlimited_activations,
        times_activated=license_.times_activated,
        max_transfers=license_.max_transfers,
        transfer_count=license_.transfer_count,
        last_deactivated_hardware_id=license_.last_deactivated_hardware_id,
        prevent_vm=license_.prevent_vm if license_.prevent_vm is not None else product.prevent_vm,
        version_spec=license_.version_spec or product.version_spec,
        max_activations_per_system=_either(
            license_.max_activations_per_system, product.max_activations_per_system
        ),
        per_system_limit_vm_only=product.max_activations_per_system_vm_only,
        max_release_count=_either(license_.max_release_count, product.max_release_count),
        max_release_period_days=_either(
            license_.max_release_period_days, product.max_release_period_days
        ),
        allow_offline_activation=license_.allow_offline_activation
        if license_.allow_offline_activation is not None
        else product.allow_offline_activation,
        is_floating_cloud=_either(license_.is_floating_cloud, product.is_floating_cloud),
        floating_users=_either(license_.floating_users, product.floating_users),
        floating_timeout_minutes=_either(license_.floating_timeout, product.floating_timeout)
        or DEFAULT_TIMEOUT_MINUTES,
        can_borrow=_either(license_.can_borrow, product.can_borrow),
        max_borrow_hours=_either(license_.max_borrow_time, product.max_borrow_time),
    )


def _either(license_value: Any, product_value: Any) -> Any:
    return license_value if license_value is not None else product_value


def license_answer(
    keys: ServerKeys,
    *,
    request: str,
    caller: Caller,
    algorithm: SignatureAlgorithm,
    license_: License,
    product: Product,
    customer: Customer | None,
    user: LicenseUser | None,
    device: Device,
    release: ProductRelease | None,
    variables: list[DeviceVariable] | None,
    now: datetime,
    include_expired_features: bool = False,
    floating: Any = None,
) -> dict[str, Any]:
    """The signed activation or check answer (``payload.license_body``) with this server's
    terms and date step: what every path that answers with a license renders. ``floating``:
    a check's ``FloatingState`` (the device's slot, the slots in use)."""
    return payload.license_body(
        request=request,
        caller=caller,
        keyring=keys.keyring,
        algorithm=algorithm,
        terms=terms_of(license_, product),
        license_=license_,
        product=product,
        customer=customer,
        user=user,
        device=device,
        release=release,
        variables=variables,
        now=now,
        include_expired_features=include_expired_features,
        date_step_seconds=keys.settings.answer_date_step_seconds,
        floating=floating,
    )


def _require_write(caller: Caller) -> None:
    if caller.read_only:
        raise LicensorError("read_only_api_key")


# -- activate ----------------------------------------------------------------------------------


def request_fingerprint(endpoint: str, body: Any) -> str:
    return hashlib.sha256(endpoint.encode() + b"\0" + compact_json(body)).hexdigest()


def _actor(caller: Caller) -> str:
    if caller.actor:
        return caller.actor
    if caller.client_id:
        return f"oauth:{caller.client_id}"
    return f"api-key:{(caller.api_key or '')[:8]}"


def actor_of(caller: Caller) -> str:
    """How the audit log names a License API (or QLM front) caller."""
    return _actor(caller)


# -- product details ---------------------------------------------------------------------------


def product_details(
    session: Session,
    caller: Caller,
    code: str,
    *,
    include_latest_version: bool,
    include_custom_fields: bool,
) -> Answer:
    product = resolve_product(session, caller, code)
    body: dict[str, Any] = {
        "product_id": product.id,
        "product_name": product.name,
        "short_code": product.short_code,
        "authorization_method": product.authorization_method,
        "floating_timeout": product.floating_timeout,
        "max_overages": 0,
        "trial_days": product.trial_days,
        "allow_overages": False,
        "allow_trial": product.allow_trial,
        "prevent_vm": product.prevent_vm,
        "metadata": product.metadata_,
    }
    if include_custom_fields:
        body["custom_fields"] = [
            {
                "id": index + 1,
                "name": f.get("name", ""),
                "default_value": f.get("default_value", ""),
            }
            for index, f in enumerate(product.custom_fields or [])
        ]
    if include_latest_version:
        release = repository.latest_release(session, product.id)
        body["latest_version"] = (
            None
            if release is None
            else {
                "id": release.id,
                "product_id": product.id,
                "version": release.version,
                "environment": release.environment,
                "hash_md5": release.hash_md5,
                "eula_link": release.eula_link,
                "release_notes_link": release.release_notes_link,
                "size": release.size,
                "requires_version": release.requires_version,
                "channel": release.channel,
                "release_date": iso_ms_z(release.release_date),
                "enabled": release.enabled,
                "full_link": release.full_link,
                "filename": release.full_link.rsplit("/", 1)[-1],
                "created_at": iso_ms_z(release.created_at),
                "updated_at": iso_ms_z(release.created_at),
            }
        )
    return Answer(body)


# -- trial -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialRequest:
    product: str
    hardware_id: str
    email: str | None = None
    password: str | None = None
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    license_policy: str | None = None


def _trial_policy(session: Session, product: Product, code: str | None) -> LicensePolicy | None:
    """The policy a new trial takes its terms from: the one named, else the product's default
    policy when it is a trial policy (a default made for paid licenses does not shape trials);
    ``None``: the product's trial settings."""
    if code is not None:
        policy = admin_repository.license_policy(session, product.id, code)
        if policy is None:
            raise LicensorError(
                "unknown_policy",
                f"Product '{product.short_code}' has no license policy '{code}'",
            )
        return policy
    default = admin_repository.default_license_policy(session, product.id)
    return default if default is not None and default.is_trial else None


def trial_key(session: Session, caller: Caller, request: TrialRequest, *, now: datetime) -> Answer:
    _require_write(caller)
    product = resolve_product(session, caller, request.product)
    if not product.allow_trial:
        raise LicensorError("trial_not_allowed")
    if caller.scope != "company":
        # A client limited to one customer or license must not see or mint company trials.
        raise LicensorError(
            "trial_not_allowed", f"Trials need company-wide credentials, not a {caller.scope} scope"
        )
    user_based = product.authorization_method == AuthorizationMethod.USER
    email = (request.email or "").strip().lower()
    if user_based and not email:
        raise LicensorError("email_missing")
    existing = repository.trial_license(session, product.id, request.hardware_id)
    if existing is not None:
        return Answer(_trial_body(session, existing, product, None, created=False))
    policy = _trial_policy(session, product, request.license_policy)
    generated_password = None
    try:
        with session.begin_nested():
            license_ = License(
                company_id=caller.company_id,
                product_id=product.id,
                license_type=LicenseType.PERPETUAL.value,
                is_trial=True,
                trial_days=product.trial_days or None,
                trial_hardware_id=request.hardware_id,
                max_activations=max(product.trial_max_activations, 1),
                created_at=now,
                updated_at=now,
            )
            if policy is not None:
                _apply_trial_policy(license_, policy, product)
            if not user_based:
                key = generate_license_key()
                license_.license_key = key
                license_.key_lookup = normalize_license_key(key)
            session.add(license_)
            session.flush()
            if user_based:
                password = request.password or secrets.token_urlsafe(12)
                generated_password = None if request.password else password
                session.add(
                    LicenseUser(
                        license_id=license_.id,
                        email=email,
                        first_name=request.first_name,
                        last_name=request.last_name,
                        phone_number=request.phone,
                        password_hash=password_hasher.hash(password),
                        is_initial_password=True,
                        max_activations=license_.max_activations,
                    )
                )
                session.flush()
    except IntegrityError:
        # Another request created this device's trial at the same moment: answer with it.
        existing = repository.trial_license(session, product.id, request.hardware_id)
        if existing is None:
            raise
        return Answer(_trial_body(session, existing, product, None, created=False))
    return Answer(_trial_body(session, license_, product, generated_password, created=True))


def _apply_trial_policy(license_: License, policy: LicensePolicy, product: Product) -> None:
    """A trial's terms from a policy; it stays a trial of this device whatever the policy says."""
    license_.policy_id = policy.id
    license_.license_type = policy.license_type
    license_.validity_days = policy.validity_days
    license_.validity_period = policy.validity_period
    license_.trial_days = policy.trial_days or product.trial_days or None
    license_.max_activations = max(policy.max_activations, 1)
    license_.allow_unlimited_activations = policy.allow_unlimited_activations
    license_.max_transfers = policy.max_transfers
    license_.prevent_vm = policy.prevent_vm
    license_.allow_offline_activation = policy.allow_offline_activation
    license_.grace_period = policy.grace_period
    license_.allow_grace_period = policy.grace_period > 0
    license_.custom_fields = dict(policy.custom_fields or {})
    license_.features = dict(policy.features or {})
    license_.metadata_ = dict(policy.metadata_ or {})


def _trial_body(
    session: Session,
    license_: License,
    product: Product,
    generated_password: str | None,
    *,
    created: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": license_.id}
    if license_.license_key:
        body["license_key"] = license_.license_key
    body.update(
        {
            "order_id": None,
            "order_store_id": license_.order_store_id,
            "product_id": product.id,
            "created_at": payload.epoch_ms(license_.created_at),
            "updated_at": payload.epoch_ms(license_.updated_at),
            "max_activations": license_.max_activations,
            "times_activated": license_.times_activated,
            "is_trial": True,
            "active": license_.times_activated > 0,
            "enabled": license_.enabled,
            "trial_days": license_.trial_days,
            "license_type": license_.license_type,
            "max_transfers": license_.max_transfers,
            "prevent_vm": product.prevent_vm
            if license_.prevent_vm is None
            else license_.prevent_vm,
            "enable_maintenance_period": license_.enable_maintenance_period,
            "maintenance_duration": None,
            "metadata": license_.metadata_ or {},
            "is_hardware_key_auth": False,
            "validity_period": payload.iso_or_none(license_.validity_period),
            "newly_created": created,
        }
    )
    users = repository.license_users(session, license_.id)
    if users:
        user_obj = payload.user_object(users[0])
        if generated_password is not None:
            user_obj["initial_password"] = generated_password
        body["user"] = user_obj
    return body
