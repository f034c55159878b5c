"""The fast activation / deactivation path (api/v4/fast_activation.py) answers byte for byte
what the full endpoint answers and writes the same rows, on SQLite and PostgreSQL; every other
case it hands to the full endpoint with nothing written."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from licensor.api.state import AppState
from licensor.api.v4 import schemas
from licensor.api.v4.endpoints import device_info, license_ref, parse_json, variables_as_text
from licensor.api.v4.fast_activation import FastActivation
from licensor.core.errors import LicensorError
from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.protocol.signing import SignatureAlgorithm, compact_json, parse_licensor_signature
from licensor.services import audit, catalogue, licensing
from licensor.services.auth import authenticate
from licensor.services.context import ServerKeys
from licensor.store import changes
from tests.server.support import Api, Server, error_of, shared_keys_dir, start_server

HW = "b" * 64
OTHER = "c" * 64
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
_LAYERS: dict[int, FastActivation] = {}
SEQUENCES = ("devices", "license_events", "audit_log", "license_releases", "idempotency_keys")


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


def reset_sequences(server: Server) -> None:
    """After a rolled-back transaction: PostgreSQL does not roll its sequences back, SQLite
    reuses the ids; make the next ids the same on both (max + 1)."""
    if server.db.is_sqlite:
        return
    for table in SEQUENCES:
        server.sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
        )


class _Rollback(Exception):
    pass


def full_path(
    server: Server,
    endpoint: str,
    body: dict[str, Any],
    *,
    now: datetime,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    idempotency_key: str | None = None,
    api: Api | None = None,
) -> tuple[bytes | str, dict[str, list[dict[str, Any]]]]:
    """The full endpoint's use case at ``now``: (answer bytes, rows after it) or (error code,
    {}); rolled back, so the fast path can then run on the same data."""
    api = api or server.api
    date = http_date(now)
    authorization = format_authorization(api.api_key, hmac_signature(api.shared_key, date))
    keys = keys_of(server)
    outcome: tuple[bytes, dict[str, list[dict[str, Any]]]] | None = None
    try:
        with server.db.transaction(write=True) as session:
            caller = authenticate(
                session, keys, authorization=authorization, date_value=date, now=now
            )
            if endpoint == "activate":
                data = parse_json(compact_json(body), schemas.ActivateRequest)
                answer = licensing.activate(
                    session,
                    caller,
                    keys,
                    license_ref(data, data.password),
                    device_info(data),
                    variables=variables_as_text(data.variables),
                    now=now,
                    algorithm=algorithm,
                    idempotency_key=idempotency_key,
                    request_hash=licensing.request_fingerprint(
                        "activate_license", data.model_dump(mode="json")
                    ),
                )
            else:
                deactivation = parse_json(compact_json(body), schemas.DeactivateRequest)
                answer = licensing.deactivate(
                    session, caller, license_ref(deactivation, deactivation.password), now=now
                )
            session.flush()
            outcome = compact_json(answer.body), dump(session)
            raise _Rollback
    except _Rollback:
        pass
    except LicensorError as exc:
        return exc.code, {}
    finally:
        reset_sequences(server)
    assert outcome is not None
    return outcome


def fast_path(
    server: Server,
    endpoint: str,
    body: dict[str, Any] | bytes,
    *,
    now: datetime,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    idempotency_key: str | None = None,
    api: Api | None = None,
    client: str = "testclient",
) -> bytes | None:
    """The fast path's answer bytes at ``now`` (signature headers verified), or ``None``."""
    api = api or server.api
    date = http_date(now)
    headers = [
        (b"date", date.encode()),
        (
            b"authorization",
            format_authorization(api.api_key, hmac_signature(api.shared_key, date)).encode(),
        ),
        (b"content-type", b"application/json"),
    ]
    if algorithm == "ed25519":
        headers.append((b"licensor-accept-signature", b"ed25519"))
    if idempotency_key is not None:
        headers.append((b"idempotency-key", idempotency_key.encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/api/v4/{endpoint}_license",
        "headers": headers,
        "client": (client, 50000),
    }
    state = state_of(server)
    # one layer per server, as in the application: from its second request on, PostgreSQL reads
    # the API key with the license (the company of a key already seen)
    layer = _LAYERS.get(id(state))
    if layer is None:
        layer = _LAYERS[id(state)] = FastActivation(app=None, state=lambda: state)  # type: ignore[arg-type]
    raw = body if isinstance(body, bytes) else compact_json(body)
    answer = layer.answer(state, scope, raw, now=now)
    if answer is None:
        return None
    status, content, signed = answer
    assert status == 200
    if algorithm == "ed25519":
        pairs = parse_licensor_signature(signed["Licensor-Signature"])
        server.public_keys.verify(
            content, pairs["signature"], kid=pairs["kid"], algorithm=algorithm
        )
    else:
        server.public_keys.verify(content, signed["LicenseSignature"], algorithm=algorithm)
    return content


def assert_same(
    server: Server, endpoint: str, body: dict[str, Any], *, now: datetime, **options: Any
) -> dict[str, Any] | str:
    """Both paths on the same data at the same instant: same bytes, same rows."""
    full, full_rows = full_path(server, endpoint, body, now=now, **options)
    assert isinstance(full, bytes), full
    fast = fast_path(server, endpoint, body, now=now, **options)
    assert fast is not None, "the fast path declined"
    assert fast == full
    assert current(server) == full_rows
    parsed: dict[str, Any] | str = json.loads(fast)
    return parsed


def rich_setup(server: Server, now: datetime) -> str:
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
        product = licensing.resolve_product(session, _caller(server, session), "app")
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


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519"])
def test_activation_is_byte_identical_and_writes_the_same_rows(
    server: Server, algorithm: SignatureAlgorithm
) -> None:
    now = datetime.now(UTC)
    key = rich_setup(server, now)
    facts = {
        "is_vm": False,
        "os_ver": "Linux 6",
        "hostname": "box",
        "app_ver": "1.2.0",
        "sdk_ver": "py-1",
        "mac_address": "00:11:22:33:44:55",
        "ip_local": "10.0.0.2",
    }
    first = assert_same(server, "activate", activation(key, **facts), now=now, algorithm=algorithm)
    assert isinstance(first, dict)
    assert first["times_activated"] == 1 and first["validity_period"] is not None
    assert first["customer"]["email"] == "buyer@example.com"
    assert [f["code"] for f in first["product_features"]] == ["pdf"]
    assert first["version"] == "1.2.0" and first["variables"] == []
    # a second device, a minute later: the validity and first activation stay as they were
    later = now + timedelta(minutes=1)
    second = assert_same(
        server,
        "activate",
        activation(key.lower(), OTHER, is_vm=True),
        now=later,
        algorithm=algorithm,
    )
    assert isinstance(second, dict)
    assert second["times_activated"] == 2
    assert second["validity_period"] == first["validity_period"]


def test_deactivation_and_transfers_match_the_full_path(server: Server) -> None:
    server.product("app")
    license_ = server.license(max_activations=1, max_transfers=2, customer_email="x@y.example")
    key = license_.license_key
    assert key is not None
    now = datetime.now(UTC)
    assert_same(server, "activate", activation(key, "dev-a", hostname="pc"), now=now)
    tracked = server.api.call(
        "POST",
        "/api/v4/track_device_variables",
        json={**activation(key, "dev-a"), "variables": {"beta": 2, "alpha": "x", "Zeta": True}},
    )
    assert tracked.status_code == 200, tracked.text
    done = assert_same(server, "deactivate", activation(key, "dev-a"), now=now)
    assert done == "license_deactivated"
    # another device after a deactivation counts a transfer (two events), A -> B -> A twice
    assert_same(server, "activate", activation(key, "dev-b"), now=now)
    assert_same(server, "deactivate", activation(key, "dev-b"), now=now)
    rows = current(server)
    assert rows["licenses"][0]["transfer_count"] == 1
    assert [e["event"] for e in rows["license_events"]] == [
        "activation",
        "deactivation",
        "activation",
        "transfer",
        "deactivation",
    ]
    assert [r["method"] for r in rows["license_releases"]] == ["online", "online"]
    assert [a["action"] for a in rows["audit_log"]] == [
        "device.activate",
        "device.deactivate",
        "device.activate",
        "device.deactivate",
    ]
    # dev-a is known (inactive, with variables): a new activation, with its variables and new
    # device facts, that counts a transfer
    again = assert_same(
        server, "activate", activation(key, "dev-a", os_ver="14", is_vm=True), now=now
    )
    assert isinstance(again, dict) and again["transfer_count"] == 2
    assert [v["variable"] for v in again["variables"]] == ["Zeta", "alpha", "beta"]
    device = current(server)["devices"][0]
    assert (device["os_ver"], device["hostname"], device["activation_count"]) == ("14", "pc", 2)


def test_idempotency_keys_are_recorded_like_the_full_path_and_replayed_by_it(
    server: Server,
) -> None:
    now = datetime.now(UTC)
    key = rich_setup(server, now)
    body = activation(key, app_ver="1.0.0")
    first = assert_same(server, "activate", body, now=now, idempotency_key="retry-1")
    assert isinstance(first, dict)
    record = current(server)["idempotency_keys"]
    assert len(record) == 1 and bytes(record[0]["body"]) == compact_json(first)
    # the retry: the fast path hands it on, the full endpoint replays the first answer
    before = current(server)
    assert fast_path(server, "activate", body, now=now, idempotency_key="retry-1") is None
    assert current(server) == before
    replay = server.api.call(
        "POST", "/api/v4/activate_license", json=body, headers={"Idempotency-Key": "retry-1"}
    )
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == compact_json(first)
    assert current(server) == before
    # the same key for another request: the full endpoint refuses it
    other = activation(key, OTHER)
    assert fast_path(server, "activate", other, now=now, idempotency_key="retry-1") is None
    reused = server.api.call(
        "POST", "/api/v4/activate_license", json=other, headers={"Idempotency-Key": "retry-1"}
    )
    assert error_of(reused) == (422, "idempotency_key_reused")


def test_cases_the_fast_path_hands_to_the_full_endpoint(server: Server) -> None:
    now = datetime.now(UTC)
    server.product("app", version_spec=">=1.0")
    server.product("users", authorization_method="user")
    server.product("other")

    def key(**fields: Any) -> str:
        found = server.license(**fields).license_key
        assert found is not None
        return found

    active = key(max_activations=2)
    assert fast_path(server, "activate", activation(active), now=now) is not None
    inactive = key(max_activations=2)
    assert fast_path(server, "activate", activation(inactive), now=now) is not None
    assert fast_path(server, "deactivate", activation(inactive), now=now) is not None
    per_system = key(max_activations=2)
    assert fast_path(server, "activate", activation(per_system), now=now) is not None
    assert fast_path(server, "deactivate", activation(per_system), now=now) is not None
    server.sql(
        "UPDATE licenses SET max_activations_per_system = 1 WHERE license_key = :k", k=per_system
    )
    full_seat = key(max_activations=1)
    assert fast_path(server, "activate", activation(full_seat, OTHER), now=now) is not None
    no_transfer = key(max_activations=1, max_transfers=-1)
    assert fast_path(server, "activate", activation(no_transfer, OTHER), now=now) is not None
    assert fast_path(server, "deactivate", activation(no_transfer, OTHER), now=now) is not None
    with server.db.transaction(write=True) as session:
        catalogue.blacklist_device(session, server.company_id, "banned")
    read_only = server.api_key(read_only=True)
    other_product_only = server.api_key(product_codes=["other"])
    plain = key()
    server.license(product="users", user_email="u@example.com", user_password="password-1")

    # (label, endpoint, body, options, the full path's answer: an error code or "ok")
    cases: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
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
            activation(key(license_type="time-limited", validity_period=now - timedelta(days=1))),
            {},
            "license_expired",
        ),
        (
            "not started",
            "activate",
            activation(key(start_date=now + timedelta(days=3))),
            {},
            "license_start_date_error",
        ),
        ("unknown key", "activate", activation("NOPE-NOPE"), {}, "license_not_found"),
        (
            "unknown product",
            "activate",
            {**activation(plain), "product": "nope"},
            {},
            "unknown_product",
        ),
        ("variables", "activate", activation(plain, variables={"a": 1}), {}, "ok"),
        (
            "pinned license id",
            "activate",
            activation(plain, license_id=10**9),
            {},
            "license_not_found",
        ),
        ("username too", "activate", activation(plain, username="u@example.com"), {}, "ok"),
        ("read-only key", "activate", activation(plain), {"api": read_only}, "read_only_api_key"),
        (
            "product not allowed",
            "activate",
            activation(plain),
            {"api": other_product_only},
            "api_key_product_not_allowed",
        ),
        (
            "wrong shared key",
            "activate",
            activation(plain),
            {"api": Api(server.client, server.public_keys, server.api.api_key, "wrong")},
            "signature_mismatch",
        ),
        (
            "user-based product",
            "activate",
            {
                "product": "users",
                "username": "u@example.com",
                "password": "password-1",
                "hardware_id": HW,
            },
            {},
            "ok",
        ),
        ("unknown device", "deactivate", activation(active, "nowhere"), {}, "device_not_found"),
        ("inactive device", "deactivate", activation(inactive), {}, "license_not_active"),
        ("not activated", "deactivate", activation(plain), {}, "license_not_active"),
    ]
    for label, endpoint, body, options, expected in cases:
        before = current(server)
        assert fast_path(server, endpoint, body, now=now, **options) is None, label
        assert current(server) == before, label
        full, _ = full_path(server, endpoint, body, now=now, **options)
        assert (full if isinstance(full, str) else "ok") == expected, label

    # a key revoked after it was seen (PostgreSQL: its row now comes with the license's), and a
    # wrong remembered company for a key: the full path
    server.sql("UPDATE api_keys SET revoked = :t WHERE api_key = :k", t=True, k=read_only.api_key)
    assert fast_path(server, "activate", activation(plain), now=now, api=read_only) is None
    layer = _LAYERS[id(state_of(server))]
    if not server.db.is_sqlite:
        assert layer._companies[server.api.api_key] == server.company_id
        layer._companies[server.api.api_key] = server.company_id + 1000
        before = current(server)
        assert fast_path(server, "activate", activation(plain), now=now) is None
        assert current(server) == before
        layer._companies[server.api.api_key] = server.company_id

    # bodies the full endpoint names the problem of
    for raw in (
        b"",
        b"{",
        b"[]",
        b'{"product": "app"}',
        compact_json({**activation(plain), "is_vm": "yes"}),
    ):
        assert fast_path(server, "activate", raw, now=now) is None
    # single sign-on fields
    assert (
        fast_path(server, "activate", activation(plain, customer_account_code="acme"), now=now)
        is None
    )
    # an invalid Idempotency-Key header
    assert fast_path(server, "activate", activation(plain), now=now, idempotency_key="") is None

    # release limits and deactivation codes need the full path
    limited = key(max_activations=2)
    assert fast_path(server, "activate", activation(limited), now=now) is not None
    server.sql("UPDATE licenses SET max_release_count = 5 WHERE license_key = :k", k=limited)
    assert fast_path(server, "deactivate", activation(limited), now=now) is None
    full, _ = full_path(server, "deactivate", activation(limited), now=now)
    assert isinstance(full, bytes)
    server.sql("UPDATE licenses SET max_release_count = NULL WHERE license_key = :k", k=limited)
    server.sql(
        "UPDATE products SET release_requires_deactivation_code = :t WHERE short_code = 'app'",
        t=True,
    )
    assert fast_path(server, "deactivate", activation(limited), now=now) is None
    full, _ = full_path(server, "deactivate", activation(limited), now=now)
    assert full == "wrong_deactivation_verification_code"
    server.sql(
        "UPDATE products SET release_requires_deactivation_code = :f WHERE short_code = 'app'",
        f=False,
    )
    assert fast_path(server, "deactivate", activation(limited), now=now) is not None

    # a listener on the audit log needs the ORM session: the full path
    audit._listeners.append(lambda _session, _change: None)
    try:
        assert fast_path(server, "activate", activation(plain, OTHER), now=now) is None
    finally:
        audit._listeners.pop()
    assert fast_path(server, "activate", activation(plain, OTHER), now=now) is not None


