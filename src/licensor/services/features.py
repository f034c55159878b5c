"""Product features and custom fields, managed by vendors: definitions on the product, values
and attachments on licenses. Every change is audited."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from licensor.core import custom_fields as custom_field_rules
from licensor.core import features as feature_rules
from licensor.core.errors import LicensorError
from licensor.services import views
from licensor.services.management import Admin, get_license, not_found, owned_license, record
from licensor.store import admin_repository as admin_repo
from licensor.store import repository
from licensor.store.models import License, Product


def _product(session: Session, admin: Admin, code: str, *, lock: bool = False) -> Product:
    product = repository.product_by_code(session, admin.company_id, code)
    if product is None:
        raise not_found("product", repr(code))
    return admin_repo.lock_product(session, product.id) if lock else product


def _drop_from_licenses(session: Session, product: Product, column: Any, name: str) -> int:
    """Remove ``name`` from a JSON dict column of every license (and policy) of the product."""
    changed = 0
    for license_id, values in admin_repo.license_values_of_product(session, product.id, column):
        if isinstance(values, dict) and name in values:
            admin_repo.set_license_value(
                session, license_id, column, {k: v for k, v in values.items() if k != name}
            )
            changed += 1
    attribute = column.key
    for policy in admin_repo.license_policies(session, product.id):
        held = getattr(policy, attribute)
        if name in held:
            setattr(policy, attribute, {k: v for k, v in held.items() if k != name})
    return changed


# -- product features --------------------------------------------------------------------------


def _feature(product: Product, code: str) -> dict[str, Any]:
    for feature in product.features or []:
        if feature.get("code") == code:
            return dict(feature)
    raise not_found("feature", repr(code))


def list_features(session: Session, admin: Admin, code: str) -> list[dict[str, Any]]:
    admin.require("read")
    product = _product(session, admin, code)
    return [views.feature_view(f, product.short_code) for f in product.features or []]


def add_feature(
    session: Session, admin: Admin, code: str, fields: Mapping[str, Any], *, now: datetime
) -> dict[str, Any]:
    admin.require("write")
    product = _product(session, admin, code, lock=True)
    feature = feature_rules.checked_definition(fields, product.features or [])
    product.features = [*(product.features or []), feature]
    session.flush()
    view = views.feature_view(feature, product.short_code)
    record(session, admin, "feature.create", "feature", feature["id"], after=view, now=now)
    return view


def update_feature(
    session: Session,
    admin: Admin,
    code: str,
    feature_code: str,
    changes: Mapping[str, Any],
    *,
    now: datetime,
) -> dict[str, Any]:
    admin.require("write")
    product = _product(session, admin, code, lock=True)
    before = _feature(product, feature_code)
    after = feature_rules.checked_changes(before, changes)
    product.features = [after if f.get("code") == feature_code else f for f in product.features]
    session.flush()
    view = views.feature_view(after, product.short_code)
    record(
        session,
        admin,
        "feature.update",
        "feature",
        after["id"],
        before=views.feature_view(before, product.short_code),
        after=view,
        now=now,
    )
    return view


def remove_feature(
    session: Session, admin: Admin, code: str, feature_code: str, *, now: datetime
) -> None:
    """Delete a feature of a product; licenses and policies that had it lose it too."""
    admin.require("write")
    product = _product(session, admin, code, lock=True)
    before = _feature(product, feature_code)
    product.features = [f for f in product.features if f.get("code") != feature_code]
    detached = _drop_from_licenses(session, product, License.features, feature_code)
    session.flush()
    record(
        session,
        admin,
        "feature.delete",
        "feature",
        before["id"],
        before={**views.feature_view(before, product.short_code), "detached_from": detached},
        now=now,
    )


# -- features of a license ---------------------------------------------------------------------


def _license_and_product(
    session: Session, admin: Admin, license_id: int
) -> tuple[License, Product]:
    license_ = repository.lock_license(session, owned_license(session, admin, license_id).id)
    product = session.get(Product, license_.product_id)
    assert product is not None
    return license_, product


def set_license_feature(
    session: Session,
    admin: Admin,
    license_id: int,
    feature_code: str,
    overrides: Mapping[str, Any],
    *,
    attach: bool,
    now: datetime,
) -> dict[str, Any]:
    """Attach a feature to a license (``attach``; 409 if it has it) or change its overrides
    (404 if it does not have it). Overrides: ``expiry_date``, ``max_consumption``, ``metadata``;
    ``null`` = the product's value."""
    admin.require("write")
    license_, product = _license_and_product(session, admin, license_id)
    attached = dict(license_.features or {})
    if attach and feature_code in attached:
        raise LicensorError(
            "validation_error", f"code: feature {feature_code!r} is already attached", status=409
        )
    if not attach and feature_code not in attached:
        raise not_found("feature", f"{feature_code!r} of license {license_id}")
    current = dict(attached.get(feature_code) or {})
    current.update(overrides)
    wanted = {k: v for k, v in current.items() if v is not None}
    checked = feature_rules.checked_attachments(product.features or [], {feature_code: wanted})
    before = get_license(session, admin, license_id)
    license_.features = {**attached, **checked}
    license_.updated_at = now
    session.flush()
    after = get_license(session, admin, license_id)
    action = "license.feature_attach" if attach else "license.feature_update"
    record(session, admin, action, "license", license_id, before=before, after=after, now=now)
    return after


