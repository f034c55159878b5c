"""Plain-JSON views of stored objects for the management API and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from licensor.protocol.signing import iso_ms_z
from licensor.services.payload import consumption_fields
from licensor.store.models import (
    AdminToken,
    ApiKey,
    AuditEntry,
    BlacklistEntry,
    Company,
    ConsumptionEvent,
    Customer,
    Device,
    FloatingSlot,
    License,
    LicensePolicy,
    LicenseUser,
    OAuthClient,
    Product,
    ProductRelease,
    utcnow,
)


def _iso(value: datetime | None) -> str | None:
    return iso_ms_z(value) if value is not None else None


def license_view(
    license_: License,
    product_code: str,
    *,
    customer_email: str | None = None,
    users: list[LicenseUser] | None = None,
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": license_.id,
        "product": product_code,
        "license_key": license_.license_key,
        "license_type": license_.license_type,
        "enabled": license_.enabled,
        "is_trial": license_.is_trial,
        "trial_days": license_.trial_days,
        "validity_period": _iso(license_.validity_period),
        "validity_days": license_.validity_days,
        "start_date": _iso(license_.start_date),
        "allow_grace_period": license_.allow_grace_period,
        "grace_period": license_.grace_period,
        "maintenance_period": _iso(license_.maintenance_period),
        "max_activations": license_.max_activations,
        "allow_unlimited_activations": license_.allow_unlimited_activations,
        "times_activated": license_.times_activated,
        "max_transfers": license_.max_transfers,
        "transfer_count": license_.transfer_count,
        "prevent_vm": license_.prevent_vm,
        "allow_offline_activation": license_.allow_offline_activation,
        "version_spec": license_.version_spec,
        **consumption_fields(license_, utcnow()),
        **{name: getattr(license_, name) for name in FLOATING_SETTINGS},
        "order_id": license_.order_store_id,
        "customer": customer_email,
        "custom_fields": license_.custom_fields,
        "features": license_.features,
        "policy_id": license_.policy_id,
        "metadata": license_.metadata_,
        "created_at": _iso(license_.created_at),
        "updated_at": _iso(license_.updated_at),
    }
    if users is not None:
        view["users"] = [license_user_view(u) for u in users]
    return view


# the floating cloud settings of products and licenses (null on a license: the product's)
FLOATING_SETTINGS = (
    "is_floating_cloud",
    "floating_users",
    "floating_timeout",
    "can_borrow",
    "max_borrow_time",
)


def floating_slot_view(slot: FloatingSlot, device: Device, now: datetime) -> dict[str, Any]:
    borrowed = slot.borrowed_until is not None and slot.borrowed_until > now
    return {
        "device_id": device.id,
        "hardware_id": device.hardware_id,
        "hostname": device.hostname,
        "feature": slot.feature or None,
        "taken_at": _iso(slot.taken_at),
        "refreshed_at": _iso(slot.refreshed_at),
        "expires_at": _iso(slot.expires_at),
        "borrowed_until": _iso(slot.borrowed_until) if borrowed else None,
    }


def consumption_event_view(event: ConsumptionEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "event": event.event,
        "consumptions": event.consumptions,
        "total_after": event.total_after,
        "feature": event.feature,
        "device_id": event.device_id,
        "hardware_id": event.hardware_id,
        "created_at": _iso(event.created_at),
    }


def license_user_view(user: LicenseUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "max_activations": user.max_activations,
        "allow_unlimited_activations": user.allow_unlimited_activations,
        "total_activations": user.total_activations,
        "is_initial_password": user.is_initial_password,
    }


def device_view(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "license_id": device.license_id,
        "hardware_id": device.hardware_id,
        "active": device.active,
        "is_vm": device.is_vm,
        "hostname": device.hostname,
        "os_ver": device.os_ver,
        "app_ver": device.app_ver,
        "ip_local": device.ip_local,
        "mac_address": device.mac_address,
        "first_activated_at": _iso(device.first_activated_at),
        "last_activated_at": _iso(device.last_activated_at),
        "last_check_at": _iso(device.last_check_at),
        "deactivated_at": _iso(device.deactivated_at),
    }


def customer_view(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "email": customer.email,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "company_name": customer.company_name,
        "phone": customer.phone,
        "reference": customer.reference,
        "city": customer.city,
        "country": customer.country,
        "metadata": customer.metadata_,
        "created_at": _iso(customer.created_at),
    }


def product_view(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "short_code": product.short_code,
        "name": product.name,
        "authorization_method": product.authorization_method,
        "prevent_vm": product.prevent_vm,
        "allow_offline_activation": product.allow_offline_activation,
        "version_spec": product.version_spec,
        "allow_trial": product.allow_trial,
        "trial_days": product.trial_days,
        **{name: getattr(product, name) for name in FLOATING_SETTINGS},
        "enabled": product.enabled,
        "archived": product.archived,
        "custom_fields": product.custom_fields,
        "features": product.features,
        "bundle": product.bundle_items,
        "metadata": product.metadata_,
        "created_at": _iso(product.created_at),
    }


def company_view(company: Company) -> dict[str, Any]:
    return {
        "id": company.id,
        "name": company.name,
        "oauth_required": company.oauth_required,
        "allow_password_change": company.allow_password_change,
    }


def release_view(release: ProductRelease, product_code: str) -> dict[str, Any]:
    return {
        "id": release.id,
        "product": product_code,
        "version": release.version,
        "release_date": _iso(release.release_date),
        "environment": release.environment,
        "channel": release.channel,
        "enabled": release.enabled,
        "links": {
            "full": release.full_link,
            "release_notes": release.release_notes_link,
            "eula": release.eula_link,
        },
        "created_at": _iso(release.created_at),
    }


def blacklist_view(entry: BlacklistEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "hardware_id": entry.hardware_id,
        "product_id": entry.product_id,
        "reason": entry.reason,
        "created_at": _iso(entry.created_at),
    }


def token_view(token: AdminToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "prefix": token.prefix,
        "revoked": token.revoked,
        "created_at": _iso(token.created_at),
        "last_used_at": _iso(token.last_used_at),
    }


def api_key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "api_key": key.api_key,
        "label": key.label,
        "read_only": key.read_only,
        "revoked": key.revoked,
        "product_ids": key.allowed_product_ids,
        "created_at": _iso(key.created_at),
        "previous_valid_until": _iso(key.previous_valid_until),
    }


def oauth_client_view(client: OAuthClient) -> dict[str, Any]:
    return {
        "id": client.id,
        "client_id": client.client_id,
        "scope": client.scope,
        "customer_id": client.customer_id,
        "license_id": client.license_id,
        "revoked": client.revoked,
        "created_at": _iso(client.created_at),
        "previous_valid_until": _iso(client.previous_valid_until),
    }


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": _iso(entry.created_at),
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "before": entry.before,
        "after": entry.after,
    }


def feature_view(feature: dict[str, Any], product_code: str) -> dict[str, Any]:
    return {**feature, "product": product_code}


def policy_view(policy: LicensePolicy, product_code: str) -> dict[str, Any]:
    return {
        "id": policy.id,
        "product": product_code,
        "code": policy.code,
        "name": policy.name,
        "is_default": policy.is_default,
        "license_type": policy.license_type,
        "max_activations": policy.max_activations,
        "allow_unlimited_activations": policy.allow_unlimited_activations,
        "validity_days": policy.validity_days,
        "validity_period": _iso(policy.validity_period),
        "is_trial": policy.is_trial,
        "trial_days": policy.trial_days,
        "max_transfers": policy.max_transfers,
        "prevent_vm": policy.prevent_vm,
        "allow_offline_activation": policy.allow_offline_activation,
        "grace_period": policy.grace_period,
        "maintenance_days": policy.maintenance_days,
        "max_consumptions": policy.max_consumptions,
        "allow_unlimited_consumptions": policy.allow_unlimited_consumptions,
        "allow_overages": policy.allow_overages,
        "max_overages": policy.max_overages,
        "allow_negative_consumptions": policy.allow_negative_consumptions,
        "consumption_period": policy.consumption_period,
        "is_floating_cloud": policy.is_floating_cloud,
        "floating_users": policy.floating_users,
        "floating_timeout": policy.floating_timeout,
        "can_borrow": policy.can_borrow,
        "max_borrow_time": policy.max_borrow_time,
        "custom_fields": policy.custom_fields,
        "features": policy.features,
        "metadata": policy.metadata_,
        "created_at": _iso(policy.created_at),
        "updated_at": _iso(policy.updated_at),
    }
