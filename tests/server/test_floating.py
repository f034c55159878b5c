"""Floating cloud licenses over the License API (v4 §3.4, §3.11-3.12, §5.5), on SQLite and
PostgreSQL: checks take slots up to ``floating_users``, a slot not refreshed within the timeout
is free again (time moved by rewinding the slots' times, no sleeps), release frees one at once,
borrowing keeps one past the timeout, bad borrows refused with their codes, and a limit that
holds under 60 devices racing from two worker processes."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from licensor.store.models import FloatingSlot
from tests.server.processes import issue, prepare, serve
from tests.server.support import Api, Server, error_of


def identity(key: str, hw: str) -> dict[str, Any]:
    return {"product": "app", "license_key": key, "hardware_id": hw}


def check(server: Server, key: str, hw: str) -> httpx.Response:
    return server.api.check(**identity(key, hw))


def release(api: Api, key: str, hw: str) -> httpx.Response:
    return api.call("POST", "/api/v4/floating/release", json=identity(key, hw))


def borrow(api: Api, key: str, hw: str, until: str | None) -> httpx.Response:
    body = {**identity(key, hw), "borrowed_until": until}
    return api.call("POST", "/api/v4/floating/borrow", json=body)


def age_slots(server: Server, minutes: float) -> None:
    """As if ``minutes`` had passed for every slot (their times moved back)."""
    delta = timedelta(minutes=minutes)
    with server.db.transaction(write=True) as session:
        for slot in session.scalars(select(FloatingSlot)):
            slot.taken_at -= delta
            slot.refreshed_at -= delta
            slot.expires_at -= delta
            if slot.borrowed_until is not None:
                slot.borrowed_until -= delta


@pytest.fixture
def key(server: Server) -> str:
    server.product(
        "app", is_floating_cloud=True, floating_users=2, can_borrow=True, max_borrow_time=24
    )
    key = server.license(max_activations=5).license_key or ""
    for hw in ("one", "two", "three"):
        assert server.api.activate(**identity(key, hw)).status_code == 200
    return key


def test_checks_take_slots_up_to_the_limit(server: Server, key: str) -> None:
    first = check(server, key, "one").json()
    assert first["is_floating_cloud"] is True
    assert (first["floating_users"], first["floating_in_use_devices"]) == (2, 1)
    assert (first["floating_timeout"], first["is_borrowed"], first["borrowed_until"]) == (
        5,
        False,
        None,
    )
    assert check(server, key, "two").json()["floating_in_use_devices"] == 2
    assert error_of(check(server, key, "three")) == (400, "floating_not_available")
    # holders keep theirs, and see the count
    assert check(server, key, "one").json()["floating_in_use_devices"] == 2
    assert int(server.sql("SELECT count(*) FROM floating_slots")[0][0]) == 2


def test_a_slot_not_refreshed_within_the_timeout_is_free_again(server: Server, key: str) -> None:
    check(server, key, "one")
    check(server, key, "two")
    age_slots(server, 4)  # within the 5-minute timeout: still held
    assert error_of(check(server, key, "three")) == (400, "floating_not_available")
    assert check(server, key, "one").status_code == 200  # (refreshed now)
    age_slots(server, 2)  # "two" last refreshed 6 minutes ago: free
    assert check(server, key, "three").json()["floating_in_use_devices"] == 2
    assert error_of(check(server, key, "two")) == (400, "floating_not_available")


def test_release_frees_a_slot_at_once(server: Server, key: str) -> None:
    check(server, key, "one")
    check(server, key, "two")
    response = release(server.api, key, "two")
    assert (response.status_code, response.json()) == (200, "")
    assert check(server, key, "three").status_code == 200
    # a slot not held cannot be released
    assert error_of(release(server.api, key, "two")) == (400, "floating_not_available")
    assert error_of(release(server.api, key, "nowhere")) == (400, "device_not_found")
    # a deactivation frees the slot too
    assert server.api.deactivate(**identity(key, "one")).status_code == 200
    assert check(server, key, "two").status_code == 200


def test_a_borrowed_slot_outlives_the_timeout(server: Server, key: str) -> None:
    check(server, key, "one")
    before = datetime.now(UTC)
    lent = borrow(server.api, key, "two", None)
    assert lent.status_code == 200, lent.text
    body = lent.json()
    until = datetime.fromisoformat(body["borrowed_until"])
    assert before + timedelta(hours=24) - timedelta(seconds=5) <= until
    assert until <= datetime.now(UTC) + timedelta(hours=24)
    assert (body["max_borrow_time"], set(body)) == (
        24,
        {"borrowed_until", "max_borrow_time", "device_id", "license_id"},
    )
    checked = check(server, key, "two").json()
    assert checked["is_borrowed"] is True and checked["borrowed_until"] == body["borrowed_until"]
    age_slots(server, 60)  # an hour without a check: "one" is free, "two" is borrowed
    assert check(server, key, "three").status_code == 200
    assert error_of(check(server, key, "one")) == (400, "floating_not_available")
    # a release ends a borrow early
    assert release(server.api, key, "two").status_code == 200
    assert check(server, key, "one").status_code == 200


def test_bad_borrows_are_refused_and_change_nothing(server: Server, key: str) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    cases = [
        ((datetime.now(UTC) + timedelta(hours=25)).isoformat(), "borrow_until_not_valid"),
        ((datetime.now(UTC) - timedelta(minutes=1)).isoformat(), "borrow_until_not_valid"),
        ("next tuesday", "borrow_until_not_valid"),
        ("0001-01-01T00:00:00+14:00", "borrow_until_not_valid"),
        ("2026-02-30", "borrow_until_not_valid"),
    ]
    for until, code in cases:
        assert error_of(borrow(server.api, key, "one", until)) == (400, code), until
    assert int(server.sql("SELECT count(*) FROM floating_slots")[0][0]) == 0
    missing = server.api.call("POST", "/api/v4/floating/borrow", json=identity(key, "one"))
    assert error_of(missing) == (400, "missing_parameters")
    # the shapes the API documents are accepted
    assert borrow(server.api, key, "one", soon).status_code == 200
    server.sql("UPDATE licenses SET can_borrow = false")
    assert error_of(borrow(server.api, key, "two", None)) == (400, "license_borrow_not_allowed")


def test_expired_and_plain_licenses_take_no_slot(server: Server, key: str) -> None:
    server.sql("UPDATE licenses SET validity_period = :t", t=datetime(2020, 1, 1, tzinfo=UTC))
    server.sql("UPDATE licenses SET license_type = 'time-limited'")
    expired = check(server, key, "one").json()
    assert expired["is_expired"] is True and expired["floating_in_use_devices"] == 0
    assert error_of(borrow(server.api, key, "one", None)) == (400, "license_expired")
    assert int(server.sql("SELECT count(*) FROM floating_slots")[0][0]) == 0
    plain = server.license(license_key="PLAIN-1", is_floating_cloud=False)
    server.api.activate(**identity(plain.license_key or "", "one"))
    answer = check(server, "PLAIN-1", "one").json()
    assert answer["is_floating_cloud"] is False and "floating_in_use_devices" not in answer


def test_a_floating_license_is_not_activated_offline(server: Server, key: str) -> None:
    from tests.server.test_offline import post, request_file

    content = request_file(server.api, key, hardware_id="air-gapped")
    assert error_of(post(server.api, "activate", content)) == (
        400,
        "offline_floating_cloud_not_supported",
    )


@pytest.mark.slow
def test_sixty_devices_racing_for_ten_slots(database_url: str, tmp_path: Path) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    key = issue(deployment, max_activations=60, is_floating_cloud=True, floating_users=10)
    barrier = threading.Barrier(60)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    with serve(deployment, workers=2) as base:
        with httpx.Client(base_url=base, timeout=60) as client:
            api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
            for n in range(60):
                assert api.activate(**identity(key, f"racer-{n}")).status_code == 200

        def take(n: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
                barrier.wait()
                response = api.check(**identity(key, f"racer-{n}"))
                outcome = "ok" if response.status_code == 200 else response.json()["code"]
                with lock:
                    outcomes[outcome] += 1

        threads = [threading.Thread(target=take, args=(n,)) for n in range(60)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes == {"ok": 10, "floating_not_available": 50}, outcomes
    with deployment.db.transaction() as session:
        held = session.scalars(select(FloatingSlot)).all()
    assert len(held) == 10
    deployment.db.dispose()


def test_vendors_see_who_holds_the_slots_and_free_one(server: Server, key: str) -> None:
    from tests.server.test_management_api import mgmt

    admin = mgmt(server)
    check(server, key, "one")
    check(server, key, "two")
    license_id = int(server.sql("SELECT id FROM licenses")[0][0])
    slots = admin.ok(admin.get(f"/licenses/{license_id}/floating-slots"))
    assert (slots["in_use"], slots["floating_users"], slots["floating_timeout"]) == (2, 2, 5)
    assert [s["hardware_id"] for s in slots["items"]] == ["one", "two"]
    device_id = slots["items"][1]["device_id"]
    freed = admin.call("DELETE", f"/licenses/{license_id}/floating-slots/{device_id}")
    assert freed.status_code == 200, freed.text
    assert check(server, key, "three").status_code == 200
    again = admin.call("DELETE", f"/licenses/{license_id}/floating-slots/{device_id}")
    assert again.status_code == 404
    log = admin.ok(admin.get("/audit", action="floating_slot.release"))["items"]
    assert len(log) == 1
    # a support token may free slots; a read-only one may not
    reader = mgmt(server, "read-only")
    third = admin.ok(admin.get(f"/licenses/{license_id}/floating-slots"))["items"][-1]
    denied = reader.call("DELETE", f"/licenses/{license_id}/floating-slots/{third['device_id']}")
    assert denied.status_code == 403
