"""Vendor-side use cases: companies, credentials, products, licenses, blacklist."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from licensor.core import custom_fields as custom_field_rules
from licensor.core import features as feature_rules
from licensor.core.consumption import MAX_TOTAL, PERIODS
from licensor.core.errors import LicensorError
from licensor.core.keys import bundle_key_lookup, generate_license_key, normalize_license_key
from licensor.core.licensing import AuthorizationMethod, LicenseType, valid_version_spec
from licensor.secrets_at_rest import MasterKey
from licensor.services.auth import OAUTH_SECRET_CONTEXT, SHARED_KEY_CONTEXT
from licensor.services.licensing import password_hasher
from licensor.store import repository
from licensor.store.models import (
    ApiKey,
    BlacklistEntry,
    Company,
    Customer,
    License,
    LicenseUser,
    OAuthClient,
    Product,
    ProductRelease,
)


def create_company(session: Session, name: str, *, oauth_required: bool = False) -> Company:
    name = name.strip()
    if not name:
        raise LicensorError("validation_error", "name: must not be empty")
    company = Company(name=name, oauth_required=oauth_required)
    session.add(company)
    session.flush()
    return company


def resolve_company(session: Session, name_or_id: str | None) -> Company:
    """The company a command means: by id or name; the only one when there is just one."""
    if name_or_id is None:
        all_companies = repository.companies(session)
        if len(all_companies) == 1:
            return all_companies[0]
        if not all_companies:
            raise LicensorError("not_found", "No company yet: run `licensor init` first")
        raise LicensorError("validation_error", "company: several companies exist, name one")
    found = (
        repository.company(session, int(name_or_id)) if name_or_id.isdigit() else None
    ) or repository.company_by_name(session, name_or_id)
    if found is None:
        raise LicensorError("not_found", f"company: no company {name_or_id!r}")
    return found


@dataclass(frozen=True)
class NewApiKey:
    api_key: str
    shared_key: str
    read_only: bool
    product_ids: list[int] | None


def create_api_key(
    session: Session,
    master_key: MasterKey,
    company_id: int,
    *,
    read_only: bool = False,
    product_codes: Iterable[str] | None = None,
    label: str = "",
) -> NewApiKey:
    product_ids = None
    if product_codes:
        product_ids = []
        for code in product_codes:
            product = repository.product_by_code(session, company_id, code)
            if product is None:
                raise LicensorError("unknown_product", f"products: no product {code!r}")
            product_ids.append(product.id)
    api_key = str(uuid.uuid4())
    shared_key = secrets.token_urlsafe(30)
    session.add(
        ApiKey(
            company_id=company_id,
            api_key=api_key,
            label=label,
            read_only=read_only,
            shared_key_encrypted=master_key.encrypt(shared_key, context=SHARED_KEY_CONTEXT),
            allowed_product_ids=product_ids,
        )
    )
    session.flush()
    return NewApiKey(api_key, shared_key, read_only, product_ids)


@dataclass(frozen=True)
class NewOAuthClient:
    client_id: str
    client_secret: str
    scope: str


def create_oauth_client(
    session: Session,
    master_key: MasterKey,
    company_id: int,
    *,
    scope: str = "company",
    customer_id: int | None = None,
    license_id: int | None = None,
) -> NewOAuthClient:
    if scope not in ("company", "customer", "license"):
        raise LicensorError("validation_error", "scope: must be company, customer or license")
    if scope == "customer" and customer_id is None:
        raise LicensorError("validation_error", "customer_id: required for the customer scope")
    if scope == "license" and license_id is None:
        raise LicensorError("validation_error", "license_id: required for the license scope")
    scope_id = {"company": company_id, "customer": customer_id, "license": license_id}[scope]
    client_id = f"auth-{scope}-{scope_id}-{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(32)
    session.add(
        OAuthClient(
            company_id=company_id,
            client_id=client_id,
            secret_hash=master_key.hash_secret(secret),
            secret_encrypted=master_key.encrypt(secret, context=OAUTH_SECRET_CONTEXT),
            scope=scope,
            customer_id=customer_id if scope == "customer" else None,
            license_id=license_id if scope == "license" else None,
        )
    )
    session.flush()
    return NewOAuthClient(client_id, secret, scope)


@dataclass
class ProductSpec:
    short_code: str
    name: str
    authorization_method: str = "license-key"
    prevent_vm: bool = False
    allow_offline_activation: bool = True
    version_spec: str | None = None
    allow_trial: bool = False
    trial_days: int = 0
    trial_max_activations: int = 1
    custom_fields: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # floating cloud (core.floating)
    is_floating_cloud: bool = False
    floating_users: int = 0
    floating_timeout: int = 0  # minutes; 0 = 5
    can_borrow: bool = False
    max_borrow_time: int = 0  # hours
    # a bundle product: the short codes of its sub-products (key-based products, no bundles)
    bundle: list[str] | None = None


MAX_BUNDLE = 50


def _bundle_items(session: Session, company_id: int, spec: ProductSpec) -> list[str] | None:
    """The checked sub-product codes of a bundle product's ``spec`` (``None``: no bundle)."""
    if spec.bundle is None:
        return None
    codes = [code.strip() for code in spec.bundle]
    if not 1 <= len(codes) <= MAX_BUNDLE or len(set(codes)) != len(codes):
        raise LicensorError("validation_error", f"bundle: 1-{MAX_BUNDLE} different product codes")
    if spec.authorization_method != AuthorizationMethod.LICENSE_KEY:
        raise LicensorError("validation_error", "bundle: bundles are of key-based products")
    for code in codes:
        found = repository.product_by_code(session, company_id, code)
        if found is None:
            raise LicensorError("validation_error", f"bundle: no product {code!r}")
        if found.bundle_items is not None:
            raise LicensorError("validation_error", f"bundle: {code!r} is a bundle itself")
        if found.authorization_method != AuthorizationMethod.LICENSE_KEY:
            raise LicensorError(
                "validation_error", f"bundle: {code!r} uses license users, not keys"
            )
    return codes


