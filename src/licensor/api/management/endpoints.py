"""Management API v1: vendors run their licensing from code. Bearer admin tokens with roles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from licensor.api.management import schemas
from licensor.api.state import AppState, app_state
from licensor.api.v4.endpoints import json_answer
from licensor.services import catalogue, management
from licensor.services.management import Admin


@contextmanager
def admin_transaction(request: Request) -> Iterator[tuple[Session, Admin, AppState]]:
    state = app_state(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    with state.db.transaction(write=True) as session:
        admin = management.authenticate(
            session,
            state.keys.master_key,
            token.strip() if scheme.lower() == "bearer" else None,
            datetime.now(UTC),
        )
        yield session, admin, state


def require_token(request: Request) -> None:
    """Authentication comes before any validation of the path, query or body."""
    with admin_transaction(request):
        pass


router = APIRouter(
    prefix="/api/management/v1",
    tags=["Management API v1"],
    dependencies=[Depends(require_token)],
)


def now() -> datetime:
    return datetime.now(UTC)


def _run(
    request: Request, action: Callable[[Session, Admin, AppState], Any], *, status: int = 200
) -> Response:
    with admin_transaction(request) as (session, admin, state):
        result = action(session, admin, state)
    if result is None:
        return Response(status_code=204)
    return json_answer(result, status)


# -- licenses ----------------------------------------------------------------------------------


@router.get("/licenses")
def list_licenses(
    request: Request,
    product: str | None = None,
    customer: str | None = None,
    enabled: bool | None = None,
    order_id: str | None = None,
    expires_before: datetime | None = None,
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=management.MAX_PAGE),
    sort: str = "id",
) -> Response:
    """Licenses of the company, filtered and sorted (`sort=-created_at`), page by page."""
    return _run(
        request,
        lambda s, a, _: management.list_licenses(
            s,
            a,
            product=product,
            customer=customer,
            enabled=enabled,
            order_id=order_id,
            expires_before=_utc(expires_before),
            page=page,
            per_page=per_page,
            sort=sort,
        ),
    )


@router.post("/licenses")
def issue_licenses(request: Request, body: schemas.IssueLicenses) -> Response:
    """Issue one or many licenses (`count`); answers the issued licenses."""
    spec = catalogue.LicenseSpec(
        license_type=body.license_type,
        enabled=body.enabled,
        max_activations=body.max_activations,
        allow_unlimited_activations=body.allow_unlimited_activations,
        validity_period=_utc(body.validity_period),
        validity_days=body.validity_days,
        start_date=_utc(body.start_date),
        max_transfers=body.max_transfers,
        prevent_vm=body.prevent_vm,
        is_trial=body.is_trial,
        trial_days=body.trial_days,
        allow_grace_period=body.grace_period > 0,
        grace_period=body.grace_period,
        maintenance_period=_utc(body.maintenance_period),
        version_spec=body.version_spec,
        order_store_id=body.order_id,
        customer_email=body.customer_email,
        license_key=body.license_key,
        user_email=body.user_email,
        user_password=body.user_password,
        metadata=body.metadata,
        custom_fields=body.custom_fields,
    )
    return _run(
        request,
        lambda s, a, _: {
            "items": management.issue_licenses(
                s, a, body.product, spec, count=body.count, now=now()
            )
        },
        status=201,
    )


@router.get("/licenses/by-key/{key}")
def license_by_key(request: Request, key: str) -> Response:
    return _run(request, lambda s, a, _: management.find_license_by_key(s, a, key))


@router.get("/licenses/{license_id}")
def get_license(request: Request, license_id: int) -> Response:
    return _run(request, lambda s, a, _: management.get_license(s, a, license_id))


@router.patch("/licenses/{license_id}")
def update_license(request: Request, license_id: int, body: schemas.UpdateLicense) -> Response:
    fields = body.model_dump(exclude_unset=True)
    clear_validity = "validity_period" in fields and fields["validity_period"] is None
    for name in ("validity_period", "start_date", "maintenance_period"):
        if fields.get(name) is not None:
            fields[name] = _utc(fields[name])
    changes = management.LicenseChanges(
        **{k: v for k, v in fields.items() if v is not None},
        clear_validity_period=clear_validity,
    )
    return _run(
        request, lambda s, a, _: management.update_license(s, a, license_id, changes, now=now())
    )


@router.post("/licenses/{license_id}/enable")
def enable_license(request: Request, license_id: int) -> Response:
    return _run(request, lambda s, a, _: management.set_enabled(s, a, license_id, True, now=now()))


@router.post("/licenses/{license_id}/disable")
def disable_license(request: Request, license_id: int) -> Response:
    return _run(request, lambda s, a, _: management.set_enabled(s, a, license_id, False, now=now()))


@router.post("/licenses/{license_id}/reset")
def reset_license(request: Request, license_id: int) -> Response:
    """Deactivate every device of the license and set its activation count to zero."""
    return _run(request, lambda s, a, _: management.reset_license(s, a, license_id, now=now()))


@router.post("/licenses/{license_id}/extend")
def extend_license(request: Request, license_id: int, body: schemas.ExtendLicense) -> Response:
    return _run(
        request,
        lambda s, a, _: management.extend_license(
            s, a, license_id, days=body.days, until=_utc(body.until), now=now()
        ),
    )


@router.delete("/licenses/{license_id}")
def delete_license(request: Request, license_id: int, force: bool = False) -> Response:
    """Refused while the license has active devices, unless `force=true`."""
    return _run(
        request, lambda s, a, _: management.delete_license(s, a, license_id, force=force, now=now())
    )


@router.get("/licenses/{license_id}/devices")
def license_devices(request: Request, license_id: int) -> Response:
    return _run(request, lambda s, a, _: {"items": management.list_devices(s, a, license_id)})


@router.get("/orders/{order_id}")
def get_order(request: Request, order_id: str) -> Response:
    """The licenses issued for one order id (one purchase); 404 when there are none."""
    return _run(request, lambda s, a, _: management.get_order(s, a, order_id))


# -- license users -----------------------------------------------------------------------------


@router.post("/licenses/{license_id}/users")
def add_license_user(
    request: Request, license_id: int, body: schemas.CreateLicenseUser
) -> Response:
    """A user of a user-based license: username (e-mail) and an initial password."""
    return _run(
        request,
        lambda s, a, _: management.add_license_user(
            s,
            a,
            license_id,
            email=body.email,
            password=body.password,
            max_activations=body.max_activations,
            first_name=body.first_name,
            last_name=body.last_name,
            now=now(),
        ),
        status=201,
    )


@router.post("/license-users/{user_id}/reset-password")
def reset_user_password(
    request: Request, user_id: int, body: schemas.ResetPassword | None = None
) -> Response:
    """Set the given password, or generate one: a generated password is in this answer only."""
    password = body.password if body is not None else None
    return _run(
        request,
        lambda s, a, _: management.reset_user_password(s, a, user_id, password=password, now=now()),
    )


# -- devices and blacklist ---------------------------------------------------------------------


@router.post("/devices/{device_id}/deactivate")
def deactivate_device(request: Request, device_id: int) -> Response:
    return _run(request, lambda s, a, _: management.deactivate_device(s, a, device_id, now=now()))


@router.get("/blacklist")
def list_blacklist(request: Request) -> Response:
    return _run(request, lambda s, a, _: {"items": management.list_blacklist(s, a)})


@router.post("/blacklist")
def blacklist_device(request: Request, body: schemas.BlacklistDevice) -> Response:
    return _run(
        request,
        lambda s, a, _: management.blacklist_add(
            s, a, body.hardware_id, product=body.product, reason=body.reason, now=now()
        ),
        status=201,
    )


@router.delete("/blacklist/{entry_id}")
def unblacklist_device(request: Request, entry_id: int) -> Response:
    return _run(request, lambda s, a, _: management.blacklist_remove(s, a, entry_id, now=now()))


# -- customers and products --------------------------------------------------------------------


@router.get("/customers")
def list_customers(
    request: Request,
    search: str | None = None,
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=management.MAX_PAGE),
) -> Response:
    return _run(
        request,
        lambda s, a, _: management.list_customers(
            s, a, search=search, page=page, per_page=per_page
        ),
    )


@router.post("/customers")
def create_customer(request: Request, body: schemas.CreateCustomer) -> Response:
    fields = body.model_dump(exclude={"email"})
    return _run(
        request,
        lambda s, a, _: management.create_customer(s, a, body.email, fields, now=now()),
        status=201,
    )


@router.get("/customers/{customer_id}")
def get_customer(request: Request, customer_id: int) -> Response:
    return _run(request, lambda s, a, _: management.get_customer(s, a, customer_id))


@router.get("/products")
def list_products(request: Request) -> Response:
    return _run(request, lambda s, a, _: {"items": management.list_products(s, a)})


@router.post("/products")
def create_product(request: Request, body: schemas.CreateProduct) -> Response:
    spec = catalogue.ProductSpec(
        short_code=body.short_code,
        name=body.name,
        authorization_method=body.authorization_method,
        prevent_vm=body.prevent_vm,
        version_spec=body.version_spec,
        allow_trial=body.allow_trial,
        trial_days=body.trial_days,
        metadata=body.metadata,
    )
    return _run(
        request, lambda s, a, _: management.create_product(s, a, spec, now=now()), status=201
    )


@router.get("/products/{code}/releases")
def list_releases(request: Request, code: str) -> Response:
    """Releases of a product, oldest first."""
    return _run(request, lambda s, a, _: {"items": management.list_releases(s, a, code)})


@router.post("/products/{code}/releases")
def add_release(request: Request, code: str, body: schemas.CreateRelease) -> Response:
    release_date = _utc(body.release_date)
    assert release_date is not None
    return _run(
        request,
        lambda s, a, _: management.add_release(
            s,
            a,
            code,
            version=body.version,
            release_date=release_date,
            environment=body.environment,
            channel=body.channel,
            links=body.links.model_dump(),
            enabled=body.enabled,
            now=now(),
        ),
        status=201,
    )


# -- credentials -------------------------------------------------------------------------------


@router.get("/tokens")
def list_tokens(request: Request) -> Response:
    return _run(request, lambda s, a, _: {"items": management.list_tokens(s, a)})


@router.post("/tokens")
def create_token(request: Request, body: schemas.CreateToken) -> Response:
    """The token is in this answer only; Licensor keeps just a hash of it."""
    return _run(
        request,
        lambda s, a, st: management.create_token(
            s, st.keys.master_key, a, name=body.name, role=body.role, now=now()
        ),
        status=201,
    )


@router.delete("/tokens/{token_id}")
def revoke_token(request: Request, token_id: int) -> Response:
    return _run(request, lambda s, a, _: management.revoke_token(s, a, token_id, now()))


@router.get("/credentials")
def list_credentials(request: Request) -> Response:
    return _run(request, lambda s, a, _: management.list_credentials(s, a))


@router.post("/api-keys")
def create_api_key(request: Request, body: schemas.CreateApiKey) -> Response:
    """The shared key is in this answer only."""
    return _run(
        request,
        lambda s, a, st: management.create_api_key(
            s,
            st.keys.master_key,
            a,
            read_only=body.read_only,
            products=body.products,
            label=body.label,
            now=now(),
        ),
        status=201,
    )


@router.delete("/api-keys/{key_id}")
def revoke_api_key(request: Request, key_id: int) -> Response:
    return _run(request, lambda s, a, _: management.revoke_api_key(s, a, key_id, now=now()))


@router.post("/api-keys/{key_id}/rotate")
def rotate_api_key(request: Request, key_id: int, body: schemas.Rotate | None = None) -> Response:
    """A new shared key (in this answer only); the old one works `overlap_seconds` more."""
    overlap = body.overlap_seconds if body is not None else 0
    return _run(
        request,
        lambda s, a, st: management.rotate_api_key(
            s, st.keys.master_key, a, key_id, overlap_seconds=overlap, now=now()
        ),
    )


@router.post("/oauth-clients")
def create_oauth_client(request: Request, body: schemas.CreateOAuthClient) -> Response:
    """The client secret is in this answer only."""
    return _run(
        request,
        lambda s, a, st: management.create_oauth_client(
            s,
            st.keys.master_key,
            a,
            scope=body.scope,
            customer_id=body.customer_id,
            license_id=body.license_id,
            now=now(),
        ),
        status=201,
    )


@router.post("/oauth-clients/{client_id}/rotate")
def rotate_oauth_client(
    request: Request, client_id: int, body: schemas.Rotate | None = None
) -> Response:
    """A new client secret (in this answer only); the old one works `overlap_seconds` more."""
    overlap = body.overlap_seconds if body is not None else 0
    return _run(
        request,
        lambda s, a, st: management.rotate_oauth_client(
            s, st.keys.master_key, a, client_id, overlap_seconds=overlap, now=now()
        ),
    )


@router.delete("/oauth-clients/{client_id}")
def revoke_oauth_client(request: Request, client_id: int) -> Response:
    return _run(request, lambda s, a, _: management.revoke_oauth_client(s, a, client_id, now=now()))


# -- audit -------------------------------------------------------------------------------------


@router.get("/audit")
def audit_log(
    request: Request,
    object_type: str | None = None,
    object_id: str | None = None,
    action: str | None = None,
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=management.MAX_PAGE),
) -> Response:
    """Every change, newest first: who, what, when, before and after."""
    return _run(
        request,
        lambda s, a, _: management.list_audit(
            s,
            a,
            object_type=object_type,
            object_id=object_id,
            action=action,
            page=page,
            per_page=per_page,
        ),
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
