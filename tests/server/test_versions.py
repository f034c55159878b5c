"""Versions and installation files (v4 §3.18-3.19, §5.10), on SQLite and PostgreSQL: a device
that holds a seat sees the releases published before its license's maintenance end (else its
validity end), filtered by environment and channel, and the links of one; an inactive license,
an unknown version and a device without a seat are refused with their codes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from licensor.services import catalogue
from licensor.store import repository
from tests.server.support import Server, error_of

HW = "versions-device"


def get(server: Server, path: str, key: str, **params: Any) -> httpx.Response:
    query = {"product": "app", "license_key": key, "hardware_id": HW, **params}
    return server.api.call("GET", f"/api/v4/{path}", params=query)


@pytest.fixture
def key(server: Server) -> str:
    server.product("app")
    with server.db.transaction(write=True) as session:
        product = repository.product_by_code(session, server.company_id, "app")
        assert product is not None
        for version, when, extra in (
            ("1.0", datetime(2024, 1, 10, tzinfo=UTC), {"environment": "linux"}),
            ("1.0", datetime(2024, 1, 10, tzinfo=UTC), {"environment": "win"}),
            ("1.1", datetime(2024, 6, 1, tzinfo=UTC), {"environment": "linux", "channel": "prod"}),
            ("2.0", datetime(2025, 3, 1, tzinfo=UTC), {
                "environment": "linux", "channel": "prod", "hash_md5": "a" * 32, "size": "1048576",
                "full_link": "https://dl.example.com/app-2.0.tar.gz", "requires_version": "1.1",
                "eula_link": "https://example.com/eula", "release_notes_link": "https://example.com/2.0",
            }),
            ("3.0b1", datetime(2025, 9, 1, tzinfo=UTC), {"environment": "linux", "enabled": False}),
        ):  # fmt: skip
            catalogue.add_release(session, product, version, when, **extra)
    key = server.license(max_activations=2).license_key or ""
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    return key


def test_a_license_without_an_end_sees_every_release(server: Server, key: str) -> None:
    answer = get(server, "versions", key)
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {"version": "1.0", "release_date": "2024-01-10T00:00:00.000Z"},
        {"version": "1.1", "release_date": "2024-06-01T00:00:00.000Z"},
        {"version": "2.0", "release_date": "2025-03-01T00:00:00.000Z"},
    ]
    assert [v["version"] for v in get(server, "versions", key, env="win").json()] == ["1.0"]
    assert [v["version"] for v in get(server, "versions", key, channel="prod").json()] == [
        "1.1",
        "2.0",
    ]
    latest = get(server, "installation_file", key, env="linux").json()
    assert latest == {
        "installation_file": "https://dl.example.com/app-2.0.tar.gz",
        "version": "2.0",
        "environment": "linux",
        "hash_md5": "a" * 32,
        "eula_link": "https://example.com/eula",
        "release_notes_link": "https://example.com/2.0",
        "size": "1048576",
        "requires_version": "1.1",
        "channel": "prod",
        "release_date": "2025-03-01T00:00:00.000Z",
    }
    old = get(server, "installation_file", key, version="1.0", env="win").json()
    assert (old["version"], old["environment"], old["installation_file"]) == ("1.0", "win", None)


def test_releases_after_the_maintenance_or_validity_end_are_not_covered(
    server: Server, key: str
) -> None:
    server.sql(
        "UPDATE licenses SET enable_maintenance_period = true, maintenance_period = :t",
        t=datetime(2024, 12, 31, tzinfo=UTC),
    )
    assert [v["version"] for v in get(server, "versions", key).json()] == ["1.0", "1.1"]
    assert get(server, "installation_file", key, env="linux").json()["version"] == "1.1"
    assert error_of(get(server, "installation_file", key, version="2.0")) == (
        404,
        "version_not_found",
    )
    server.sql(
        "UPDATE licenses SET enable_maintenance_period = false, validity_period = :t",
        t=datetime(2024, 3, 1, tzinfo=UTC),
    )
    assert [v["version"] for v in get(server, "versions", key).json()] == ["1.0"]


def test_refusals_name_their_code(server: Server, key: str) -> None:
    unused = server.license().license_key or ""
    assert error_of(get(server, "versions", unused)) == (400, "active_license_required")
    assert error_of(get(server, "installation_file", unused)) == (400, "active_license_required")
    assert error_of(get(server, "versions", key, hardware_id="elsewhere")) == (
        400,
        "device_not_found",
    )
    assert error_of(get(server, "versions", "NOPE-NOPE")) == (400, "license_not_found")
    assert error_of(get(server, "versions", key, product="nope")) == (400, "unknown_product")
    assert error_of(get(server, "installation_file", key, version="9.9")) == (
        404,
        "version_not_found",
    )
    missing = server.api.call(
        "GET", "/api/v4/versions", params={"product": "app", "hardware_id": HW}
    )
    assert error_of(missing) == (400, "license_key_required")
    server.sql("UPDATE licenses SET enabled = false")
    assert error_of(get(server, "versions", key)) == (400, "license_not_enabled")