def create_product(session: Session, company_id: int, spec: ProductSpec) -> Product:
    code = spec.short_code.strip()
    if not code or len(code) > 100 or any(ch.isspace() for ch in code):
        raise LicensorError("validation_error", "short_code: 1-100 characters, no spaces")
    if spec.authorization_method not in {m.value for m in AuthorizationMethod}:
        raise LicensorError("validation_error", "authorization_method: must be license-key or user")
    if spec.version_spec and not valid_version_spec(spec.version_spec):
        raise LicensorError(
            "validation_error",
            f"version_spec: {spec.version_spec!r} is not a PEP 440 specifier such as '>=1.0,<3'",
        )
    if spec.trial_days < 0:
        raise LicensorError("validation_error", "trial_days: must be >= 0")
    if repository.product_by_code(session, company_id, code) is not None:
        raise LicensorError(
            "validation_error", f"short_code: product {code!r} already exists", status=409
        )
    bundle_items = _bundle_items(session, company_id, spec)
    product = Product(
        company_id=company_id,
        short_code=code,
        name=spec.name or code,
        authorization_method=spec.authorization_method,
        prevent_vm=spec.prevent_vm,
        allow_offline_activation=spec.allow_offline_activation,
        version_spec=spec.version_spec or None,
        allow_trial=spec.allow_trial,
        trial_days=spec.trial_days,
        trial_max_activations=spec.trial_max_activations,
        custom_fields=spec.custom_fields,
        metadata_=spec.metadata,
        is_floating_cloud=spec.is_floating_cloud,
        floating_users=spec.floating_users,
        floating_timeout=spec.floating_timeout,
        can_borrow=spec.can_borrow,
        max_borrow_time=spec.max_borrow_time,
        bundle_items=bundle_items,
    )
    session.add(product)
    session.flush()
    return product


def add_release(
    session: Session, product: Product, version: str, release_date: datetime, **extra: Any
) -> ProductRelease:
    release = ProductRelease(
        product_id=product.id, version=version, release_date=release_date, **extra
    )
    session.add(release)
    session.flush()
    return release


def find_or_create_customer(
    session: Session, company_id: int, email: str, **fields: Any
) -> Customer:
    email = email.strip().lower()
    found = repository.customer_by_email(session, company_id, email)
    if found is not None:
        return found
    customer = Customer(company_id=company_id, email=email, **fields)
    session.add(customer)
    session.flush()
    return customer


@dataclass
class LicenseSpec:
    license_type: str = "perpetual"
    max_activations: int = 1
    allow_unlimited_activations: bool = False
    validity_period: datetime | None = None
    validity_days: int | None = None
    start_date: datetime | None = None
    max_transfers: int = 0
    prevent_vm: bool | None = None
    allow_offline_activation: bool | None = None  # None: the product's
    is_trial: bool = False
    trial_days: int | None = None
    allow_grace_period: bool = False
    grace_period: int = 0
    maintenance_period: datetime | None = None
    version_spec: str | None = None
    # consumption (core.consumption)
    max_consumptions: int = 0
    allow_unlimited_consumptions: bool = False
    allow_overages: bool = False
    max_overages: int = 0
    allow_negative_consumptions: bool = False
    consumption_period: str | None = None  # daily | weekly | monthly | annually
    # floating cloud; None: the product's
    is_floating_cloud: bool | None = None
    floating_users: int | None = None
    floating_timeout: int | None = None
    can_borrow: bool | None = None
    max_borrow_time: int | None = None
    enabled: bool = True
    order_store_id: str = ""
    customer_email: str | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    license_key: str | None = None  # imported key; generated when absent
    user_email: str | None = None
    user_password: str | None = None
    user_max_activations: int | None = None
    # attached product features: code -> overrides (core.features)
    features: dict[str, Any] = field(default_factory=dict)
    policy_id: int | None = None


