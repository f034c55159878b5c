"""Activate, check, deactivate over the License API, on SQLite and PostgreSQL: every rule and
every error code of the seed, with its status."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from licensor.protocol.signing import license_signing_string
from tests.server.support import Server, error_of

HW = "a53f-0cbc-15fc-ec01"


def key_of(server: Server, **fields: object) -> str:
    license_ = server.license(**fields)
    assert license_.license_key
    return license_.license_key


def test_activate_check_deactivate_round_trip(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=2)
    response = server.api.activate(
        product="app",
        license_key=key,
        hardware_id=HW,
        hostname="box",
        os_ver="Linux 6",
        app_ver="1.2.0",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["license_key"] == key
    assert body["hardware_id"] == HW
    assert body["times_activated"] == 1
    assert body["license_active"] is True
    assert body["is_expired"] is False
    assert body["product_details"]["authorization_method"] == "license-key"
    signing = license_signing_string(HW, key, body["validity_period"]).encode()
    server.public_keys.verify(signing, body["license_signature"], algorithm="rsa-sha256")

    check = server.api.check(product="app", license_key=key.lower(), hardware_id=HW)
    assert check.status_code == 200, check.text
    assert check.json()["device_id"] == body["device_id"]
    assert check.json()["license_signature_v2"]

    done = server.api.deactivate(product="app", license_key=key, hardware_id=HW)
    assert done.status_code == 200
    assert done.json() == "license_deactivated"
    assert server.sql("select times_activated from licenses")[0][0] == 0
    assert error_of(server.api.check(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "license_not_active",
    )


def test_key_lookup_is_case_insensitive_and_ignores_dashes(server: Server) -> None:
    server.product()
    key = key_of(server)
    typed = key.lower().replace("-", "")
    response = server.api.activate(product="app", license_key=typed, hardware_id=HW)
    assert response.status_code == 200, response.text
    assert response.json()["license_key"] == key


def test_unknown_product(server: Server) -> None:
    assert error_of(server.api.activate(product="nope", license_key="X", hardware_id=HW)) == (
        400,
        "unknown_product",
    )


def test_license_not_found(server: Server) -> None:
    server.product()
    assert error_of(
        server.api.activate(product="app", license_key="AAAA-BBBB", hardware_id=HW)
    ) == (400, "license_not_found")


def test_license_not_enabled(server: Server) -> None:
    server.product()
    key = key_of(server, enabled=False)
    assert error_of(server.api.activate(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "license_not_enabled",
    )


def test_vm_not_allowed_by_license_or_product(server: Server) -> None:
    server.product()
    server.product("vmfree", prevent_vm=True)
    key = key_of(server, prevent_vm=True)
    assert error_of(
        server.api.activate(product="app", license_key=key, hardware_id=HW, is_vm=True)
    ) == (400, "vm_not_allowed")
    other = key_of(server, product="vmfree")
    assert error_of(
        server.api.activate(product="vmfree", license_key=other, hardware_id=HW, is_vm=True)
    ) == (400, "vm_not_allowed")
    assert (
        server.api.activate(
            product="vmfree", license_key=other, hardware_id=HW, is_vm=False
        ).status_code
        == 200
    )


def test_start_date_in_future(server: Server) -> None:
    server.product()
    start = datetime(2099, 1, 2, tzinfo=UTC)
    key = key_of(server, start_date=start)
    response = server.api.activate(product="app", license_key=key, hardware_id=HW)
    assert error_of(response) == (400, "license_start_date_error")
    assert "2099-01-02" in response.json()["message"]


def test_blacklisted_device(server: Server) -> None:
    from licensor.services import catalogue

    server.product()
    key = key_of(server)
    with server.db.transaction(write=True) as session:
        catalogue.blacklist_device(session, server.company_id, HW)
    assert error_of(server.api.activate(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "blacklisted",
    )
    assert (
        server.api.activate(product="app", license_key=key, hardware_id="other").status_code == 200
    )


def test_max_activations(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=2)
    for hw in ("d1", "d2"):
        assert (
            server.api.activate(product="app", license_key=key, hardware_id=hw).status_code == 200
        )
    assert error_of(server.api.activate(product="app", license_key=key, hardware_id="d3")) == (
        400,
        "license_activated_max_times",
    )
    unlimited = key_of(server, max_activations=0, allow_unlimited_activations=True)
    for index in range(5):
        assert (
            server.api.activate(
                product="app", license_key=unlimited, hardware_id=f"u{index}"
            ).status_code
            == 200
        )


def test_user_max_activations(server: Server) -> None:
    server.product("team", authorization_method="user")
    server.license(
        product="team",
        max_activations=5,
        user_email="Ann@Example.com",
        user_password="s3cret-pass",
        user_max_activations=1,
    )
    ok = server.api.activate(
        product="team", username="ann@example.com", password="s3cret-pass", hardware_id="d1"
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["user"]["email"] == "ann@example.com"
    assert "license_key" not in body
    signing = license_signing_string("d1", "ann@example.com", None).encode()
    server.public_keys.verify(signing, body["license_signature"], algorithm="rsa-sha256")
    assert error_of(
        server.api.activate(
            product="team", username="ann@example.com", password="s3cret-pass", hardware_id="d2"
        )
    ) == (400, "license_user_activated_max_times")
    assert error_of(
        server.api.activate(
            product="team", username="ann@example.com", password="wrong", hardware_id="d2"
        )
    ) == (400, "invalid_credentials")
    assert error_of(
        server.api.activate(
            product="team", username="bob@example.com", password="x", hardware_id="d2"
        )
    ) == (400, "license_not_found")
    # user-based checks need no password
    assert (
        server.api.check(product="team", username="ann@example.com", hardware_id="d1").status_code
        == 200
    )


def test_expired_license_refuses_activation_but_checks_say_expired(server: Server) -> None:
    server.product()
    past = datetime.now(UTC) - timedelta(days=1)
    key = key_of(server, license_type="time-limited", validity_period=past)
    assert error_of(server.api.activate(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "license_expired",
    )
    # a license that expires after activation: check answers 200 with is_expired
    soon = key_of(
        server, license_type="time-limited", validity_period=datetime.now(UTC) + timedelta(days=1)
    )
    assert server.api.activate(product="app", license_key=soon, hardware_id=HW).status_code == 200
    server.sql(
        "update licenses set validity_period = :past where key_lookup = :k",
        past=past,
        k=soon.replace("-", ""),
    )
    check = server.api.check(product="app", license_key=soon, hardware_id=HW)
    assert check.status_code == 200
    assert check.json()["is_expired"] is True


def test_grace_period_keeps_subscription_valid(server: Server) -> None:
    server.product()
    just_ended = datetime.now(UTC) - timedelta(hours=1)
    key = key_of(
        server,
        license_type="subscription",
        validity_period=just_ended,
        allow_grace_period=True,
        grace_period=24,
    )
    response = server.api.activate(product="app", license_key=key, hardware_id=HW)
    assert response.status_code == 200, response.text
    assert response.json()["is_expired"] is False


def test_trial_expired(server: Server) -> None:
    server.product()
    key = key_of(
        server, is_trial=True, trial_days=7, validity_period=datetime.now(UTC) - timedelta(days=1)
    )
    assert error_of(server.api.activate(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "trial_expired",
    )


def test_trial_days_start_at_first_activation(server: Server) -> None:
    server.product()
    key = key_of(server, is_trial=True, trial_days=10)
    body = server.api.activate(product="app", license_key=key, hardware_id=HW).json()
    until = datetime.fromisoformat(body["validity_period"].replace("Z", "+00:00"))
    assert timedelta(days=9, hours=23) < until - datetime.now(UTC) <= timedelta(days=10)


def test_transfers_count_and_limit(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=1, max_transfers=2)
    act = lambda hw: server.api.activate(product="app", license_key=key, hardware_id=hw)  # noqa: E731
    deact = lambda hw: server.api.deactivate(product="app", license_key=key, hardware_id=hw)  # noqa: E731
    assert act("A").status_code == 200
    assert deact("A").status_code == 200
    assert act("B").json()["transfer_count"] == 1
    assert deact("B").status_code == 200
    assert act("A").json()["transfer_count"] == 2  # A -> B -> A counts two
    assert deact("A").status_code == 200
    assert error_of(act("C")) == (400, "license_transferred_max_times")
    # re-activating the device that was just deactivated is not a transfer
    assert act("A").json()["transfer_count"] == 2


def test_transfers_prevented(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=2, max_transfers=-1)
    assert server.api.activate(product="app", license_key=key, hardware_id="A").status_code == 200
    # simultaneous seats are not transfers
    assert server.api.activate(product="app", license_key=key, hardware_id="B").status_code == 200
    assert server.api.deactivate(product="app", license_key=key, hardware_id="B").status_code == 200
    assert error_of(server.api.activate(product="app", license_key=key, hardware_id="C")) == (
        400,
        "license_transferred_max_times",
    )


def test_device_exists_is_409(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=3)
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    assert error_of(server.api.activate(product="app", license_key=key, hardware_id=HW)) == (
        409,
        "license_device_exists",
    )
    assert server.sql("select times_activated from licenses")[0][0] == 1


def test_version_range_and_maintenance(server: Server) -> None:
    from licensor.services import catalogue
    from licensor.store import repository

    server.product(version_spec=">=1.0,<3")
    key = key_of(server, max_activations=10, maintenance_period=datetime(2025, 6, 1, tzinfo=UTC))
    with server.db.transaction(write=True) as session:
        product = repository.product_by_code(session, server.company_id, "app")
        assert product is not None
        catalogue.add_release(session, product, "2.0", datetime(2025, 1, 1, tzinfo=UTC))
        catalogue.add_release(session, product, "2.5", datetime(2025, 9, 1, tzinfo=UTC))
    ok = server.api.activate(product="app", license_key=key, hardware_id="d1", app_ver="2.0")
    assert ok.status_code == 200, ok.text
    for hw, version in (("d2", "3.1"), ("d3", "0.9"), ("d4", "2.5"), ("d5", "not-a-version")):
        assert error_of(
            server.api.activate(product="app", license_key=key, hardware_id=hw, app_ver=version)
        ) == (400, "product_version_not_supported"), version


def test_idempotent_retry_returns_first_answer(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=1)
    headers = {"Idempotency-Key": "retry-1"}
    body = {"product": "app", "license_key": key, "hardware_id": HW}
    first = server.api.call("POST", "/api/v4/activate_license", json=body, headers=headers)
    again = server.api.call("POST", "/api/v4/activate_license", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert server.sql("select times_activated from licenses")[0][0] == 1
    assert server.sql("select count(*) from license_events where event = 'activation'")[0][0] == 1
    other = dict(body, hardware_id="other")
    reused = server.api.call("POST", "/api/v4/activate_license", json=other, headers=headers)
    assert error_of(reused) == (422, "idempotency_key_reused")


def test_license_id_pins_the_license(server: Server) -> None:
    server.product()
    license_ = server.license()
    assert license_.license_key
    wrong = server.api.activate(
        product="app",
        license_key=license_.license_key,
        hardware_id=HW,
        license_id=license_.id + 1000,
    )
    assert error_of(wrong) == (400, "license_not_found")
    right = server.api.activate(
        product="app", license_key=license_.license_key, hardware_id=HW, license_id=license_.id
    )
    assert right.status_code == 200


@pytest.mark.parametrize("path", ["/api/v4/check_license", "/api/v4/get_device_variables"])
def test_device_not_found_on_active_license(server: Server, path: str) -> None:
    server.product()
    key = key_of(server, max_activations=2)
    server.api.activate(product="app", license_key=key, hardware_id="d1")
    response = server.api.call(
        "GET", path, params={"product": "app", "license_key": key, "hardware_id": "d2"}
    )
    assert error_of(response) == (400, "device_not_found")


def test_device_variables(server: Server) -> None:
    server.product()
    key = key_of(server)
    activated = server.api.activate(
        product="app", license_key=key, hardware_id=HW, variables={"seats_used": 3}
    )
    assert activated.json()["variables"][0]["variable"] == "seats_used"
    tracked = server.api.call(
        "POST",
        "/api/v4/track_device_variables",
        json={
            "product": "app",
            "license_key": key,
            "hardware_id": HW,
            "variables": {"seats_used": 4, "plan": "pro", "beta": True},
        },
    )
    assert tracked.status_code == 200, tracked.text
    got = server.api.call(
        "GET",
        "/api/v4/get_device_variables",
        params={"product": "app", "license_key": key, "hardware_id": HW},
    )
    values = {v["variable"]: v["value"] for v in got.json()}
    assert values == {"seats_used": "4", "plan": "pro", "beta": "true"}
    assert all(isinstance(v["created_at"], int) for v in got.json())


def test_deactivated_device_can_come_back_and_counts_a_seat(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=1)
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    assert server.api.deactivate(product="app", license_key=key, hardware_id=HW).status_code == 200
    assert error_of(server.api.deactivate(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "license_not_active",
    )
    again = server.api.activate(product="app", license_key=key, hardware_id=HW)
    assert again.status_code == 200
    assert again.json()["times_activated"] == 1
    assert again.json()["transfer_count"] == 0


def test_steady_state_checks_need_no_write_lock(sqlite_server: Server, tmp_path: Path) -> None:
    """A check whose device has nothing new to record runs while another writer holds SQLite's
    write lock; a check bringing new device facts records them."""
    server = sqlite_server
    server.product()
    key = key_of(server)
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    assert server.api.check(product="app", license_key=key, hardware_id=HW).status_code == 200

    locked, release = threading.Event(), threading.Event()
    still_locked_during_check: list[bool] = []

    def hold_write_lock() -> None:
        connection = sqlite3.connect(str(tmp_path / "licensor.db"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(timeout=20)
        still_locked_during_check.append(release.is_set())
        connection.execute("ROLLBACK")
        connection.close()

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    assert locked.wait(timeout=20)
    response = server.api.check(product="app", license_key=key, hardware_id=HW)
    release.set()
    holder.join()
    assert response.status_code == 200
    assert still_locked_during_check == [True], "the check waited for the write lock"

    changed = server.api.check(product="app", license_key=key, hardware_id=HW, os_ver="Linux 7")
    assert changed.status_code == 200
    assert server.sql("select os_ver from devices")[0][0] == "Linux 7"
