"""Features over the License API (v4 §3.8, §3.10), on SQLite and PostgreSQL:
``check_license_feature`` answers a license's feature on an activated device (expired ones
refused unless asked for), ``add_feature_consumption`` counts a consumption feature's units up
to its maximum, once per Idempotency-Key, and every bad request is refused with its code."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.support import Server, error_of
from tests.server.test_management_api import mgmt

HW = "feature-device"


def check_feature(server: Server, key: str, feature: str, **params: Any) -> httpx.Response:
    query = {"product": "app", "license_key": key, "hardware_id": HW, "feature": feature}
    return server.api.call("GET", "/api/v4/check_license_feature", params={**query, **params})


def consume(
    server: Server, key: str, feature: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    fields = {"product": "app", "license_key": key, "hardware_id": HW, "feature": feature}
    return server.api.call(
        "POST", "/api/v4/add_feature_consumption", json={**fields, **body}, headers=headers
    )


@pytest.fixture
def key(server: Server) -> str:
    server.product("app")
    admin = mgmt(server)
    for feature in (
        {"code": "export", "name": "Export"},
        {"code": "pages", "name": "Pages", "feature_type": "consumption", "max_consumption": 5},
        {"code": "old", "name": "Old", "expiry_date": "2020-01-01"},
        {"code": "spare", "name": "Spare", "feature_type": "consumption", "max_consumption": 1},
    ):
        admin.ok(admin.post("/products/app/features", feature), 201)
    issued = admin.ok(
        admin.post(
            "/licenses",
            {"product": "app", "features": {"export": {}, "pages": {}, "old": {}}},
        ),
        201,
    )["items"][0]
    key: str = issued["license_key"]
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    return key


def test_a_feature_of_the_license_is_answered(server: Server, key: str) -> None:
    answer = check_feature(server, key, "export")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["code"], body["name"], body["feature_type"]) == ("export", "Export", "activation")
    assert body["license_id"] == int(server.sql("SELECT id FROM licenses")[0][0])
    assert error_of(check_feature(server, key, "spare")) == (400, "invalid_license_feature_code")
    assert error_of(check_feature(server, key, "nope")) == (400, "invalid_license_feature_code")
    assert error_of(check_feature(server, key, "old")) == (400, "license_feature_expired")
    assert check_feature(server, key, "old", include_expired_features="true").status_code == 200
    other = check_feature(server, key, "export", hardware_id="not-activated")
    assert error_of(other) == (400, "device_not_found")


def test_a_consumption_feature_counts_up_to_its_maximum(server: Server, key: str) -> None:
    first = consume(server, key, "pages", consumptions=3)
    assert first.status_code == 200, first.text
    assert (first.json()["total_consumptions"], first.json()["max_consumptions"]) == (3, 5)
    assert consume(server, key, "pages", consumptions=2).json()["total_consumptions"] == 5
    assert error_of(consume(server, key, "pages")) == (400, "feature_not_enough_consumptions")
    checked = check_feature(server, key, "pages").json()
    assert checked["total_consumptions"] == 5
    license_answer = server.api.check(product="app", license_key=key, hardware_id=HW).json()
    pages = [f for f in license_answer["product_features"] if f["code"] == "pages"]
    assert pages[0]["total_consumptions"] == 5
    history = server.sql("SELECT feature, consumptions, total_after FROM consumption_events")
    assert [tuple(row) for row in history] == [("pages", 3, 3), ("pages", 2, 5)]


def test_bad_feature_reports_are_refused_and_change_nothing(server: Server, key: str) -> None:
    consume(server, key, "pages", consumptions=1)
    before = server.sql("SELECT features FROM licenses")
    cases = [
        ({"feature": "export"}, "unsupported_product_feature"),  # not a consumption feature
        ({"feature": "nope"}, "unsupported_product_feature"),
        ({"feature": "spare"}, "invalid_license_feature_code"),  # not attached
        ({"feature": "pages", "consumptions": -1}, "negative_consumptions_not_allowed"),
        ({"feature": "pages", "consumptions": 1.5}, "validation_error"),
        ({"feature": "pages", "consumptions": 10}, "feature_not_enough_consumptions"),
        ({"feature": "pages", "hardware_id": "elsewhere"}, "device_not_found"),
    ]
    for body, code in cases:
        feature = body.pop("feature")
        assert error_of(consume(server, key, feature, **body)) == (400, code), (feature, body)
    assert server.sql("SELECT features FROM licenses") == before
    assert int(server.sql("SELECT count(*) FROM consumption_events")[0][0]) == 1


def test_a_retried_feature_report_counts_once(server: Server, key: str) -> None:
    headers = {"Idempotency-Key": "pages-1"}
    first = consume(server, key, "pages", headers=headers, consumptions=2)
    again = consume(server, key, "pages", headers=headers, consumptions=2)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.content == first.content
    assert check_feature(server, key, "pages").json()["total_consumptions"] == 2
