"""Management API v1 on SQLite and PostgreSQL: every endpoint, every role, tenants kept apart,
validation naming the field, and writes that are all-or-nothing."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest

from licensor.protocol.signing import parse_iso_datetime
from licensor.services import catalogue, credentials
from licensor.store.models import ApiKey, OAuthClient
from tests.server.support import Api, Server, error_of
from tests.server.test_offline import request_file

BASE = "/api/management/v1"
KEY_FORMAT = re.compile(r"([0-9A-HJKMNP-TV-Z]{4}-){4}[0-9A-HJKMNP-TV-Z]{4}")


@dataclass
class Mgmt:
    """A management API caller holding one bearer token."""

    server: Server
    token: str | None

    def call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        all_headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        all_headers.update(headers or {})
        return self.server.client.request(method, BASE + path, headers=all_headers, **kwargs)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.call("POST", path, json=body)

    def patch(self, path: str, body: Any) -> httpx.Response:
        return self.call("PATCH", path, json=body)

    def delete(self, path: str, **params: Any) -> httpx.Response:
        return self.call("DELETE", path, params=params)

    def ok(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def issue(self, product: str = "app", **fields: Any) -> dict[str, Any]:
        items = self.ok(self.post("/licenses", {"product": product, **fields}), 201)["items"]
        assert len(items) == 1
        item: dict[str, Any] = items[0]
        return item


def make_token(
    server: Server, role: str = "admin", company_id: int | None = None, name: str = ""
) -> str:
    with server.db.transaction(write=True) as session:
        made = credentials.bootstrap_token(
            session,
            server.master_key,
            company_id or server.company_id,
            name=name or f"{role} token",
            role=role,
            now=datetime.now(UTC),
        )
    token: str = made["token"]
    return token


def mgmt(server: Server, role: str = "admin", company_id: int | None = None) -> Mgmt:
    return Mgmt(server, make_token(server, role, company_id))


@pytest.fixture
def admin(server: Server) -> Mgmt:
    server.product()
    return mgmt(server)


def activate(server: Server, key: str, hw: str, api: Api | None = None) -> httpx.Response:
    return (api or server.api).activate(product="app", license_key=key, hardware_id=hw)


def activated(server: Server, key: str, hw: str) -> dict[str, Any]:
    response = activate(server, key, hw)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def count_rows(server: Server, table: str) -> int:
    return int(server.sql(f"select count(*) from {table}")[0][0])


# -- licenses ----------------------------------------------------------------------------------


def test_list_filters_sorts_and_pages(server: Server, admin: Mgmt) -> None:
    server.product("pro")
    ann = [admin.issue(customer_email="Ann@Example.com", order_id="o-1") for _ in range(3)]
    bob = [admin.issue("pro", customer_email="bob@example.com") for _ in range(2)]
    soon = admin.issue(
        license_type="time-limited", validity_period="2030-01-01T00:00:00Z", order_id="o-2"
    )
    admin.ok(admin.post(f"/licenses/{bob[0]['id']}/disable"))
    all_ids = [x["id"] for x in [*ann, *bob, soon]]

    def ids(**params: Any) -> list[int]:
        data = admin.ok(admin.get("/licenses", **params))
        assert data["total"] == len(data["items"]), data
        return [item["id"] for item in data["items"]]

    assert ids() == all_ids
    assert ids(product="app") == [x["id"] for x in [*ann, soon]]
    assert ids(product="pro") == [x["id"] for x in bob]
    assert ids(product="nope") == []
    assert ids(customer="ANN@example.com ") == [x["id"] for x in ann]
    assert ids(customer="nobody@example.com") == []
    assert ids(enabled="false") == [bob[0]["id"]]
    assert ids(enabled="true") == [i for i in all_ids if i != bob[0]["id"]]
    assert ids(order_id="o-1") == [x["id"] for x in ann]
    assert ids(order_id="o-1", product="pro") == []
    assert ids(expires_before="2031-01-01") == [soon["id"]]
    assert ids(expires_before="2029-01-01T00:00:00Z") == []
    assert ids(sort="-id") == all_ids[::-1]
    newest_first = admin.ok(admin.get("/licenses", sort="-created_at"))["items"]
    assert [x["id"] for x in newest_first] == all_ids[::-1]
    stamps = [parse_iso_datetime(x["created_at"]) for x in newest_first]
    assert stamps == sorted(stamps, reverse=True)
    assert ids(sort="created_at") == all_ids

    pages = [admin.ok(admin.get("/licenses", per_page=4, page=page)) for page in (1, 2, 3)]
    assert [p["total"] for p in pages] == [6, 6, 6]
    assert [len(p["items"]) for p in pages] == [4, 2, 0]
    assert [p["page"] for p in pages] == [1, 2, 3]
    assert [p["per_page"] for p in pages] == [4, 4, 4]
    assert [x["id"] for p in pages for x in p["items"]] == all_ids
    second = admin.ok(admin.get("/licenses", per_page=2, page=2, product="app"))
    assert (second["total"], [x["id"] for x in second["items"]]) == (4, [ann[2]["id"], soon["id"]])


def test_issue_one_and_many_and_read_them_back(server: Server, admin: Mgmt) -> None:
    one = admin.issue(
        max_activations=3,
        customer_email="Carol@Example.com",
        order_id="shop-42",
        metadata={"plan": "pro"},
    )
    assert KEY_FORMAT.fullmatch(one["license_key"])
    assert (one["product"], one["max_activations"], one["customer"], one["order_id"]) == (
        "app",
        3,
        "carol@example.com",
        "shop-42",
    )
    assert one["enabled"] is True
    assert one["times_activated"] == 0

    many = admin.ok(admin.post("/licenses", {"product": "app", "count": 25}), 201)["items"]
    assert len(many) == 25
    assert len({x["license_key"] for x in many}) == 25
    assert len({x["id"] for x in many}) == 25
    assert admin.ok(admin.get("/licenses"))["total"] == 26

    got = admin.ok(admin.get(f"/licenses/{one['id']}"))
    assert got["license_key"] == one["license_key"]
    assert got["users"] == []
    typed = one["license_key"].lower().replace("-", "")
    assert admin.ok(admin.get(f"/licenses/by-key/{typed}"))["id"] == one["id"]
    assert admin.ok(admin.get(f"/licenses/by-key/{one['license_key']}"))["id"] == one["id"]
    assert error_of(admin.get("/licenses/by-key/AAAA-BBBB-CCCC")) == (404, "not_found")
    assert error_of(admin.get("/licenses/999999")) == (404, "not_found")

    imported = admin.issue(license_key="MY-OWN-KEY-1")
    assert imported["license_key"] == "MY-OWN-KEY-1"
    duplicate = admin.post("/licenses", {"product": "app", "license_key": "my-own-key-1"})
    assert error_of(duplicate)[0] == 409
    assert error_of(admin.post("/licenses", {"product": "nope"})) == (400, "unknown_product")
    off = admin.issue(enabled=False)
    assert off["enabled"] is False
    assert error_of(activate(server, off["license_key"], "hw-1")) == (400, "license_not_enabled")
    # the issued key works on the License API straight away
    assert activated(server, one["license_key"], "hw-1")["times_activated"] == 1


def test_issued_licenses_keep_their_metadata(server: Server, admin: Mgmt) -> None:
    admin.ok(admin.post("/products/app/custom-fields", {"name": "seat"}), 201)
    issued = admin.issue(metadata={"plan": "pro"}, custom_fields={"seat": "a"})
    assert (issued["metadata"], issued["custom_fields"]) == ({"plan": "pro"}, {"seat": "a"})
    many = admin.ok(
        admin.post("/licenses", {"product": "app", "count": 3, "metadata": {"n": 1}}), 201
    )
    assert [x["metadata"] for x in many["items"]] == [{"n": 1}] * 3
    assert admin.ok(admin.get(f"/licenses/{issued['id']}"))["metadata"] == {"plan": "pro"}


def test_patch_changes_only_the_given_fields(server: Server, admin: Mgmt) -> None:
    admin.ok(admin.post("/products/app/custom-fields", {"name": "colour"}), 201)
    issued = admin.issue(max_activations=1, order_id="o-1")
    changed = admin.ok(
        admin.patch(
            f"/licenses/{issued['id']}",
            {
                "max_activations": 5,
                "license_type": "subscription",
                "validity_period": "2031-06-30T12:00:00Z",
                "grace_period": 48,
                "version_spec": ">=1,<3",
                "order_id": "o-2",
                "metadata": {"seat": "x"},
                "custom_fields": {"colour": "blue"},
            },
        )
    )
    assert changed["max_activations"] == 5
    assert changed["license_type"] == "subscription"
    assert changed["validity_period"] == "2031-06-30T12:00:00.000Z"
    assert (changed["grace_period"], changed["allow_grace_period"]) == (48, True)
    assert changed["version_spec"] == ">=1,<3"
    assert changed["order_id"] == "o-2"
    assert changed["metadata"] == {"seat": "x"}
    assert changed["custom_fields"] == {"colour": "blue"}
    untouched = {"license_key", "enabled", "max_transfers", "prevent_vm", "customer", "created_at"}
    assert {k: changed[k] for k in untouched} == {k: issued[k] for k in untouched}
    assert admin.ok(admin.get(f"/licenses/{issued['id']}")) == changed

    back = admin.ok(
        admin.patch(
            f"/licenses/{issued['id']}",
            {"license_type": "perpetual", "validity_period": None, "version_spec": ""},
        )
    )
    assert (back["license_type"], back["validity_period"], back["version_spec"]) == (
        "perpetual",
        None,
        None,
    )
    assert back["max_activations"] == 5
    assert error_of(admin.patch("/licenses/999999", {"max_activations": 2})) == (404, "not_found")


def test_disable_refuses_activation_and_enable_allows_it(server: Server, admin: Mgmt) -> None:
    issued = admin.issue()
    disabled = admin.ok(admin.post(f"/licenses/{issued['id']}/disable"))
    assert disabled["enabled"] is False
    assert error_of(activate(server, issued["license_key"], "hw-1")) == (
        400,
        "license_not_enabled",
    )
    enabled = admin.ok(admin.post(f"/licenses/{issued['id']}/enable"))
    assert enabled["enabled"] is True
    assert activated(server, issued["license_key"], "hw-1")["license_enabled"] is True


def test_reset_deactivates_every_device(server: Server, admin: Mgmt) -> None:
    issued = admin.issue(max_activations=2)
    key = issued["license_key"]
    activated(server, key, "hw-1")
    activated(server, key, "hw-2")
    assert error_of(activate(server, key, "hw-3")) == (400, "license_activated_max_times")

    reset = admin.ok(admin.post(f"/licenses/{issued['id']}/reset"))
    assert reset["times_activated"] == 0
    devices = admin.ok(admin.get(f"/licenses/{issued['id']}/devices"))["items"]
    assert sorted(d["hardware_id"] for d in devices) == ["hw-1", "hw-2"]
    assert all(d["active"] is False and d["deactivated_at"] for d in devices)
    assert error_of(server.api.check(product="app", license_key=key, hardware_id="hw-1")) == (
        400,
        "license_not_active",
    )
    assert activated(server, key, "hw-3")["times_activated"] == 1
    assert activated(server, key, "hw-1")["times_activated"] == 2
    assert admin.ok(admin.get(f"/licenses/{issued['id']}"))["times_activated"] == 2


def test_extend_by_days_and_until(server: Server, admin: Mgmt) -> None:
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    issued = admin.issue(license_type="subscription", validity_period=end.isoformat())
    extended = admin.ok(admin.post(f"/licenses/{issued['id']}/extend", {"days": 30}))
    assert parse_iso_datetime(extended["validity_period"]) == end + timedelta(days=30)

    until = admin.ok(admin.post(f"/licenses/{issued['id']}/extend", {"until": "2033-03-03"}))
    assert until["validity_period"] == "2033-03-03T00:00:00.000Z"

    # an expired license is renewed from today, not from its past end
    past = admin.issue(license_type="subscription", validity_period="2020-01-01T00:00:00Z")
    key = past["license_key"]
    assert error_of(activate(server, key, "hw-1")) == (400, "license_expired")
    before = datetime.now(UTC)
    renewed = admin.ok(admin.post(f"/licenses/{past['id']}/extend", {"days": 7}))
    new_end = parse_iso_datetime(renewed["validity_period"])
    assert before + timedelta(days=7) - timedelta(seconds=1) <= new_end
    assert new_end <= datetime.now(UTC) + timedelta(days=7)
    assert activated(server, key, "hw-1")["is_expired"] is False

    for body in ({}, {"days": 3, "until": "2034-01-01"}):
        status, code = error_of(admin.post(f"/licenses/{issued['id']}/extend", body))
        assert (status, code) == (400, "validation_error")
    assert error_of(admin.post("/licenses/999999/extend", {"days": 3})) == (404, "not_found")


def test_delete_is_refused_while_devices_are_active_unless_forced(
    server: Server, admin: Mgmt
) -> None:
    busy = admin.issue()
    idle = admin.issue()
    device = activated(server, busy["license_key"], "hw-1")
    assert error_of(admin.delete(f"/licenses/{busy['id']}")) == (409, "license_has_active_devices")
    assert error_of(admin.delete(f"/licenses/{busy['id']}", force="false")) == (
        409,
        "license_has_active_devices",
    )
    assert admin.ok(admin.get(f"/licenses/{busy['id']}"))["times_activated"] == 1

    assert admin.delete(f"/licenses/{idle['id']}").status_code == 204
    assert admin.delete(f"/licenses/{busy['id']}", force="true").status_code == 204
    for gone in (busy, idle):
        assert error_of(admin.get(f"/licenses/{gone['id']}")) == (404, "not_found")
        assert error_of(admin.delete(f"/licenses/{gone['id']}")) == (404, "not_found")
    assert error_of(admin.post(f"/devices/{device['device_id']}/deactivate")) == (
        404,
        "not_found",
    )
    assert count_rows(server, "devices") == 0
    assert error_of(activate(server, busy["license_key"], "hw-1")) == (400, "license_not_found")


# -- devices and blacklist ---------------------------------------------------------------------


def test_deactivating_a_device_frees_its_seat(server: Server, admin: Mgmt) -> None:
    issued = admin.issue(max_activations=1)
    key = issued["license_key"]
    first = activated(server, key, "hw-1")
    assert error_of(activate(server, key, "hw-2")) == (400, "license_activated_max_times")

    devices = admin.ok(admin.get(f"/licenses/{issued['id']}/devices"))["items"]
    assert len(devices) == 1
    device = devices[0]
    assert (device["id"], device["hardware_id"], device["active"]) == (
        first["device_id"],
        "hw-1",
        True,
    )
    assert device["license_id"] == issued["id"]

    done = admin.ok(admin.post(f"/devices/{device['id']}/deactivate"))
    assert done["active"] is False
    assert done["deactivated_at"]
    assert error_of(server.api.check(product="app", license_key=key, hardware_id="hw-1")) == (
        400,
        "license_not_active",
    )
    assert activated(server, key, "hw-2")["times_activated"] == 1
    again = admin.post(f"/devices/{device['id']}/deactivate")
    assert error_of(again) == (400, "device_not_found")
    assert admin.ok(admin.get(f"/licenses/{issued['id']}"))["times_activated"] == 1
    assert error_of(admin.post("/devices/999999/deactivate")) == (404, "not_found")
    assert error_of(admin.get("/licenses/999999/devices")) == (404, "not_found")


def test_blacklist_add_list_remove(server: Server, admin: Mgmt) -> None:
    server.product("pro")
    issued = admin.issue()
    key = issued["license_key"]
    entry = admin.ok(
        admin.post("/blacklist", {"hardware_id": "bad-hw", "reason": "chargeback"}), 201
    )
    assert (entry["hardware_id"], entry["reason"], entry["product_id"]) == (
        "bad-hw",
        "chargeback",
        None,
    )
    only_pro = admin.ok(admin.post("/blacklist", {"hardware_id": "hw-2", "product": "pro"}), 201)
    assert only_pro["product_id"] is not None
    listed = admin.ok(admin.get("/blacklist"))["items"]
    assert [e["id"] for e in listed] == [entry["id"], only_pro["id"]]

    assert error_of(activate(server, key, "bad-hw")) == (400, "blacklisted")
    assert activated(server, key, "hw-2")["times_activated"] == 1  # listed for "pro" only

    assert admin.delete(f"/blacklist/{entry['id']}").status_code == 204
    assert [e["id"] for e in admin.ok(admin.get("/blacklist"))["items"]] == [only_pro["id"]]
    assert error_of(admin.delete(f"/blacklist/{entry['id']}")) == (404, "not_found")
    admin.ok(admin.post(f"/licenses/{issued['id']}/reset"))
    assert activated(server, key, "bad-hw")["times_activated"] == 1
    assert error_of(admin.post("/blacklist", {"hardware_id": "x", "product": "nope"})) == (
        400,
        "unknown_product",
    )


def test_a_hardware_id_is_blacklisted_once_per_scope(server: Server, admin: Mgmt) -> None:
    server.product("pro")
    key = admin.issue()["license_key"]
    entry = admin.ok(admin.post("/blacklist", {"hardware_id": "dup"}), 201)
    again = admin.post("/blacklist", {"hardware_id": "dup", "reason": "twice"})
    assert error_of(again) == (409, "validation_error")
    assert "already blacklisted" in again.json()["message"]
    pro = admin.ok(admin.post("/blacklist", {"hardware_id": "dup", "product": "pro"}), 201)
    assert error_of(admin.post("/blacklist", {"hardware_id": "dup", "product": "pro"}))[0] == 409
    assert [e["id"] for e in admin.ok(admin.get("/blacklist"))["items"]] == [entry["id"], pro["id"]]
    # removing the one company-wide entry lets the device in again
    assert admin.delete(f"/blacklist/{entry['id']}").status_code == 204
    assert activated(server, key, "dup")["times_activated"] == 1
    assert admin.ok(admin.post("/blacklist", {"hardware_id": "dup"}), 201)["id"] != entry["id"]


# -- customers and products --------------------------------------------------------------------


def test_customers_create_search_get(server: Server, admin: Mgmt) -> None:
    ann = admin.ok(
        admin.post(
            "/customers",
            {
                "email": "Ann@Example.com",
                "first_name": "Ann",
                "last_name": "Lee",
                "company_name": "Acme Corp",
                "phone": "+33 1",
                "reference": "crm-1",
            },
        ),
        201,
    )
    assert ann["email"] == "ann@example.com"
    assert (ann["first_name"], ann["last_name"], ann["company_name"]) == ("Ann", "Lee", "Acme Corp")
    bob = admin.ok(admin.post("/customers", {"email": "bob@widgets.io", "last_name": "Stone"}), 201)
    assert error_of(admin.post("/customers", {"email": "ANN@example.com"}))[0] == 409

    def emails(**params: Any) -> list[str]:
        return [c["email"] for c in admin.ok(admin.get("/customers", **params))["items"]]

    assert emails() == ["ann@example.com", "bob@widgets.io"]
    assert emails(search="ACME") == ["ann@example.com"]
    assert emails(search="widgets") == ["bob@widgets.io"]
    assert emails(search="stone") == ["bob@widgets.io"]
    assert emails(search="nobody") == []
    paged = admin.ok(admin.get("/customers", per_page=1, page=2))
    assert (paged["total"], [c["email"] for c in paged["items"]]) == (2, ["bob@widgets.io"])

    assert admin.ok(admin.get(f"/customers/{bob['id']}")) == bob
    assert error_of(admin.get("/customers/999999")) == (404, "not_found")
    issued = admin.issue(customer_email="bob@widgets.io")
    assert issued["customer"] == "bob@widgets.io"
    assert emails() == ["ann@example.com", "bob@widgets.io"]


def test_search_terms_are_text_not_patterns(server: Server, admin: Mgmt) -> None:
    for email in ("a_b@example.com", "axb@example.com", "100%@example.com", "1000@example.com"):
        admin.ok(admin.post("/customers", {"email": email}), 201)

    def emails(search: str) -> list[str]:
        items = admin.ok(admin.get("/customers", search=search))["items"]
        return [c["email"] for c in items]

    assert emails("a_b") == ["a_b@example.com"]
    assert emails("100%") == ["100%@example.com"]
    assert emails("%") == ["100%@example.com"]
    assert emails("\\") == []
    entry = admin.ok(admin.post("/blacklist", {"hardware_id": "x"}), 201)
    admin.ok(admin.post("/api-keys", {}), 201)
    assert admin.delete(f"/blacklist/{entry['id']}").status_code == 204
    actions = [e["action"] for e in admin.ok(admin.get("/audit", action="api_key.*"))["items"]]
    assert actions == ["api_key.create"]
    assert admin.ok(admin.get("/audit", action="%"))["items"] == []


def test_products_list_and_create(server: Server, admin: Mgmt) -> None:
    assert [p["short_code"] for p in admin.ok(admin.get("/products"))["items"]] == ["app"]
    made = admin.ok(
        admin.post(
            "/products",
            {
                "short_code": "photo",
                "name": "Photo Pro",
                "authorization_method": "user",
                "version_spec": ">=1.0,<3",
                "allow_trial": True,
                "trial_days": 14,
            },
        ),
        201,
    )
    assert (made["short_code"], made["name"], made["authorization_method"]) == (
        "photo",
        "Photo Pro",
        "user",
    )
    assert (made["version_spec"], made["allow_trial"], made["trial_days"]) == (">=1.0,<3", True, 14)
    listed = admin.ok(admin.get("/products"))["items"]
    assert [p["short_code"] for p in listed] == ["app", "photo"]
    assert error_of(admin.post("/products", {"short_code": "photo", "name": "Again"}))[0] == 409
    # a license of the new product is usable at once
    user_license = admin.issue("photo", user_email="u@example.com", user_password="pw-123456")
    assert user_license["users"][0]["email"] == "u@example.com"


def test_an_order_lists_the_licenses_issued_for_it(server: Server, admin: Mgmt) -> None:
    server.product("pro")
    first = admin.issue(order_id="shop-7", customer_email="buyer@example.com")
    second = admin.issue("pro", order_id="shop-7")
    admin.issue(order_id="shop-8")
    admin.issue()
    order = admin.ok(admin.get("/orders/shop-7"))
    assert order["order_id"] == "shop-7"
    assert [x["id"] for x in order["items"]] == [first["id"], second["id"]]
    assert [x["product"] for x in order["items"]] == ["app", "pro"]
    assert order["items"][0]["customer"] == "buyer@example.com"
    assert order["items"][0]["license_key"] == first["license_key"]
    assert [x["id"] for x in admin.ok(admin.get("/orders/shop-8"))["items"]] != []
    assert error_of(admin.get("/orders/shop-9")) == (404, "not_found")
    assert error_of(admin.get("/orders/ ")) == (404, "not_found")
    # a changed order id moves the license to the other order
    admin.ok(admin.patch(f"/licenses/{second['id']}", {"order_id": "shop-8"}))
    assert [x["id"] for x in admin.ok(admin.get("/orders/shop-7"))["items"]] == [first["id"]]
    assert len(admin.ok(admin.get("/orders/shop-8"))["items"]) == 2


# -- license users -----------------------------------------------------------------------------


def user_activation(server: Server, username: str, password: str, hw: str) -> httpx.Response:
    return server.api.activate(product="team", username=username, password=password, hardware_id=hw)


def test_license_users_are_added_and_their_passwords_reset(server: Server, admin: Mgmt) -> None:
    server.product("team", authorization_method="user")
    issued = admin.issue(
        "team", user_email="ann@example.com", user_password="ann-pass-1", max_activations=5
    )
    body = {"email": "Bob@Example.com", "password": "bob-pass-1", "max_activations": 3}
    added = admin.ok(admin.post(f"/licenses/{issued['id']}/users", body), 201)
    assert (added["email"], added["max_activations"], added["license_id"]) == (
        "bob@example.com",
        3,
        issued["id"],
    )
    assert added["is_initial_password"] is True
    assert "password" not in added
    users = admin.ok(admin.get(f"/licenses/{issued['id']}"))["users"]
    assert [u["email"] for u in users] == ["ann@example.com", "bob@example.com"]
    assert user_activation(server, "bob@example.com", "bob-pass-1", "d1").status_code == 200

    again = admin.post(f"/licenses/{issued['id']}/users", {**body, "email": "bob@example.com"})
    assert error_of(again) == (409, "validation_error")
    short = admin.post(f"/licenses/{issued['id']}/users", {**body, "password": "short"})
    assert error_of(short) == (400, "validation_error")
    assert "password" in short.json()["message"]
    key_license = admin.issue()
    on_key = admin.post(f"/licenses/{key_license['id']}/users", {**body, "email": "c@x.io"})
    assert error_of(on_key) == (400, "validation_error")
    assert error_of(admin.post("/licenses/999999/users", body)) == (404, "not_found")

    # a generated password, answered once: it works, the old one no longer does
    reset = admin.ok(admin.post(f"/license-users/{added['id']}/reset-password"))
    generated = reset["password"]
    assert len(generated) >= 8
    assert reset["is_initial_password"] is True
    assert error_of(user_activation(server, "bob@example.com", "bob-pass-1", "d2")) == (
        400,
        "invalid_credentials",
    )
    assert user_activation(server, "bob@example.com", generated, "d2").status_code == 200
    # or the one the vendor gives
    chosen = admin.ok(
        admin.post(f"/license-users/{added['id']}/reset-password", {"password": "chosen-pw-9"})
    )
    assert "password" not in chosen
    assert error_of(user_activation(server, "bob@example.com", generated, "d3"))[1] == (
        "invalid_credentials"
    )
    assert user_activation(server, "bob@example.com", "chosen-pw-9", "d4").status_code == 200
    too_short = admin.post(f"/license-users/{added['id']}/reset-password", {"password": "x"})
    assert error_of(too_short) == (400, "validation_error")
    assert error_of(admin.post("/license-users/999999/reset-password")) == (404, "not_found")

    log = admin.ok(admin.get("/audit", object_type="license_user"))["items"]
    assert [e["action"] for e in log] == [
        "license_user.reset_password",
        "license_user.reset_password",
        "license_user.create",
    ]
    assert all(e["object_id"] == str(added["id"]) for e in log)
    assert generated not in str(log) and "chosen-pw-9" not in str(log)
    assert "bob-pass-1" not in str(log)


def test_product_releases_are_added_and_listed(server: Server, admin: Mgmt) -> None:
    assert admin.ok(admin.get("/products/app/releases"))["items"] == []
    body = {
        "version": "2.0.0",
        "release_date": "2026-06-01T00:00:00Z",
        "environment": "windows",
        "channel": "stable",
        "links": {"full": "https://example.com/app-2.0.0.msi", "eula": "https://example.com/e"},
    }
    second = admin.ok(admin.post("/products/app/releases", body), 201)
    assert (second["product"], second["version"], second["environment"], second["channel"]) == (
        "app",
        "2.0.0",
        "windows",
        "stable",
    )
    assert second["release_date"] == "2026-06-01T00:00:00.000Z"
    assert second["links"] == {
        "full": "https://example.com/app-2.0.0.msi",
        "release_notes": "",
        "eula": "https://example.com/e",
    }
    assert second["enabled"] is True
    first = admin.ok(
        admin.post("/products/app/releases", {"version": "1.0", "release_date": "2025-01-01"}),
        201,
    )
    mac = {**body, "environment": "mac", "channel": "beta"}
    beta = admin.ok(admin.post("/products/app/releases", mac), 201)
    listed = admin.ok(admin.get("/products/app/releases"))["items"]
    assert [r["id"] for r in listed] == [first["id"], second["id"], beta["id"]]
    assert error_of(admin.post("/products/app/releases", body)) == (409, "validation_error")
    same_version = {**body, "channel": "beta"}  # one version per environment
    assert error_of(admin.post("/products/app/releases", same_version)) == (409, "validation_error")
    assert error_of(admin.post("/products/nope/releases", body)) == (404, "not_found")
    assert error_of(admin.get("/products/nope/releases")) == (404, "not_found")
    no_date = admin.post("/products/app/releases", {"version": "3"})
    assert error_of(no_date) == (400, "validation_error")
    assert "release_date" in no_date.json()["message"]
    blank = admin.post("/products/app/releases", {**body, "version": "  "})
    assert error_of(blank) == (400, "validation_error")
    log = admin.ok(admin.get("/audit", action="release.create"))["items"]
    assert [e["object_id"] for e in log] == [str(beta["id"]), str(first["id"]), str(second["id"])]
    assert log[-1]["after"] == second


# -- tokens and API credentials ----------------------------------------------------------------


def test_token_is_shown_once_stored_as_a_hash_and_revocable(server: Server, admin: Mgmt) -> None:
    made = admin.ok(admin.post("/tokens", {"name": "support desk", "role": "support"}), 201)
    plaintext = made["token"]
    assert plaintext.startswith("lsa_")
    assert len(plaintext) > 40
    assert (made["name"], made["role"], made["revoked"]) == ("support desk", "support", False)
    assert plaintext.startswith(made["prefix"])

    listed = admin.ok(admin.get("/tokens"))["items"]
    assert [t["name"] for t in listed] == ["admin token", "support desk"]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert plaintext not in str(listed)

    everything = [
        *server.sql("select * from admin_tokens"),
        *server.sql("select * from audit_log"),
    ]
    assert plaintext not in str(everything)
    assert plaintext[len(made["prefix"]) :] not in str(everything)
    if server.settings.database_url.startswith("sqlite"):
        path = server.settings.database_url.removeprefix("sqlite:///")
        for suffix in ("", "-wal"):
            try:
                with open(path + suffix, "rb") as stored:
                    assert plaintext.encode() not in stored.read()
            except FileNotFoundError:
                pass

    support = Mgmt(server, plaintext)
    assert support.get("/licenses").status_code == 200
    used = [t for t in admin.ok(admin.get("/tokens"))["items"] if t["id"] == made["id"]]
    assert used[0]["last_used_at"] is not None

    revoked = admin.ok(admin.delete(f"/tokens/{made['id']}"))
    assert revoked["revoked"] is True
    assert error_of(support.get("/licenses")) == (401, "unauthorized")
    assert error_of(admin.delete("/tokens/999999")) == (404, "not_found")


def test_api_keys_create_revoke_and_credentials_list(server: Server, admin: Mgmt) -> None:
    issued = admin.issue(max_activations=2)
    made = admin.ok(admin.post("/api-keys", {"label": "shop", "products": ["app"]}), 201)
    assert made["shared_key"]
    assert made["label"] == "shop"
    assert made["revoked"] is False
    shop = Api(server.client, server.public_keys, made["api_key"], made["shared_key"])
    assert activated_with(shop, issued["license_key"], "hw-1")["times_activated"] == 1

    with server.db.transaction(write=True) as session:
        client = catalogue.create_oauth_client(session, server.master_key, server.company_id)
    credentials = admin.ok(admin.get("/credentials"))
    keys = {k["api_key"]: k for k in credentials["api_keys"]}
    assert set(keys) == {server.api.api_key, made["api_key"]}
    assert all("shared_key" not in k for k in credentials["api_keys"])
    assert made["shared_key"] not in str(credentials)
    (oauth,) = credentials["oauth_clients"]
    assert oauth["client_id"] == client.client_id
    assert client.client_secret not in str(credentials)

    revoked = admin.ok(admin.delete(f"/api-keys/{made['id']}"))
    assert revoked["revoked"] is True
    assert error_of(activate(server, issued["license_key"], "hw-2", shop)) == (
        400,
        "revoked_api_key",
    )
    assert activated(server, issued["license_key"], "hw-2")["times_activated"] == 2

    assert admin.ok(admin.delete(f"/oauth-clients/{oauth['id']}"))["revoked"] is True
    token = server.client.post(
        "/api/v4/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    assert (token.status_code, token.json()["error"]) == (401, "invalid_client")
    listed = admin.ok(admin.get("/credentials"))
    assert [k["revoked"] for k in listed["api_keys"] if k["id"] == made["id"]] == [True]
    assert listed["oauth_clients"][0]["revoked"] is True
    assert error_of(admin.delete("/api-keys/999999")) == (404, "not_found")
    assert error_of(admin.delete("/oauth-clients/999999")) == (404, "not_found")
    assert error_of(admin.post("/api-keys", {"products": ["nope"]})) == (400, "unknown_product")


def oauth_token(server: Server, client_id: str, secret: str) -> httpx.Response:
    return server.client.post(
        "/api/v4/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def end_overlap(server: Server, model: Any, object_id: int) -> None:
    """The overlap window of a rotated credential closes now."""
    with server.db.transaction(write=True) as session:
        session.get(model, object_id).previous_valid_until = datetime.now(UTC) - timedelta(
            seconds=1
        )


def test_oauth_clients_are_created_for_a_scope_and_shown_once(server: Server, admin: Mgmt) -> None:
    issued = admin.issue(customer_email="c@example.com")
    customer = admin.ok(admin.get("/customers"))["items"][0]
    company = admin.ok(admin.post("/oauth-clients", {}), 201)
    assert (company["scope"], company["customer_id"], company["license_id"]) == (
        "company",
        None,
        None,
    )
    secret = company["client_secret"]
    assert oauth_token(server, company["client_id"], secret).status_code == 200
    by_customer = admin.ok(
        admin.post("/oauth-clients", {"scope": "customer", "customer_id": customer["id"]}), 201
    )
    assert by_customer["customer_id"] == customer["id"]
    by_license = admin.ok(
        admin.post("/oauth-clients", {"scope": "license", "license_id": issued["id"]}), 201
    )
    assert by_license["license_id"] == issued["id"]
    bearer = oauth_token(server, by_license["client_id"], by_license["client_secret"])
    api = Api(server.client, server.public_keys, "", "")
    api.bearer = bearer.json()["access_token"]
    assert activated_with(api, issued["license_key"], "hw-1")["times_activated"] == 1

    listed = admin.ok(admin.get("/credentials"))["oauth_clients"]
    assert [c["id"] for c in listed] == [company["id"], by_customer["id"], by_license["id"]]
    assert secret not in str(listed)
    assert error_of(admin.post("/oauth-clients", {"scope": "customer"})) == (
        400,
        "validation_error",
    )
    assert error_of(admin.post("/oauth-clients", {"scope": "team"})) == (400, "validation_error")
    missing = {"scope": "license", "license_id": 999999}
    assert error_of(admin.post("/oauth-clients", missing)) == (404, "not_found")
    missing = {"scope": "customer", "customer_id": 999999}
    assert error_of(admin.post("/oauth-clients", missing)) == (404, "not_found")
    log = admin.ok(admin.get("/audit", action="oauth_client.create"))["items"]
    assert len(log) == 3
    assert "client_secret" not in str(log) and secret not in str(log)


def test_api_key_rotation_with_and_without_an_overlap_window(server: Server, admin: Mgmt) -> None:
    issued = admin.issue(max_activations=10)
    made = admin.ok(admin.post("/api-keys", {"label": "shop"}), 201)

    def api(shared_key: str) -> Api:
        return Api(server.client, server.public_keys, made["api_key"], shared_key)

    old = made["shared_key"]
    rotated = admin.ok(admin.post(f"/api-keys/{made['id']}/rotate", {"overlap_seconds": 3600}))
    new = rotated["shared_key"]
    assert new != old
    assert rotated["api_key"] == made["api_key"]
    assert rotated["previous_valid_until"] is not None
    # inside the window both keys work
    assert activated_with(api(old), issued["license_key"], "hw-1")["times_activated"] == 1
    assert activated_with(api(new), issued["license_key"], "hw-2")["times_activated"] == 2
    assert error_of(activate(server, issued["license_key"], "hw-x", api("not-a-key"))) == (
        401,
        "signature_mismatch",
    )
    # after it only the new one
    end_overlap(server, ApiKey, made["id"])
    assert error_of(activate(server, issued["license_key"], "hw-3", api(old))) == (
        401,
        "signature_mismatch",
    )
    assert activated_with(api(new), issued["license_key"], "hw-3")["times_activated"] == 3

    # without a window (the default) the old key stops at once
    immediate = admin.ok(admin.post(f"/api-keys/{made['id']}/rotate"))
    assert immediate["previous_valid_until"] is None
    for stale in (old, new):
        assert error_of(activate(server, issued["license_key"], "hw-4", api(stale))) == (
            401,
            "signature_mismatch",
        )
    newest = immediate["shared_key"]
    assert activated_with(api(newest), issued["license_key"], "hw-4")["times_activated"] == 4

    too_long = admin.post(f"/api-keys/{made['id']}/rotate", {"overlap_seconds": -1})
    assert error_of(too_long) == (400, "validation_error")
    assert error_of(admin.post("/api-keys/999999/rotate")) == (404, "not_found")
    admin.ok(admin.delete(f"/api-keys/{made['id']}"))
    assert error_of(admin.post(f"/api-keys/{made['id']}/rotate"))[0] == 409
    log = admin.ok(admin.get("/audit", action="api_key.rotate"))["items"]
    assert len(log) == 2
    assert all(k not in str(log) for k in (old, new, newest))


def test_oauth_client_rotation_with_and_without_an_overlap_window(
    server: Server, admin: Mgmt
) -> None:
    made = admin.ok(admin.post("/oauth-clients", {}), 201)
    client_id, old = made["client_id"], made["client_secret"]
    rotated = admin.ok(admin.post(f"/oauth-clients/{made['id']}/rotate", {"overlap_seconds": 600}))
    new = rotated["client_secret"]
    assert new != old
    assert rotated["client_id"] == client_id
    assert oauth_token(server, client_id, old).status_code == 200
    assert oauth_token(server, client_id, new).status_code == 200
    assert oauth_token(server, client_id, "wrong").status_code == 401
    end_overlap(server, OAuthClient, made["id"])
    assert oauth_token(server, client_id, old).json()["error"] == "invalid_client"
    assert oauth_token(server, client_id, new).status_code == 200

    immediate = admin.ok(admin.post(f"/oauth-clients/{made['id']}/rotate", {}))
    newest = immediate["client_secret"]
    assert oauth_token(server, client_id, new).status_code == 401
    assert oauth_token(server, client_id, newest).status_code == 200
    assert error_of(admin.post("/oauth-clients/999999/rotate")) == (404, "not_found")
    admin.ok(admin.delete(f"/oauth-clients/{made['id']}"))
    assert error_of(admin.post(f"/oauth-clients/{made['id']}/rotate"))[0] == 409
    assert oauth_token(server, client_id, newest).status_code == 401
    log = admin.ok(admin.get("/audit", object_type="oauth_client"))["items"]
    assert [e["action"] for e in log] == [
        "oauth_client.revoke",
        "oauth_client.rotate",
        "oauth_client.rotate",
        "oauth_client.create",
    ]
    assert all(k not in str(log) for k in (old, new, newest))


def activated_with(api: Api, key: str, hw: str) -> dict[str, Any]:
    response = api.activate(product="app", license_key=key, hardware_id=hw)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- audit -------------------------------------------------------------------------------------


def test_audit_log_records_every_change_with_actor_and_before_after(
    server: Server, admin: Mgmt
) -> None:
    issued = admin.issue(max_activations=2)
    lid, key = issued["id"], issued["license_key"]
    admin.ok(admin.patch(f"/licenses/{lid}", {"max_activations": 3}))
    admin.ok(admin.post(f"/licenses/{lid}/disable"))
    admin.ok(admin.post(f"/licenses/{lid}/enable"))
    admin.ok(admin.post(f"/licenses/{lid}/extend", {"until": "2032-01-01"}))
    first = activated(server, key, "hw-1")
    activated(server, key, "hw-2")
    assert server.api.deactivate(product="app", license_key=key, hardware_id="hw-2").json() == (
        "license_deactivated"
    )
    admin.ok(admin.post(f"/devices/{first['device_id']}/deactivate"))
    activated(server, key, "hw-3")
    admin.ok(admin.post(f"/licenses/{lid}/reset"))
    entry = admin.ok(admin.post("/blacklist", {"hardware_id": "bad"}), 201)
    assert admin.delete(f"/blacklist/{entry['id']}").status_code == 204
    customer = admin.ok(admin.post("/customers", {"email": "c@example.com"}), 201)
    product = admin.ok(admin.post("/products", {"short_code": "pro", "name": "Pro"}), 201)
    token = admin.ok(admin.post("/tokens", {"name": "ci", "role": "read-only"}), 201)
    admin.ok(admin.delete(f"/tokens/{token['id']}"))
    api_key = admin.ok(admin.post("/api-keys", {}), 201)
    admin.ok(admin.delete(f"/api-keys/{api_key['id']}"))
    doomed = admin.issue()
    assert admin.delete(f"/licenses/{doomed['id']}").status_code == 204
    admin.get("/licenses")  # reads are not changes

    log = admin.ok(admin.get("/audit", per_page=500))
    entries = log["items"][::-1]  # oldest first
    assert log["total"] == len(entries)
    ids = [e["id"] for e in log["items"]]
    assert ids == sorted(ids, reverse=True)
    api_actor = "api-key:" + server.api.api_key[:8]
    expected = [
        ("token.create", "cli:local", "token"),  # the admin fixture's token, made at the terminal
        ("license.create", "token:admin token", "license"),
        ("license.update", "token:admin token", "license"),
        ("license.disable", "token:admin token", "license"),
        ("license.enable", "token:admin token", "license"),
        ("license.extend", "token:admin token", "license"),
        ("device.activate", api_actor, "device"),
        ("device.activate", api_actor, "device"),
        ("device.deactivate", api_actor, "device"),
        ("device.deactivate", "token:admin token", "device"),
        ("device.activate", api_actor, "device"),
        ("license.reset", "token:admin token", "license"),
        ("blacklist.add", "token:admin token", "blacklist"),
        ("blacklist.remove", "token:admin token", "blacklist"),
        ("customer.create", "token:admin token", "customer"),
        ("product.create", "token:admin token", "product"),
        ("token.create", "token:admin token", "token"),
        ("token.revoke", "token:admin token", "token"),
        ("api_key.create", "token:admin token", "api_key"),
        ("api_key.revoke", "token:admin token", "api_key"),
        ("license.create", "token:admin token", "license"),
        ("license.delete", "token:admin token", "license"),
    ]
    assert [(e["action"], e["actor"], e["object_type"]) for e in entries] == expected
    assert all(e["at"] for e in entries)

    by_action = {e["action"]: e for e in entries}
    update = by_action["license.update"]
    assert update["object_id"] == str(lid)
    assert (update["before"]["max_activations"], update["after"]["max_activations"]) == (2, 3)
    disable = by_action["license.disable"]
    assert (disable["before"]["enabled"], disable["after"]["enabled"]) == (True, False)
    extend = by_action["license.extend"]
    assert extend["before"]["validity_period"] is None
    assert extend["after"]["validity_period"] == "2032-01-01T00:00:00.000Z"
    reset = by_action["license.reset"]
    assert (reset["before"]["times_activated"], reset["after"]["times_activated"]) == (1, 0)
    vendor_off = entries[9]
    assert vendor_off["object_id"] == str(first["device_id"])
    assert (vendor_off["before"]["active"], vendor_off["after"]["active"]) == (True, False)
    activation = entries[6]
    assert activation["object_id"] == str(first["device_id"])
    assert activation["after"]["hardware_id"] == "hw-1"
    assert activation["after"]["license_id"] == lid
    assert by_action["customer.create"]["after"]["email"] == customer["email"]
    assert by_action["product.create"]["object_id"] == str(product["id"])
    assert by_action["token.revoke"]["after"]["revoked"] is True
    assert "token" not in by_action["token.create"]["after"]
    assert "shared_key" not in by_action["api_key.create"]["after"]
    deleted = by_action["license.delete"]
    assert (deleted["object_id"], deleted["before"]["id"], deleted["after"]) == (
        str(doomed["id"]),
        doomed["id"],
        None,
    )
    assert by_action["blacklist.remove"]["before"]["hardware_id"] == "bad"

    def actions(**params: Any) -> list[str]:
        return [e["action"] for e in admin.ok(admin.get("/audit", **params))["items"]]

    assert actions(action="license.*") == [
        "license.delete",
        "license.create",
        "license.reset",
        "license.extend",
        "license.enable",
        "license.disable",
        "license.update",
        "license.create",
    ]
    assert actions(action="device.deactivate") == ["device.deactivate", "device.deactivate"]
    assert actions(object_type="license", object_id=str(lid)) == [
        "license.reset",
        "license.extend",
        "license.enable",
        "license.disable",
        "license.update",
        "license.create",
    ]
    page = admin.ok(admin.get("/audit", per_page=5, page=2))
    assert [e["id"] for e in page["items"]] == ids[5:10]
    assert page["total"] == len(ids)


# -- roles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: str  # read | device | write | credentials
    success: int = 200
    body: dict[str, Any] | None = None
    code: str = ""  # the answer's code when ``success`` is a refusal the role is allowed to get


# In an order where every allowed call finds what it needs (e.g. the device is still active).
ENDPOINTS = [
    Endpoint("GET", "/licenses", "read"),
    Endpoint("GET", "/licenses/{license}", "read"),
    Endpoint("GET", "/licenses/by-key/{key}", "read"),
    Endpoint("GET", "/licenses/{license}/devices", "read"),
    Endpoint("GET", "/licenses/{license}/consumptions", "read"),
    Endpoint("GET", "/licenses/{license}/floating-slots", "read"),
    # (the license is not floating: a role allowed to free a slot is told there is none)
    Endpoint(
        "DELETE", "/licenses/{license}/floating-slots/{device}", "device", 404, code="not_found"
    ),
    Endpoint("GET", "/blacklist", "read"),
    Endpoint("GET", "/customers", "read"),
    Endpoint("GET", "/customers/{customer}", "read"),
    Endpoint("GET", "/products", "read"),
    Endpoint("GET", "/company", "read"),
    Endpoint("GET", "/audit", "read"),
    Endpoint("GET", "/orders/{order}", "read"),
    Endpoint("GET", "/products/{product_code}/releases", "read"),
    Endpoint("POST", "/devices/{device}/deactivate", "device"),
    # (a body value "{name}" is the object company_objects made under that name)
    Endpoint("POST", "/offline/activate", "device", 200, {"request_file": "{activation_file}"}),
    Endpoint("POST", "/offline/deactivate", "device", 200, {"request_file": "{deactivation_file}"}),
    Endpoint("POST", "/licenses", "write", 201, {"product": "app", "count": 2}),
    Endpoint("PATCH", "/company", "write", 200, {"allow_password_change": True}),
    Endpoint("PATCH", "/licenses/{license}", "write", 200, {"max_activations": 4}),
    Endpoint("POST", "/licenses/{license}/disable", "write"),
    Endpoint("POST", "/licenses/{license}/enable", "write"),
    Endpoint("POST", "/licenses/{license}/extend", "write", 200, {"days": 30}),
    Endpoint("POST", "/licenses/{license}/reset", "write"),
    Endpoint("DELETE", "/licenses/{spare_license}", "write", 204),
    Endpoint("POST", "/blacklist", "write", 201, {"hardware_id": "hw-new"}),
    Endpoint("DELETE", "/blacklist/{blacklist}", "write", 204),
    Endpoint("POST", "/customers", "write", 201, {"email": "new@example.com"}),
    Endpoint("POST", "/products", "write", 201, {"short_code": "new", "name": "New"}),
    Endpoint(
        "PATCH", "/products/{product_code}", "write", 200, {"allow_offline_activation": False}
    ),
    Endpoint(
        "POST",
        "/products/{product_code}/releases",
        "write",
        201,
        {"version": "1.0", "release_date": "2026-01-01T00:00:00Z"},
    ),
    Endpoint(
        "POST",
        "/licenses/{user_license}/users",
        "write",
        201,
        {"email": "new@example.com", "password": "new-pass-1"},
    ),
    Endpoint("POST", "/license-users/{license_user}/reset-password", "write"),
    Endpoint("GET", "/products/{product_code}/features", "read"),
    Endpoint("GET", "/products/{product_code}/custom-fields", "read"),
    Endpoint("GET", "/products/{product_code}/policies", "read"),
    Endpoint("GET", "/products/{product_code}/policies/{policy}", "read"),
    Endpoint("POST", "/products/{product_code}/features", "write", 201, {"code": "new-feature"}),
    Endpoint("PATCH", "/products/{product_code}/features/{feature}", "write", 200, {"name": "Ex"}),
    Endpoint("DELETE", "/products/{product_code}/features/{spare_feature}", "write", 204),
    Endpoint("POST", "/licenses/{license}/features", "write", 201, {"code": "import"}),
    Endpoint(
        "PATCH",
        "/licenses/{license}/features/{feature}",
        "write",
        200,
        {"expiry_date": "2040-01-01"},
    ),
    Endpoint("DELETE", "/licenses/{license}/features/{attachable}", "write"),
    Endpoint("POST", "/products/{product_code}/custom-fields", "write", 201, {"name": "new"}),
    Endpoint(
        "PATCH",
        "/products/{product_code}/custom-fields/{field}",
        "write",
        200,
        {"default_value": 1},
    ),
    Endpoint("DELETE", "/products/{product_code}/custom-fields/{spare_field}", "write", 204),
    Endpoint("POST", "/products/{product_code}/policies", "write", 201, {"code": "new-policy"}),
    Endpoint(
        "PATCH", "/products/{product_code}/policies/{policy}", "write", 200, {"max_activations": 2}
    ),
    Endpoint("DELETE", "/products/{product_code}/policies/{spare_policy}", "write", 204),
    Endpoint("GET", "/tokens", "credentials"),
    Endpoint("POST", "/tokens", "credentials", 201, {"name": "more", "role": "read-only"}),
    Endpoint("DELETE", "/tokens/{other_token}", "credentials"),
    Endpoint("GET", "/credentials", "credentials"),
    Endpoint("POST", "/api-keys", "credentials", 201, {"label": "more"}),
    Endpoint("POST", "/api-keys/{api_key}/rotate", "credentials", 200, {"overlap_seconds": 60}),
    Endpoint("DELETE", "/api-keys/{api_key}", "credentials"),
    Endpoint("POST", "/oauth-clients", "credentials", 201, {"scope": "company"}),
    Endpoint("POST", "/oauth-clients/{oauth_client}/rotate", "credentials"),
    Endpoint("DELETE", "/oauth-clients/{oauth_client}", "credentials"),
]
ALLOWED = {
    "admin": {"read", "device", "write", "credentials"},
    "support": {"read", "device"},
    "read-only": {"read"},
}


def company_objects(server: Server, owner: Mgmt, company_id: int, hw: str) -> dict[str, Any]:
    """One of everything a company owns, made through the API with an admin token."""
    products = [p["short_code"] for p in owner.ok(owner.get("/products"))["items"]]
    if "export" not in [f["code"] for f in owner.ok(owner.get("/products/app/features"))["items"]]:
        for code in ("export", "import", "spare"):
            owner.ok(owner.post("/products/app/features", {"code": code}), 201)
        for name in ("seat", "spare-field"):
            owner.ok(owner.post("/products/app/custom-fields", {"name": name}), 201)
        for code in ("std", "spare-policy"):
            owner.ok(
                owner.post("/products/app/policies", {"code": code, "max_activations": 3}), 201
            )
    assert "app" in products
    issued = owner.issue(
        max_activations=3,
        order_id="order-" + hw,
        features={"export": {}},
        custom_fields={"seat": 1},
    )
    spare = owner.issue()
    if not any(p["short_code"] == "team" for p in owner.ok(owner.get("/products"))["items"]):
        team = {"short_code": "team", "name": "Team", "authorization_method": "user"}
        owner.ok(owner.post("/products", team), 201)
    user_license = owner.issue("team", user_email=f"{hw}@team.example", user_password="pw-123456")
    other = owner.ok(owner.post("/tokens", {"name": "other", "role": "support"}), 201)
    made = owner.ok(owner.post("/api-keys", {"label": "spare"}), 201)
    api = Api(server.client, server.public_keys, made["api_key"], made["shared_key"])
    device = activated_with(api, issued["license_key"], hw)
    files = {
        f"{request}_file": request_file(
            api, issued["license_key"], request=request, hardware_id="offline-" + hw
        ).decode()
        for request in ("activation", "deactivation")
    }
    entry = owner.ok(owner.post("/blacklist", {"hardware_id": "banned-" + hw}), 201)
    customer = owner.ok(owner.post("/customers", {"email": f"{hw}@example.com"}), 201)
    spare_key = owner.ok(owner.post("/api-keys", {"label": "to revoke"}), 201)
    with server.db.transaction(write=True) as session:
        client = catalogue.create_oauth_client(session, server.master_key, company_id)
    credentials = owner.ok(owner.get("/credentials"))
    (oauth,) = [c for c in credentials["oauth_clients"] if c["client_id"] == client.client_id]
    return {
        "license": issued["id"],
        "key": issued["license_key"],
        "order": "order-" + hw,
        "product_code": "app",
        "spare_license": spare["id"],
        "device": device["device_id"],
        "blacklist": entry["id"],
        "customer": customer["id"],
        "other_token": other["id"],
        "api_key": spare_key["id"],
        "oauth_client": oauth["id"],
        "user_license": user_license["id"],
        "license_user": user_license["users"][0]["id"],
        "feature": "export",
        "attachable": "import",
        "spare_feature": "spare",
        "field": "seat",
        "spare_field": "spare-field",
        "policy": "std",
        "spare_policy": "spare-policy",
        **files,
    }


def filled(body: dict[str, Any] | None, ids: dict[str, Any]) -> dict[str, Any] | None:
    """``body`` with its ``"{name}"`` values replaced by ``ids[name]``."""
    if body is None:
        return None
    return {
        k: ids[v[1:-1]] if isinstance(v, str) and v.startswith("{") and v.endswith("}") else v
        for k, v in body.items()
    }


@pytest.mark.parametrize("role", ["admin", "support", "read-only"])
def test_each_role_may_do_exactly_its_share(server: Server, admin: Mgmt, role: str) -> None:
    ids = company_objects(server, admin, server.company_id, "hw-1")
    caller = mgmt(server, role)
    outcomes = []
    for endpoint in ENDPOINTS:
        path = endpoint.path.format(**ids)
        response = caller.call(endpoint.method, path, json=filled(endpoint.body, ids))
        allowed = endpoint.permission in ALLOWED[role]
        got = response.status_code, response.json()["code"] if response.status_code >= 400 else ""
        want = (endpoint.success, endpoint.code) if allowed else (403, "forbidden")
        outcomes.append((endpoint.method, endpoint.path, got, want))
    wrong = [o for o in outcomes if o[2] != o[3]]
    assert not wrong, f"{role}: (method, path, got, expected) {wrong}"
    if role != "admin":
        # nothing a refused call touched has changed
        license_ = admin.ok(admin.get(f"/licenses/{ids['license']}"))
        assert (license_["max_activations"], license_["enabled"]) == (3, True)
        assert license_["validity_period"] is None
        assert admin.get(f"/licenses/{ids['spare_license']}").status_code == 200
        assert admin.ok(admin.get("/licenses"))["total"] == 3
        assert len(admin.ok(admin.get("/blacklist"))["items"]) == 1
        assert [t["revoked"] for t in admin.ok(admin.get("/tokens"))["items"]].count(True) == 0
    forbidden = response_message(caller, "POST", "/licenses", {"product": "app"})
    if role != "admin":
        assert role in forbidden


def response_message(caller: Mgmt, method: str, path: str, body: Any) -> str:
    message: str = caller.call(method, path, json=body).json().get("message", "")
    return message


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer lsa_",
        "Bearer lsa_unknown-token-that-was-never-made-000000000",
        "Basic dXNlcjpwYXNz",
        "Token lsa_x",
        'algorithm="hmac-sha256", headers="date", signature="x", apikey="y"',
    ],
)
def test_missing_garbage_or_unknown_token_is_unauthorized(
    server: Server, authorization: str | None
) -> None:
    server.product()
    key = server.license().license_key
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [
        ("GET", "/licenses"),
        ("GET", f"/licenses/by-key/{key}"),
        ("POST", "/licenses/1/disable"),
        ("GET", "/audit"),
        ("GET", "/tokens"),
    ]:
        response = server.client.request(method, BASE + path, headers=headers)
        assert error_of(response) == (401, "unauthorized"), (method, path, response.text)
    assert server.sql("select enabled from licenses")[0][0] in (True, 1)


def test_the_license_api_credentials_do_not_open_the_management_api(server: Server) -> None:
    response = server.client.get(BASE + "/licenses", headers=server.api.headers())
    assert error_of(response) == (401, "unauthorized")


def test_a_revoked_admin_token_stops_at_once(server: Server, admin: Mgmt) -> None:
    second = Mgmt(server, make_token(server, "admin", name="second"))
    assert second.get("/licenses").status_code == 200
    tokens = {t["name"]: t["id"] for t in admin.ok(admin.get("/tokens"))["items"]}
    admin.ok(admin.delete(f"/tokens/{tokens['second']}"))
    for path in ("/licenses", "/tokens", "/audit"):
        assert error_of(second.get(path)) == (401, "unauthorized")
    # a revoked token cannot revoke anything either
    assert error_of(second.delete(f"/tokens/{tokens['admin token']}")) == (401, "unauthorized")
    assert admin.get("/licenses").status_code == 200


# -- tenants -----------------------------------------------------------------------------------


def test_a_company_never_reaches_another_companys_objects(server: Server, admin: Mgmt) -> None:
    server.product("pro")
    admin.ok(admin.post("/products/pro/features", {"code": "pro-feature"}), 201)
    admin.ok(admin.post("/products/pro/custom-fields", {"name": "pro-field"}), 201)
    admin.ok(admin.post("/products/pro/policies", {"code": "pro-policy", "is_default": True}), 201)
    a = company_objects(server, admin, server.company_id, "hw-a")
    a_catalogue = [
        admin.ok(admin.get(f"/products/pro/{kind}"))
        for kind in ("features", "custom-fields", "policies")
    ]
    a_tokens = [t["id"] for t in admin.ok(admin.get("/tokens"))["items"]]
    b_company, _ = server.new_company("Other Co")
    b = mgmt(server, "admin", b_company)
    b.ok(b.post("/products", {"short_code": "app", "name": "B's app"}), 201)
    b_license = b.issue()
    before = admin.ok(admin.get(f"/licenses/{a['license']}"))
    typed_key = a["key"].lower().replace("-", "")

    attempts = [
        ("GET", f"/licenses/{a['license']}", None),
        ("GET", f"/licenses/by-key/{a['key']}", None),
        ("GET", f"/licenses/by-key/{typed_key}", None),
        ("PATCH", f"/licenses/{a['license']}", {"max_activations": 50}),
        ("POST", f"/licenses/{a['license']}/disable", None),
        ("POST", f"/licenses/{a['license']}/enable", None),
        ("POST", f"/licenses/{a['license']}/reset", None),
        ("POST", f"/licenses/{a['license']}/extend", {"days": 3}),
        ("DELETE", f"/licenses/{a['spare_license']}", None),
        ("DELETE", f"/licenses/{a['license']}?force=true", None),
        ("GET", f"/licenses/{a['license']}/devices", None),
        ("GET", f"/licenses/{a['license']}/consumptions", None),
        ("GET", f"/licenses/{a['license']}/floating-slots", None),
        ("DELETE", f"/licenses/{a['license']}/floating-slots/{a['device']}", None),
        ("POST", f"/devices/{a['device']}/deactivate", None),
        ("GET", f"/customers/{a['customer']}", None),
        ("GET", f"/orders/{a['order']}", None),
        ("GET", "/products/pro/releases", None),
        ("POST", "/products/pro/releases", {"version": "9", "release_date": "2026-01-01"}),
        ("DELETE", f"/blacklist/{a['blacklist']}", None),
        ("DELETE", f"/tokens/{a['other_token']}", None),
        *[("DELETE", f"/tokens/{token_id}", None) for token_id in a_tokens],
        ("DELETE", f"/api-keys/{a['api_key']}", None),
        ("DELETE", f"/oauth-clients/{a['oauth_client']}", None),
        ("POST", f"/oauth-clients/{a['oauth_client']}/rotate", None),
        ("POST", f"/api-keys/{a['api_key']}/rotate", {"overlap_seconds": 60}),
        ("POST", "/oauth-clients", {"scope": "license", "license_id": a["license"]}),
        ("POST", "/oauth-clients", {"scope": "customer", "customer_id": a["customer"]}),
        ("POST", f"/licenses/{a['user_license']}/users", {"email": "x@y.z", "password": "p" * 9}),
        ("POST", f"/license-users/{a['license_user']}/reset-password", None),
        ("POST", f"/license-users/{a['license_user']}/reset-password", {"password": "p" * 9}),
        ("GET", "/products/pro/features", None),
        ("POST", "/products/pro/features", {"code": "x"}),
        ("PATCH", "/products/pro/features/pro-feature", {"name": "x"}),
        ("DELETE", "/products/pro/features/pro-feature", None),
        ("GET", "/products/pro/custom-fields", None),
        ("POST", "/products/pro/custom-fields", {"name": "x"}),
        ("PATCH", "/products/pro/custom-fields/pro-field", {"default_value": "x"}),
        ("DELETE", "/products/pro/custom-fields/pro-field", None),
        ("GET", "/products/pro/policies", None),
        ("GET", "/products/pro/policies/pro-policy", None),
        ("POST", "/products/pro/policies", {"code": "x"}),
        ("PATCH", "/products/pro/policies/pro-policy", {"max_activations": 9}),
        ("DELETE", "/products/pro/policies/pro-policy", None),
        ("POST", f"/licenses/{a['license']}/features", {"code": "import"}),
        ("PATCH", f"/licenses/{a['license']}/features/export", {"expiry_date": "2001-01-01"}),
        ("DELETE", f"/licenses/{a['license']}/features/export", None),
    ]
    for method, path, body in attempts:
        response = b.call(method, path, json=body)
        assert error_of(response) == (404, "not_found"), (method, path, response.text)

    # nothing of A in B's lists, whatever the filter
    b_licenses = b.ok(b.get("/licenses", per_page=500))
    assert [x["id"] for x in b_licenses["items"]] == [b_license["id"]]
    assert b_licenses["total"] == 1
    assert b.ok(b.get("/licenses", product="app"))["total"] == 1
    assert b.ok(b.get("/licenses", customer="hw-a@example.com"))["total"] == 0
    assert b.ok(b.get("/customers"))["items"] == []
    assert b.ok(b.get("/customers", search="hw-a"))["total"] == 0
    assert b.ok(b.get("/blacklist"))["items"] == []
    assert [p["short_code"] for p in b.ok(b.get("/products"))["items"]] == ["app"]
    assert [t["name"] for t in b.ok(b.get("/tokens"))["items"]] == ["admin token"]
    b_credentials = b.ok(b.get("/credentials"))
    assert server.api.api_key not in str(b_credentials)
    assert b_credentials["oauth_clients"] == []
    b_audit = b.ok(b.get("/audit", per_page=500))["items"]
    assert {e["object_id"] for e in b_audit if e["object_type"] == "license"} == {
        str(b_license["id"])
    }
    assert all(e["actor"] in ("cli:local", "token:admin token") for e in b_audit)
    assert "hw-a" not in str(b_audit)

    # B cannot use A's product either, and A still has everything, unchanged
    assert error_of(b.post("/blacklist", {"hardware_id": "x", "product": "pro"})) == (
        400,
        "unknown_product",
    )
    assert admin.ok(admin.get(f"/licenses/{a['license']}")) == before
    assert [
        admin.ok(admin.get(f"/products/pro/{kind}"))
        for kind in ("features", "custom-fields", "policies")
    ] == a_catalogue
    # B's products show none of A's features, fields or policies, and B cannot issue from them
    for kind in ("features", "custom-fields", "policies"):
        assert b.ok(b.get(f"/products/app/{kind}"))["items"] == []
    assert error_of(b.post("/licenses", {"product": "app", "policy": "std"})) == (
        400,
        "unknown_policy",
    )
    assert error_of(b.post("/licenses", {"product": "app", "features": {"export": {}}})) == (
        400,
        "unknown_feature",
    )
    assert admin.ok(admin.get(f"/licenses/{a['license']}/devices"))["items"][0]["active"] is True
    assert admin.ok(admin.get("/licenses"))["total"] == 3
    assert len(admin.ok(admin.get("/blacklist"))["items"]) == 1
    assert not any(t["revoked"] for t in admin.ok(admin.get("/tokens"))["items"])
    assert not any(k["revoked"] for k in admin.ok(admin.get("/credentials"))["api_keys"])
    assert admin.ok(admin.get("/licenses", product="app"))["total"] == 2
    assert error_of(admin.get(f"/licenses/{b_license['id']}")) == (404, "not_found")


def test_every_management_route_is_in_the_openapi_document(server: Server) -> None:
    paths = server.client.get("/openapi.json").json()["paths"]
    documented = {
        (method.upper(), path.removeprefix(BASE))
        for path, operations in paths.items()
        if path.startswith(BASE)
        for method in operations
    }
    tested = {(e.method, re.sub(r"\{(\w+)\}", "{x}", e.path)) for e in ENDPOINTS}
    assert {(m, re.sub(r"\{(\w+)\}", "{x}", p)) for m, p in documented} == tested


# -- validation and atomicity ------------------------------------------------------------------


BAD_INPUT = [
    ("POST", "/licenses", {"product": "app", "license_type": "time-limited"}, "validity_period"),
    ("POST", "/licenses", {"product": "app", "license_type": "subscription"}, "validity_period"),
    ("POST", "/licenses", {"product": "app", "count": 0}, "count"),
    ("POST", "/licenses", {"product": "app", "count": 10_001}, "count"),
    ("POST", "/licenses", {"product": "app", "license_type": "forever"}, "license_type"),
    ("POST", "/licenses", {"product": "app", "colour": "red"}, "colour"),
    ("POST", "/licenses", {"product": "app", "max_activations": -1}, "max_activations"),
    ("POST", "/licenses", {"product": "app", "validity_period": "soon"}, "validity_period"),
    ("POST", "/licenses", {"product": "app", "version_spec": "~~1"}, "version_spec"),
    ("POST", "/licenses", {"product": "app", "count": 2, "license_key": "K-1"}, "license_key"),
    ("POST", "/licenses", {"count": 2}, "product"),
    ("POST", "/licenses", {"product": "app", "order_id": "x\x00y"}, "order_id"),
    ("POST", "/tokens", {"name": "x", "role": "owner"}, "role"),
    ("POST", "/tokens", {"name": "", "role": "admin"}, "name"),
    ("POST", "/tokens", {"name": "   ", "role": "admin"}, "name"),
    ("POST", "/tokens", {"role": "admin"}, "name"),
    ("PATCH", "/licenses/{license}", {"max_activations": -2}, "max_activations"),
    ("PATCH", "/licenses/{license}", {"bogus": 1}, "bogus"),
    ("PATCH", "/licenses/{license}", {"version_spec": "~~1"}, "version_spec"),
    ("PATCH", "/licenses/{license}", {"license_type": "time-limited"}, "validity_period"),
    ("PATCH", "/licenses/{license}", {"enabled": "maybe"}, "enabled"),
    ("POST", "/licenses/{license}/extend", {"days": 0}, "days"),
    ("POST", "/licenses/{license}/extend", {"until": "later"}, "until"),
    ("POST", "/licenses/{license}/extend", {}, "days"),
    ("POST", "/customers", {"email": "not-an-address"}, "email"),
    ("POST", "/customers", {"email": "a@b.c", "nickname": "x"}, "nickname"),
    ("POST", "/blacklist", {"hardware_id": ""}, "hardware_id"),
    ("POST", "/blacklist", {"hardware_id": "x" * 257}, "hardware_id"),
    ("POST", "/products", {"short_code": "a b", "name": "X"}, "short_code"),
    ("POST", "/products", {"short_code": "v", "name": "V", "version_spec": "~~1"}, "version_spec"),
    ("POST", "/api-keys", {"read_only": "perhaps"}, "read_only"),
    ("GET", "/licenses?sort=colour", None, "sort"),
    ("GET", "/licenses?per_page=0", None, "per_page"),
    ("GET", "/licenses?per_page=501", None, "per_page"),
    ("GET", "/licenses?page=0", None, "page"),
    ("GET", "/licenses?enabled=perhaps", None, "enabled"),
    ("GET", "/licenses?expires_before=someday", None, "expires_before"),
    ("GET", "/customers?per_page=1000", None, "per_page"),
    ("GET", "/audit?page=-1", None, "page"),
]


def test_bad_input_is_a_validation_error_naming_the_field(server: Server, admin: Mgmt) -> None:
    issued = admin.issue()
    before = admin.ok(admin.get(f"/licenses/{issued['id']}"))
    audit_total = admin.ok(admin.get("/audit"))["total"]
    problems = []
    for method, path, body, field in BAD_INPUT:
        response = admin.call(method, path.format(license=issued["id"]), json=body)
        payload = response.json()
        if (
            response.status_code != 400
            or payload.get("code") != "validation_error"
            or field not in payload.get("message", "")
        ):
            problems.append((method, path, body, response.status_code, payload))
    assert not problems, problems
    broken = admin.call(
        "POST", "/licenses", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert error_of(broken) == (400, "validation_error")
    assert admin.ok(admin.get(f"/licenses/{issued['id']}")) == before
    assert admin.ok(admin.get("/licenses"))["total"] == 1
    assert admin.ok(admin.get("/audit"))["total"] == audit_total


def test_a_failing_write_leaves_nothing_half_done(server: Server, admin: Mgmt) -> None:
    issued = admin.issue(max_activations=2, order_id="o-1")
    key = issued["license_key"]
    before = admin.ok(admin.get(f"/licenses/{issued['id']}"))
    state = (count_rows(server, "licenses"), count_rows(server, "customers"))
    audit_total = admin.ok(admin.get("/audit"))["total"]

    # many licenses with a bad field: none issued, and the customer is not created either
    bad_type = {"product": "app", "count": 3, "license_type": "bogus", "customer_email": "n@x.io"}
    assert error_of(admin.post("/licenses", bad_type)) == (400, "validation_error")
    no_validity = {**bad_type, "license_type": "time-limited"}
    assert error_of(admin.post("/licenses", no_validity)) == (400, "validation_error")
    # fails after the new customer is written: the customer goes too
    taken = {"product": "app", "license_key": key, "customer_email": "new@example.com"}
    assert error_of(admin.post("/licenses", taken))[0] == 409
    user_on_key_product = {
        "product": "app",
        "customer_email": "other@example.com",
        "user_email": "u@example.com",
        "user_password": "pw-123456",
    }
    assert error_of(admin.post("/licenses", user_on_key_product)) == (400, "validation_error")

    # one bad field in a PATCH: no field changes, whichever comes first
    for body in (
        {"max_activations": 9, "order_id": "o-9", "version_spec": "~~1"},
        {"max_activations": 9, "order_id": "o-9", "license_type": "time-limited"},
        {"max_activations": 9, "order_id": "o-9", "grace_period": -1},
        {"max_activations": 9, "order_id": "o-9", "max_transfers": -5},
        {"max_activations": 9, "order_id": "o-9", "metadata": {"a": 1}, "unknown": True},
    ):
        assert error_of(admin.patch(f"/licenses/{issued['id']}", body)) == (
            400,
            "validation_error",
        ), body
        assert admin.ok(admin.get(f"/licenses/{issued['id']}")) == before, body

    # an extend that fails validation, a refused delete: no change
    both = {"days": 1, "until": "2030-01-01"}
    assert error_of(admin.post(f"/licenses/{issued['id']}/extend", both))[0] == 400
    activated(server, key, "hw-1")
    assert error_of(admin.delete(f"/licenses/{issued['id']}"))[0] == 409
    assert admin.ok(admin.get(f"/licenses/{issued['id']}"))["times_activated"] == 1

    assert (count_rows(server, "licenses"), count_rows(server, "customers")) == state
    assert admin.ok(admin.get("/customers", search="example.com"))["items"] == []
    # the one activation above is the only new audit entry
    log = admin.ok(admin.get("/audit"))
    assert log["total"] == audit_total + 1
    assert log["items"][0]["action"] == "device.activate"


# -- concurrent vendors ------------------------------------------------------------------------


def all_at_once(count: int, action: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """``count`` calls released together, each in its own thread (own transaction)."""
    barrier = threading.Barrier(count)
    answers: list[httpx.Response] = []

    def run() -> None:
        barrier.wait()
        answers.append(action())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_concurrent_deactivations_of_one_device_free_one_seat(server: Server, admin: Mgmt) -> None:
    issued = admin.issue(max_activations=2)
    key = issued["license_key"]
    activated(server, key, "hw-keep")
    for _ in range(4):
        path = f"/devices/{activated(server, key, 'hw-a')['device_id']}/deactivate"
        answers = all_at_once(6, partial(admin.post, path))
        assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400, 400]
        assert admin.ok(admin.get(f"/licenses/{issued['id']}"))["times_activated"] == 1
    # the other device still holds its seat: the license is not over-sold
    assert activated(server, key, "hw-a")["times_activated"] == 2
    assert error_of(activate(server, key, "hw-c")) == (400, "license_activated_max_times")
    by_vendor = admin.ok(admin.get("/audit", action="device.deactivate"))["items"]
    assert len(by_vendor) == 4


def test_concurrent_extensions_add_up(server: Server, admin: Mgmt) -> None:
    end = datetime(2030, 1, 1, tzinfo=UTC)
    issued = admin.issue(license_type="subscription", validity_period=end.isoformat())
    answers = all_at_once(6, lambda: admin.post(f"/licenses/{issued['id']}/extend", {"days": 10}))
    assert [a.status_code for a in answers] == [200] * 6
    final = admin.ok(admin.get(f"/licenses/{issued['id']}"))["validity_period"]
    assert parse_iso_datetime(final) == end + timedelta(days=60)


@pytest.mark.parametrize("role", ["support", "read-only"])
def test_the_role_is_checked_before_the_request_is(server: Server, admin: Mgmt, role: str) -> None:
    issued = admin.issue()
    caller = mgmt(server, role)
    for method, path, body in [
        ("POST", f"/licenses/{issued['id']}/extend", {}),
        ("POST", f"/licenses/{issued['id']}/extend", {"days": 3, "until": "2030-01-01"}),
        ("POST", "/licenses/999999/extend", {"days": 3}),
        ("POST", "/licenses/999999/disable", None),
        ("PATCH", "/licenses/999999", {"max_activations": 2}),
        ("DELETE", "/licenses/999999", None),
        ("POST", "/licenses", {"product": "nope"}),
        ("POST", "/tokens", {"name": " ", "role": "admin"}),
        ("DELETE", "/tokens/999999", None),
        ("DELETE", "/blacklist/999999", None),
        ("POST", "/license-users/999999/reset-password", None),
    ]:
        response = caller.call(method, path, json=body)
        assert error_of(response) == (403, "forbidden"), (method, path, body, response.text)


@pytest.mark.parametrize("role", ["support", "read-only"])
def test_a_refused_role_gets_403_whatever_the_request_holds(
    server: Server, admin: Mgmt, role: str
) -> None:
    """Every route the role may not use × a bad body (and bad path ids) → 403, never 400/422."""
    ids = company_objects(server, admin, server.company_id, "hw-1")
    caller = mgmt(server, role)
    refused = [e for e in ENDPOINTS if e.permission not in ALLOWED[role]]
    assert len(refused) > 20
    bad_bodies: list[dict[str, Any]] = [
        {"json": {"not_a_field": [1], "count": -1, "days": 0, "code": "", "name": None}},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"json": ["a", "list"]},
    ]
    wrong = []
    for endpoint in refused:
        for path in (
            endpoint.path.format(**ids),
            re.sub(r"\{\w+\}", "not-a-number", endpoint.path),
        ):
            for request in bad_bodies:
                response = caller.call(endpoint.method, path, **request)
                got = response.status_code, response.json().get("code")
                if got != (403, "forbidden"):
                    wrong.append((endpoint.method, path, got, str(request)[:30]))
    assert not wrong, wrong
    assert admin.ok(admin.get("/licenses"))["total"] == 3


def test_authentication_comes_before_validation(server: Server) -> None:
    """Without a valid token nothing about the request is judged, not even its shape."""
    for method, path, body in [
        ("POST", "/licenses", {"product": "app", "count": 0, "unknown": 1}),
        ("GET", "/licenses/not-a-number", None),
        ("GET", "/licenses?per_page=100000", None),
        ("PATCH", "/licenses/1", {"max_activations": -5}),
    ]:
        response = server.client.request(method, BASE + path, json=body)
        assert error_of(response) == (401, "unauthorized"), (method, path, response.text)
    not_json = server.client.post(
        BASE + "/licenses", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert error_of(not_json) == (401, "unauthorized")