def check_consumption_settings(
    max_consumptions: int | None, max_overages: int | None, period: str | None
) -> None:
    """Refuse consumption settings out of range (``validation_error``)."""
    for name, value in (("max_consumptions", max_consumptions), ("max_overages", max_overages)):
        if value is not None and not 0 <= value <= MAX_TOTAL:
            raise LicensorError("validation_error", f"{name}: between 0 and {MAX_TOTAL}")
    if period is not None and period not in PERIODS:
        raise LicensorError(
            "validation_error", "consumption_period: daily, weekly, monthly or annually"
        )


def _check_license_spec(spec: LicenseSpec, product: Product) -> None:
    if spec.license_type not in {t.value for t in LicenseType}:
        raise LicensorError(
            "validation_error",
            "license_type: must be perpetual, time-limited, subscription or consumption",
        )
    if spec.max_activations < 0:
        raise LicensorError("validation_error", "max_activations: must be >= 0")
    check_consumption_settings(spec.max_consumptions, spec.max_overages, spec.consumption_period)
    if spec.max_transfers < -1:
        raise LicensorError(
            "validation_error", "max_transfers: 0 = unlimited, N = at most N, -1 = prevented"
        )
    if spec.grace_period < 0:
        raise LicensorError("validation_error", "grace_period: must be >= 0 hours")
    if spec.license_type in ("time-limited", "subscription") and not (
        spec.validity_period or spec.validity_days
    ):
        raise LicensorError(
            "validation_error",
            f"validity_period: a {spec.license_type} license "
            "needs a validity period (a date or a number of days)",
        )
    if spec.is_trial and spec.trial_days is not None and spec.trial_days <= 0:
        raise LicensorError("validation_error", "trial_days: must be > 0")
    if spec.version_spec and not valid_version_spec(spec.version_spec):
        raise LicensorError("validation_error", "version_spec: not a PEP 440 specifier")
    if product.authorization_method == AuthorizationMethod.USER:
        if not spec.user_email or not spec.user_password:
            raise LicensorError(
                "validation_error", "user: a user-based product needs --user EMAIL and --password"
            )
    elif spec.user_email:
        raise LicensorError(
            "validation_error", "user: this product is key-based; license users need a user product"
        )


def _license_row(
    company_id: int,
    product: Product,
    spec: LicenseSpec,
    customer_id: int | None,
    key: str | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "company_id": company_id,
        "product_id": product.id,
        "customer_id": customer_id,
        "license_key": key,
        "key_lookup": normalize_license_key(key) if key else None,
        "license_type": spec.license_type,
        "is_trial": spec.is_trial,
        "trial_days": spec.trial_days,
        "trial_hardware_id": None,
        "validity_period": spec.validity_period,
        "validity_days": spec.validity_days,
        "start_date": spec.start_date,
        "allow_grace_period": spec.allow_grace_period,
        "grace_period": spec.grace_period,
        "enable_maintenance_period": spec.maintenance_period is not None,
        "maintenance_period": spec.maintenance_period,
        "max_activations": spec.max_activations,
        "allow_unlimited_activations": spec.allow_unlimited_activations,
        "times_activated": 0,
        "max_transfers": spec.max_transfers,
        "transfer_count": 0,
        "last_deactivated_hardware_id": None,
        "prevent_vm": spec.prevent_vm,
        "allow_offline_activation": spec.allow_offline_activation,
        "version_spec": spec.version_spec,
        "enabled": spec.enabled,
        "order_store_id": spec.order_store_id,
        "custom_fields": spec.custom_fields,
        "features": spec.features,
        "policy_id": spec.policy_id,
        "metadata_": spec.metadata,
        "max_consumptions": spec.max_consumptions,
        "total_consumptions": 0,
        "allow_unlimited_consumptions": spec.allow_unlimited_consumptions,
        "allow_overages": spec.allow_overages,
        "max_overages": spec.max_overages,
        "allow_negative_consumptions": spec.allow_negative_consumptions,
        "consumption_period": spec.consumption_period,
        "consumption_counted_at": None,
        "is_floating_cloud": spec.is_floating_cloud,
        "floating_users": spec.floating_users,
        "floating_timeout": spec.floating_timeout,
        "can_borrow": spec.can_borrow,
        "max_borrow_time": spec.max_borrow_time,
        "first_activated_at": None,
        "created_at": now,
        "updated_at": now,
    }


