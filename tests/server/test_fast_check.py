"""The steady-state check path (one read statement, api/v4/fast_check.py) answers exactly what
the full endpoint answers, and hands every other case to the full endpoint."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import catalogue, licensing
from licensor.services.auth import authenticate
from licensor.services.context import Caller, ServerKeys
from licensor.store import repository
from tests.server.support import Server, error_of

HW = "f" * 64


def keys_of(server: Server) -> ServerKeys:
    return ServerKeys(server.keyring, server.master_key, server.settings)


def authorization(api_key: str, shared_key: str, date: str) -> str:
    return format_authorization(api_key, hmac_signature(shared_key, date))


def both_answers(
    server: Server,
    ref: licensing.LicenseRef,
    *,
    now: datetime,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    info: licensing.DeviceInfo | None = None,
    api_key: tuple[str, str] | None = None,
    include_expired: bool = False,
) -> tuple[dict[str, Any] | None, dict[str, Any] | str]:
    """(fast path answer or None, full path answer or error code) at the same instant."""
    date = http_date(now)
    key, secret = api_key or (server.api.api_key, server.api.shared_key)
    authz = authorization(key, secret, date)
    info = info or licensing.DeviceInfo()
    with server.db.snapshot() as connection:
        checked = licensing.check_snapshot(
            connection,
            keys_of(server),
            authorization=authz,
            date_value=date,
            ref=ref,
            info=info,
            now=now,
            algorithm=algorithm,
            include_expired_features=include_expired,
        )
    fast = checked.body if checked is not None else None
    try:
        with server.db.transaction() as session:
            caller = authenticate(
                session, keys_of(server), authorization=authz, date_value=date, now=now
            )
            full: dict[str, Any] | str = licensing.check(
                session,
                caller,
                keys_of(server),
                ref,
                info,
                now=now,
                algorithm=algorithm,
                may_write=False,
                include_expired_features=include_expired,
            ).body
    except licensing.DeviceTouchNeeded:
        full = "touch"
    except licensing.LicensorError as exc:
        full = exc.code
    return fast, full


def seen_due(server: Server, ref: licensing.LicenseRef, now: datetime) -> int | None:
    """The device whose "last seen" the fast path asks to record, if any."""
    date = http_date(now)
    with server.db.snapshot() as connection:
        checked = licensing.check_snapshot(
            connection,
            keys_of(server),
            authorization=authorization(server.api.api_key, server.api.shared_key, date),
            date_value=date,
            ref=ref,
            info=licensing.DeviceInfo(),
            now=now,
            algorithm="ed25519",
        )
    assert checked is not None
    return checked.seen_device_id


def record_seen(server: Server, device_id: int, now: datetime) -> bool:
    with server.db.snapshot() as connection:
        return licensing.record_seen(connection, [device_id], now)


def fast_license_id(server: Server, key: str) -> int:
    rows = server.sql("SELECT id FROM licenses WHERE license_key = :k", k=key)
    return int(rows[0][0])


def rich_setup(server: Server) -> str:
    """A product and license using every part of the answer: custom fields, metadata with
    non-ASCII text, a customer, releases, maintenance and validity dates."""
    server.product(
        "app",
        custom_fields=[{"name": "seats", "default_value": "5"}, {"name": "tier"}],
        metadata={"ünï": "côdé ✓", "n": [1, 2.5, None]},
    )
    now = datetime.now(UTC)
    with server.db.transaction(write=True) as session:
        product = licensing.resolve_product(session, _caller(server, session), "app")
        catalogue.add_release(session, product, "1.0.0", now - timedelta(days=30))
        catalogue.add_release(session, product, "1.2.0", now - timedelta(days=2), channel="beta")
    license_ = server.license(
        license_type="subscription",
        validity_period=now + timedelta(days=30),
        maintenance_period=now + timedelta(days=300),
        allow_grace_period=True,
        grace_period=24,
        customer_email="Buyer@Example.com",
        custom_fields={"tier": "gold"},
        metadata={"order": "Ω-17"},
        max_activations=3,
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
    answer = server.api.activate(
        product="app", license_key=license_.license_key, hardware_id=HW, hostname="pc"
    )
    assert answer.status_code == 200, answer.text
    # the first check records "last seen" (a write, batched): the steady state starts after it
    assert server.api.check(product="app", license_key=license_.license_key, hardware_id=HW)
    wait_until_seen(server, license_.license_key, after=None)
    return license_.license_key


def wait_until_seen(server: Server, key: str, *, after: datetime | None) -> None:
    """Wait for the fast path's batched "last seen" write (about a second after the answer)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with server.db.transaction() as session:
            device = repository.device(session, fast_license_id(server, key), HW)
            assert device is not None
            if device.last_check_at is not None and (after is None or device.last_check_at > after):
                return
        time.sleep(0.1)
    raise AssertionError("last seen was not recorded")


