"""License policies: a product's templates for issuing licenses, one of them maybe the default.

Issuing takes the policy's values and lets the request's own fields override them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from licensor.core import custom_fields as custom_field_rules
from licensor.core import features as feature_rules
from licensor.core.consumption import MAX_TOTAL as MAX_CONSUMPTIONS
from licensor.core.consumption import PERIODS
from licensor.core.errors import LicensorError
from licensor.core.licensing import LicenseType
from licensor.services import catalogue, management, views
from licensor.services.management import Admin, not_found, record
from licensor.store import admin_repository as admin_repo
from licensor.store import repository
from licensor.store.models import LicensePolicy, Product

MAX_DAYS = 100_000
# Settings a policy holds, with their defaults (the same as a license issued without one).
SETTINGS: dict[str, Any] = {
    "license_type": "perpetual",
    "max_activations": 1,
    "allow_unlimited_activations": False,
    "validity_days": None,
    "validity_period": None,
    "is_trial": False,
    "trial_days": None,
    "max_transfers": 0,
    "prevent_vm": None,
    "allow_offline_activation": None,
    "grace_period": 0,
    "maintenance_days": None,
    "max_consumptions": 0,
    "allow_unlimited_consumptions": False,
    "allow_overages": False,
    "max_overages": 0,
    "allow_negative_consumptions": False,
    "consumption_period": None,
    "is_floating_cloud": None,
    "floating_users": None,
    "floating_timeout": None,
    "can_borrow": None,
    "max_borrow_time": None,
    "custom_fields": {},
    "features": {},
    "metadata": {},
}


def _fail(field: str, message: str) -> LicensorError:
    return LicensorError("validation_error", f"{field}: {message}")


def _whole(value: Any, field: str, low: int, high: int, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(field, f"a whole number between {low} and {high}")
    return value


def _flag(value: Any, field: str, *, optional: bool = False) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise _fail(field, "must be true or false")
    return value


def _checked_settings(product: Product, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of a policy, validated; an error names the field."""
    clean = dict(values)
    if clean["license_type"] not in {t.value for t in LicenseType}:
        raise _fail("license_type", "must be perpetual, time-limited, subscription or consumption")
    clean["max_activations"] = _whole(clean["max_activations"], "max_activations", 0, 1_000_000)
    clean["max_transfers"] = _whole(clean["max_transfers"], "max_transfers", -1, 1_000_000)
    clean["grace_period"] = _whole(clean["grace_period"], "grace_period", 0, MAX_DAYS)
    for name in ("validity_days", "trial_days", "maintenance_days"):
        clean[name] = _whole(clean[name], name, 1, MAX_DAYS, optional=True)
    for name in ("allow_unlimited_activations", "is_trial"):
        clean[name] = _flag(clean[name], name)
    for name in ("prevent_vm", "allow_offline_activation", "is_floating_cloud", "can_borrow"):
        clean[name] = _flag(clean[name], name, optional=True)
    for name in ("allow_unlimited_consumptions", "allow_overages", "allow_negative_consumptions"):
        clean[name] = _flag(clean[name], name)
    for name in ("max_consumptions", "max_overages"):
        clean[name] = _whole(clean[name], name, 0, MAX_CONSUMPTIONS)
    clean["floating_users"] = _whole(
        clean["floating_users"], "floating_users", 1, 1_000_000, optional=True
    )
    clean["floating_timeout"] = _whole(
        clean["floating_timeout"], "floating_timeout", 1, MAX_DAYS, optional=True
    )
    clean["max_borrow_time"] = _whole(
        clean["max_borrow_time"], "max_borrow_time", 0, MAX_DAYS, optional=True
    )
    if clean["consumption_period"] not in (None, *PERIODS):
        raise _fail("consumption_period", f"one of {', '.join(PERIODS)}, or null")
    if clean["license_type"] != "consumption" and (
        clean["max_consumptions"] or clean["allow_unlimited_consumptions"]
    ):
        raise _fail("max_consumptions", "only a consumption policy counts consumptions")
    if clean["validity_period"] is not None and not isinstance(clean["validity_period"], datetime):
        raise _fail("validity_period", "must be a date")
    if clean["validity_days"] is not None and clean["validity_period"] is not None:
        raise _fail("validity_days", "give validity_days or validity_period, not both")
    if clean["license_type"] in ("time-limited", "subscription") and not (
        clean["validity_days"] or clean["validity_period"]
    ):
        raise _fail(
            "validity_period",
            f"a {clean['license_type']} policy needs validity_days or validity_period",
        )
    for name in ("custom_fields", "features", "metadata"):
        if not isinstance(clean[name], dict):
            raise _fail(name, "must be a JSON object")
    values_ = custom_field_rules.checked_values(product.custom_fields, clean["custom_fields"])
    clean["custom_fields"] = {k: v for k, v in values_.items() if v is not None}
    clean["features"] = feature_rules.checked_attachments(product.features, clean["features"])
    return clean


def _product(session: Session, admin: Admin, code: str) -> Product:
    product = repository.product_by_code(session, admin.company_id, code)
    if product is None:
        raise not_found("product", repr(code))
    return product


def _policy(session: Session, product: Product, policy_code: str) -> LicensePolicy:
    policy = admin_repo.license_policy(session, product.id, policy_code)
    if policy is None:
        raise not_found("policy", repr(policy_code))
    return policy


def _settings_of(policy: LicensePolicy) -> dict[str, Any]:
    values = {name: getattr(policy, name) for name in SETTINGS if name != "metadata"}
    values["metadata"] = policy.metadata_
    return values


def _apply(policy: LicensePolicy, settings: Mapping[str, Any]) -> None:
    for name, value in settings.items():
        setattr(policy, "metadata_" if name == "metadata" else name, value)


