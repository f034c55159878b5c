"""The customers' self-service page (``/portal``): a customer signs in with a license key and
the e-mail the license was sold to, sees the license and its computers, and frees a computer
they no longer have -- through ``activation.deactivate_in_session``, the License API's
deactivation: every rule of a deactivation applies (release limits, deactivation codes), and
the audit log names the customer.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.services import activation, qlm, views
from licensor.services.context import Caller
from licensor.services.licensing import LicenseRef
from licensor.store import repository
from licensor.store.models import Device, License, Product


def sign_in(session: Session, license_key: str, email: str) -> int:
    """The id of the license of ``license_key`` whose customer has the e-mail ``email``, or
    ``license_not_found`` (a wrong key and a wrong e-mail alike)."""
    caller = qlm.page_caller(session, license_key)  # (a key of two vendors: refused)
    found = repository.license_by_key_in_company(
        session, caller.company_id, normalize_license_key(license_key)
    )
    customer = repository.customer(session, found.customer_id) if found else None
    given = email.strip().lower().encode()
    if (
        found is None
        or customer is None
        or not hmac.compare_digest(customer.email.lower().encode(), given)
    ):
        raise LicensorError("license_not_found", "No license has this key and e-mail")
    return found.id


def _license(session: Session, license_id: int) -> License:
    found = session.get(License, license_id)
    if found is None:
        raise LicensorError("license_not_found", "License not found")
    return found


def overview(session: Session, license_id: int) -> dict[str, Any]:
    """The license and its computers, as its customer sees them."""
    license_ = _license(session, license_id)
    product = session.get(Product, license_.product_id)
    assert product is not None
    customer = repository.customer(session, license_.customer_id)
    return {
        "license": views.license_view(
            license_, product.short_code, customer_email=customer.email if customer else None
        ),
        "product": product.name,
        "devices": [views.device_view(d) for d in repository.devices(session, license_.id)],
    }


def deactivate(session: Session, license_id: int, device_id: int, *, now: datetime) -> None:
    """Free the seat of the license's computer ``device_id`` as the License API's deactivation
    would (``device_not_found`` for a computer of another license)."""
    license_ = _license(session, license_id)
    device = session.get(Device, device_id)
    if device is None or device.license_id != license_.id or not device.active:
        raise LicensorError("device_not_found")
    product = session.get(Product, license_.product_id)
    assert product is not None
    customer = repository.customer(session, license_.customer_id)
    caller = Caller(
        company_id=license_.company_id,
        actor=f"portal:{customer.email if customer else license_.id}",
    )
    ref = LicenseRef(product.short_code, device.hardware_id, license_key=license_.license_key)
    activation.deactivate_in_session(session, caller, ref, now=now)
