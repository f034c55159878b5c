"""Bundles (v4 §3.7), on SQLite and PostgreSQL: a bundle product made of sub-products, its
license holding one sub-license per sub-product under one key; activation of all or none,
checks and deactivations of all, the offline forms with ``bundle_signature_v2``, and
``bundle_code`` on the single endpoints."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from licensor.protocol.signing import compact_json, license_signing_string, v2_signing_bytes
from tests.server.support import Server, error_of, verify_response
from tests.server.test_management_api import mgmt
from tests.server.test_offline import request_file

HW = "bundle-device"


@pytest.fixture
def bundle(server: Server) -> str:
    """A bundle "suite" of "editor" and "viewer"; the key of one of its licenses (2 seats)."""
    server.product("editor")
    server.product("viewer")
    admin = mgmt(server)
    made = admin.post(
        "/products", {"short_code": "suite", "name": "Suite", "bundle": ["editor", "viewer"]}
    )
    assert made.status_code == 201, made.text
    assert made.json()["bundle"] == ["editor", "viewer"]
    issued = admin.post("/licenses", {"product": "suite", "max_activations": 2})
    assert issued.status_code == 201, issued.text
    return str(issued.json()["items"][0]["license_key"])


def body(key: str, hw: str = HW, **extra: Any) -> dict[str, Any]:
    return {"product": "suite", "license_key": key, "hardware_id": hw, **extra}


def post(server: Server, path: str, payload: dict[str, Any]) -> httpx.Response:
    return server.api.call("POST", f"/api/v4/{path}", json=payload)


def seats(server: Server) -> dict[str, int]:
    rows = server.sql(
        "select p.short_code, l.times_activated from licenses l join products p "
        "on p.id = l.product_id order by p.short_code"
    )
    return {code: count for code, count in rows}


def test_a_bundle_activates_checks_and_deactivates_all_its_sub_licenses(
    server: Server, bundle: str
) -> None:
    answer = post(server, "activate_bundle", body(bundle))
    assert answer.status_code == 200, answer.text
    verify_response(answer, server.public_keys)
    items = answer.json()
    assert [item["product_details"]["short_code"] for item in items] == ["editor", "viewer"]
    for item in items:
        assert item["license_key"] == bundle and item["hardware_id"] == HW
        signed = license_signing_string(HW, bundle, item["validity_period"]).encode()
        server.public_keys.verify(signed, item["license_signature"])
    assert seats(server) == {"editor": 1, "suite": 0, "viewer": 1}

    checked = server.api.call("GET", "/api/v4/check_bundle", params=body(bundle))
    assert checked.status_code == 200, checked.text
    verify_response(checked, server.public_keys)
    assert [c["product_details"]["short_code"] for c in checked.json()] == ["editor", "viewer"]
    assert all(c["license_active"] and c["license_signature_v2"] for c in checked.json())

    # one sub-license through the single endpoints, named with the bundle's code
    single = server.api.check(
        product="viewer", license_key=bundle, hardware_id=HW, bundle_code="suite"
    )
    assert single.status_code == 200, single.text
    assert single.json()["id"] == items[1]["id"]
    assert error_of(server.api.check(product="viewer", license_key=bundle, hardware_id=HW)) == (
        400,
        "license_not_found",
    )
    assert error_of(
        server.api.check(product="viewer", license_key=bundle, hardware_id=HW, bundle_code="other")
    ) == (
        400,
        "license_not_found",
    )

    gone = post(server, "deactivate_bundle", body(bundle))
    assert (gone.status_code, gone.json()) == (200, "license_deactivated")
    assert seats(server) == {"editor": 0, "suite": 0, "viewer": 0}
    assert error_of(post(server, "deactivate_bundle", body(bundle))) == (400, "device_not_found")


def test_one_refused_sub_license_leaves_no_seat_on_the_others(server: Server, bundle: str) -> None:
    # the viewer's sub-license is full: a device took its seats one by one
    for hw in ("other-1", "other-2"):
        single = server.api.activate(
            product="viewer", license_key=bundle, hardware_id=hw, bundle_code="suite"
        )
        assert single.status_code == 200, single.text
    before = seats(server)
    assert error_of(post(server, "activate_bundle", body(bundle))) == (
        400,
        "license_activated_max_times",
    )
    assert seats(server) == before == {"editor": 0, "suite": 0, "viewer": 2}
    devices = server.sql("select count(*) from devices where hardware_id = :hw", hw=HW)
    assert devices[0][0] == 0


def test_bad_bundle_requests_are_refused_with_their_codes(server: Server, bundle: str) -> None:
    assert error_of(post(server, "activate_bundle", {**body(bundle), "product": "nope"})) == (
        400,
        "unknown_product",
    )
    assert error_of(post(server, "activate_bundle", {**body(bundle), "product": "editor"})) == (
        400,
        "not_a_bundle",
    )
    assert error_of(post(server, "activate_bundle", body("AAAA-BBBB-CCCC-DDDD"))) == (
        400,
        "license_not_found",
    )
    assert error_of(post(server, "activate_bundle", {"product": "suite", "hardware_id": HW})) == (
        400,
        "license_key_required",
    )
    assert error_of(
        post(server, "activate_bundle", {"product": "suite", "license_key": bundle})
    ) == (
        400,
        "missing_hardware_id",
    )
    # the bundle product itself is not activated by the single endpoints
    assert error_of(server.api.activate(**body(bundle))) == (400, "bundle_activation_required")
    # a check before any activation
    assert error_of(server.api.call("GET", "/api/v4/check_bundle", params=body(bundle))) == (
        400,
        "license_not_active",
    )
    # a read-only key activates nothing
    reader = server.api_key(read_only=True)
    assert error_of(reader.call("POST", "/api/v4/activate_bundle", json=body(bundle))) == (
        400,
        "read_only_api_key",
    )
    # a disabled bundle license (its sub-licenses with it)
    admin = mgmt(server)
    (bundle_id,) = server.sql(
        "select id from licenses where key_lookup = :k", k=bundle.replace("-", "")
    )[0]
    assert admin.post(f"/licenses/{bundle_id}/disable").status_code == 200
    assert error_of(post(server, "activate_bundle", body(bundle))) == (400, "license_not_enabled")
    enabled = server.sql("select enabled from licenses order by id")
    assert [bool(e) for (e,) in enabled] == [False, False, False]
    assert seats(server) == {"editor": 0, "suite": 0, "viewer": 0}


def test_deleting_a_bundle_license_deletes_its_sub_licenses(server: Server, bundle: str) -> None:
    admin = mgmt(server)
    (bundle_id,) = server.sql(
        "select id from licenses where key_lookup = :k", k=bundle.replace("-", "")
    )[0]
    assert post(server, "activate_bundle", body(bundle)).status_code == 200
    refused = admin.delete(f"/licenses/{bundle_id}")
    assert error_of(refused)[1] == "license_has_active_devices"
    assert server.sql("select count(*) from licenses")[0][0] == 3
    assert admin.delete(f"/licenses/{bundle_id}", force="true").status_code == 204
    assert server.sql("select count(*) from licenses")[0][0] == 0


def test_a_bundle_of_bad_products_is_refused(server: Server) -> None:
    server.product("editor")
    server.product("users", authorization_method="user")
    admin = mgmt(server)
    for items, why in (
        (["editor", "nope"], "no product 'nope'"),
        (["editor", "users"], "uses license users"),
        (["editor", "editor"], "different product codes"),
    ):
        refused = admin.post("/products", {"short_code": "b", "name": "B", "bundle": items})
        assert refused.status_code == 400 and why in refused.json()["message"], refused.text
    assert (
        admin.post("/products", {"short_code": "b", "name": "B", "bundle": ["editor"]}).status_code
        == 201
    )
    nested = admin.post("/products", {"short_code": "c", "name": "C", "bundle": ["b"]})
    assert nested.status_code == 400 and "a bundle itself" in nested.json()["message"]


def test_offline_bundle_files(server: Server, bundle: str) -> None:
    content = request_file(server.api, bundle, product="suite", hardware_id=HW)
    answer = server.api.call("POST", "/api/v4/activate_bundle_offline", content=content)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert list(found) == ["licenses", "bundle_signature_v2"]
    signed = compact_json({"licenses": found["licenses"]})
    server.public_keys.verify(signed, found["bundle_signature_v2"])
    for item in found["licenses"]:
        assert item["offline_signature"] and item["date"]
        v2 = v2_signing_bytes(item)
        server.public_keys.verify(v2, item["license_signature_v2"])
    assert seats(server) == {"editor": 1, "suite": 0, "viewer": 1}
    # the same file again changes nothing
    again = server.api.call("POST", "/api/v4/activate_bundle_offline", content=content)
    assert error_of(again) == (409, "offline_request_replayed")

    leave = request_file(
        server.api,
        bundle,
        product="suite",
        hardware_id=HW,
        request="deactivation",
        variables={"v": "1"},
    )
    gone = server.api.call("POST", "/api/v4/deactivate_bundle_offline", content=leave)
    assert (gone.status_code, gone.json()) == (200, "license_deactivated"), gone.text
    assert seats(server) == {"editor": 0, "suite": 0, "viewer": 0}
    variables = server.sql("select count(*) from device_variables")[0][0]
    assert variables == 2  # (recorded on each sub-license's device before its seat was freed)


def test_a_floating_sub_license_is_borrowed_with_its_bundle_code(server: Server) -> None:
    server.product(
        "float", is_floating_cloud=True, floating_users=1, can_borrow=True, max_borrow_time=8
    )
    server.product("plain")
    admin = mgmt(server)
    made = admin.post(
        "/products", {"short_code": "suite", "name": "Suite", "bundle": ["float", "plain"]}
    )
    assert made.status_code == 201, made.text
    key = admin.post("/licenses", {"product": "suite", "max_activations": 3}).json()["items"][0][
        "license_key"
    ]
    assert post(server, "activate_bundle", body(key)).status_code == 200
    sub = {"product": "float", "license_key": key, "hardware_id": HW, "bundle_code": "suite"}
    checked = server.api.check(**sub)
    assert checked.status_code == 200 and checked.json()["floating_in_use_devices"] == 1
    borrowed = post(server, "floating/borrow", {**sub, "borrowed_until": None})
    assert borrowed.status_code == 200, borrowed.text
    assert borrowed.json()["borrowed_until"]
    # the bundle's check shows the seat taken; a second computer finds none free
    assert post(server, "activate_bundle", body(key, "second")).status_code == 200
    refused = server.api.check(**{**sub, "hardware_id": "second"})
    assert error_of(refused) == (400, "floating_not_available")


def test_a_bundle_licenses_terms_are_its_sub_licenses(server: Server, bundle: str) -> None:
    admin = mgmt(server)
    (bundle_id,) = server.sql(
        "select id from licenses where key_lookup = :k", k=bundle.replace("-", "")
    )[0]
    changed = admin.patch(f"/licenses/{bundle_id}", {"max_activations": 1, "enabled": False})
    assert changed.status_code == 200, changed.text
    rows = server.sql("select max_activations, enabled from licenses order by id")
    assert [(m, bool(e)) for m, e in rows] == [(1, False)] * 3
    assert error_of(post(server, "activate_bundle", body(bundle))) == (400, "license_not_enabled")
    assert admin.post(f"/licenses/{bundle_id}/enable").status_code == 200
    assert post(server, "activate_bundle", body(bundle)).status_code == 200
    assert error_of(post(server, "activate_bundle", body(bundle, "second"))) == (
        400,
        "license_activated_max_times",
    )
