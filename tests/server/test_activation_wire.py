"""The wire of ``POST /api/v4/activate_license`` and ``/deactivate_license`` (one
implementation: ``services/activation.py`` behind ``api/v4/activation.py``): golden answers,
byte for byte, for each case -- the same on SQLite and PostgreSQL --, the rows each writes, and
how the front runs (no ORM on the common path, the event loop, the write lock).

The golden answers live in ``golden/activation.json`` (see ``tests/server/golden.py``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from licensor.api.state import AppState
from licensor.api.v4.activation import ActivationFront
from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.protocol.signing import SignatureAlgorithm, compact_json, parse_licensor_signature
from licensor.services import catalogue, rate_limit
from licensor.services.auth import authenticate
from licensor.services.context import ServerKeys
from licensor.services.licensing import resolve_product
from licensor.store import changes
from tests.server.golden import NOW, assert_golden, golden_book
from tests.server.support import Api, Server, error_of, shared_keys_dir, start_server

HW = "b" * 64
OTHER = "c" * 64
GOLDEN = Path(__file__).parent / "golden" / "activation.json"
# What an activation or deactivation can write (licenses.updated_at is the wall clock's).
TABLES = {
    "licenses": "id",
    "devices": "id",
    "license_events": "id",
    "audit_log": "id",
    "license_releases": "id",
    "idempotency_keys": "id",
    "device_variables": "id",
    "license_users": "id",
    "rate_limit_counters": "bucket",
}
_FRONTS: dict[int, ActivationFront] = {}


def keys_of(server: Server) -> ServerKeys:
    return ServerKeys(server.keyring, server.master_key, server.settings)


def state_of(server: Server) -> AppState:
    state: AppState = server.client.app.state.licensor  # type: ignore[attr-defined]
    return state


def dump(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables an activation or deactivation writes."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for table, order in TABLES.items():
        found = session.execute(text(f"SELECT * FROM {table} ORDER BY {order}")).mappings()
        rows[table] = [
            {k: v for k, v in row.items() if not (table == "licenses" and k == "updated_at")}
            for row in found
        ]
    return rows


def current(server: Server) -> dict[str, list[dict[str, Any]]]:
    with server.db.transaction() as session:
        return dump(session)


def front(
    server: Server,
    endpoint: str,
    body: dict[str, Any] | bytes,
    *,
    now: datetime = NOW,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    idempotency_key: str | None = None,
    api: Api | None = None,
    client: str = "testclient",
) -> tuple[int, bytes, dict[str, str]]:
    """The front's answer at ``now`` (the request signed for ``now``; signature headers
    verified)."""
    api = api or server.api
    date = http_date(now)
    headers = {
        "date": date,
        "authorization": format_authorization(api.api_key, hmac_signature(api.shared_key, date)),
    }
    if algorithm == "ed25519":
        headers["licensor-accept-signature"] = "ed25519"
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    state = state_of(server)
    # one front per server, as in the application: from its second request on, PostgreSQL reads
    # the API key with the license (the company of a key already seen)
    layer = _FRONTS.get(id(state))
    if layer is None:
        layer = _FRONTS[id(state)] = ActivationFront(app=None, state=lambda: state)  # type: ignore[arg-type]
    raw = body if isinstance(body, bytes) else compact_json(body)
    status, content, answer_headers = layer.respond(
        state, f"/api/v4/{endpoint}_license", headers, raw, client, now=now
    )
    signed = layer.sign(state, algorithm, (status, content, answer_headers))[2]
    if algorithm == "ed25519":
        pairs = parse_licensor_signature(signed["Licensor-Signature"])
        server.public_keys.verify(
            content, pairs["signature"], kid=pairs["kid"], algorithm=algorithm
        )
    else:
        server.public_keys.verify(content, signed["LicenseSignature"], algorithm=algorithm)
    return status, content, answer_headers


def rich_setup(server: Server, now: datetime = NOW) -> str:
    """A product and license using every part of the answer and of the rules: custom fields,
    metadata with non-ASCII text, features, a customer, releases (the app_ver's and a later
    one), a version range, maintenance, a grace period, validity days counted from the first
    activation."""
    server.product(
        "app",
        custom_fields=[{"name": "seats", "default_value": "5"}, {"name": "tier"}],
        metadata={"ünï": "côdé ✓", "n": [1, 2.5, None]},
        version_spec=">=1.0,<3",
    )
    with server.db.transaction(write=True) as session:
        product = resolve_product(session, _caller(server, session), "app")
        catalogue.add_release(session, product, "1.0.0", now - timedelta(days=30))
        catalogue.add_release(session, product, "1.2.0", now - timedelta(days=2), channel="beta")
    license_ = server.license(
        license_type="subscription",
        validity_days=30,
        maintenance_period=now + timedelta(days=300),
        allow_grace_period=True,
        grace_period=24,
        customer_email="Buyer@Example.com",
        custom_fields={"tier": "gold"},
        metadata={"order": "Ω-17"},
        max_activations=3,
        license_key="RICH-GOLD-0001",
    )
    server.sql(
        "UPDATE products SET features = :f",
        f=json.dumps(
            [
                {"id": 1, "code": "pdf", "name": "PDF export", "feature_type": "activation"},
                {"id": 2, "code": "old", "name": "Old", "expiry_date": "2020-01-01"},
            ]
        ),
    )
    server.sql("UPDATE licenses SET features = :f", f=json.dumps({"pdf": {}, "old": {}}))
    assert license_.license_key is not None
    return license_.license_key


def _caller(server: Server, session: Session) -> Any:
    date = http_date()
    return authenticate(
        session,
        keys_of(server),
        authorization=format_authorization(
            server.api.api_key, hmac_signature(server.api.shared_key, date)
        ),
        date_value=date,
        now=datetime.now(UTC),
    )


def activation(key: str, hardware_id: str = HW, **fields: Any) -> dict[str, Any]:
    return {"product": "app", "license_key": key, "hardware_id": hardware_id, **fields}


FACTS = {
    "is_vm": False,
    "os_ver": "Linux 6",
    "hostname": "box",
    "app_ver": "1.2.0",
    "sdk_ver": "py-1",
    "mac_address": "00:11:22:33:44:55",
    "ip_local": "10.0.0.2",
}


def test_activations_and_deactivations_answer_the_golden_bytes(server: Server) -> None:
    key = rich_setup(server)
    with golden_book(GOLDEN) as book:
        status, content, _ = front(server, "activate", activation(key, **FACTS))
        first = assert_golden(book, "activation", status, content)
        assert first["times_activated"] == 1 and first["validity_period"] is not None
        assert first["customer"]["email"] == "buyer@example.com"
        assert [f["code"] for f in first["product_features"]] == ["pdf"]
        assert first["version"] == "1.2.0" and first["variables"] == []
        # a second device, a minute later, Ed25519: validity and first activation unchanged
        later = NOW + timedelta(minutes=1)
        status, content, _ = front(
            server,
            "activate",
            activation(key.lower(), OTHER, is_vm=True),
            now=later,
            algorithm="ed25519",
        )
        second = assert_golden(book, "activation, second device, ed25519", status, content)
        assert second["times_activated"] == 2
        assert second["validity_period"] == first["validity_period"]
        # its variables, then its deactivation
        tracked = server.api.call(
            "POST",
            "/api/v4/track_device_variables",
            json={**activation(key, OTHER), "variables": {"beta": 2, "alpha": "x", "Zeta": True}},
        )
        assert tracked.status_code == 200, tracked.text
        status, content, _ = front(server, "deactivate", activation(key, OTHER), now=later)
        assert_golden(book, "deactivation", status, content)
        # known again (inactive, with variables), with new facts and variables of the request:
        # a new activation, variables merged, facts the request gives replace the recorded ones
        status, content, _ = front(
            server,
            "activate",
            activation(key, OTHER, os_ver="14", variables={"alpha": "y", "new": 1}),
            now=later,
        )
        again = assert_golden(book, "activation of a known device, with variables", status, content)
        assert [(v["variable"], v["value"]) for v in again["variables"]] == [
            ("Zeta", "true"),
            ("alpha", "y"),
            ("beta", "2"),
            ("new", "1"),
        ]
    rows = current(server)
    assert [e["event"] for e in rows["license_events"]] == [
        "activation",
        "activation",
        "deactivation",
        "activation",
    ]
    assert [r["method"] for r in rows["license_releases"]] == ["online"]
    assert [a["action"] for a in rows["audit_log"]] == [
        "device.activate",
        "device.activate",
        "device.deactivate",
        "device.activate",
    ]
    device = rows["devices"][1]
    assert (device["os_ver"], device["is_vm"], device["activation_count"]) == ("14", False, 2)


def test_transfers_are_counted_and_refused_past_their_limit(server: Server) -> None:
    server.product("app")
    license_ = server.license(max_activations=1, max_transfers=1, customer_email="x@y.example")
    key = license_.license_key
    assert key is not None
    for hardware_id in ("dev-a", "dev-b"):
        assert front(server, "activate", activation(key, hardware_id))[0] == 200
        assert front(server, "deactivate", activation(key, hardware_id))[0] == 200
    assert json.loads(front(server, "activate", activation(key, "dev-c"))[1])["code"] == (
        "license_transferred_max_times"
    )
    rows = current(server)
    assert rows["licenses"][0]["transfer_count"] == 1
    assert [e["event"] for e in rows["license_events"]] == [
        "activation",
        "deactivation",
        "activation",
        "transfer",
        "deactivation",
    ]


def test_idempotency_keys_are_recorded_and_replayed_byte_for_byte(server: Server) -> None:
    key = rich_setup(server)
    body = activation(key, app_ver="1.0.0")
    with golden_book(GOLDEN) as book:
        status, first, _ = front(server, "activate", body, idempotency_key="retry-1")
        parsed = assert_golden(book, "activation with an Idempotency-Key", status, first)
    record = current(server)["idempotency_keys"]
    assert len(record) == 1 and bytes(record[0]["body"]) == first
    before = current(server)
    # the retry, even a day later and signed Ed25519: the first answer's very bytes
    status, replay, headers = front(
        server,
        "activate",
        body,
        idempotency_key="retry-1",
        now=NOW + timedelta(hours=20),
        algorithm="ed25519",
    )
    assert (status, replay, headers) == (200, first, {"Idempotent-Replayed": "true"})
    assert current(server) == before
    # over HTTP too
    assert parsed["times_activated"] == 1
    # the same key for another request
    status, content, _ = front(
        server, "activate", activation(key, OTHER), idempotency_key="retry-1"
    )
    assert (status, json.loads(content)["code"]) == (422, "idempotency_key_reused")
    assert current(server) == before
    # past its time to live the record is forgotten and the request runs
    late = NOW + timedelta(hours=server.settings.idempotency_ttl_hours + 1)
    status, content, _ = front(
        server, "activate", activation(key, OTHER), idempotency_key="retry-1", now=late
    )
    assert status == 200 and json.loads(content)["times_activated"] == 2
    assert len(current(server)["idempotency_keys"]) == 1


def test_user_based_licenses_activate_with_the_users_password(server: Server) -> None:
    server.product("users", authorization_method="user")
    server.license(
        product="users", user_email="u@example.com", user_password="password-1", license_key="U-1"
    )
    body = {"product": "users", "username": " U@Example.com ", "hardware_id": HW}
    with golden_book(GOLDEN) as book:
        status, content, _ = front(server, "activate", {**body, "password": "password-1"})
        answer = assert_golden(book, "activation of a license user", status, content)
        assert answer["user"]["email"] == "u@example.com"
        for label, request, code in [
            ("no password", body, "missing_parameters"),
            ("wrong password", {**body, "password": "nope"}, "invalid_credentials"),
            ("no username", {"product": "users", "hardware_id": OTHER}, None),
            ("unknown user", {**body, "username": "x@example.com", "password": "p"}, None),
        ]:
            status, content, _ = front(server, "activate", {**request, "hardware_id": OTHER})
            found = assert_golden(book, f"user-based refusal: {label}", status, content)
            assert code is None or found["code"] == code
    assert current(server)["license_users"][0]["total_activations"] == 1
    # its deactivation frees the user's activation too (no password needed)
    status, content, _ = front(server, "deactivate", body)
    assert (status, content) == (200, b'"license_deactivated"')
    assert current(server)["license_users"][0]["total_activations"] == 0


def test_every_refusal_is_named_in_order_and_writes_nothing(server: Server) -> None:
    server.product("app", version_spec=">=1.0")
    server.product("users", authorization_method="user")
    server.product("other")
    server.product("gone")
    server.sql("UPDATE products SET archived = :t WHERE short_code = 'gone'", t=True)

    def key(**fields: Any) -> str:
        found = server.license(**fields).license_key
        assert found is not None
        return found

    active = key(max_activations=2)
    assert front(server, "activate", activation(active))[0] == 200
    inactive = key(max_activations=2)
    assert front(server, "activate", activation(inactive))[0] == 200
    assert front(server, "deactivate", activation(inactive))[0] == 200
    per_system = key(max_activations=2)
    assert front(server, "activate", activation(per_system))[0] == 200
    assert front(server, "deactivate", activation(per_system))[0] == 200
    server.sql(
        "UPDATE licenses SET max_activations_per_system = 1 WHERE license_key = :k", k=per_system
    )
    full_seat = key(max_activations=1)
    assert front(server, "activate", activation(full_seat, OTHER))[0] == 200
    no_transfer = key(max_activations=1, max_transfers=-1)
    assert front(server, "activate", activation(no_transfer, OTHER))[0] == 200
    assert front(server, "deactivate", activation(no_transfer, OTHER))[0] == 200
    with server.db.transaction(write=True) as session:
        catalogue.blacklist_device(session, server.company_id, "banned")
    read_only = server.api_key(read_only=True)
    other_product_only = server.api_key(product_codes=["other"])
    revoked = server.api_key()
    server.sql("UPDATE api_keys SET revoked = :t WHERE api_key = :k", t=True, k=revoked.api_key)
    plain = key()
    limited = key(max_activations=2)
    server.sql("UPDATE licenses SET max_release_count = 0 WHERE license_key = :k", k=limited)
    assert front(server, "activate", activation(limited))[0] == 200

    # (label, endpoint, body, options, the expected error code)
    cases: list[tuple[str, str, dict[str, Any] | bytes, dict[str, Any], str]] = [
        ("device already active", "activate", activation(active), {}, "license_device_exists"),
        ("no seat left", "activate", activation(full_seat), {}, "license_activated_max_times"),
        (
            "activations per system",
            "activate",
            activation(per_system),
            {},
            "license_exceeded_max_activations_per_system",
        ),
        (
            "transfer prevented",
            "activate",
            activation(no_transfer),
            {},
            "license_transferred_max_times",
        ),
        ("blacklisted", "activate", activation(plain, "banned"), {}, "blacklisted"),
        (
            "version outside the range",
            "activate",
            activation(plain, app_ver="0.9"),
            {},
            "product_version_not_supported",
        ),
        (
            "vm refused",
            "activate",
            activation(key(prevent_vm=True), is_vm=True),
            {},
            "vm_not_allowed",
        ),
        ("disabled", "activate", activation(key(enabled=False)), {}, "license_not_enabled"),
        (
            "expired",
            "activate",
            activation(key(license_type="time-limited", validity_period=NOW - timedelta(days=1))),
            {},
            "license_expired",
        ),
        (
            "not started",
            "activate",
            activation(key(start_date=NOW + timedelta(days=3))),
            {},
            "license_start_date_error",
        ),
        ("unknown key", "activate", activation("NOPE-NOPE"), {}, "license_not_found"),
        ("no key", "activate", {"product": "app", "hardware_id": HW}, {}, "license_key_required"),
        (
            "unknown product",
            "activate",
            {**activation(plain), "product": "nope"},
            {},
            "unknown_product",
        ),
        (
            "archived product",
            "activate",
            {**activation(plain), "product": "gone"},
            {},
            "archived_product",
        ),
        (
            "pinned license id",
            "activate",
            activation(plain, license_id=10**9),
            {},
            "license_not_found",
        ),
        ("read-only key", "activate", activation(plain), {"api": read_only}, "read_only_api_key"),
        (
            "read-only key before an unknown product",
            "deactivate",
            {**activation(plain), "product": "nope"},
            {"api": read_only},
            "read_only_api_key",
        ),
        (
            "product not allowed",
            "activate",
            activation(plain),
            {"api": other_product_only},
            "api_key_product_not_allowed",
        ),
        ("revoked key", "activate", activation(plain), {"api": revoked}, "revoked_api_key"),
        (
            "revoked key before a broken body",
            "activate",
            b"{",
            {"api": revoked},
            "revoked_api_key",
        ),
        (
            "wrong shared key",
            "activate",
            activation(plain),
            {"api": Api(server.client, server.public_keys, server.api.api_key, "wrong")},
            "signature_mismatch",
        ),
        (
            "unknown api key",
            "activate",
            activation(plain),
            {"api": Api(server.client, server.public_keys, "nope", "wrong")},
            "invalid_api_key",
        ),
        ("empty body", "activate", b"", {}, "missing_parameters"),
        ("broken json", "activate", b"{", {}, "invalid_json"),
        ("not an object", "activate", b"[]", {}, "validation_error"),
        (
            "no hardware id",
            "activate",
            {"product": "app", "license_key": plain},
            {},
            "missing_hardware_id",
        ),
        (
            "wrong type",
            "activate",
            {**activation(plain), "is_vm": "yes"},
            {},
            "validation_error",
        ),
        (
            "bad Idempotency-Key",
            "activate",
            activation(plain),
            {"idempotency_key": ""},
            "validation_error",
        ),
        (
            "user-based product without a username",
            "activate",
            {"product": "users", "license_key": plain, "hardware_id": HW},
            {},
            "license_key_or_license_user_required",
        ),
        ("unknown device", "deactivate", activation(active, "nowhere"), {}, "device_not_found"),
        ("inactive device", "deactivate", activation(inactive), {}, "license_not_active"),
        ("not activated", "deactivate", activation(plain), {}, "license_not_active"),
        (
            "release limit",
            "deactivate",
            activation(limited),
            {},
            "license_exceeded_max_releases",
        ),
    ]
    with golden_book(GOLDEN) as book:
        for label, endpoint, body, options, expected in cases:
            before = current(server)
            status, content, _ = front(server, endpoint, body, **options)
            found = assert_golden(book, f"refusal: {label}", status, content)
            assert found["code"] == expected, label
            after = current(server)
            counters = before.pop("rate_limit_counters"), after.pop("rate_limit_counters")
            assert after == before, label
            # only a wrong guess is counted (services/rate_limit.py)
            assert (counters[0] != counters[1]) == (expected in rate_limit.COUNTED), label
    # a remembered company that is wrong for a key (PostgreSQL reads the key with the
    # license): the key is read again, the request answered
    layer = _FRONTS[id(state_of(server))]
    if not server.db.is_sqlite:
        assert layer._companies[server.api.api_key] == server.company_id
        layer._companies[server.api.api_key] = server.company_id + 1000
        assert front(server, "activate", activation(plain, OTHER))[0] == 200
        layer._companies[server.api.api_key] = server.company_id


def test_a_deactivation_code_is_checked_when_the_product_asks_for_one(server: Server) -> None:
    server.product("app")
    server.sql("UPDATE products SET release_requires_deactivation_code = :t", t=True)
    key = server.license(max_activations=2).license_key
    assert key is not None
    assert front(server, "activate", activation(key))[0] == 200
    before = current(server)
    status, content, _ = front(server, "deactivate", activation(key))
    assert (status, json.loads(content)["code"]) == (400, "wrong_deactivation_verification_code")
    assert current(server) == before


@contextmanager
def orm_statements(server: Server) -> Iterator[list[str]]:
    """Statements run through the ORM's engines (the activation statements use neither)."""
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    db = state_of(server).db
    engines = {db.read_engine, db.write_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


def test_over_http_no_activation_or_refusal_goes_through_the_orm(
    server: Server,
) -> None:
    server.product("app")
    license_ = server.license(max_activations=1)
    key = license_.license_key
    assert key is not None
    for algorithm in ({}, {"Licensor-Accept-Signature": "ed25519"}):
        with orm_statements(server) as statements:
            done = server.api.call(
                "POST", "/api/v4/activate_license", json=activation(key), headers=algorithm
            )
            assert done.status_code == 200, done.text
            assert done.headers["content-type"] == "application/json"
            assert int(done.headers["content-length"]) == len(done.content)
            assert done.json()["times_activated"] == 1
            released = server.api.call(
                "POST", "/api/v4/deactivate_license/", json=activation(key), headers=algorithm
            )
            assert released.json() == "license_deactivated"
            assert statements == []
    assert server.api.activate(**activation(key)).status_code == 200
    with orm_statements(server) as statements:
        again = server.api.activate(**activation(key))
        assert error_of(again) == (409, "license_device_exists")
        assert error_of(server.api.deactivate(**activation(key, OTHER))) == (
            400,
            "device_not_found",
        )
        assert statements == []
        # a refusal that reveals a wrong guess is counted (the rate limits' own write)
        assert error_of(server.api.activate(**activation("NOPE-NOPE")))[1] == "license_not_found"
        assert statements
    broken = server.api.call(
        "POST",
        "/api/v4/activate_license",
        content=b'{"product": "app", ',
        headers={"Content-Type": "application/json"},
    )
    assert error_of(broken)[1] == "invalid_json"
    big = server.api.call(
        "POST",
        "/api/v4/activate_license",
        content=b"{" + b" " * server.settings.max_body_bytes + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert error_of(big) == (413, "payload_too_large")
    # a body without Content-Length (chunked) is answered by the route, the same way
    assert server.api.deactivate(**activation(key)).status_code == 200
    chunked = server.api.call(
        "POST",
        "/api/v4/activate_license",
        content=iter([compact_json(activation(key))]),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 200, chunked.text
    assert "content-length" not in chunked.request.headers
    assert chunked.json()["times_activated"] == 1
    assert error_of(
        server.api.call(
            "POST",
            "/api/v4/activate_license",
            content=iter([compact_json(activation(key))]),
            headers={"Content-Type": "application/json"},
        )
    ) == (409, "license_device_exists")


def test_a_client_over_its_failure_limit_is_refused_by_the_full_endpoint(
    database_url: str, tmp_path: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for server in start_server(
        database_url,
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        rate_limit_client_failures=2,
    ):
        server.product("app")
        license_ = server.license(allow_unlimited_activations=True)
        key = license_.license_key
        assert key is not None
        assert server.api.activate(**activation(key)).status_code == 200
        for _ in range(2):
            assert error_of(server.api.activate(**activation("NOPE-NOPE"))) == (
                400,
                "license_not_found",
            )
        before = current(server)
        now = datetime.now(UTC)
        for endpoint in ("activate", "deactivate"):
            status, content, _ = front(server, endpoint, activation(key, OTHER), now=now)
            assert (status, json.loads(content)["code"]) == (429, "too_many_requests")
        assert current(server) == before
        refused = server.api.activate(**activation(key, OTHER))
        assert error_of(refused) == (429, "too_many_requests")
        assert refused.headers["Retry-After"]
        # another client address is not refused
        assert (
            front(server, "activate", activation(key, OTHER), now=now, client="10.1.1.1")[0] == 200
        )


def test_with_the_front_layer_off_the_routes_answer_the_same_way(
    database_url: str, tmp_path: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for server in start_server(
        database_url,
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        fast_activation=False,
    ):
        server.product("app")
        license_ = server.license()
        key = license_.license_key
        assert key is not None
        assert not any(
            type(m.cls).__name__ == "type" and m.cls.__name__ == "ActivationFront"
            for m in server.client.app.user_middleware  # type: ignore[attr-defined]
        )
        done = server.api.activate(**activation(key))
        assert done.status_code == 200 and done.json()["times_activated"] == 1
        assert error_of(server.api.activate(**activation(key))) == (409, "license_device_exists")
        assert server.api.deactivate(**activation(key)).json() == "license_deactivated"


def test_sqlite_held_by_another_writer_is_waited_for_off_the_event_loop(
    sqlite_server: Server,
) -> None:
    server = sqlite_server
    server.product("app")
    license_ = server.license(allow_unlimited_activations=True)
    key = license_.license_key
    assert key is not None
    held = threading.Event()
    release = threading.Event()

    def hold_the_write_lock() -> None:
        with server.db.transaction(write=True) as session:  # BEGIN IMMEDIATE
            session.execute(text("UPDATE companies SET name = name"))
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    assert held.wait(10)
    answers: list[Any] = []
    activating = threading.Thread(
        target=lambda: answers.append(server.api.activate(**activation(key)))
    )
    with orm_statements(server) as statements:
        activating.start()
        try:
            time.sleep(0.3)
            assert answers == []  # waiting for the lock ...
            started = time.monotonic()
            keys = server.client.get("/api/v4/public_keys")  # ... off the event loop
            assert keys.status_code == 200 and time.monotonic() - started < 1
        finally:
            release.set()
            holder.join()
            activating.join(10)
        assert statements == []
    assert len(answers) == 1 and answers[0].status_code == 200, answers
    assert current(server)["licenses"][0]["times_activated"] == 1


@pytest.mark.parametrize("threads", [0, 2])
def test_on_the_event_loop_and_in_threads_alike(
    database_url: str, tmp_path: Any, tmp_path_factory: pytest.TempPathFactory, threads: int
) -> None:
    for server in start_server(
        database_url,
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        fast_activation_threads=threads,
    ):
        server.product("app")
        license_ = server.license(max_activations=1, max_transfers=1)
        key = license_.license_key
        assert key is not None
        with orm_statements(server) as statements:
            for hardware_id in ("one", "two"):
                done = server.api.activate(**activation(key, hardware_id))
                assert done.status_code == 200, done.text
                released = server.api.deactivate(**activation(key, hardware_id))
                assert released.json() == "license_deactivated"
            assert statements == []
        refused = server.api.activate(**activation(key, "three"))
        assert error_of(refused) == (400, "license_transferred_max_times")
        rows = current(server)["licenses"][0]
        assert (rows["times_activated"], rows["transfer_count"]) == (0, 1)


def test_a_check_right_after_a_deactivation_is_not_served_from_memory(server: Server) -> None:
    """The worker's kept check answers (api/v4/check.py) see the activations' commits at
    once."""
    server.product("app")
    license_ = server.license(max_activations=2)
    key = license_.license_key
    assert key is not None
    assert server.api.activate(**activation(key)).status_code == 200
    for _ in range(3):  # kept after the first
        checked = server.api.check(product="app", license_key=key, hardware_id=HW)
        assert checked.status_code == 200 and checked.json()["times_activated"] == 1
    commits = changes._local_commits
    with orm_statements(server) as statements:
        assert server.api.deactivate(**activation(key)).json() == "license_deactivated"
        assert server.api.activate(**activation(key, OTHER)).status_code == 200
        assert statements == []
    if not server.db.is_sqlite:  # counted at once, as the ORM engine's commits are
        assert changes._local_commits == commits + 2
    assert error_of(server.api.check(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "device_not_found",
    )
    again = server.api.check(product="app", license_key=key, hardware_id=OTHER)
    assert again.status_code == 200 and again.json()["times_activated"] == 1
