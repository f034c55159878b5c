"""Vendor use cases behind the management API and the CLI: one company at a time, by role.

Every change is written to the audit log with the state before and after.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from licensor.core import custom_fields as custom_field_rules
from licensor.core import floating as floating_rules
from licensor.core import passwords
from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.core.licensing import LicenseType, valid_version_spec
from licensor.secrets_at_rest import MasterKey
from licensor.services import activation, audit, catalogue, floating, licensing, payload, views
from licensor.store import admin_repository as admin_repo
from licensor.store import repository
from licensor.store.models import (
    BlacklistEntry,
    Customer,
    License,
    LicenseUser,
    Product,
)

Role = Literal["admin", "support", "read-only"]
ROLES: tuple[Role, ...] = ("admin", "support", "read-only")
TOKEN_PREFIX = "lsa_"
MAX_PAGE = 500

# What each role may do. ``read``: everything visible; ``device``: deactivate devices;
# ``write``: change the catalogue and licenses; ``credentials``: tokens, API keys, OAuth clients.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "read": frozenset({"admin", "support", "read-only"}),
    "device": frozenset({"admin", "support"}),
    "write": frozenset({"admin"}),
    "credentials": frozenset({"admin"}),
}


@dataclass(frozen=True, slots=True)
class Admin:
    company_id: int
    actor: str
    role: Role

    def require(self, permission: str) -> None:
        if self.role not in PERMISSIONS[permission]:
            raise LicensorError(
                "forbidden", f"The {self.role} role does not allow this ({permission})"
            )


def authenticate(
    session: Session, master_key: MasterKey, token: str | None, now: datetime
) -> Admin:
    if not token or not token.startswith(TOKEN_PREFIX):
        raise LicensorError("unauthorized")
    found = admin_repo.admin_token_by_hash(session, master_key.hash_secret(token))
    if found is None or found.revoked:
        raise LicensorError("unauthorized")
    found.last_used_at = now
    return Admin(found.company_id, f"token:{found.name}", found.role)  # type: ignore[arg-type]


def local_admin(company_id: int) -> Admin:
    """The operator at the server's own terminal: full rights on one company."""
    return Admin(company_id, "cli:local", "admin")


def _page(offset: int, limit: int) -> tuple[int, int]:
    if offset < 0:
        raise LicensorError("validation_error", "page: must be >= 1")
    if not 1 <= limit <= MAX_PAGE:
        raise LicensorError("validation_error", f"per_page: between 1 and {MAX_PAGE}")
    return offset, limit


def _not_found(kind: str, ident: object) -> LicensorError:
    return LicensorError("not_found", f"{kind} {ident} not found")


def not_found(kind: str, ident: object) -> LicensorError:
    return _not_found(kind, ident)