def _make_default(session: Session, product: Product, policy: LicensePolicy) -> None:
    """At most one default per product (a unique index says so too): the old one steps down."""
    current = admin_repo.default_license_policy(session, product.id)
    if current is not None and current.id != policy.id:
        current.is_default = False
        session.flush()
    policy.is_default = True


def _name(value: Any) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > 200 or "\x00" in name:
        raise _fail("name", "1-200 characters")
    return name


def list_policies(session: Session, admin: Admin, code: str) -> list[dict[str, Any]]:
    admin.require("read")
    product = _product(session, admin, code)
    return [
        views.policy_view(p, product.short_code)
        for p in admin_repo.license_policies(session, product.id)
    ]


def get_policy(session: Session, admin: Admin, code: str, policy_code: str) -> dict[str, Any]:
    admin.require("read")
    product = _product(session, admin, code)
    return views.policy_view(_policy(session, product, policy_code), product.short_code)


def create_policy(
    session: Session,
    admin: Admin,
    code: str,
    *,
    policy_code: str,
    name: str | None = None,
    is_default: bool = False,
    settings: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    admin.require("write")
    product = admin_repo.lock_product(session, _product(session, admin, code).id)
    clean_code = policy_code.strip() if isinstance(policy_code, str) else ""
    if not clean_code or len(clean_code) > 100 or any(c.isspace() for c in clean_code):
        raise _fail("code", "1-100 characters, no spaces")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise _fail(unknown[0], "not a policy setting")
    values = _checked_settings(product, {**SETTINGS, **settings})
    if admin_repo.license_policy(session, product.id, clean_code) is not None:
        raise LicensorError(
            "validation_error", f"code: policy {clean_code!r} already exists", status=409
        )
    policy = LicensePolicy(
        company_id=admin.company_id,
        product_id=product.id,
        code=clean_code,
        name=_name(name if name is not None else clean_code),
        is_default=False,
        created_at=now,
        updated_at=now,
    )
    _apply(policy, values)
    session.add(policy)
    session.flush()
    if _flag(is_default, "is_default"):
        _make_default(session, product, policy)
        session.flush()
    view = views.policy_view(policy, product.short_code)
    record(session, admin, "policy.create", "policy", policy.id, after=view, now=now)
    return view


def update_policy(
    session: Session,
    admin: Admin,
    code: str,
    policy_code: str,
    changes: Mapping[str, Any],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Change a policy; licenses already issued from it keep their terms."""
    admin.require("write")
    product = admin_repo.lock_product(session, _product(session, admin, code).id)
    policy = _policy(session, product, policy_code)
    before = views.policy_view(policy, product.short_code)
    unknown = sorted(set(changes) - set(SETTINGS) - {"name", "is_default"})
    if unknown:
        raise _fail(unknown[0], "not a policy setting")
    settings = {k: v for k, v in changes.items() if k in SETTINGS}
    _apply(policy, _checked_settings(product, {**_settings_of(policy), **settings}))
    if "name" in changes:
        policy.name = _name(changes["name"])
    if "is_default" in changes:
        if _flag(changes["is_default"], "is_default"):
            _make_default(session, product, policy)
        else:
            policy.is_default = False
    policy.updated_at = now
    session.flush()
    after = views.policy_view(policy, product.short_code)
    record(
        session, admin, "policy.update", "policy", policy.id, before=before, after=after, now=now
    )
    return after


def delete_policy(
    session: Session, admin: Admin, code: str, policy_code: str, *, now: datetime
) -> None:
    admin.require("write")
    product = _product(session, admin, code)
    policy = _policy(session, product, policy_code)
    before = views.policy_view(policy, product.short_code)
    admin_repo.forget_policy(session, policy.id)
    session.delete(policy)
    session.flush()
    record(session, admin, "policy.delete", "policy", before["id"], before=before, now=now)


# -- issuing -----------------------------------------------------------------------------------


def spec_for(
    session: Session,
    company_id: int,
    product_code: str,
    fields: Mapping[str, Any],
    *,
    policy: str | None,
    now: datetime,
) -> catalogue.LicenseSpec:
    """The terms of a new license: the policy's (``policy``, else the product's default policy,
    if any), overridden by ``fields`` (``LicenseSpec`` names) the request gave explicitly."""
    product = repository.product_by_code(session, company_id, product_code)
    if product is None:
        raise LicensorError("unknown_product", f"product: no product {product_code!r}")
    if policy is not None:
        found = admin_repo.license_policy(session, product.id, policy)
        if found is None:
            raise LicensorError(
                "unknown_policy",
                f"policy: product {product_code!r} has no policy {policy!r}",
                status=400,
            )
    else:
        found = admin_repo.default_license_policy(session, product.id)
    values: dict[str, Any] = dict(fields)
    if found is not None:
        base = _settings_of(found)
        maintenance_days = base.pop("maintenance_days")
        if maintenance_days:
            base["maintenance_period"] = now + timedelta(days=maintenance_days)
        for name in ("custom_fields", "features", "metadata"):
            values[name] = {**base.pop(name), **(fields.get(name) or {})}
        values = {**base, **values, "policy_id": found.id}
    grace = values.get("grace_period") or 0
    values["allow_grace_period"] = grace > 0
    return catalogue.LicenseSpec(**values)


def issue_licenses(
    session: Session,
    admin: Admin,
    product: str,
    fields: Mapping[str, Any],
    *,
    count: int,
    policy: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Issue ``count`` licenses from a policy (or the default one) and the request's fields."""
    admin.require("write")
    spec = spec_for(session, admin.company_id, product, fields, policy=policy, now=now)
    return management.issue_licenses(session, admin, product, spec, count=count, now=now)
