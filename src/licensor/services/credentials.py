"""Vendor use cases on credentials: management API tokens, License API keys and OAuth clients
(create, list, rotate, revoke), one company at a time, by role; every change audited."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.secrets_at_rest import MasterKey
from licensor.services import catalogue, views
from licensor.services.auth import OAUTH_SECRET_CONTEXT, SHARED_KEY_CONTEXT
from licensor.services.management import (
    ROLES,
    TOKEN_PREFIX,
    Admin,
    local_admin,
    not_found,
    owned_license,
    record,
)
from licensor.store import admin_repository as admin_repo
from licensor.store import repository
from licensor.store.models import AdminToken, ApiKey, Customer, OAuthClient

# -- tokens ------------------------------------------------------------------------------------


def create_token(
    session: Session, master_key: MasterKey, admin: Admin, *, name: str, role: str, now: datetime
) -> dict[str, Any]:
    admin.require("credentials")
    if role not in ROLES:
        raise LicensorError("validation_error", "role: must be admin, support or read-only")
    name = name.strip()
    if not name or len(name) > 200:
        raise LicensorError("validation_error", "name: 1-200 characters")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = AdminToken(
        company_id=admin.company_id,
        name=name,
        role=role,
        prefix=plaintext[:10],
        token_hash=master_key.hash_secret(plaintext),
        created_at=now,
    )
    session.add(token)
    session.flush()
    view = views.token_view(token)
    record(session, admin, "token.create", "token", token.id, after=view, now=now)
    return {**view, "token": plaintext}


def bootstrap_token(
    session: Session,
    master_key: MasterKey,
    company_id: int,
    *,
    name: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """The first token of a company, made at the server's terminal."""
    return create_token(session, master_key, local_admin(company_id), name=name, role=role, now=now)


def list_tokens(session: Session, admin: Admin) -> list[dict[str, Any]]:
    admin.require("credentials")
    return [views.token_view(t) for t in admin_repo.admin_tokens(session, admin.company_id)]


