"""License users through the License API (v4 §3.17, §3.20-3.21): a user changes their
password (``change_password``), a caller lists a customer's users (``customer_license_users``)
and a user's licenses (``user_licenses``) -- the one implementation of each.

A license user is one e-mail on one license (``LicenseUser``); the same person holds a row on
each license they use. Their password is checked on each row (Argon2id), so a password proves
only the rows it is the password of. Every read keeps to the caller's company, and to its
customer or license when its OAuth client is scoped to one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from licensor.core import passwords
from licensor.core.errors import LicensorError
from licensor.core.licensing import AuthorizationMethod
from licensor.services import audit, payload
from licensor.services.context import Caller
from licensor.services.licensing import actor_of, password_hasher, resolve_product, terms_of
from licensor.store import repository
from licensor.store.models import License, LicenseUser, Product


def _verified(rows: Sequence[tuple[LicenseUser, License]], password: str) -> list[Any]:
    """The rows ``password`` is the password of (an SSO user's never verifies)."""
    found = []
    for user, license_ in rows:
        try:
            password_hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            continue
        found.append((user, license_))
    return found


def change_password(
    session: Session,
    caller: Caller,
    *,
    username: str,
    password: str,
    new_password: str,
    now: datetime,
) -> str:
    """Give the user ``username`` the password ``new_password`` on every license whose
    password ``password`` is (inside the session's write transaction); ``"password_changed"``.
    Refused: the company does not allow it, a read-only key, a new password too short, a
    wrong password (``invalid_credentials``, counted by the rate limits)."""
    company = repository.company(session, caller.company_id)
    if company is None or not company.allow_password_change:
        raise LicensorError("change_password_not_allowed")
    if caller.read_only:
        raise LicensorError("read_only_api_key")
    passwords.check_length(new_password, field="new_password")
    email = username.strip().lower()
    rows = repository.users_by_email(
        session,
        caller.company_id,
        email,
        customer_id=caller.scope_customer_id,
        license_id=caller.scope_license_id,
        lock=True,
    )
    verified = _verified(rows, password)
    if not verified:
        raise LicensorError("invalid_credentials")
    new_hash = password_hasher.hash(new_password)
    for user, license_ in verified:
        user.password_hash = new_hash
        user.is_initial_password = False
        audit.record(
            session,
            company_id=caller.company_id,
            actor=actor_of(caller),
            action="license_user.change_password",
            object_type="license_user",
            object_id=user.id,
            after={"license_id": license_.id, "email": user.email},
            now=now,
        )
    session.flush()
    return "password_changed"


def _user_product(session: Session, caller: Caller, code: str) -> Product:
    product = resolve_product(session, caller, code)
    if product.authorization_method != AuthorizationMethod.USER:
        raise LicensorError(
            "invalid_product_auth_method",
            f"Product authorization method is invalid: {code} does not use license users.",
        )
    return product


def customer_license_users(
    session: Session, caller: Caller, *, product: str, customer: str
) -> dict[str, Any]:
    """The customer (by e-mail) and the license users of its licenses of ``product``."""
    found_product = _user_product(session, caller, product)
    found = repository.customer_by_email(session, caller.company_id, customer.strip().lower())
    if found is None:
        raise LicensorError("customer_does_not_exist")
    license_id = caller.scope_license_id
    if caller.scope_customer_id is not None and caller.scope_customer_id != found.id:
        raise LicensorError("customer_not_found", "These credentials do not grant this customer")
    if license_id is not None:
        scoped = repository.license_in_company(session, caller.company_id, license_id)
        if scoped is None or scoped.customer_id != found.id:
            raise LicensorError(
                "customer_not_found", "These credentials do not grant this customer"
            )
    rows = repository.users_of_customer(session, found_product.id, found.id, license_id=license_id)
    return {
        "customer": {
            "email": found.email,
            "first_name": found.first_name,
            "last_name": found.last_name,
            "company_name": found.company_name,
            "phone": found.phone,
            "reference": found.reference,
            "address": found.address,
            "postcode": found.postcode,
            "city": found.city,
            "country": found.country,
            "state": found.state,
            "customer_account": None,
            "metadata": found.metadata_,
        },
        "users": [
            {
                "email": user.email,
                "is_active": license_.enabled,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "phone_number": user.phone_number,
                "is_initial_password": user.is_initial_password,
                # (only its Argon2id hash is kept: the initial password is never shown again)
                "initial_password": None,
                "license_id": license_.id,
                "order_id": license_.order_store_id or None,
                "order_store_id": license_.order_store_id,
                "max_activations": user.max_activations,
                "total_activations": user.total_activations,
            }
            for user, license_ in rows
        ],
    }


def user_licenses(
    session: Session,
    caller: Caller,
    *,
    product: str,
    username: str,
    password: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The licenses of ``product`` the user holds: those ``password`` is theirs on, or all
    of them for a user single sign-on verified (``password`` None). Each item: the license
    object and the user."""
    found_product = _user_product(session, caller, product)
    rows = repository.users_by_email(
        session,
        caller.company_id,
        username.strip().lower(),
        product_id=found_product.id,
        customer_id=caller.scope_customer_id,
        license_id=caller.scope_license_id,
    )
    held = rows if password is None else _verified(rows, password)
    if not held:
        raise LicensorError("invalid_credentials")
    items = []
    for user, license_ in held:
        customer = repository.customer(session, license_.customer_id)
        body = payload.license_object(
            terms=terms_of(license_, found_product),
            license_=license_,
            product=found_product,
            customer=customer,
            user=user,
            now=now,
        )
        items.append({"license": body, "user": payload.user_object(user)})
    return items
