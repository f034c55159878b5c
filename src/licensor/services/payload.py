"""The license object of the License API (v4 §3.30), built in a stable key order and signed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from licensor.core import features as feature_rules
from licensor.core.consumption import current_total
from licensor.core.licensing import LicenseTerms, is_expired
from licensor.keyring import Keyring
from licensor.protocol.auth import http_date, offline_signature
from licensor.protocol.signing import (
    SignatureAlgorithm,
    iso_ms_z,
    license_signing_string,
    v2_signing_bytes,
)
from licensor.services.context import Caller
from licensor.store.models import (
    Customer,
    Device,
    DeviceVariable,
    License,
    LicenseUser,
    Product,
    ProductRelease,
)


def iso_or_none(moment: datetime | None) -> str | None:
    return iso_ms_z(moment) if moment is not None else None


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def customer_object(customer: Customer | None) -> dict[str, Any]:
    if customer is None:
        return {
            "email": "",
            "company_name": "",
            "reference": "",
            "phone": "",
            "first_name": "",
            "last_name": "",
            "city": "",
            "postcode": "",
            "state": "",
            "country": "",
            "customer_account": None,
            "metadata": {},
        }
    return {
        "email": customer.email,
        "company_name": customer.company_name,
        "reference": customer.reference,
        "phone": customer.phone,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "city": customer.city,
        "postcode": customer.postcode,
        "state": customer.state,
        "country": customer.country,
        "customer_account": None,
        "metadata": customer.metadata_,
    }


def user_object(user: LicenseUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "phone_number": user.phone_number,
        "is_initial_password": user.is_initial_password,
        "max_activations": user.max_activations,
        "allow_unlimited_activations": user.allow_unlimited_activations,
        "total_activations": user.total_activations,
    }


def custom_fields(product: Product, license_: License) -> list[dict[str, Any]]:
    overrides = license_.custom_fields or {}
    fields = []
    seen = set()
    for field in product.custom_fields or []:
        name = str(field.get("name", ""))
        seen.add(name)
        value = overrides.get(name, field.get("default_value", ""))
        fields.append({"name": name, "data_type": None, "value": str(value)})
    for name, value in overrides.items():
        if name not in seen:
            fields.append({"name": name, "data_type": None, "value": str(value)})
    return fields


def product_details(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.id,
        "product_name": product.name,
        "short_code": product.short_code,
        "authorization_method": product.authorization_method,
        "metadata": product.metadata_,
    }


def release_fields(release: ProductRelease | None) -> dict[str, Any]:
    if release is None:
        return {
            "version": "",
            "installation_file": "",
            "release_date": "",
            "hash_md5": "",
            "requires_version": "",
            "environment": "",
            "eula_link": "",
            "release_notes_link": "",
            "size": "",
            "channel": "",
        }
    return {
        "version": release.version,
        "installation_file": release.full_link,
        "release_date": iso_ms_z(release.release_date),
        "hash_md5": release.hash_md5,
        "requires_version": release.requires_version,
        "environment": release.environment,
        "eula_link": release.eula_link,
        "release_notes_link": release.release_notes_link,
        "size": release.size,
        "channel": release.channel,
    }


def variable_objects(rows: list[DeviceVariable]) -> list[dict[str, Any]]:
    return [
        {
            "variable": row.variable,
            "value": row.value,
            "device_id": row.device_id,
            "created_at": epoch_ms(row.created_at),
        }
        for row in rows
    ]


def answer_date(now: datetime, hardware_id: str, step_seconds: int) -> datetime:
    """The ``date`` a license answer carries: ``now`` rounded down to a step of
    ``step_seconds`` that starts at an offset of the device's own (0 = ``now`` to the second).

    Within one step every answer for a device carries the same date, so an unchanged answer
    is the same bytes, signed once (``api/v4/check.py``); the date never goes backwards
    for a device, whichever worker process answers, and never lies in the future; the
    per-device offset spreads the steps' ends, so that answers are not all re-signed at once.
    """
    if step_seconds <= 0:
        return now.replace(microsecond=0)
    offset = int.from_bytes(hashlib.sha256(hardware_id.encode()).digest()[:4]) % step_seconds
    seconds = int(now.timestamp())
    start = seconds - (seconds - offset) % step_seconds
    return datetime.fromtimestamp(start, UTC)


def next_step(date: datetime, step_seconds: int) -> datetime:
    """When the step of an answer dated ``date`` ends (its date then moves on)."""
    return date + timedelta(seconds=max(step_seconds, 1))


def total_now(license_: Any, now: datetime) -> int:
    """A license's consumption total as it stands at ``now`` (0 once its period started
    again: ``core.consumption.current_total``)."""
    return current_total(
        license_.total_consumptions,
        license_.consumption_counted_at,
        license_.consumption_period,
        now,
    )


def consumption_fields(license_: Any, now: datetime) -> dict[str, Any]:
    """The consumption fields of a license object (v4 §3.30) and of the ``add_consumption``
    answer (§3.9)."""
    return {
        "max_consumptions": license_.max_consumptions,
        "total_consumptions": total_now(license_, now),
        "allow_unlimited_consumptions": license_.allow_unlimited_consumptions,
        "allow_negative_consumptions": license_.allow_negative_consumptions,
        "allow_overages": license_.allow_overages,
        "max_overages": license_.max_overages,
        "reset_consumption": license_.consumption_period is not None,
        "consumption_period": license_.consumption_period,
    }


def license_signing_bytes(license_: Any, user: Any, hardware_id: str) -> bytes:
    """What an answer's ``license_signature`` signs for this license, user and device."""
    key_or_user = user.email if user is not None else (license_.license_key or "")
    return license_signing_string(
        hardware_id, key_or_user, iso_or_none(license_.validity_period)
    ).encode()


