"""The management API's routes, served in-process for the CLI's local mode."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from licensor.api.errors import describe_validation
from licensor.api.management.schemas import CreateRelease, UpdateCompany, UpdateProduct
from licensor.core.errors import LicensorError
from licensor.protocol.signing import parse_iso_datetime
from licensor.secrets_at_rest import MasterKey
from licensor.services import catalogue, credentials, features, management, policies
from licensor.services.management import Admin
from licensor.settings import Settings


def _date(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso_datetime(str(value))
    except ValueError:
        raise LicensorError("validation_error", f"{value!r} is not a date") from None


Body = TypeVar("Body", bound=BaseModel)


def _validated(model: type[Body], body: dict[str, Any]) -> Body:
    """``body`` checked as the management API's schema checks it (the same refusals)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise LicensorError("validation_error", describe_validation(exc.errors())) from None


def dispatch(
    session: Session,
    admin: Admin,
    settings: Settings,
    method: str,
    path: str,
    params: dict[str, Any],
    body: dict[str, Any],
    now: datetime,
) -> Any:
    def match(pattern: str) -> re.Match[str] | None:
        return re.fullmatch(pattern, path)

    if method == "GET" and path == "/licenses":
        return management.list_licenses(
            session,
            admin,
            product=params.get("product"),
            customer=params.get("customer"),
            enabled=params.get("enabled"),
            order_id=params.get("order_id"),
            page=int(params.get("page", 1)),
            per_page=int(params.get("per_page", 50)),
            sort=params.get("sort", "id"),
        )
    if method == "POST" and path == "/licenses":
        fields = {k: v for k, v in body.items() if k not in ("product", "count", "policy")}
        for name in ("validity_period", "start_date", "maintenance_period"):
            if name in fields:
                fields[name] = _date(fields[name])
        if "order_id" in fields:
            fields["order_store_id"] = fields.pop("order_id")
        unknown = sorted(set(fields) - LICENSE_FIELDS)
        if unknown:
            raise LicensorError("validation_error", f"{unknown[0]}: not a license field")
        return {
            "items": policies.issue_licenses(
                session,
                admin,
                body["product"],
                fields,
                count=int(body.get("count", 1)),
                policy=body.get("policy"),
                now=now,
            )
        }
    if m := match(r"/licenses/by-key/(.+)"):
        return management.find_license_by_key(session, admin, m.group(1))
    if method == "GET" and (m := match(r"/licenses/(\d+)")):
        return management.get_license(session, admin, int(m.group(1)))
    if m := match(r"/licenses/(\d+)/(enable|disable)"):
        return management.set_enabled(
            session, admin, int(m.group(1)), m.group(2) == "enable", now=now
        )
    if m := match(r"/licenses/(\d+)/reset"):
        return management.reset_license(session, admin, int(m.group(1)), now=now)
    if m := match(r"/licenses/(\d+)/extend"):
        return management.extend_license(
            session,
            admin,
            int(m.group(1)),
            days=body.get("days"),
            until=_date(body.get("until")),
            now=now,
        )
    if m := match(r"/licenses/(\d+)/devices"):
        return {"items": management.list_devices(session, admin, int(m.group(1)))}
    if method == "GET" and (m := match(r"/licenses/(\d+)/floating-slots")):
        return management.floating_slots(session, admin, int(m.group(1)), now=now)
    if method == "DELETE" and (m := match(r"/licenses/(\d+)/floating-slots/(\d+)")):
        return management.release_floating_slot(
            session, admin, int(m.group(1)), int(m.group(2)), now=now
        )
    if method == "GET" and (m := match(r"/licenses/(\d+)/consumptions")):
        before = params.get("before")
        return management.consumption_history(
            session,
            admin,
            int(m.group(1)),
            before=int(before) if before is not None else None,
            limit=int(params.get("limit", 100)),
            now=now,
        )
    if m := match(r"/devices/(\d+)/deactivate"):
        return management.deactivate_device(session, admin, int(m.group(1)), now=now)
    if method == "POST" and path == "/blacklist":
        return management.blacklist_add(
            session,
            admin,
            body["hardware_id"],
            product=body.get("product"),
            reason=body.get("reason", ""),
            now=now,
        )
    if method == "GET" and path == "/customers":
        return management.list_customers(
            session,
            admin,
            search=params.get("search"),
            page=int(params.get("page", 1)),
            per_page=int(params.get("per_page", 50)),
        )
    if m := match(r"/customers/(\d+)"):
        return management.get_customer(session, admin, int(m.group(1)))
    if method == "GET" and (m := match(r"/orders/(.+)")):
        return management.get_order(session, admin, m.group(1))
    if path == "/company":
        if method == "GET":
            return management.get_company(session, admin)
        changes = _validated(UpdateCompany, body).changes()
        return management.update_company(session, admin, changes, now=now)
    if method == "PATCH" and (m := match(r"/products/([^/]+)")):
        changes = _validated(UpdateProduct, body).changes()
        return management.update_product(session, admin, m.group(1), changes, now=now)
    if m := match(r"/products/([^/]+)/releases"):
        if method == "GET":
            return {"items": management.list_releases(session, admin, m.group(1))}
        release = _validated(CreateRelease, body)  # (the API's schema: the same refusals)
        return management.add_release(
            session,
            admin,
            m.group(1),
            version=release.version,
            release_date=release.release_date,
            environment=release.environment,
            channel=release.channel,
            links=release.links.model_dump(),
            enabled=release.enabled,
            file={
                "hash_md5": release.hash_md5.lower(),
                "size": release.size,
                "requires_version": release.requires_version,
            },
            now=now,
        )
    if method == "POST" and (m := match(r"/licenses/(\d+)/users")):
        return management.add_license_user(
            session,
            admin,
            int(m.group(1)),
            email=str(body.get("email", "")),
            password=str(body.get("password", "")),
            max_activations=int(body.get("max_activations", 1)),
            now=now,
        )
    if m := match(r"/license-users/(\d+)/reset-password"):
        return management.reset_user_password(
            session, admin, int(m.group(1)), password=body.get("password"), now=now
        )
    if (routed := _catalogue_route(session, admin, method, path, body, now)) is not None:
        return routed[0]
    master_key = MasterKey.load_or_create(settings.data_dir, settings.master_key)
    if method == "GET" and path == "/credentials":
        return credentials.list_credentials(session, admin)
    if method == "POST" and path == "/api-keys":
        return credentials.create_api_key(
            session,
            master_key,
            admin,
            read_only=bool(body.get("read_only", False)),
            products=body.get("products"),
            label=str(body.get("label", "")),
            now=now,
        )
    if method == "POST" and path == "/oauth-clients":
        return credentials.create_oauth_client(
            session,
            master_key,
            admin,
            scope=str(body.get("scope", "company")),
            customer_id=body.get("customer_id"),
            license_id=body.get("license_id"),
            now=now,
        )
    if m := match(r"/(api-keys|oauth-clients)/(\d+)/rotate"):
        rotate = (
            credentials.rotate_api_key
            if m.group(1) == "api-keys"
            else credentials.rotate_oauth_client
        )
        return rotate(
            session,
            master_key,
            admin,
            int(m.group(2)),
            overlap_seconds=int(body.get("overlap_seconds", 0)),
            now=now,
        )
    if method == "DELETE" and (m := match(r"/api-keys/(\d+)")):
        return credentials.revoke_api_key(session, admin, int(m.group(1)), now=now)
    if method == "DELETE" and (m := match(r"/oauth-clients/(\d+)")):
        return credentials.revoke_oauth_client(session, admin, int(m.group(1)), now=now)
    if method == "GET" and path == "/tokens":
        return {"items": credentials.list_tokens(session, admin)}
    if method == "POST" and path == "/tokens":
        return credentials.create_token(
            session, master_key, admin, name=body["name"], role=body["role"], now=now
        )
    if method == "DELETE" and (m := match(r"/tokens/(\d+)")):
        return credentials.revoke_token(session, admin, int(m.group(1)), now)
    if method == "GET" and path == "/audit":
        return management.list_audit(
            session,
            admin,
            object_type=params.get("object_type"),
            object_id=params.get("object_id"),
            action=params.get("action"),
            page=int(params.get("page", 1)),
            per_page=int(params.get("per_page", 50)),
        )
    raise LicensorError("not_found", f"{method} {path} is not a CLI route")


