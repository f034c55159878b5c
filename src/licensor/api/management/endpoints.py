"""Management API v1: vendors run their licensing from code. Bearer admin tokens with roles."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from licensor.api.management import schemas
from licensor.api.state import AppState, app_state
from licensor.api.v4.endpoints import json_answer
from licensor.api.v4.offline import take_file
from licensor.api.v4.schemas import MAX_ID
from licensor.services import catalogue, credentials, features, management, policies
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


class Permission:
    """The right a route needs (``read``, ``device``, ``write``, ``credentials``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, request: Request) -> None:
        admin: Admin = request.state.admin
        admin.require(self.name)


def _authorize(request: Request, needed: str) -> None:
    with admin_transaction(request) as (_, admin, _):
        admin.require(needed)
        request.state.admin = admin


class AdminRoute(APIRoute):
    """Token, then role, then everything else: a request without the right gets 401 or 403
    before its path, query or body (even a body that is not JSON) is looked at."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needed = [d.dependency for d in self.dependencies if isinstance(d.dependency, Permission)]
        if len(needed) != 1:
            raise TypeError(f"{self.path}: name exactly one permission (READ, WRITE, ...)")
        name = needed[0].name

        async def guarded(request: Request) -> Response:
            await run_in_threadpool(_authorize, request, name)
            return await handler(request)

        return guarded


READ = [Depends(Permission("read"))]
DEVICE = [Depends(Permission("device"))]
WRITE = [Depends(Permission("write"))]
CREDENTIALS = [Depends(Permission("credentials"))]

# A row id in a path: any integer the databases' 64-bit ids can hold (past that, SQLite's driver
# raises instead of finding nothing: 400 validation_error, not 500).
RowId = Annotated[int, Path(ge=-MAX_ID - 1, le=MAX_ID)]
# A page of a list (the last one whose first row's offset fits in 64 bits), and its size.
PageNumber = Annotated[int, Query(ge=1, le=MAX_ID // management.MAX_PAGE)]
PageSize = Annotated[int, Query(ge=1, le=management.MAX_PAGE)]

router = APIRouter(prefix="/api/management/v1", tags=["Management API v1"], route_class=AdminRoute)


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


@router.get("/licenses", dependencies=READ)
def list_licenses(
    request: Request,
    product: str | None = None,
    customer: str | None = None,
    enabled: bool | None = None,
    order_id: str | None = None,
    expires_before: schemas.Instant | None = None,
    page: PageNumber = 1,
    per_page: PageSize = 50,
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
            expires_before=expires_before,
            page=page,
            per_page=per_page,
            sort=sort,
        ),
    )


@router.post("/licenses", dependencies=WRITE)
def issue_licenses(request: Request, body: schemas.IssueLicenses) -> Response:
    """Issue one or many licenses (`count`), from a policy (`policy`, else the product's default
    policy if it has one) whose values the request's own fields override."""
    given = body.model_dump(exclude_unset=True, exclude={"product", "count", "policy"})
    # (times are in UTC already: schemas.Instant)
    fields = {("order_store_id" if k == "order_id" else k): v for k, v in given.items()}
    return _run(
        request,
        lambda s, a, _: {
            "items": policies.issue_licenses(
                s, a, body.product, fields, count=body.count, policy=body.policy, now=now()
            )
        },
        status=201,
    )


@router.get("/licenses/by-key/{key}", dependencies=READ)
def license_by_key(request: Request, key: str) -> Response:
    return _run(request, lambda s, a, _: management.find_license_by_key(s, a, key))


@router.get("/licenses/{license_id}", dependencies=READ)
def get_license(request: Request, license_id: RowId) -> Response:
    return _run(request, lambda s, a, _: management.get_license(s, a, license_id))


@router.patch("/licenses/{license_id}", dependencies=WRITE)
def update_license(request: Request, license_id: RowId, body: schemas.UpdateLicense) -> Response:
    fields = body.model_dump(exclude_unset=True)
    clear_validity = "validity_period" in fields and fields["validity_period"] is None
    changes = management.LicenseChanges(
        **{k: v for k, v in fields.items() if v is not None},
        clear_validity_period=clear_validity,
    )
    return _run(
        request, lambda s, a, _: management.update_license(s, a, license_id, changes, now=now())
    )


@router.post("/licenses/{license_id}/enable", dependencies=WRITE)
def enable_license(request: Request, license_id: RowId) -> Response:
    return _run(request, lambda s, a, _: management.set_enabled(s, a, license_id, True, now=now()))