def _caller(server: Server, session: Any) -> Caller:
    date = http_date()
    return authenticate(
        session,
        keys_of(server),
        authorization=authorization(server.api.api_key, server.api.shared_key, date),
        date_value=date,
        now=datetime.now(UTC),
    )


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519"])
def test_fast_answer_is_byte_identical_to_the_full_endpoint(
    server: Server, algorithm: SignatureAlgorithm
) -> None:
    key = rich_setup(server)
    now = datetime.now(UTC)
    ref = licensing.LicenseRef(product="app", hardware_id=HW, license_key=key.lower())
    fast, full = both_answers(server, ref, now=now, algorithm=algorithm)
    assert fast is not None
    assert isinstance(full, dict)
    assert compact_json(fast) == compact_json(full)
    assert fast["customer"]["email"] == "buyer@example.com"
    assert fast["version"] == "1.2.0" and fast["channel"] == "beta"
    assert [f["code"] for f in fast["product_features"]] == ["pdf"]
    fast, full = both_answers(server, ref, now=now, algorithm=algorithm, include_expired=True)
    assert fast is not None and isinstance(full, dict)
    assert compact_json(fast) == compact_json(full)
    assert [f["code"] for f in fast["product_features"]] == ["pdf", "old"]
    assert {f["name"]: f["value"] for f in fast["custom_fields"]} == {
        "seats": "5",
        "tier": "gold",
    }
    # an expired subscription still answers (is_expired), identically
    later = now + timedelta(days=31)
    server.sql("UPDATE devices SET last_check_at = :t", t=later)
    fast, full = both_answers(server, ref, now=later, algorithm=algorithm)
    assert fast is not None and fast["is_expired"] is True
    assert isinstance(full, dict) and compact_json(fast) == compact_json(full)


def test_cases_the_fast_path_hands_to_the_full_endpoint(server: Server) -> None:
    key = rich_setup(server)
    now = datetime.now(UTC)

    def ref(**changes: Any) -> licensing.LicenseRef:
        fields: dict[str, Any] = {"product": "app", "hardware_id": HW, "license_key": key}
        fields.update(changes)
        return licensing.LicenseRef(**fields)

    # (fast path, full path) for each case: the fast path declines, the full one decides
    cases: list[tuple[str, licensing.LicenseRef, dict[str, Any], str]] = [
        ("unknown key", ref(license_key="AAAA-BBBB"), {}, "license_not_found"),
        ("unknown product", ref(product="nope"), {}, "unknown_product"),
        ("unknown device", ref(hardware_id="e" * 64), {}, "device_not_found"),
        ("pinned license id", ref(license_id=10**9), {}, "license_not_found"),
        (
            "device info to record",
            ref(),
            {"info": licensing.DeviceInfo(os_ver="14.1")},
            "touch",
        ),
    ]
    for label, case_ref, options, expected in cases:
        fast, full = both_answers(server, case_ref, now=now, **options)
        assert fast is None, label
        assert full == expected, label

    # a stale "last seen" does not stop the fast answer; the front records it afterwards
    hour_ago = now - timedelta(hours=1)
    server.sql("UPDATE devices SET last_check_at = :t", t=hour_ago)
    assert seen_due(server, ref(), now - timedelta(minutes=58)) is None  # 2 min: not due
    device_id = seen_due(server, ref(), now)
    assert device_id is not None
    # with the database held by a writer, recording gives up at once (SQLite)
    if server.db.is_sqlite:
        with server.db.transaction(write=True) as session:  # holds the SQLite write lock
            session.execute(text("UPDATE companies SET name = name"))
            assert record_seen(server, device_id, now) is False
    assert record_seen(server, device_id, now) is True
    with server.db.transaction() as session:
        device = repository.device(session, fast_license_id(server, key), HW)
        assert device is not None and device.last_check_at == now
    assert seen_due(server, ref(), now) is None

    # state changes are seen by the very next check (no cache of rows)
    server.sql("UPDATE licenses SET enabled = :f", f=False)
    assert both_answers(server, ref(), now=now) == (None, "license_not_enabled")
    server.sql("UPDATE licenses SET enabled = :t", t=True)
    with server.db.transaction(write=True) as session:
        catalogue.blacklist_device(session, server.company_id, HW)
    assert both_answers(server, ref(), now=now) == (None, "blacklisted")
    server.sql("DELETE FROM blacklist")
    assert both_answers(server, ref(), now=now)[0] is not None

    # authentication failures: the full path names them
    wrong = (server.api.api_key, "not-the-secret")
    assert both_answers(server, ref(), now=now, api_key=wrong) == (None, "signature_mismatch")
    read_only = server.api_key(read_only=True)
    fast, full = both_answers(
        server, ref(), now=now, api_key=(read_only.api_key, read_only.shared_key)
    )
    assert fast is not None and isinstance(full, dict)  # read-only keys may check
    assert compact_json(fast) == compact_json(full)
    server.sql("UPDATE api_keys SET revoked = :t WHERE api_key = :k", t=True, k=read_only.api_key)
    assert both_answers(
        server, ref(), now=now, api_key=(read_only.api_key, read_only.shared_key)
    ) == (None, "revoked_api_key")