def _revoke(
    session: Session,
    admin: Admin,
    model: Any,
    object_id: int,
    *,
    kind: str,
    view: Callable[[Any], dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """Revoke a credential (token, API key, OAuth client) of the admin's company."""
    admin.require("credentials")
    credential = admin_repo.owned(session, model, admin.company_id, object_id)
    if credential is None:
        raise not_found(kind.replace("_", " "), object_id)
    before = view(credential)
    credential.revoked = True
    session.flush()
    after = view(credential)
    record(session, admin, f"{kind}.revoke", kind, object_id, before=before, after=after, now=now)
    return after


def revoke_token(session: Session, admin: Admin, token_id: int, now: datetime) -> dict[str, Any]:
    return _revoke(
        session, admin, AdminToken, token_id, kind="token", view=views.token_view, now=now
    )


# -- API credentials ---------------------------------------------------------------------------


def create_api_key(
    session: Session,
    master_key: MasterKey,
    admin: Admin,
    *,
    read_only: bool,
    products: list[str] | None,
    label: str,
    now: datetime,
) -> dict[str, Any]:
    admin.require("credentials")
    key = catalogue.create_api_key(
        session,
        master_key,
        admin.company_id,
        read_only=read_only,
        product_codes=products,
        label=label,
    )
    stored = repository.api_key_by_key(session, key.api_key)
    assert stored is not None
    view = views.api_key_view(stored)
    record(session, admin, "api_key.create", "api_key", stored.id, after=view, now=now)
    return {**view, "shared_key": key.shared_key}


def revoke_api_key(session: Session, admin: Admin, key_id: int, *, now: datetime) -> dict[str, Any]:
    return _revoke(session, admin, ApiKey, key_id, kind="api_key", view=views.api_key_view, now=now)


def list_credentials(session: Session, admin: Admin) -> dict[str, Any]:
    admin.require("credentials")
    return {
        "api_keys": [views.api_key_view(k) for k in admin_repo.api_keys(session, admin.company_id)],
        "oauth_clients": [
            views.oauth_client_view(c) for c in admin_repo.oauth_clients(session, admin.company_id)
        ],
    }


def revoke_oauth_client(
    session: Session, admin: Admin, client_id: int, *, now: datetime
) -> dict[str, Any]:
    return _revoke(
        session,
        admin,
        OAuthClient,
        client_id,
        kind="oauth_client",
        view=views.oauth_client_view,
        now=now,
    )


MAX_OVERLAP_SECONDS = 90 * 24 * 3600


def _overlap_until(overlap_seconds: int, now: datetime) -> datetime | None:
    if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise LicensorError(
            "validation_error", f"overlap_seconds: between 0 and {MAX_OVERLAP_SECONDS}"
        )
    return now + timedelta(seconds=overlap_seconds) if overlap_seconds else None


def _rotate(
    session: Session,
    admin: Admin,
    model: Any,
    object_id: int,
    *,
    kind: str,
    view: Callable[[Any], dict[str, Any]],
    replace: Callable[[Any, datetime | None], str],
    answer_field: str,
    overlap_seconds: int,
    now: datetime,
) -> dict[str, Any]:
    """A new secret for a credential; the old one keeps working ``overlap_seconds`` more."""
    admin.require("credentials")
    until = _overlap_until(overlap_seconds, now)
    credential = admin_repo.owned(session, model, admin.company_id, object_id)
    if credential is None:
        raise not_found(kind.replace("_", " "), object_id)
    if credential.revoked:
        raise LicensorError("validation_error", f"{kind}: revoked, it cannot rotate", status=409)
    before = view(credential)
    secret = replace(credential, until)
    credential.previous_valid_until = until
    session.flush()
    after = view(credential)
    record(session, admin, f"{kind}.rotate", kind, object_id, before=before, after=after, now=now)
    return {**after, answer_field: secret}


def rotate_api_key(
    session: Session,
    master_key: MasterKey,
    admin: Admin,
    key_id: int,
    *,
    overlap_seconds: int = 0,
    now: datetime,
) -> dict[str, Any]:
    def replace(key: ApiKey, until: datetime | None) -> str:
        key.previous_shared_key_encrypted = key.shared_key_encrypted if until else None
        shared_key = secrets.token_urlsafe(30)
        key.shared_key_encrypted = master_key.encrypt(shared_key, context=SHARED_KEY_CONTEXT)
        return shared_key

    return _rotate(
        session,
        admin,
        ApiKey,
        key_id,
        kind="api_key",
        view=views.api_key_view,
        replace=replace,
        answer_field="shared_key",
        overlap_seconds=overlap_seconds,
        now=now,
    )


def create_oauth_client(
    session: Session,
    master_key: MasterKey,
    admin: Admin,
    *,
    scope: str,
    customer_id: int | None = None,
    license_id: int | None = None,
    now: datetime,
) -> dict[str, Any]:
    """An OAuth client of the company, one customer or one license; the secret is shown once."""
    admin.require("credentials")
    if scope == "customer" and customer_id is not None:
        if admin_repo.owned(session, Customer, admin.company_id, customer_id) is None:
            raise not_found("customer", customer_id)
    if scope == "license" and license_id is not None:
        owned_license(session, admin, license_id)
    made = catalogue.create_oauth_client(
        session,
        master_key,
        admin.company_id,
        scope=scope,
        customer_id=customer_id,
        license_id=license_id,
    )
    client = repository.oauth_client_by_client_id(session, made.client_id)
    assert client is not None
    view = views.oauth_client_view(client)
    record(session, admin, "oauth_client.create", "oauth_client", client.id, after=view, now=now)
    return {**view, "client_secret": made.client_secret}


def rotate_oauth_client(
    session: Session,
    master_key: MasterKey,
    admin: Admin,
    client_id: int,
    *,
    overlap_seconds: int = 0,
    now: datetime,
) -> dict[str, Any]:
    def replace(client: OAuthClient, until: datetime | None) -> str:
        client.previous_secret_hash = client.secret_hash if until else None
        client.previous_secret_encrypted = client.secret_encrypted if until else None
        secret = secrets.token_urlsafe(32)
        client.secret_hash = master_key.hash_secret(secret)
        client.secret_encrypted = master_key.encrypt(secret, context=OAUTH_SECRET_CONTEXT)
        return secret

    return _rotate(
        session,
        admin,
        OAuthClient,
        client_id,
        kind="oauth_client",
        view=views.oauth_client_view,
        replace=replace,
        answer_field="client_secret",
        overlap_seconds=overlap_seconds,
        now=now,
    )