@router.post("/licenses/{license_id}/disable", dependencies=WRITE)
def disable_license(request: Request, license_id: RowId) -> Response:
    return _run(request, lambda s, a, _: management.set_enabled(s, a, license_id, False, now=now()))


@router.post("/licenses/{license_id}/reset", dependencies=WRITE)
def reset_license(request: Request, license_id: RowId) -> Response:
    """Deactivate every device of the license and set its activation count to zero."""
    return _run(request, lambda s, a, _: management.reset_license(s, a, license_id, now=now()))


@router.post("/licenses/{license_id}/extend", dependencies=WRITE)
def extend_license(request: Request, license_id: RowId, body: schemas.ExtendLicense) -> Response:
    return _run(
        request,
        lambda s, a, _: management.extend_license(
            s, a, license_id, days=body.days, until=body.until, now=now()
        ),
    )


@router.delete("/licenses/{license_id}", dependencies=WRITE)
def delete_license(request: Request, license_id: RowId, force: bool = False) -> Response:
    """Refused while the license has active devices, unless `force=true`."""
    return _run(
        request, lambda s, a, _: management.delete_license(s, a, license_id, force=force, now=now())
    )


@router.get("/licenses/{license_id}/devices", dependencies=READ)
def license_devices(request: Request, license_id: RowId) -> Response:
    return _run(request, lambda s, a, _: {"items": management.list_devices(s, a, license_id)})