def record(
    session: Session,
    admin: Admin,
    action: str,
    object_type: str,
    object_id: object,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """Audit one change made by ``admin`` (who, what, before and after)."""
    audit.record(
        session,
        company_id=admin.company_id,
        actor=admin.actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        before=before,
        after=after,
        now=now,
    )


# -- licenses ----------------------------------------------------------------------------------


def _license_out(session: Session, license_: License) -> dict[str, Any]:
    product = session.get(Product, license_.product_id)
    customer = repository.customer(session, license_.customer_id)
    return views.license_view(
        license_,
        product.short_code if product else "",
        customer_email=customer.email if customer else None,
        users=list(repository.license_users(session, license_.id)),
    )


def _owned_license(session: Session, admin: Admin, license_id: int) -> License:
    found: License | None = admin_repo.owned(session, License, admin.company_id, license_id)
    if found is None:
        raise _not_found("license", license_id)
    return found


def owned_license(session: Session, admin: Admin, license_id: int) -> License:
    """A license of the admin's company (404 for any other)."""
    return _owned_license(session, admin, license_id)


def list_licenses(
    session: Session,
    admin: Admin,
    *,
    product: str | None = None,
    customer: str | None = None,
    enabled: bool | None = None,
    order_id: str | None = None,
    expires_before: datetime | None = None,
    page: int = 1,
    per_page: int = 50,
    sort: str = "id",
) -> dict[str, Any]:
    admin.require("read")
    if sort.lstrip("-") not in admin_repo.LICENSE_SORTS:
        raise LicensorError(
            "validation_error",
            "sort: one of " + ", ".join(f"[-]{s}" for s in admin_repo.LICENSE_SORTS),
        )
    offset, limit = _page((page - 1) * per_page, per_page)
    product_id = customer_id = None
    if product is not None:
        found = repository.product_by_code(session, admin.company_id, product)
        if found is None:
            return {"items": [], "page": page, "per_page": per_page, "total": 0}
        product_id = found.id
    if customer is not None:
        found_customer = repository.customer_by_email(
            session, admin.company_id, customer.strip().lower()
        )
        if found_customer is None:
            return {"items": [], "page": page, "per_page": per_page, "total": 0}
        customer_id = found_customer.id
    rows, total = admin_repo.license_page(
        session,
        admin.company_id,
        admin_repo.LicenseFilter(product_id, customer_id, enabled, order_id, expires_before),
        offset=offset,
        limit=limit,
        sort=sort,
    )
    items = _license_views(session, rows)
    return {"items": items, "page": page, "per_page": per_page, "total": total}


def _license_views(session: Session, rows: Sequence[License]) -> list[dict[str, Any]]:
    """License views with their product codes and customer e-mails, two lookups for all."""
    products = admin_repo.products_by_id(session, {r.product_id for r in rows})
    customers = admin_repo.customers_by_id(
        session, {r.customer_id for r in rows if r.customer_id is not None}
    )
    return [
        views.license_view(
            row,
            products[row.product_id].short_code,
            customer_email=customers[row.customer_id].email if row.customer_id else None,
        )
        for row in rows
    ]


def get_license(session: Session, admin: Admin, license_id: int) -> dict[str, Any]:
    admin.require("read")
    return _license_out(session, _owned_license(session, admin, license_id))


def find_license_by_key(session: Session, admin: Admin, key: str) -> dict[str, Any]:
    admin.require("read")
    lookup = normalize_license_key(key)
    for product in repository.products(session, admin.company_id):
        found = repository.license_by_key(
            session, repository.LicenseScope(admin.company_id, product.id), lookup
        )
        if found is not None:
            return _license_out(session, found)
    raise _not_found("license", "with this key")


def issue_licenses(
    session: Session,
    admin: Admin,
    product: str,
    spec: catalogue.LicenseSpec,
    *,
    count: int,
    now: datetime,
) -> list[dict[str, Any]]:
    admin.require("write")
    ids = catalogue.create_licenses(session, admin.company_id, product, spec, count=count, now=now)
    issued = [_license_out(session, row) for row in repository.licenses_by_ids(session, ids)]
    for item in issued:
        record(session, admin, "license.create", "license", item["id"], after=item, now=now)
    return issued


FLOATING_SETTINGS = views.FLOATING_SETTINGS


@dataclass(frozen=True, slots=True)
class LicenseChanges:
    """Fields a vendor may change after issuing; ``None`` = unchanged."""

    enabled: bool | None = None
    license_type: str | None = None
    max_activations: int | None = None
    allow_unlimited_activations: bool | None = None
    validity_period: datetime | None = None
    clear_validity_period: bool = False
    start_date: datetime | None = None
    max_transfers: int | None = None
    prevent_vm: bool | None = None
    allow_offline_activation: bool | None = None
    grace_period: int | None = None
    maintenance_period: datetime | None = None
    version_spec: str | None = None
    max_consumptions: int | None = None
    allow_unlimited_consumptions: bool | None = None
    allow_overages: bool | None = None
    max_overages: int | None = None
    allow_negative_consumptions: bool | None = None
    consumption_period: str | None = None
    reset_consumption: bool | None = None  # False: never reset (clears consumption_period)
    is_floating_cloud: bool | None = None
    floating_users: int | None = None
    floating_timeout: int | None = None
    can_borrow: bool | None = None
    max_borrow_time: int | None = None
    order_id: str | None = None
    metadata: dict[str, Any] | None = None
    custom_fields: dict[str, Any] | None = None


def update_license(
    session: Session,
    admin: Admin,
    license_id: int,
    changes: LicenseChanges,
    *,
    now: datetime,
    action: str = "license.update",
) -> dict[str, Any]:
    admin.require("write")
    license_ = _owned_license(session, admin, license_id)
    license_ = repository.lock_license(session, license_.id)
    before = _license_out(session, license_)
    if changes.license_type is not None:
        if changes.license_type not in {t.value for t in LicenseType}:
            raise LicensorError(
                "validation_error",
                "license_type: must be perpetual, time-limited, subscription or consumption",
            )
        license_.license_type = changes.license_type
    if changes.max_activations is not None:
        if changes.max_activations < 0:
            raise LicensorError("validation_error", "max_activations: must be >= 0")
        license_.max_activations = changes.max_activations
    if changes.max_transfers is not None:
        if changes.max_transfers < -1:
            raise LicensorError("validation_error", "max_transfers: 0, N or -1")
        license_.max_transfers = changes.max_transfers
    if changes.grace_period is not None:
        if changes.grace_period < 0:
            raise LicensorError("validation_error", "grace_period: must be >= 0 hours")
        license_.grace_period = changes.grace_period
        license_.allow_grace_period = changes.grace_period > 0
    if changes.version_spec is not None:
        if changes.version_spec and not valid_version_spec(changes.version_spec):
            raise LicensorError("validation_error", "version_spec: not a PEP 440 specifier")
        license_.version_spec = changes.version_spec or None
    if changes.maintenance_period is not None:
        license_.maintenance_period = changes.maintenance_period
        license_.enable_maintenance_period = True
    if changes.clear_validity_period:
        license_.validity_period = None
    catalogue.check_consumption_settings(
        changes.max_consumptions, changes.max_overages, changes.consumption_period
    )
    if changes.reset_consumption is False:
        license_.consumption_period = None
    if changes.consumption_period is not None or changes.reset_consumption is False:
        # (the total as it stands carries over to the new period rule)
        license_.total_consumptions = payload.total_now(license_, now)
        license_.consumption_counted_at = now
    for name in (
        "enabled",
        "allow_unlimited_activations",
        "validity_period",
        "start_date",
        "prevent_vm",
        "allow_offline_activation",
        "max_consumptions",
        "allow_unlimited_consumptions",
        "allow_overages",
        "max_overages",
        "allow_negative_consumptions",
        "consumption_period",
        *FLOATING_SETTINGS,
    ):
        value = getattr(changes, name)
        if value is not None:
            setattr(license_, name, value)
    if changes.custom_fields is not None:
        product = session.get(Product, license_.product_id)
        values = custom_field_rules.checked_values(
            product.custom_fields if product is not None else [], changes.custom_fields
        )
        license_.custom_fields = custom_field_rules.merged(license_.custom_fields, values)
    if changes.order_id is not None:
        license_.order_store_id = changes.order_id
    if changes.metadata is not None:
        license_.metadata_ = changes.metadata
    if license_.license_type in ("time-limited", "subscription") and not (
        license_.validity_period or license_.validity_days
    ):
        raise LicensorError(
            "validation_error", "validity_period: a time-limited license needs a validity period"
        )
    license_.updated_at = now
    session.flush()
    after = _license_out(session, license_)
    record(session, admin, action, "license", license_id, before=before, after=after, now=now)
    # a bundle license's terms are its sub-licenses' (its custom fields are its product's)
    for sub in _sub_licenses(session, license_):
        sub_changes = replace(changes, custom_fields=None)
        update_license(session, admin, sub.id, sub_changes, now=now, action=action)
    return after


def _sub_licenses(session: Session, license_: License) -> Sequence[License]:
    """A bundle license's sub-licenses (none for another license)."""
    product = session.get(Product, license_.product_id)
    assert product is not None
    return repository.sub_licenses(session, license_, product)


def set_enabled(
    session: Session, admin: Admin, license_id: int, enabled: bool, *, now: datetime
) -> dict[str, Any]:
    """Enable or disable a license (a bundle license: with its sub-licenses)."""
    action = "license.enable" if enabled else "license.disable"
    return update_license(
        session, admin, license_id, LicenseChanges(enabled=enabled), now=now, action=action
    )


def extend_license(
    session: Session,
    admin: Admin,
    license_id: int,
    *,
    days: int | None = None,
    until: datetime | None = None,
    now: datetime,
) -> dict[str, Any]:
    """Push the expiry: to ``until``, or ``days`` after the later of now and the current end."""
    admin.require("write")
    if (days is None) == (until is None):
        raise LicensorError("validation_error", "give either days or until")
    if days is not None:
        if days <= 0:
            raise LicensorError("validation_error", "days: must be > 0")
        # under the row lock: concurrent extensions add up instead of overwriting each other
        license_ = repository.lock_license(session, _owned_license(session, admin, license_id).id)
        base = max(license_.validity_period or now, now)
        until = base + timedelta(days=days)
    return update_license(
        session,
        admin,
        license_id,
        LicenseChanges(validity_period=until),
        now=now,
        action="license.extend",
    )


def reset_license(
    session: Session, admin: Admin, license_id: int, *, now: datetime
) -> dict[str, Any]:
    """Deactivate every device and set the activation count back to zero."""
    admin.require("write")
    license_ = repository.lock_license(session, _owned_license(session, admin, license_id).id)
    before = _license_out(session, license_)
    for device in repository.devices(session, license_.id):
        if device.active:
            activation.release_seat(session, license_, device, now=now)
    session.refresh(license_)
    license_.last_deactivated_hardware_id = None
    license_.total_consumptions = 0
    session.flush()
    after = _license_out(session, license_)
    record(
        session, admin, "license.reset", "license", license_id, before=before, after=after, now=now
    )
    return after


def delete_license(
    session: Session, admin: Admin, license_id: int, *, force: bool, now: datetime
) -> None:
    """Delete a license (a bundle license: with its sub-licenses), refused while one of them
    holds a device unless ``force``."""
    admin.require("write")
    license_ = repository.lock_license(session, _owned_license(session, admin, license_id).id)
    for row in [license_, *_sub_licenses(session, license_)]:
        if row.times_activated > 0 and not force:
            raise LicensorError(
                "license_has_active_devices",
                f"License {row.id} has {row.times_activated} active "
                "device(s); deactivate them or use force",
            )
    for row in [*_sub_licenses(session, license_), license_]:
        before = _license_out(session, row)
        session.delete(row)
        session.flush()
        record(session, admin, "license.delete", "license", row.id, before=before, now=now)


def get_order(session: Session, admin: Admin, order_id: str) -> dict[str, Any]:
    """The licenses issued for one purchase (their ``order_id``)."""
    admin.require("read")
    order_id = order_id.strip()
    rows = admin_repo.licenses_by_order(session, admin.company_id, order_id) if order_id else []
    if not rows:
        raise _not_found("order", repr(order_id))
    items = _license_views(session, rows)
    return {"order_id": order_id, "items": items}


# -- license users -----------------------------------------------------------------------------


def add_license_user(
    session: Session,
    admin: Admin,
    license_id: int,
    *,
    email: str,
    password: str,
    max_activations: int = 1,
    first_name: str = "",
    last_name: str = "",
    now: datetime,
) -> dict[str, Any]:
    """A user (username + password) of a user-based license."""
    admin.require("write")
    license_ = repository.lock_license(session, _owned_license(session, admin, license_id).id)
    product = session.get(Product, license_.product_id)
    if product is None or product.authorization_method != "user":
        raise LicensorError(
            "validation_error", "license_id: users belong to licenses of user-based products"
        )
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise LicensorError("validation_error", "email: not an e-mail address")
    passwords.check_length(password)
    if max_activations < 0:
        raise LicensorError("validation_error", "max_activations: must be >= 0")
    if repository.license_user_on_license(session, license_.id, email) is not None:
        raise LicensorError("validation_error", "email: this user already exists", status=409)
    user = LicenseUser(
        license_id=license_.id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        password_hash=licensing.password_hasher.hash(password),
        is_initial_password=True,
        max_activations=max_activations,
        created_at=now,
    )
    session.add(user)
    session.flush()
    view = {**views.license_user_view(user), "license_id": license_.id}
    record(session, admin, "license_user.create", "license_user", user.id, after=view, now=now)
    return view


def reset_user_password(
    session: Session, admin: Admin, user_id: int, *, password: str | None, now: datetime
) -> dict[str, Any]:
    """Set the given password, or a generated one answered once; either is an initial one."""
    admin.require("write")
    user = admin_repo.license_user_of_company(session, admin.company_id, user_id)
    if user is None:
        raise _not_found("license user", user_id)
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(12)
    passwords.check_length(password)
    before = {**views.license_user_view(user), "license_id": user.license_id}
    user.password_hash = licensing.password_hasher.hash(password)
    user.is_initial_password = True
    session.flush()
    after = {**views.license_user_view(user), "license_id": user.license_id}
    record(
        session,
        admin,
        "license_user.reset_password",
        "license_user",
        user_id,
        before=before,
        after=after,
        now=now,
    )
    return {**after, "password": password} if generated else after


# -- devices and blacklist ---------------------------------------------------------------------


def list_devices(session: Session, admin: Admin, license_id: int) -> list[dict[str, Any]]:
    admin.require("read")
    license_ = _owned_license(session, admin, license_id)
    return [views.device_view(d) for d in repository.devices(session, license_.id)]


def floating_slots(
    session: Session, admin: Admin, license_id: int, *, now: datetime
) -> dict[str, Any]:
    """The license's floating slots held at ``now``, with their devices: the license's own
    (``feature`` null) and its floating features' (``feature``: the code)."""
    admin.require("read")
    license_ = _owned_license(session, admin, license_id)
    product = session.get(Product, license_.product_id)
    assert product is not None
    terms = licensing.terms_of(license_, product)
    held = [
        (slot, device)
        for slot, device in repository.floating_slots(session, license_.id)
        if floating_rules.held(floating.slot_of(slot), now)
    ]
    return {
        "license_id": license_.id,
        "is_floating_cloud": terms.is_floating_cloud,
        "floating_users": terms.floating_users,
        "floating_timeout": terms.floating_timeout_minutes,
        "in_use": sum(1 for slot, _ in held if not slot.feature),
        "features_in_use": {
            code: sum(1 for slot, _ in held if slot.feature == code)
            for code in sorted({slot.feature for slot, _ in held if slot.feature})
        },
        "items": [views.floating_slot_view(slot, device, now) for slot, device in held],
    }


def release_floating_slot(
    session: Session, admin: Admin, license_id: int, device_id: int, *, now: datetime
) -> dict[str, Any]:
    """A vendor frees a device's floating slots, the license's and its features' (support:
    "the seat is stuck on a dead PC")."""
    admin.require("device")
    license_ = _owned_license(session, admin, license_id)
    repository.lock_license(session, license_.id)
    found = [
        (slot, device)
        for slot, device in repository.floating_slots(session, license_.id)
        if device.id == device_id and floating_rules.held(floating.slot_of(slot), now)
    ]
    if not found:
        raise _not_found("floating slot of device", device_id)
    before = [views.floating_slot_view(slot, device, now) for slot, device in found]
    for slot, _ in found:
        session.delete(slot)
    session.flush()
    record(
        session,
        admin,
        "floating_slot.release",
        "device",
        device_id,
        before={"slots": before},
        after=None,
        now=now,
    )
    return {"released": True, "device_id": device_id}


def consumption_history(
    session: Session,
    admin: Admin,
    license_id: int,
    *,
    before: int | None,
    limit: int,
    now: datetime,
) -> dict[str, Any]:
    """A license's consumption reports, newest first, and its total as it stands now."""
    admin.require("read")
    license_ = _owned_license(session, admin, license_id)
    events = repository.consumption_events(session, license_.id, before=before, limit=limit)
    return {
        "license_id": license_.id,
        **payload.consumption_fields(license_, now),
        "items": [views.consumption_event_view(e) for e in events],
        "next_before": events[-1].id if len(events) == limit else None,
    }


def deactivate_device(
    session: Session, admin: Admin, device_id: int, *, now: datetime
) -> dict[str, Any]:
    admin.require("device")
    device = admin_repo.device_of_company(session, admin.company_id, device_id)
    if device is None:
        raise _not_found("device", device_id)
    license_ = repository.lock_license(session, device.license_id)
    # checked under the lock (which re-reads the device): a seat is freed once, not per caller
    if not device.active:
        raise LicensorError("device_not_found", f"device {device_id} is not active")
    before = views.device_view(device)
    activation.release_seat(session, license_, device, now=now)
    after = views.device_view(device)
    record(
        session,
        admin,
        "device.deactivate",
        "device",
        device_id,
        before=before,
        after=after,
        now=now,
    )
    return after


def blacklist_add(
    session: Session,
    admin: Admin,
    hardware_id: str,
    *,
    product: str | None,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    admin.require("write")
    if not hardware_id or len(hardware_id) > 256 or "\x00" in hardware_id:
        raise LicensorError("validation_error", "hardware_id: 1-256 characters")
    # a second entry would keep the device refused after the first one is removed
    already = LicensorError("validation_error", "hardware_id: already blacklisted", status=409)
    if admin_repo.blacklist_entry(session, admin.company_id, hardware_id, product) is not None:
        raise already
    try:
        entry = catalogue.blacklist_device(
            session, admin.company_id, hardware_id, product_code=product, reason=reason
        )
    except IntegrityError:
        # a concurrent add of the same entry committed first (unique indexes, migration 0006)
        raise already from None
    view = views.blacklist_view(entry)
    record(session, admin, "blacklist.add", "blacklist", entry.id, after=view, now=now)
    return view


def blacklist_remove(session: Session, admin: Admin, entry_id: int, *, now: datetime) -> None:
    admin.require("write")
    entry = admin_repo.owned(session, BlacklistEntry, admin.company_id, entry_id)
    if entry is None:
        raise _not_found("blacklist entry", entry_id)
    before = views.blacklist_view(entry)
    session.delete(entry)
    session.flush()
    record(session, admin, "blacklist.remove", "blacklist", entry_id, before=before, now=now)


def list_blacklist(session: Session, admin: Admin) -> list[dict[str, Any]]:
    admin.require("read")
    return [views.blacklist_view(e) for e in admin_repo.blacklist(session, admin.company_id)]


# -- customers, products -----------------------------------------------------------------------


def list_customers(
    session: Session, admin: Admin, *, search: str | None = None, page: int = 1, per_page: int = 50
) -> dict[str, Any]:
    admin.require("read")
    offset, limit = _page((page - 1) * per_page, per_page)
    rows, total = admin_repo.customer_page(
        session, admin.company_id, search, offset=offset, limit=limit
    )
    return {
        "items": [views.customer_view(c) for c in rows],
        "page": page,
        "per_page": per_page,
        "total": total,
    }


def get_customer(session: Session, admin: Admin, customer_id: int) -> dict[str, Any]:
    admin.require("read")
    customer = admin_repo.owned(session, Customer, admin.company_id, customer_id)
    if customer is None:
        raise _not_found("customer", customer_id)
    return views.customer_view(customer)


def create_customer(
    session: Session, admin: Admin, email: str, fields: dict[str, Any], *, now: datetime
) -> dict[str, Any]:
    admin.require("write")
    if "@" not in email or len(email) > 320:
        raise LicensorError("validation_error", "email: not an e-mail address")
    if repository.customer_by_email(session, admin.company_id, email.strip().lower()):
        raise LicensorError("validation_error", "email: this customer already exists", status=409)
    customer = catalogue.find_or_create_customer(session, admin.company_id, email, **fields)
    view = views.customer_view(customer)
    record(session, admin, "customer.create", "customer", customer.id, after=view, now=now)
    return view


def get_company(session: Session, admin: Admin) -> dict[str, Any]:
    """The caller's company and its settings."""
    admin.require("read")
    company = repository.company(session, admin.company_id)
    assert company is not None
    return views.company_view(company)


COMPANY_CHANGES = ("allow_password_change",)


def update_company(
    session: Session, admin: Admin, changes: dict[str, Any], *, now: datetime
) -> dict[str, Any]:
    """Change the company's settings (``allow_password_change``)."""
    admin.require("write")
    company = repository.company(session, admin.company_id)
    assert company is not None
    before = views.company_view(company)
    for name, value in changes.items():
        assert name in COMPANY_CHANGES, name
        setattr(company, name, value)
    session.flush()
    after = views.company_view(company)
    record(
        session, admin, "company.update", "company", company.id, before=before, after=after, now=now
    )
    return after


def list_products(session: Session, admin: Admin) -> list[dict[str, Any]]:
    admin.require("read")
    return [views.product_view(p) for p in repository.products(session, admin.company_id)]


def create_product(
    session: Session, admin: Admin, spec: catalogue.ProductSpec, *, now: datetime
) -> dict[str, Any]:
    admin.require("write")
    product = catalogue.create_product(session, admin.company_id, spec)
    view = views.product_view(product)
    record(session, admin, "product.create", "product", product.id, after=view, now=now)
    return view


PRODUCT_CHANGES = (
    "name",
    "prevent_vm",
    "allow_offline_activation",
    *FLOATING_SETTINGS,
)


def update_product(
    session: Session, admin: Admin, code: str, changes: dict[str, Any], *, now: datetime
) -> dict[str, Any]:
    """Change a product's ``name``, ``prevent_vm`` or ``allow_offline_activation`` (the keys of
    ``changes``, as the management API's ``UpdateProduct`` validated them; the licenses that
    do not set their own follow)."""
    admin.require("write")
    product = _owned_product(session, admin, code)
    before = views.product_view(product)
    for name, value in changes.items():
        assert name in PRODUCT_CHANGES, name
        setattr(product, name, value)
    session.flush()
    after = views.product_view(product)
    record(
        session, admin, "product.update", "product", product.id, before=before, after=after, now=now
    )
    return after


def _owned_product(session: Session, admin: Admin, code: str) -> Product:
    product = repository.product_by_code(session, admin.company_id, code)
    if product is None:
        raise _not_found("product", repr(code))
    return product


def list_releases(session: Session, admin: Admin, code: str) -> list[dict[str, Any]]:
    admin.require("read")
    product = _owned_product(session, admin, code)
    return [
        views.release_view(r, product.short_code)
        for r in admin_repo.product_releases(session, product.id)
    ]


def add_release(
    session: Session,
    admin: Admin,
    code: str,
    *,
    version: str,
    release_date: datetime,
    environment: str = "",
    channel: str = "",
    links: dict[str, str] | None = None,
    enabled: bool = True,
    file: Mapping[str, str] | None = None,
    now: datetime,
) -> dict[str, Any]:
    """A release (version) of a product, for ``/versions``, ``/installation_file`` and QLM's
    GetLatestVersion; ``file``: its installer's ``hash_md5``, ``size`` (bytes) and the
    ``requires_version`` an upgrade needs."""
    admin.require("write")
    product = _owned_product(session, admin, code)
    version = version.strip()
    if not version or len(version) > 50:
        raise LicensorError("validation_error", "version: 1-50 characters")
    if admin_repo.product_release(session, product.id, version, environment):
        raise LicensorError(
            "validation_error",
            f"version: {version} already exists for this environment",
            status=409,
        )
    links = links or {}
    release = catalogue.add_release(
        session,
        product,
        version,
        release_date,
        environment=environment,
        channel=channel,
        enabled=enabled,
        full_link=links.get("full", ""),
        release_notes_link=links.get("release_notes", ""),
        eula_link=links.get("eula", ""),
        hash_md5=(file or {}).get("hash_md5", ""),
        size=(file or {}).get("size", ""),
        requires_version=(file or {}).get("requires_version", ""),
        created_at=now,
    )
    view = views.release_view(release, product.short_code)
    record(session, admin, "release.create", "release", release.id, after=view, now=now)
    return view


# -- audit -------------------------------------------------------------------------------------


def list_audit(
    session: Session,
    admin: Admin,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    action: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> dict[str, Any]:
    admin.require("read")
    offset, limit = _page((page - 1) * per_page, per_page)
    rows, total = admin_repo.audit_page(
        session,
        admin.company_id,
        object_type=object_type,
        object_id=object_id,
        action=action,
        offset=offset,
        limit=limit,
    )
    return {
        "items": [views.audit_view(e) for e in rows],
        "page": page,
        "per_page": per_page,
        "total": total,
    }