def detach_license_feature(
    session: Session, admin: Admin, license_id: int, feature_code: str, *, now: datetime
) -> dict[str, Any]:
    admin.require("write")
    license_, _ = _license_and_product(session, admin, license_id)
    attached = dict(license_.features or {})
    if feature_code not in attached:
        raise not_found("feature", f"{feature_code!r} of license {license_id}")
    before = get_license(session, admin, license_id)
    license_.features = {k: v for k, v in attached.items() if k != feature_code}
    license_.updated_at = now
    session.flush()
    after = get_license(session, admin, license_id)
    record(
        session,
        admin,
        "license.feature_detach",
        "license",
        license_id,
        before=before,
        after=after,
        now=now,
    )
    return after


# -- custom fields -----------------------------------------------------------------------------


def _custom_field(product: Product, name: str) -> dict[str, Any]:
    for field in product.custom_fields or []:
        if field.get("name") == name:
            return dict(field)
    raise not_found("custom field", repr(name))


def _custom_field_view(field: Mapping[str, Any], product: Product) -> dict[str, Any]:
    return {
        "name": field.get("name", ""),
        "default_value": field.get("default_value", ""),
        "product": product.short_code,
    }


def list_custom_fields(session: Session, admin: Admin, code: str) -> list[dict[str, Any]]:
    admin.require("read")
    product = _product(session, admin, code)
    return [_custom_field_view(f, product) for f in product.custom_fields or []]


def add_custom_field(
    session: Session, admin: Admin, code: str, name: Any, default_value: Any, *, now: datetime
) -> dict[str, Any]:
    admin.require("write")
    product = _product(session, admin, code, lock=True)
    field = custom_field_rules.checked_definition(name, default_value, product.custom_fields or [])
    product.custom_fields = [*(product.custom_fields or []), field]
    session.flush()
    view = _custom_field_view(field, product)
    record(
        session,
        admin,
        "custom_field.create",
        "custom_field",
        f"{product.short_code}/{field['name']}",
        after=view,
        now=now,
    )
    return view


def update_custom_field(
    session: Session, admin: Admin, code: str, name: str, default_value: Any, *, now: datetime
) -> dict[str, Any]:
    admin.require("write")
    product = _product(session, admin, code, lock=True)
    before = _custom_field(product, name)
    after = {
        **before,
        "default_value": custom_field_rules.checked_value(default_value, "default_value"),
    }
    product.custom_fields = [after if f.get("name") == name else f for f in product.custom_fields]
    session.flush()
    view = _custom_field_view(after, product)
    record(
        session,
        admin,
        "custom_field.update",
        "custom_field",
        f"{product.short_code}/{name}",
        before=_custom_field_view(before, product),
        after=view,
        now=now,
    )
    return view


def remove_custom_field(
    session: Session, admin: Admin, code: str, name: str, *, now: datetime
) -> None:
    """Delete a custom field of a product, and every license's and policy's value for it."""
    admin.require("write")
    product = _product(session, admin, code, lock=True)
    before = _custom_field(product, name)
    product.custom_fields = [f for f in product.custom_fields if f.get("name") != name]
    cleared = _drop_from_licenses(session, product, License.custom_fields, name)
    session.flush()
    record(
        session,
        admin,
        "custom_field.delete",
        "custom_field",
        f"{product.short_code}/{name}",
        before={**_custom_field_view(before, product), "cleared_licenses": cleared},
        now=now,
    )