@router.get("/licenses/{license_id}/consumptions", dependencies=READ)
def license_consumptions(
    request: Request,
    license_id: RowId,
    before: Annotated[int | None, Query(ge=1, description="Reports older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The consumption reports counted on the license, newest first (keyset pagination:
    ``before`` = the last ``id`` of a page gives the next one), with its current total."""
    return _run(
        request,
        lambda s, a, _: management.consumption_history(
            s, a, license_id, before=before, limit=limit, now=now()
        ),
    )


@router.get("/licenses/{license_id}/floating-slots", dependencies=READ)
def license_floating_slots(request: Request, license_id: RowId) -> Response:
    """Who holds the license's floating slots now (held: not timed out, or borrowed)."""
    return _run(request, lambda s, a, _: management.floating_slots(s, a, license_id, now=now()))


@router.delete("/licenses/{license_id}/floating-slots/{device_id}", dependencies=DEVICE)
def release_floating_slot(request: Request, license_id: RowId, device_id: RowId) -> Response:
    """Free a device's floating slot at once (its borrow too); 404 when it holds none."""
    return _run(
        request,
        lambda s, a, _: management.release_floating_slot(s, a, license_id, device_id, now=now()),
    )


@router.get("/orders/{order_id}", dependencies=READ)
def get_order(request: Request, order_id: str) -> Response:
    """The licenses issued for one order id (one purchase); 404 when there are none."""
    return _run(request, lambda s, a, _: management.get_order(s, a, order_id))


# -- license users -----------------------------------------------------------------------------


@router.post("/licenses/{license_id}/users", dependencies=WRITE)
def add_license_user(
    request: Request, license_id: RowId, body: schemas.CreateLicenseUser
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


@router.post("/license-users/{user_id}/reset-password", dependencies=WRITE)
def reset_user_password(
    request: Request, user_id: RowId, body: schemas.ResetPassword | None = None
) -> Response:
    """Set the given password, or generate one: a generated password is in this answer only."""
    password = body.password if body is not None else None
    return _run(
        request,
        lambda s, a, _: management.reset_user_password(s, a, user_id, password=password, now=now()),
    )


# -- devices and blacklist ---------------------------------------------------------------------


@router.post("/devices/{device_id}/deactivate", dependencies=DEVICE)
def deactivate_device(request: Request, device_id: RowId) -> Response:
    return _run(request, lambda s, a, _: management.deactivate_device(s, a, device_id, now=now()))


@router.get("/blacklist", dependencies=READ)
def list_blacklist(request: Request) -> Response:
    return _run(request, lambda s, a, _: {"items": management.list_blacklist(s, a)})


@router.post("/blacklist", dependencies=WRITE)
def blacklist_device(request: Request, body: schemas.BlacklistDevice) -> Response:
    return _run(
        request,
        lambda s, a, _: management.blacklist_add(
            s, a, body.hardware_id, product=body.product, reason=body.reason, now=now()
        ),
        status=201,
    )


@router.delete("/blacklist/{entry_id}", dependencies=WRITE)
def unblacklist_device(request: Request, entry_id: RowId) -> Response:
    return _run(request, lambda s, a, _: management.blacklist_remove(s, a, entry_id, now=now()))


# -- customers and products --------------------------------------------------------------------


@router.get("/customers", dependencies=READ)
def list_customers(
    request: Request,
    search: str | None = None,
    page: PageNumber = 1,
    per_page: PageSize = 50,
) -> Response:
    return _run(
        request,
        lambda s, a, _: management.list_customers(
            s, a, search=search, page=page, per_page=per_page
        ),
    )


@router.post("/customers", dependencies=WRITE)
def create_customer(request: Request, body: schemas.CreateCustomer) -> Response:
    fields = body.model_dump(exclude={"email"})
    return _run(
        request,
        lambda s, a, _: management.create_customer(s, a, body.email, fields, now=now()),
        status=201,
    )


@router.get("/customers/{customer_id}", dependencies=READ)
def get_customer(request: Request, customer_id: RowId) -> Response:
    return _run(request, lambda s, a, _: management.get_customer(s, a, customer_id))


@router.get("/company", dependencies=READ)
def get_company(request: Request) -> Response:
    """The caller's company and its settings."""
    return _run(request, lambda s, a, _: management.get_company(s, a))


@router.patch("/company", dependencies=WRITE)
def update_company(request: Request, body: schemas.UpdateCompany) -> Response:
    """Change the company's settings: ``allow_password_change`` (license users' passwords
    through ``/api/v4/change_password``)."""
    changes = body.changes()
    return _run(request, lambda s, a, _: management.update_company(s, a, changes, now=now()))


@router.get("/products", dependencies=READ)
def list_products(request: Request) -> Response:
    return _run(request, lambda s, a, _: {"items": management.list_products(s, a)})


@router.post("/products", dependencies=WRITE)
def create_product(request: Request, body: schemas.CreateProduct) -> Response:
    spec = catalogue.ProductSpec(
        short_code=body.short_code,
        name=body.name,
        authorization_method=body.authorization_method,
        prevent_vm=body.prevent_vm,
        allow_offline_activation=body.allow_offline_activation,
        version_spec=body.version_spec,
        allow_trial=body.allow_trial,
        trial_days=body.trial_days,
        metadata=body.metadata,
        is_floating_cloud=body.is_floating_cloud,
        floating_users=body.floating_users,
        floating_timeout=body.floating_timeout,
        can_borrow=body.can_borrow,
        max_borrow_time=body.max_borrow_time,
        bundle=body.bundle,
    )
    return _run(
        request, lambda s, a, _: management.create_product(s, a, spec, now=now()), status=201
    )


@router.patch("/products/{code}", dependencies=WRITE)
def update_product(request: Request, code: str, body: schemas.UpdateProduct) -> Response:
    """Change a product's name or its switches (``prevent_vm``, ``allow_offline_activation``)."""
    changes = body.changes()
    return _run(request, lambda s, a, _: management.update_product(s, a, code, changes, now=now()))


@router.get("/products/{code}/releases", dependencies=READ)
def list_releases(request: Request, code: str) -> Response:
    """Releases of a product, oldest first."""
    return _run(request, lambda s, a, _: {"items": management.list_releases(s, a, code)})


@router.post("/products/{code}/releases", dependencies=WRITE)
def add_release(request: Request, code: str, body: schemas.CreateRelease) -> Response:
    release_date = body.release_date
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
            file={
                "hash_md5": body.hash_md5.lower(),
                "size": body.size,
                "requires_version": body.requires_version,
            },
            now=now(),
        ),
        status=201,
    )


# -- features, custom fields, policies ---------------------------------------------------------


@router.get("/products/{code}/features", dependencies=READ)
def list_features(request: Request, code: str) -> Response:
    """Features defined on a product."""
    return _run(request, lambda s, a, _: {"items": features.list_features(s, a, code)})


@router.post("/products/{code}/features", dependencies=WRITE)
def add_feature(request: Request, code: str, body: schemas.CreateFeature) -> Response:
    fields = body.model_dump(exclude_unset=True)
    fields["code"] = body.code
    return _run(
        request, lambda s, a, _: features.add_feature(s, a, code, fields, now=now()), status=201
    )


@router.patch("/products/{code}/features/{feature}", dependencies=WRITE)
def update_feature(
    request: Request, code: str, feature: str, body: schemas.UpdateFeature
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    return _run(
        request, lambda s, a, _: features.update_feature(s, a, code, feature, changes, now=now())
    )


@router.delete("/products/{code}/features/{feature}", dependencies=WRITE)
def remove_feature(request: Request, code: str, feature: str) -> Response:
    """Delete a feature; the licenses and policies that had it lose it."""
    return _run(request, lambda s, a, _: features.remove_feature(s, a, code, feature, now=now()))


@router.post("/licenses/{license_id}/features", dependencies=WRITE)
def attach_feature(request: Request, license_id: RowId, body: schemas.AttachFeature) -> Response:
    """Attach a product feature to a license, with optional overrides."""
    overrides = body.model_dump(exclude={"code"})
    return _run(
        request,
        lambda s, a, _: features.set_license_feature(
            s, a, license_id, body.code, overrides, attach=True, now=now()
        ),
        status=201,
    )


@router.patch("/licenses/{license_id}/features/{feature}", dependencies=WRITE)
def update_license_feature(
    request: Request, license_id: RowId, feature: str, body: schemas.FeatureOverrides
) -> Response:
    """Change a license's overrides of a feature (`null` = the product's value)."""
    overrides = body.model_dump(exclude_unset=True)
    return _run(
        request,
        lambda s, a, _: features.set_license_feature(
            s, a, license_id, feature, overrides, attach=False, now=now()
        ),
    )


@router.delete("/licenses/{license_id}/features/{feature}", dependencies=WRITE)
def detach_feature(request: Request, license_id: RowId, feature: str) -> Response:
    return _run(
        request,
        lambda s, a, _: features.detach_license_feature(s, a, license_id, feature, now=now()),
    )


@router.get("/products/{code}/custom-fields", dependencies=READ)
def list_custom_fields(request: Request, code: str) -> Response:
    return _run(request, lambda s, a, _: {"items": features.list_custom_fields(s, a, code)})


@router.post("/products/{code}/custom-fields", dependencies=WRITE)
def add_custom_field(request: Request, code: str, body: schemas.CreateCustomField) -> Response:
    return _run(
        request,
        lambda s, a, _: features.add_custom_field(
            s, a, code, body.name, body.default_value, now=now()
        ),
        status=201,
    )


@router.patch("/products/{code}/custom-fields/{name}", dependencies=WRITE)
def update_custom_field(
    request: Request, code: str, name: str, body: schemas.UpdateCustomField
) -> Response:
    return _run(
        request,
        lambda s, a, _: features.update_custom_field(
            s, a, code, name, body.default_value, now=now()
        ),
    )


@router.delete("/products/{code}/custom-fields/{name}", dependencies=WRITE)
def remove_custom_field(request: Request, code: str, name: str) -> Response:
    """Delete a custom field and every license's value for it."""
    return _run(request, lambda s, a, _: features.remove_custom_field(s, a, code, name, now=now()))


@router.get("/products/{code}/policies", dependencies=READ)
def list_policies(request: Request, code: str) -> Response:
    """License policies (templates for issuing) of a product."""
    return _run(request, lambda s, a, _: {"items": policies.list_policies(s, a, code)})


@router.post("/products/{code}/policies", dependencies=WRITE)
def create_policy(request: Request, code: str, body: schemas.CreatePolicy) -> Response:
    settings = body.model_dump(exclude_unset=True, exclude={"code", "name", "is_default"})
    return _run(
        request,
        lambda s, a, _: policies.create_policy(
            s,
            a,
            code,
            policy_code=body.code,
            name=body.name,
            is_default=bool(body.is_default),
            settings=settings,
            now=now(),
        ),
        status=201,
    )


@router.get("/products/{code}/policies/{policy}", dependencies=READ)
def get_policy(request: Request, code: str, policy: str) -> Response:
    return _run(request, lambda s, a, _: policies.get_policy(s, a, code, policy))


@router.patch("/products/{code}/policies/{policy}", dependencies=WRITE)
def update_policy(
    request: Request, code: str, policy: str, body: schemas.PolicySettings
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    return _run(
        request, lambda s, a, _: policies.update_policy(s, a, code, policy, changes, now=now())
    )


@router.delete("/products/{code}/policies/{policy}", dependencies=WRITE)
def delete_policy(request: Request, code: str, policy: str) -> Response:
    """Licenses issued from it keep their terms."""
    return _run(request, lambda s, a, _: policies.delete_policy(s, a, code, policy, now=now()))


# -- credentials -------------------------------------------------------------------------------


@router.get("/tokens", dependencies=CREDENTIALS)
def list_tokens(request: Request) -> Response:
    return _run(request, lambda s, a, _: {"items": credentials.list_tokens(s, a)})


@router.post("/tokens", dependencies=CREDENTIALS)
def create_token(request: Request, body: schemas.CreateToken) -> Response:
    """The token is in this answer only; Licensor keeps just a hash of it."""
    return _run(
        request,
        lambda s, a, st: credentials.create_token(
            s, st.keys.master_key, a, name=body.name, role=body.role, now=now()
        ),
        status=201,
    )


@router.delete("/tokens/{token_id}", dependencies=CREDENTIALS)
def revoke_token(request: Request, token_id: RowId) -> Response:
    return _run(request, lambda s, a, _: credentials.revoke_token(s, a, token_id, now()))


@router.get("/credentials", dependencies=CREDENTIALS)
def list_credentials(request: Request) -> Response:
    return _run(request, lambda s, a, _: credentials.list_credentials(s, a))


@router.post("/api-keys", dependencies=CREDENTIALS)
def create_api_key(request: Request, body: schemas.CreateApiKey) -> Response:
    """The shared key is in this answer only."""
    return _run(
        request,
        lambda s, a, st: credentials.create_api_key(
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


@router.delete("/api-keys/{key_id}", dependencies=CREDENTIALS)
def revoke_api_key(request: Request, key_id: RowId) -> Response:
    return _run(request, lambda s, a, _: credentials.revoke_api_key(s, a, key_id, now=now()))


@router.post("/api-keys/{key_id}/rotate", dependencies=CREDENTIALS)
def rotate_api_key(request: Request, key_id: RowId, body: schemas.Rotate | None = None) -> Response:
    """A new shared key (in this answer only); the old one works `overlap_seconds` more."""
    overlap = body.overlap_seconds if body is not None else 0
    return _run(
        request,
        lambda s, a, st: credentials.rotate_api_key(
            s, st.keys.master_key, a, key_id, overlap_seconds=overlap, now=now()
        ),
    )


@router.post("/oauth-clients", dependencies=CREDENTIALS)
def create_oauth_client(request: Request, body: schemas.CreateOAuthClient) -> Response:
    """The client secret is in this answer only."""
    return _run(
        request,
        lambda s, a, st: credentials.create_oauth_client(
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


@router.post("/oauth-clients/{client_id}/rotate", dependencies=CREDENTIALS)
def rotate_oauth_client(
    request: Request, client_id: RowId, body: schemas.Rotate | None = None
) -> Response:
    """A new client secret (in this answer only); the old one works `overlap_seconds` more."""
    overlap = body.overlap_seconds if body is not None else 0
    return _run(
        request,
        lambda s, a, st: credentials.rotate_oauth_client(
            s, st.keys.master_key, a, client_id, overlap_seconds=overlap, now=now()
        ),
    )


@router.delete("/oauth-clients/{client_id}", dependencies=CREDENTIALS)
def revoke_oauth_client(request: Request, client_id: RowId) -> Response:
    return _run(
        request, lambda s, a, _: credentials.revoke_oauth_client(s, a, client_id, now=now())
    )


# -- request files (offline activation) ---------------------------------------------------------


def _take_file(request: Request, body: schemas.RequestFile, kind: str) -> Response:
    admin: Admin = request.state.admin
    taken = take_file(
        app_state(request),
        body.request_file.encode(),
        kind,
        host=request.client.host if request.client else None,
        now=now(),
        company_id=admin.company_id,
        actor=admin.actor,
    )
    return json_answer(taken.vendor_answer(), 200)


@router.post("/offline/activate", dependencies=DEVICE)
def offline_activate(request: Request, body: schemas.RequestFile) -> Response:
    """Activate the device of a request file a customer sent (every rule of
    ``/api/v4/activate_offline``; the file must name one of this company's keys or clients).
    Answers ``license_file``, the file to send back (base64 of the license object, as
    ``licensor.protocol.offline.license_file`` writes it), and ``license``, the object."""
    return _take_file(request, body, "activation")


@router.post("/offline/deactivate", dependencies=DEVICE)
def offline_deactivate(request: Request, body: schemas.RequestFile) -> Response:
    """Free the seat of a deactivation request file a customer sent."""
    return _take_file(request, body, "deactivation")


# -- audit -------------------------------------------------------------------------------------


@router.get("/audit", dependencies=READ)
def audit_log(
    request: Request,
    object_type: str | None = None,
    object_id: str | None = None,
    action: str | None = None,
    page: PageNumber = 1,
    per_page: PageSize = 50,
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