def test_steady_state_check_over_http_runs_one_statement(server: Server) -> None:
    key = rich_setup(server)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    engines = {server.client.app.state.licensor.db.read_engine}  # type: ignore[attr-defined]
    engines.add(server.client.app.state.licensor.db.write_engine)  # type: ignore[attr-defined]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        answer = server.api.check(product="app", license_key=key, hardware_id=HW)
        assert answer.status_code == 200 and answer.json()["license_key"] == key
        assert statements == []  # answered by the snapshot statement, not the ORM path
        assert [f["code"] for f in answer.json()["product_features"]] == ["pdf"]
        expired_too = server.api.check(
            product="app", license_key=key, hardware_id=HW, include_expired_features="true"
        )
        assert [f["code"] for f in expired_too.json()["product_features"]] == ["pdf", "old"]
        # a due "last seen" is written shortly after the answer, in a batch. (It is found due
        # when the row is read; recording "last seen" alone is no change a kept answer
        # notices -- migration 0009 -- so the license's update here has the row read again,
        # as the end of the answer's 60-second step would.)
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        server.sql("UPDATE devices SET last_check_at = :t", t=hour_ago)
        server.sql("UPDATE licenses SET updated_at = :t", t=datetime.now(UTC))
        assert server.api.check(product="app", license_key=key, hardware_id=HW).status_code == 200
        wait_until_seen(server, key, after=hour_ago)
        missing = server.api.check(product="app", license_key="ZZZZ-ZZZZ", hardware_id=HW)
        assert error_of(missing) == (400, "license_not_found")
        assert statements  # the full endpoint named the error
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


def test_answers_to_make_run_on_the_loop_only_within_their_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A check answer that is not served again is made on the event loop (a thread hop with
    its GIL hand-offs measured 5-8x p50 at p99 in the steady state) only while none is being
    made in the threads and those of the current second took less than their share of it;
    past that, in the threads (every request a first check: the loop must stay fair)."""
    from licensor.api.v4 import fast_check

    clock = [1000.25]
    monkeypatch.setattr(fast_check.time, "monotonic", lambda: clock[0])
    layer = fast_check.FastCheck(app=None, state=lambda: None)  # type: ignore[arg-type]
    assert layer._inline_allowed()
    layer._inline_spent = fast_check.INLINE_SHARE - 0.001
    assert layer._inline_allowed()
    layer._inline_spent = fast_check.INLINE_SHARE
    assert not layer._inline_allowed()  # this second's share is spent
    clock[0] = 1001.0
    assert layer._inline_allowed()  # a new second
    assert layer._inline_spent == 0.0
    layer._in_threads = 1
    assert not layer._inline_allowed()  # answers are being made in the threads