def create_licenses(
    session: Session,
    company_id: int,
    product_code: str,
    spec: LicenseSpec,
    *,
    count: int = 1,
    now: datetime,
    chunk: int = 2000,
    on_progress: Callable[[int], None] | None = None,
) -> list[int]:
    """Issue ``count`` licenses in bulk (one multi-row INSERT per chunk); returns their ids."""
    product = repository.product_by_code(session, company_id, product_code)
    if product is None:
        raise LicensorError("unknown_product", f"product: no product {product_code!r}")
    _check_license_spec(spec, product)
    values = custom_field_rules.checked_values(product.custom_fields, spec.custom_fields)
    spec = replace(
        spec,
        custom_fields={name: value for name, value in values.items() if value is not None},
        features=feature_rules.checked_attachments(product.features, spec.features),
    )
    if count < 1:
        raise LicensorError("validation_error", "count: must be >= 1")
    if spec.license_key and count != 1:
        raise LicensorError("validation_error", "license_key: an explicit key needs --count 1")
    user_based = product.authorization_method == AuthorizationMethod.USER
    if user_based and count != 1:
        raise LicensorError(
            "validation_error",
            "count: user-based licenses are issued one at a time (one user each)",
        )
    customer_id = None
    if spec.customer_email:
        customer_id = find_or_create_customer(session, company_id, spec.customer_email).id
    if spec.license_key and repository.license_by_key(
        session,
        repository.LicenseScope(company_id, product.id),
        normalize_license_key(spec.license_key),
    ):
        raise LicensorError("validation_error", "license_key: this key already exists", status=409)
    ids: list[int] = []
    while len(ids) < count:
        batch = min(chunk, count - len(ids))
        rows = [
            _license_row(
                company_id,
                product,
                spec,
                customer_id,
                None if user_based else (spec.license_key or generate_license_key()),
                now,
            )
            for _ in range(batch)
        ]
        ids.extend(session.scalars(insert(License).returning(License.id), rows).all())
        if product.bundle_items is not None:
            _add_sub_licenses(session, company_id, product, spec, customer_id, rows, now)
        if on_progress is not None:
            on_progress(batch)
    if user_based:
        assert spec.user_email and spec.user_password
        session.add(
            LicenseUser(
                license_id=ids[0],
                email=spec.user_email.strip().lower(),
                password_hash=password_hasher.hash(spec.user_password),
                max_activations=spec.user_max_activations or spec.max_activations,
            )
        )
    session.flush()
    return ids


def _add_sub_licenses(
    session: Session,
    company_id: int,
    bundle: Product,
    spec: LicenseSpec,
    customer_id: int | None,
    bundle_rows: list[dict[str, Any]],
    now: datetime,
) -> None:
    """One license of each sub-product for each new license of the bundle product ``bundle``:
    the bundle's terms and key (found by ``bundle_key_lookup``), no features or custom fields
    of the bundle's own (those are the bundle product's)."""
    assert bundle.bundle_items is not None
    sub_spec = replace(spec, custom_fields={}, features={}, policy_id=None)
    rows = []
    for code in bundle.bundle_items:
        product = repository.product_by_code(session, company_id, code)
        assert product is not None  # (checked when the bundle was made; products stay)
        for bundle_row in bundle_rows:
            key = bundle_row["license_key"]
            row = _license_row(company_id, product, sub_spec, customer_id, key, now)
            row["key_lookup"] = bundle_key_lookup(
                normalize_license_key(key), bundle.short_code, product.short_code
            )
            rows.append(row)
    session.execute(insert(License), rows)


def create_license(
    session: Session, company_id: int, product_code: str, spec: LicenseSpec, *, now: datetime
) -> License:
    (license_id,) = create_licenses(session, company_id, product_code, spec, count=1, now=now)
    found = session.get(License, license_id)
    assert found is not None
    return found


def blacklist_device(
    session: Session,
    company_id: int,
    hardware_id: str,
    *,
    product_code: str | None = None,
    reason: str = "",
) -> BlacklistEntry:
    product_id = None
    if product_code:
        product = repository.product_by_code(session, company_id, product_code)
        if product is None:
            raise LicensorError("unknown_product", f"product: no product {product_code!r}")
        product_id = product.id
    entry = BlacklistEntry(
        company_id=company_id, hardware_id=hardware_id, product_id=product_id, reason=reason
    )
    session.add(entry)
    session.flush()
    return entry
