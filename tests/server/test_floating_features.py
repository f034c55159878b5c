"""Floating features and the consumption rules of features (v4 §3.8, §3.10, §3.13, §5.5, §5.7),
on SQLite and PostgreSQL: a feature check takes one of the feature's slots (apart from the
license's), ``/floating/feature_release`` frees it, ``/floating/feature_borrow`` keeps it past
the timeout, a deactivation frees them all; a consumption feature has its own overages,
refunds and periodic reset; and a feature's slots hold under devices racing from two worker
processes."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from licensor.store.models import FloatingSlot, License, Product
from tests.server.processes import issue, prepare, serve
from tests.server.support import Api, Server, error_of
from tests.server.test_floating import age_slots
from tests.server.test_management_api import mgmt

FEATURES: list[dict[str, Any]] = [
    {
        "code": "render",
        "name": "Render farm",
        "is_floating_cloud": True,
        "floating_users": 2,
        "floating_timeout": 10,
        "can_borrow": True,
        "max_borrow_time": 8,
    },
    {"code": "export", "name": "Export"},
    {
        "code": "pages",
        "name": "Pages",
        "feature_type": "consumption",
        "max_consumption": 10,
        "allow_overages": True,
        "max_overages": 2,
        "allow_negative_consumptions": True,
        "reset_consumption": True,
        "consumption_period": "monthly",
    },
]


def identity(key: str, hw: str, **more: Any) -> dict[str, Any]:
    return {"product": "app", "license_key": key, "hardware_id": hw, **more}


def check_feature(api: Api, key: str, hw: str, feature: str = "render") -> httpx.Response:
    params = identity(key, hw, feature=feature)
    return api.call("GET", "/api/v4/check_license_feature", params=params)


def feature_release(api: Api, key: str, hw: str, feature: str = "render") -> httpx.Response:
    body = identity(key, hw, feature=feature)
    return api.call("POST", "/api/v4/floating/feature_release", json=body)


def feature_borrow(
    api: Api, key: str, hw: str, until: str | None, feature: str = "render"
) -> httpx.Response:
    body = identity(key, hw, feature=feature, borrowed_until=until)
    return api.call("POST", "/api/v4/floating/feature_borrow", json=body)


def consume(api: Api, key: str, count: int, hw: str = "one") -> httpx.Response:
    body = identity(key, hw, feature="pages", consumptions=count)
    return api.call("POST", "/api/v4/add_feature_consumption", json=body)


def slots(server: Server) -> list[tuple[str, str]]:
    rows = server.sql(
        "SELECT d.hardware_id, s.feature FROM floating_slots s JOIN devices d ON d.id = s.device_id"
        " ORDER BY d.hardware_id, s.feature"
    )
    return [(str(hw), str(feature)) for hw, feature in rows]


@pytest.fixture
def key(server: Server) -> str:
    server.product("app")
    admin = mgmt(server)
    for feature in FEATURES:
        admin.ok(admin.post("/products/app/features", feature), 201)
    body = {"product": "app", "max_activations": 5, "features": {f["code"]: {} for f in FEATURES}}
    key: str = admin.ok(admin.post("/licenses", body), 201)["items"][0]["license_key"]
    for hw in ("one", "two", "three"):
        assert server.api.activate(**identity(key, hw)).status_code == 200
    return key


def test_feature_checks_take_the_features_slots(server: Server, key: str) -> None:
    first = check_feature(server.api, key, "one")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["is_floating_cloud"], body["floating_users"], body["floating_timeout"]) == (
        True,
        2,
        10,
    )
    assert (body["floating_in_use_devices"], body["is_borrowed"], body["borrowed_until"]) == (
        1,
        False,
        None,
    )
    assert check_feature(server.api, key, "two").json()["floating_in_use_devices"] == 2
    assert error_of(check_feature(server.api, key, "three")) == (400, "floating_not_available")
    assert check_feature(server.api, key, "one").json()["floating_in_use_devices"] == 2
    # a feature that is not floating takes no slot, and the license itself is not floating
    plain = check_feature(server.api, key, "three", "export").json()
    assert plain["is_floating_cloud"] is False and "floating_in_use_devices" not in plain
    assert server.api.check(**identity(key, "three")).status_code == 200
    assert slots(server) == [("one", "render"), ("two", "render")]
    # the license's answer lists the feature with its floating settings
    listed = server.api.check(**identity(key, "one")).json()["product_features"]
    render = next(f for f in listed if f["code"] == "render")
    assert (render["is_floating_cloud"], render["floating_users"], render["floating_timeout"]) == (
        True,
        2,
        10,
    )


def test_a_feature_slot_times_out_and_is_released_at_once(server: Server, key: str) -> None:
    check_feature(server.api, key, "one")
    check_feature(server.api, key, "two")
    age_slots(server, 11)  # past the feature's 10-minute timeout: both free
    assert check_feature(server.api, key, "three").json()["floating_in_use_devices"] == 1
    assert check_feature(server.api, key, "one").json()["floating_in_use_devices"] == 2
    released = feature_release(server.api, key, "one")
    assert (released.status_code, released.json()) == (200, "")
    assert check_feature(server.api, key, "two").status_code == 200
    # nothing held, a feature that is not floating, one the license does not have
    assert error_of(feature_release(server.api, key, "one")) == (
        400,
        "floating_feature_device_not_in_use",
    )
    assert error_of(feature_release(server.api, key, "one", "export")) == (
        400,
        "feature_not_floating",
    )
    assert error_of(feature_release(server.api, key, "one", "nope")) == (
        400,
        "invalid_license_feature_code",
    )
    assert error_of(feature_release(server.api, key, "nowhere")) == (400, "device_not_found")
    # a deactivation frees the device's feature slots with its seat
    assert server.api.deactivate(**identity(key, "two")).status_code == 200
    assert slots(server) == [("three", "render")]


def test_a_borrowed_feature_slot_outlives_the_timeout(server: Server, key: str) -> None:
    lent = feature_borrow(server.api, key, "one", None)
    assert lent.status_code == 200, lent.text
    body = lent.json()
    assert (body["max_borrow_time"], body["feature"]) == (8, "render")
    until = datetime.fromisoformat(body["borrowed_until"])
    assert timedelta(hours=7, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=8)
    checked = check_feature(server.api, key, "one").json()
    assert (checked["is_borrowed"], checked["borrowed_until"]) == (True, body["borrowed_until"])
    check_feature(server.api, key, "two")
    age_slots(server, 60)
    assert check_feature(server.api, key, "three").status_code == 200  # "two" timed out
    assert error_of(check_feature(server.api, key, "two")) == (400, "floating_not_available")
    # bad borrows change nothing
    later = (datetime.now(UTC) + timedelta(hours=9)).isoformat()
    assert error_of(feature_borrow(server.api, key, "two", later)) == (
        400,
        "borrow_until_not_valid",
    )
    assert error_of(feature_borrow(server.api, key, "two", None, "export")) == (
        400,
        "feature_not_floating",
    )
    assert error_of(feature_borrow(server.api, key, "two", None)) == (
        400,
        "floating_not_available",
    )
    with server.db.transaction(write=True) as session:
        product = session.scalars(select(Product)).one()
        product.features = [
            {**f, "can_borrow": False} if f["code"] == "render" else f for f in product.features
        ]
    assert error_of(feature_borrow(server.api, key, "three", None)) == (
        400,
        "license_borrow_not_allowed",
    )
    assert check_feature(server.api, key, "one").json()["floating_in_use_devices"] == 2


def test_a_license_may_have_more_seats_of_a_feature(server: Server, key: str) -> None:
    admin = mgmt(server)
    license_id = int(server.sql("SELECT id FROM licenses")[0][0])
    changed = admin.call(
        "PATCH", f"/licenses/{license_id}/features/render", json={"floating_users": 3}
    )
    assert changed.status_code == 200, changed.text
    for hw in ("one", "two", "three"):
        assert check_feature(server.api, key, hw).status_code == 200, hw
    # vendors see the feature's slots apart from the license's, and free a device's
    seen = admin.ok(admin.get(f"/licenses/{license_id}/floating-slots"))
    assert (seen["in_use"], seen["features_in_use"]) == (0, {"render": 3})
    assert {s["feature"] for s in seen["items"]} == {"render"}
    device_id = seen["items"][0]["device_id"]
    freed = admin.call("DELETE", f"/licenses/{license_id}/floating-slots/{device_id}")
    assert freed.status_code == 200, freed.text
    assert len(slots(server)) == 2
    # a plain feature cannot be given floating seats
    refused = admin.call(
        "PATCH", f"/licenses/{license_id}/features/export", json={"floating_users": 3}
    )
    assert refused.status_code == 400


def test_a_consumption_feature_has_its_own_terms(server: Server, key: str) -> None:
    assert consume(server.api, key, 10).json()["total_consumptions"] == 10
    over = consume(server.api, key, 2).json()  # two overages allowed
    assert (over["total_consumptions"], over["allow_overages"], over["max_overages"]) == (
        12,
        True,
        2,
    )
    assert (over["reset_consumption"], over["consumption_period"]) == (True, "monthly")
    assert error_of(consume(server.api, key, 1)) == (400, "feature_not_enough_consumptions")
    assert consume(server.api, key, -5).json()["total_consumptions"] == 7  # a refund
    assert error_of(consume(server.api, key, -8)) == (400, "negative_consumptions_not_allowed")
    # the total counted last month is 0 this month (judged when read)
    with server.db.transaction(write=True) as session:
        license_ = session.scalars(select(License)).one()
        pages = {**license_.features["pages"], "counted_at": "2020-01-31T23:59:59.000Z"}
        license_.features = {**license_.features, "pages": pages}
    checked = check_feature(server.api, key, "one", "pages").json()
    assert checked["total_consumptions"] == 0
    listed = server.api.check(**identity(key, "one")).json()["product_features"]
    assert next(f for f in listed if f["code"] == "pages")["total_consumptions"] == 0
    assert consume(server.api, key, 3).json()["total_consumptions"] == 3


def test_bad_feature_definitions_are_refused(server: Server) -> None:
    server.product("app")
    admin = mgmt(server)
    cases = [
        {"code": "a", "is_floating_cloud": True},  # no floating_users
        {"code": "b", "can_borrow": True, "max_borrow_time": 2},  # not floating
        {"code": "c", "feature_type": "consumption", "reset_consumption": True},  # no period
        {"code": "d", "allow_overages": True},  # an activation feature
        {"code": "e", "feature_type": "consumption", "consumption_period": "hourly"},
        {"code": "f", "floating_users": -1},
    ]
    for case in cases:
        response = admin.call("POST", "/products/app/features", json=case)
        assert response.status_code in (400, 422), (case, response.text)
    assert admin.ok(admin.get("/products/app/features"))["items"] == []


@pytest.mark.slow
def test_devices_racing_for_a_features_slots(database_url: str, tmp_path: Path) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    key = issue(deployment, max_activations=30)
    with deployment.db.transaction(write=True) as session:
        product = session.scalars(select(Product)).one()
        product.features = [
            {"id": 1, "code": "render", "name": "Render", "feature_type": "activation",
             "is_floating_cloud": True, "floating_users": 5}
        ]  # fmt: skip
        license_ = session.scalars(select(License)).one()
        license_.features = {"render": {}}
    barrier = threading.Barrier(30)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    with serve(deployment, workers=2) as base:
        with httpx.Client(base_url=base, timeout=60) as client:
            api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
            for n in range(30):
                assert api.activate(**identity(key, f"racer-{n}")).status_code == 200

        def take(n: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
                barrier.wait()
                response = check_feature(api, key, f"racer-{n}")
                outcome = "ok" if response.status_code == 200 else response.json()["code"]
                with lock:
                    outcomes[outcome] += 1

        threads = [threading.Thread(target=take, args=(n,)) for n in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes == {"ok": 5, "floating_not_available": 25}, outcomes
    with deployment.db.transaction() as session:
        held = session.scalars(select(FloatingSlot)).all()
    assert [slot.feature for slot in held] == ["render"] * 5
    deployment.db.dispose()