def _catalogue_route(
    session: Session,
    admin: Admin,
    method: str,
    path: str,
    body: dict[str, Any],
    now: datetime,
) -> tuple[Any] | None:
    """Features, custom fields and policies; ``None`` when the path is none of theirs."""

    def match(pattern: str) -> re.Match[str] | None:
        return re.fullmatch(pattern, path)

    if m := match(r"/products/([^/]+)/features"):
        if method == "GET":
            return ({"items": features.list_features(session, admin, m.group(1))},)
        return (features.add_feature(session, admin, m.group(1), body, now=now),)
    if m := match(r"/products/([^/]+)/features/([^/]+)"):
        if method == "DELETE":
            features.remove_feature(session, admin, m.group(1), m.group(2), now=now)
            return (None,)
        return (features.update_feature(session, admin, m.group(1), m.group(2), body, now=now),)
    if method == "POST" and (m := match(r"/licenses/(\d+)/features")):
        overrides = {k: v for k, v in body.items() if k != "code"}
        return (
            features.set_license_feature(
                session,
                admin,
                int(m.group(1)),
                str(body.get("code", "")),
                overrides,
                attach=True,
                now=now,
            ),
        )
    if m := match(r"/licenses/(\d+)/features/([^/]+)"):
        license_id, code = int(m.group(1)), m.group(2)
        if method == "DELETE":
            return (features.detach_license_feature(session, admin, license_id, code, now=now),)
        return (
            features.set_license_feature(
                session, admin, license_id, code, body, attach=False, now=now
            ),
        )
    if m := match(r"/products/([^/]+)/policies"):
        if method == "GET":
            return ({"items": policies.list_policies(session, admin, m.group(1))},)
        settings = {
            k: (_date(v) if k == "validity_period" else v)
            for k, v in body.items()
            if k not in ("code", "name", "is_default")
        }
        return (
            policies.create_policy(
                session,
                admin,
                m.group(1),
                policy_code=str(body.get("code", "")),
                name=body.get("name"),
                is_default=bool(body.get("is_default", False)),
                settings=settings,
                now=now,
            ),
        )
    if m := match(r"/products/([^/]+)/policies/([^/]+)"):
        code, policy = m.group(1), m.group(2)
        if method == "GET":
            return (policies.get_policy(session, admin, code, policy),)
        if method == "DELETE":
            policies.delete_policy(session, admin, code, policy, now=now)
            return (None,)
        changes = {k: (_date(v) if k == "validity_period" else v) for k, v in body.items()}
        return (policies.update_policy(session, admin, code, policy, changes, now=now),)
    if m := match(r"/products/([^/]+)/custom-fields"):
        if method == "GET":
            return ({"items": features.list_custom_fields(session, admin, m.group(1))},)
        return (
            features.add_custom_field(
                session, admin, m.group(1), body.get("name"), body.get("default_value"), now=now
            ),
        )
    if m := match(r"/products/([^/]+)/custom-fields/([^/]+)"):
        if method == "DELETE":
            features.remove_custom_field(session, admin, m.group(1), m.group(2), now=now)
            return (None,)
        return (
            features.update_custom_field(
                session, admin, m.group(1), m.group(2), body.get("default_value"), now=now
            ),
        )
    return None


LICENSE_FIELDS = {f.name for f in dataclasses.fields(catalogue.LicenseSpec)} - {"policy_id"}


def take_file(settings: Settings, company: str | None, path: str, body: dict[str, Any]) -> Any:
    """``POST /offline/activate`` and ``/offline/deactivate`` on this host: the server's own
    path for request files (``api/v4/offline.take_file``), with this host's keys."""
    from licensor.api.state import AppState
    from licensor.api.v4.offline import take_file as take

    kind = {"/offline/activate": "activation", "/offline/deactivate": "deactivation"}[path]
    state = AppState.open(settings)
    try:
        with state.db.transaction() as session:
            company_id = catalogue.resolve_company(session, company).id
        taken = take(
            state,
            str(body.get("request_file", "")).encode(),
            kind,
            host=None,
            now=datetime.now(UTC),
            company_id=company_id,
            actor=management.local_admin(company_id).actor,
        )
    finally:
        state.close()
    return taken.vendor_answer()
