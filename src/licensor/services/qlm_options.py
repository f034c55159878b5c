"""QLM's options as a vendor sets them (DECISIONS §5): a product's activation limits, a
license's QLM features, receipt id and limits, a customer's account and organisation setting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.protocol.computer_key import parse_features
from licensor.services import audit
from licensor.services.qlm import (
    DEFAULT_LOOKUP_FIELDS,
    VENDOR_ACTOR,
    normalize_email,
    set_customer_password,
)
from licensor.store import repository
from licensor.store.models import Customer, License, Product


@dataclass(frozen=True, slots=True)
class ActivationLimits:
    """QLM's options; ``None`` leaves a value as it is."""

    max_activations_per_system: int | None = None
    max_activations_per_system_vm_only: bool | None = None
    max_release_count: int | None = None
    max_release_period_days: int | None = None
    release_requires_deactivation_code: bool | None = None
    activation_lookup_fields: Sequence[str] | None = None


def _check_limits(limits: ActivationLimits) -> None:
    if limits.max_activations_per_system is not None and limits.max_activations_per_system < 0:
        raise LicensorError("validation_error", "max_activations_per_system: 0 (no limit) or more")
    if limits.max_release_count is not None and limits.max_release_count < -1:
        raise LicensorError("validation_error", "max_release_count: -1 (unlimited) or more")
    if limits.max_release_period_days is not None and limits.max_release_period_days < 0:
        raise LicensorError("validation_error", "max_release_period_days: 0 (ever) or more")
    if limits.activation_lookup_fields is not None:
        known = {name.lower(): name for name in DEFAULT_LOOKUP_FIELDS}
        unknown = [f for f in limits.activation_lookup_fields if f.lower() not in known]
        if unknown:
            raise LicensorError(
                "validation_error",
                f"activation_lookup_fields: {', '.join(unknown)} (known: OrderID, ReceiptID)",
            )


def configure_product(
    session: Session, company_id: int, code: str, limits: ActivationLimits, *, now: datetime
) -> Product:
    _check_limits(limits)
    product = repository.product_by_code(session, company_id, code)
    if product is None:
        raise LicensorError("unknown_product", f"product: no product {code!r}")
    before = activation_limits_of(product)
    for name in (
        "max_activations_per_system",
        "max_activations_per_system_vm_only",
        "max_release_count",
        "max_release_period_days",
        "release_requires_deactivation_code",
    ):
        value = getattr(limits, name)
        if value is not None:
            setattr(product, name, value)
    if limits.activation_lookup_fields is not None:
        known = {name.lower(): name for name in DEFAULT_LOOKUP_FIELDS}
        product.activation_lookup_fields = [
            known[f.lower()] for f in limits.activation_lookup_fields
        ]
    audit.record(
        session,
        company_id=company_id,
        actor=VENDOR_ACTOR,
        action="product.activation_limits",
        object_type="product",
        object_id=product.id,
        before=before,
        after=activation_limits_of(product),
        now=now,
    )
    session.flush()
    return product


def activation_limits_of(product: Product) -> dict[str, object]:
    return {
        "max_activations_per_system": product.max_activations_per_system,
        "max_activations_per_system_vm_only": product.max_activations_per_system_vm_only,
        "max_release_count": product.max_release_count,
        "max_release_period_days": product.max_release_period_days,
        "release_requires_deactivation_code": product.release_requires_deactivation_code,
        "activation_lookup_fields": product.activation_lookup_fields,
    }


def configure_license(
    session: Session,
    company_id: int,
    license_key: str,
    *,
    features: str | None = None,
    receipt_id: str | None = None,
    limits: ActivationLimits = ActivationLimits(),
    now: datetime,
) -> License:
    """QLM features (``0:3;1:2``), receipt id and per-license limits (-2 = the product's)."""
    _check_limits(limits)
    license_ = repository.license_by_key_in_company(
        session, company_id, normalize_license_key(license_key)
    )
    if license_ is None:
        raise LicensorError("license_not_found", "License not found")
    if features is not None:
        try:
            license_.feature_flags = parse_features(features)
        except ValueError as exc:
            raise LicensorError("validation_error", f"features: {exc}") from None
    if receipt_id is not None:
        license_.receipt_id = receipt_id.strip()[:200]
    for name in ("max_activations_per_system", "max_release_count", "max_release_period_days"):
        value = getattr(limits, name)
        if value is not None:
            setattr(license_, name, value)
    license_.updated_at = now
    audit.record(
        session,
        company_id=company_id,
        actor=VENDOR_ACTOR,
        action="license.activation_limits",
        object_type="license",
        object_id=license_.id,
        after={
            "features": license_.feature_flags,
            "receipt_id": license_.receipt_id,
            "max_activations_per_system": license_.max_activations_per_system,
            "max_release_count": license_.max_release_count,
            "max_release_period_days": license_.max_release_period_days,
        },
        now=now,
    )
    session.flush()
    return license_


def configure_customer(
    session: Session,
    company_id: int,
    email: str,
    *,
    password: str | None = None,
    allow_organization_users: bool | None = None,
    now: datetime,
) -> Customer:
    """A customer account (password) and whether its organisation's users may use its licenses."""
    customer = (
        set_customer_password(session, company_id, email, password, now=now)
        if password is not None
        else repository.customer_by_email(session, company_id, normalize_email(email))
    )
    if customer is None:
        raise LicensorError("customer_not_found")
    if allow_organization_users is not None:
        customer.allow_organization_users = allow_organization_users
    audit.record(
        session,
        company_id=company_id,
        actor=VENDOR_ACTOR,
        action="customer.account",
        object_type="customer",
        object_id=customer.id,
        after={
            "email": customer.email,
            "has_password": customer.password_hash is not None,
            "allow_organization_users": customer.allow_organization_users,
        },
        now=now,
    )
    session.flush()
    return customer
