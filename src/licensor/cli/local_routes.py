"""The management API's routes, served in-process for the CLI's local mode."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.protocol.signing import parse_iso_datetime
from licensor.secrets_at_rest import MasterKey
from licensor.services import catalogue, management
from licensor.services.management import Admin
from licensor.settings import Settings


def _date(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso_datetime(str(value))
    except ValueError:
        raise LicensorError("validation_error", f"{value!r} is not a date") from None


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
        spec_fields = {k: v for k, v in body.items() if k not in ("product", "count")}
        for name in ("validity_period", "start_date", "maintenance_period"):
            spec_fields[name] = _date(spec_fields.get(name))
        if "order_id" in spec_fields:
            spec_fields["order_store_id"] = spec_fields.pop("order_id")
        grace = int(spec_fields.get("grace_period", 0) or 0)
        spec_fields["allow_grace_period"] = grace > 0
        spec = catalogue.LicenseSpec(**spec_fields)
        return {
            "items": management.issue_licenses(
                session, admin, body["product"], spec, count=int(body.get("count", 1)), now=now
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
    master_key = MasterKey.load_or_create(settings.data_dir, settings.master_key)
    if method == "GET" and path == "/tokens":
        return {"items": management.list_tokens(session, admin)}
    if method == "POST" and path == "/tokens":
        return management.create_token(
            session, master_key, admin, name=body["name"], role=body["role"], now=now
        )
    if method == "DELETE" and (m := match(r"/tokens/(\d+)")):
        return management.revoke_token(session, admin, int(m.group(1)), now)
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
