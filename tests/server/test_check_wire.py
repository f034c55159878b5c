"""The wire of ``GET /api/v4/check_license`` (one implementation: ``services/check.py`` behind
``api/v4/check.py``): golden answers, byte for byte, for each case -- the same on SQLite and
PostgreSQL (``golden/check.json``, see ``tests/server/golden.py``) --, what a check records,
and how the front runs (one statement, no ORM, the event loop's share)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import event, select, text

from licensor.api.state import AppState
from licensor.api.v4 import check as check_front
from licensor.api.v4.check import CheckFront, _Request
from licensor.core.keys import normalize_license_key
from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.protocol.signing import SignatureAlgorithm, parse_licensor_signature
from licensor.services import catalogue, check
from licensor.services.auth import authenticate
from licensor.services.context import ServerKeys
from licensor.services.licensing import resolve_product
from licensor.store import repository
from licensor.store.models import Device
from tests.server import test_activation_wire as activation_wire
from tests.server.golden import NOW, assert_golden, golden_book
from tests.server.support import Api, Server, error_of

HW = "f" * 64
GOLDEN = Path(__file__).parent / "golden" / "check.json"
_FRONTS: dict[int, CheckFront] = {}


def keys_of(server: Server) -> ServerKeys:
    return ServerKeys(server.keyring, server.master_key, server.settings)


def state_of(server: Server) -> AppState:
    state: AppState = server.client.app.state.licensor  # type: ignore[attr-defined]
    return state


def front(
    server: Server,
    params: dict[str, Any],
    *,
    now: datetime = NOW,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    api: Api | None = None,
) -> tuple[int, bytes, int | None]:
    """The front's answer at ``now`` (signature verified), and the device whose "last seen"
    it found due."""
    api = api or server.api
    date = http_date(now)
    request = _Request(
        format_authorization(api.api_key, hmac_signature(api.shared_key, date)),
        date,
        algorithm,
        "testclient",
    )
    state = state_of(server)
    layer = _FRONTS.get(id(state))
    if layer is None:  # (one per server, as in the application: it learns the key's company)
        layer = _FRONTS[id(state)] = CheckFront(None, lambda: state, cache_entries=0)  # type: ignore[arg-type]
    made = layer.respond(state, urlencode(params).encode(), request, inline=False, now=now)
    assert made is not None
    status, content, _headers, kept, _reused, seen = made
    signed = state.keys.keyring.signature_headers(content, algorithm)
    if algorithm == "ed25519":
        pairs = parse_licensor_signature(signed["Licensor-Signature"])
        server.public_keys.verify(
            content, pairs["signature"], kid=pairs["kid"], algorithm=algorithm
        )
    else:
        server.public_keys.verify(content, signed["LicenseSignature"], algorithm=algorithm)
    if kept is not None:  # (as CheckFront._seen_due asks it)
        seen = kept.seen_device_id if now.timestamp() >= kept.seen_due_at else None
    return status, content, seen


def rich_setup(server: Server) -> str:
    """A product and license using every part of the answer: custom fields, metadata with
    non-ASCII text, a customer, releases, maintenance and validity dates; activated at NOW."""
    server.product(
        "app",
        custom_fields=[{"name": "seats", "default_value": "5"}, {"name": "tier"}],
        metadata={"ünï": "côdé ✓", "n": [1, 2.5, None]},
    )
    with server.db.transaction(write=True) as session:
        date = http_date()
        caller = authenticate(
            session,
            keys_of(server),
            authorization=format_authorization(
                server.api.api_key, hmac_signature(server.api.shared_key, date)
            ),
            date_value=date,
            now=datetime.now(UTC),
        )
        product = resolve_product(session, caller, "app")
        catalogue.add_release(session, product, "1.0.0", NOW - timedelta(days=30))
        catalogue.add_release(session, product, "1.2.0", NOW - timedelta(days=2), channel="beta")
    license_ = server.license(
        license_type="subscription",
        validity_period=NOW + timedelta(days=30),
        maintenance_period=NOW + timedelta(days=300),
        allow_grace_period=True,
        grace_period=24,
        customer_email="Buyer@Example.com",
        custom_fields={"tier": "gold"},
        metadata={"order": "Ω-17"},
        max_activations=3,
        license_key="CHECK-GOLD-0001",
    )
    assert license_.license_key is not None
    # features: one attached with an override, one attached and expired (hidden), one not attached
    server.sql(
        "UPDATE products SET features = :f",
        f=json.dumps(
            [
                {"id": 1, "code": "pdf", "name": "PDF export", "feature_type": "activation"},
                {"id": 2, "code": "old", "name": "Old", "expiry_date": "2020-01-01"},
                {"id": 3, "code": "cloud", "name": "Cloud", "feature_type": "consumption"},
            ]
        ),
    )
    server.sql(
        "UPDATE licenses SET features = :f",
        f=json.dumps({"pdf": {"max_consumption": 9}, "old": {}}),
    )
    status, content, _ = activation_wire.front(
        server,
        "activate",
        {
            "product": "app",
            "license_key": license_.license_key,
            "hardware_id": HW,
            "hostname": "pc",
        },
    )
    assert status == 200, content
    return license_.license_key


def params_of(key: str, **changes: Any) -> dict[str, Any]:
    return {"product": "app", "license_key": key, "hardware_id": HW, **changes}


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519"])
def test_checks_answer_the_golden_bytes(server: Server, algorithm: SignatureAlgorithm) -> None:
    key = rich_setup(server)
    with golden_book(GOLDEN) as book:
        status, content, seen = front(server, params_of(key.lower()), algorithm=algorithm)
        answer = assert_golden(book, "check", status, content)
        assert seen is not None  # never seen yet: "last seen" is due
        assert answer["customer"]["email"] == "buyer@example.com"
        assert answer["version"] == "1.2.0" and answer["channel"] == "beta"
        assert [f["code"] for f in answer["product_features"]] == ["pdf"]
        status, content, _ = front(
            server, params_of(key, include_expired_features="true"), algorithm=algorithm
        )
        answer = assert_golden(book, "check, expired features too", status, content)
        assert [f["code"] for f in answer["product_features"]] == ["pdf", "old"]
        # an expired subscription still answers (is_expired)
        later = NOW + timedelta(days=32)  # (past the day of grace)
        status, content, _ = front(server, params_of(key), now=later, algorithm=algorithm)
        answer = assert_golden(book, "check of an expired subscription", status, content)
        assert answer["is_expired"] is True


def test_every_refusal_is_named_and_counted_as_it_should(server: Server) -> None:
    key = rich_setup(server)
    read_only = server.api_key(read_only=True)
    revoked = server.api_key()
    server.sql("UPDATE api_keys SET revoked = :t WHERE api_key = :k", t=True, k=revoked.api_key)
    cases: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
        ("unknown key", params_of("AAAA-BBBB"), {}, "license_not_found"),
        ("unknown product", params_of(key, product="nope"), {}, "unknown_product"),
        ("unknown device", params_of(key, hardware_id="e" * 64), {}, "device_not_found"),
        ("pinned license id", params_of(key, license_id=10**9), {}, "license_not_found"),
        ("bad query", params_of(key, is_vm="maybe"), {}, "validation_error"),
        ("no hardware id", {"product": "app", "license_key": key}, {}, "missing_hardware_id"),
        (
            "wrong shared key",
            params_of(key),
            {"api": Api(server.client, server.public_keys, server.api.api_key, "wrong")},
            "signature_mismatch",
        ),
        ("revoked key", params_of(key), {"api": revoked}, "revoked_api_key"),
    ]
    with golden_book(GOLDEN) as book:
        for label, params, options, expected in cases:
            counters = server.sql("SELECT count(*) FROM rate_limit_counters")
            status, content, _ = front(server, params, **options)
            found = assert_golden(book, f"refusal: {label}", status, content)
            assert found["code"] == expected, label
            counted = server.sql("SELECT count(*) FROM rate_limit_counters") != counters
            assert counted == (expected == "license_not_found" and label == "unknown key"), label
        # state changes are seen by the very next check (no rows kept)
        server.sql("UPDATE licenses SET enabled = :f", f=False)
        assert_golden(book, "refusal: disabled", *front(server, params_of(key))[:2])
        server.sql("UPDATE licenses SET enabled = :t", t=True)
        with server.db.transaction(write=True) as session:
            catalogue.blacklist_device(session, server.company_id, HW)
        assert_golden(book, "refusal: blacklisted", *front(server, params_of(key))[:2])
    server.sql("DELETE FROM blacklist")
    # read-only keys may check (and record nothing)
    status, content, seen = front(server, params_of(key), api=read_only)
    assert status == 200 and seen is None


def test_new_device_facts_are_recorded_by_the_check(server: Server) -> None:
    key = rich_setup(server)
    with golden_book(GOLDEN) as book:
        status, content, seen = front(server, params_of(key, os_ver="14.1", app_ver="1.2.0"))
        answer = assert_golden(book, "check with new device facts", status, content)
    assert seen is None  # recorded with the facts
    assert answer["version"] == "1.2.0"
    rows = server.sql("SELECT os_ver, app_ver, hostname, last_check_at FROM devices")
    assert rows[0][:3] == ("14.1", "1.2.0", "pc")
    assert rows[0][3] is not None


def test_last_seen_is_due_every_five_minutes_and_recorded_best_effort(server: Server) -> None:
    key = rich_setup(server)
    hour_ago = NOW - timedelta(hours=1)
    server.sql("UPDATE devices SET last_check_at = :t", t=hour_ago)
    assert front(server, params_of(key), now=NOW - timedelta(minutes=58))[2] is None  # 2 min
    device_id = front(server, params_of(key))[2]
    assert device_id is not None

    def record(now: datetime) -> bool:
        with server.db.snapshot() as connection:
            return check.record_seen(connection, [device_id], now)

    if server.db.is_sqlite:  # with the database held by a writer, recording gives up at once
        with server.db.transaction(write=True) as session:
            session.execute(text("UPDATE companies SET name = name"))
            assert record(NOW) is False
    assert record(NOW) is True
    with server.db.transaction() as session:
        license_ = repository.license_by_key_in_company(
            session, server.company_id, normalize_license_key(key)
        )
        assert license_ is not None
        device = session.scalars(
            select(Device).where(Device.license_id == license_.id, Device.hardware_id == HW)
        ).one()
        assert device.last_check_at == NOW
    assert front(server, params_of(key))[2] is None


def test_user_based_licenses_are_checked_by_username(server: Server) -> None:
    server.product("users", authorization_method="user")
    server.license(
        product="users", user_email="u@example.com", user_password="password-1", license_key="U-1"
    )
    activated = activation_wire.front(
        server,
        "activate",
        {
            "product": "users",
            "username": "u@example.com",
            "password": "password-1",
            "hardware_id": HW,
        },
    )
    assert activated[0] == 200
    with golden_book(GOLDEN) as book:
        status, content, _ = front(
            server, {"product": "users", "username": "U@example.com", "hardware_id": HW}
        )
        answer = assert_golden(book, "check of a license user", status, content)
        assert answer["user"]["email"] == "u@example.com"
        status, content, _ = front(server, {"product": "users", "hardware_id": HW})
        assert_golden(book, "refusal: user-based product without a username", status, content)


def wait_until_seen(server: Server, *, after: datetime | None) -> None:
    """Wait for the front's batched "last seen" write (about a second after the answer)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = server.sql("SELECT last_check_at FROM devices WHERE hardware_id = :h", h=HW)[0][0]
        if found is not None and (after is None or _aware(found) > after):
            return
        time.sleep(0.1)
    raise AssertionError("last seen was not recorded")


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_steady_state_check_over_http_runs_one_statement_and_no_orm(server: Server) -> None:
    server.product("app")
    license_ = server.license(max_activations=3)
    key = license_.license_key
    assert key is not None
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    orm: list[str] = []

    def count(*args: Any) -> None:
        orm.append(str(args[2]))

    reads: list[str] = []
    original = check.find

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs["use"])
        return original(*args, **kwargs)

    db = state_of(server).db
    engines = {db.read_engine, db.write_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(check, "find", counting)
            answer = server.api.check(product="app", license_key=key, hardware_id=HW)
            assert answer.status_code == 200 and answer.json()["license_key"] == key
            assert orm == [] and reads == ["check"]
            wait_until_seen(server, after=None)  # the first check's "last seen", batched
            missing = server.api.check(product="app", license_key="ZZZZ-ZZZZ", hardware_id=HW)
            assert error_of(missing) == (400, "license_not_found")
            assert orm  # the rate limits count the wrong guess (their own write)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


def test_with_the_front_layer_off_the_route_answers_the_same_way(
    database_url: str, tmp_path: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.server.support import shared_keys_dir, start_server

    for server in start_server(
        database_url,
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        fast_check=False,
    ):
        server.product("app")
        key = server.license().license_key
        assert key is not None
        assert (
            server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
        )
        checked = server.api.check(product="app", license_key=key, hardware_id=HW)
        assert checked.status_code == 200 and checked.json()["times_activated"] == 1
        assert error_of(server.api.check(product="app", license_key=key, hardware_id="x")) == (
            400,
            "device_not_found",
        )
        wait_until_seen(server, after=None)  # (the route records "last seen" at once)


def test_answers_to_make_run_on_the_loop_only_within_their_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A check answer that is not served again is made on the event loop (a thread hop with
    its GIL hand-offs measured 5-8x p50 at p99 in the steady state) only while none is being
    made in the threads and those of the current second took less than their share of it;
    past that, in the threads (every request a first check: the loop must stay fair)."""
    clock = [1000.25]
    monkeypatch.setattr(check_front.time, "monotonic", lambda: clock[0])
    layer = CheckFront(app=None, state=lambda: None)  # type: ignore[arg-type]
    assert layer._inline_allowed()
    layer._inline_spent = check_front.INLINE_SHARE - 0.001
    assert layer._inline_allowed()
    layer._inline_spent = check_front.INLINE_SHARE
    assert not layer._inline_allowed()  # this second's share is spent
    clock[0] = 1001.0
    assert layer._inline_allowed()  # a new second
    assert layer._inline_spent == 0.0
    layer._in_threads = 1
    assert not layer._inline_allowed()  # answers are being made in the threads


def test_a_locked_out_client_keeps_its_own_checks_but_learns_nothing(
    database_url: str, tmp_path: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.server.support import shared_keys_dir, start_server

    for server in start_server(
        database_url,
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        rate_limit_client_failures=2,
    ):
        key = rich_setup(server)
        for guess in ("GUESS-0001", "GUESS-0002"):
            status, content, _ = front(server, params_of(guess))
            assert (status, json.loads(content)["code"]) == (400, "license_not_found")
        # a device that holds its seat tells a guesser nothing: its check keeps working
        status, content, _ = front(server, params_of(key))
        assert status == 200 and json.loads(content)["license_key"] == key
        # anything that would fail is refused, whatever it would have said
        for params in (params_of(key, hardware_id="e" * 64), params_of("GUESS-0003")):
            status, content, _ = front(server, params)
            assert (status, json.loads(content)["code"]) == (429, "too_many_requests")