@contextmanager
def orm_statements(server: Server) -> Iterator[list[str]]:
    """Statements run through the ORM path's engines (the fast path uses neither)."""
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


def test_over_http_common_cases_skip_the_orm_and_the_rest_is_answered_as_before(
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
        assert statements  # the full endpoint named it
        assert error_of(server.api.deactivate(**activation(key, OTHER))) == (
            400,
            "device_not_found",
        )
    # the body the fast path read is handed on whole: the full endpoint parses it
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
        now = datetime.now(UTC)
        before = current(server)
        assert fast_path(server, "activate", activation(key, OTHER), now=now) is None
        assert fast_path(server, "deactivate", activation(key), now=now) is None
        assert current(server) == before
        refused = server.api.activate(**activation(key, OTHER))
        assert error_of(refused) == (429, "too_many_requests")
        assert refused.headers["Retry-After"]
        # another client address is not refused
        assert fast_path(server, "activate", activation(key, OTHER), now=now, client="10.1.1.1")


def test_the_setting_turns_the_fast_path_off(
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
        with orm_statements(server) as statements:
            assert server.api.activate(**activation(key)).status_code == 200
            assert server.api.deactivate(**activation(key)).json() == "license_deactivated"
            assert statements


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
        assert statements == []  # answered by the fast path
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


def test_a_check_right_after_a_fast_deactivation_is_not_served_from_memory(server: Server) -> None:
    """The worker's kept check answers (api/v4/fast_check.py) see this path's commits at once."""
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
        assert statements == []  # both answered by the fast path
    if not server.db.is_sqlite:  # counted at once, as the ORM engine's commits are
        assert changes._local_commits == commits + 2
    assert error_of(server.api.check(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "device_not_found",
    )
    again = server.api.check(product="app", license_key=key, hardware_id=OTHER)
    assert again.status_code == 200 and again.json()["times_activated"] == 1