def license_object(
    *,
    terms: LicenseTerms,
    license_: Any,
    product: Any,
    customer: Any,
    user: Any,
    now: datetime,
    include_expired_features: bool = False,
) -> dict[str, Any]:
    """The license's own fields of a license object (v4 §3.30), no device's: the start of
    every activation and check answer, and a license of ``/user_licenses``."""
    validity = iso_or_none(license_.validity_period)
    body: dict[str, Any] = {
        "id": license_.id,
        "order_store_id": license_.order_store_id,
        "license_active": license_.times_activated > 0,
        "license_enabled": license_.enabled,
        "license_type": license_.license_type,
    }
    if user is not None:
        body["user"] = user_object(user)
        body["username"] = user.email
    else:
        body["license_key"] = license_.license_key
    body.update(
        {
            "is_trial": license_.is_trial,
            "trial_days": license_.trial_days,
            "validity_period": validity,
            "enable_maintenance_period": license_.enable_maintenance_period,
            "maintenance_period": iso_or_none(license_.maintenance_period),
            "allow_grace_period": license_.allow_grace_period,
            "grace_period": license_.grace_period,
            "max_activations": license_.max_activations,
            "allow_unlimited_activations": license_.allow_unlimited_activations,
            "times_activated": license_.times_activated,
            "start_date": iso_or_none(license_.start_date),
            "transfer_count": license_.transfer_count,
            "max_transfers": license_.max_transfers,
            "allow_overages": license_.allow_overages,
            "max_overages": license_.max_overages,
            "is_floating_cloud": terms.is_floating_cloud,
            "is_floating": False,
            "floating_timeout": terms.floating_timeout_minutes
            if terms.is_floating_cloud
            else product.floating_timeout,
            "can_borrow": terms.can_borrow,
            "max_borrow_time": terms.max_borrow_hours,
            "prevent_vm": terms.prevent_vm,
            "custom_fields": custom_fields(product, license_),
            "product_features": feature_rules.product_features(
                product.features, license_.features, now, include_expired=include_expired_features
            ),
            "customer": customer_object(customer),
            "product_details": product_details(product),
            "metadata": license_.metadata_,
            **consumption_fields(license_, now),
        }
    )
    return body


def license_body(
    *,
    request: str,
    caller: Caller,
    keyring: Keyring,
    algorithm: SignatureAlgorithm,
    terms: LicenseTerms,
    license_: License,
    product: Product,
    customer: Customer | None,
    user: LicenseUser | None,
    device: Device,
    release: ProductRelease | None,
    variables: list[DeviceVariable] | None,
    now: datetime,
    include_expired_features: bool = False,
    date_step_seconds: int = 0,
    floating: Any = None,
) -> dict[str, Any]:
    """The activation or check answer, with ``license_signature`` (and ``_v2`` for checks).
    Its ``date`` is ``answer_date(now, ...)``; everything else is computed at ``now``."""
    key_or_user = user.email if user is not None else (license_.license_key or "")
    body = license_object(
        terms=terms,
        license_=license_,
        product=product,
        customer=customer,
        user=user,
        now=now,
        include_expired_features=include_expired_features,
    )
    body.update(
        {
            "device_id": device.id,
            "is_borrowed": False,
            "borrowed_until": None,
            "is_expired": is_expired(terms, license_.validity_period, now),
        }
    )
    if terms.is_floating_cloud:  # (the slots: a check's; an activation takes none)
        body["floating_users"] = terms.floating_users
        body["floating_in_use_devices"] = 0
        if floating is not None:
            body.update(floating.fields(now))
    body.update(release_fields(release))
    body["hardware_id"] = device.hardware_id
    if request in ("activation", "offline_activation"):
        body["active"] = device.active
        body["request"] = "activation"
        body["variables"] = variable_objects(variables or [])
    date = http_date(answer_date(now, device.hardware_id, date_step_seconds))
    body["date"] = date
    signed_fields = request in ("check", "offline_activation")
    if signed_fields:
        credential_id = caller.api_key or caller.client_id
        body["offline_signature"] = (
            offline_signature(
                caller.shared_key, date, key_or_user, device.hardware_id, credential_id
            )
            if caller.shared_key and credential_id
            else ""
        )
    body["license_signature"] = keyring.license_signature(
        algorithm,
        license_signing_bytes(license_, user, device.hardware_id),
        getattr(device, "license_signature", None),
    )
    if signed_fields:
        body["license_signature_v2"] = keyring.sign_body(algorithm, v2_signing_bytes(body))
    return body
