"""validate(): offline at every start, an online check when due, typed errors otherwise."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fake_license_server import FakeLicenseServer

from conftest import HARDWARE_ID, Clock
from licensor.client import (
    ClockTamperingDetected,
    LicenseClient,
    LicenseDisabled,
    LicenseExpired,
    LicenseRefused,
    NotActivated,
    OfflineTooLong,
    TamperedLicense,
    WrongComputer,
)

MakeClient = Callable[..., LicenseClient]


def network_down(server: FakeLicenseServer, count: int = 100) -> None:
    server.failures = [httpx.ConnectError] * count


def paths(server: FakeLicenseServer) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in server.requests]


def test_not_activated(make_client: MakeClient) -> None:
    with pytest.raises(NotActivated):
        make_client().validate()
    assert make_client().stored_license() is None


def test_validate_right_after_activation_stays_offline(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    before = len(server.requests)
    license_ = make_client().validate()  # a new process: a new client
    assert license_.status == "active"
    assert not license_.checked_online
    assert license_.license_key == "KEY-1111"
    assert len(server.requests) == before


def test_due_check_goes_online_and_refreshes(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    make_client().activate(license_key="KEY-1111")
    clock.advance(days=2)
    license_ = make_client().validate()
    assert license_.checked_online
    assert license_.last_online_check == clock.now.replace(microsecond=0)
    assert paths(server)[-1] == "check_license"
    clock.advance(hours=1)
    again = make_client().validate()
    assert not again.checked_online  # not due any more
    assert again.last_online_check == license_.last_online_check


def test_unreachable_during_due_check_keeps_working_inside_the_offline_limit(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    make_client(max_days_offline=7).activate(license_key="KEY-1111")
    network_down(server)
    clock.advance(days=3)
    license_ = make_client(max_days_offline=7).validate()
    assert license_.status == "active"
    assert not license_.checked_online
    assert license_.offline_reason and "cannot reach" in license_.offline_reason

    clock.advance(days=5)  # 8 days without a successful check
    with pytest.raises(OfflineTooLong) as too_long:
        make_client(max_days_offline=7).validate()
    assert too_long.value.last_online == clock.now.replace(microsecond=0) - timedelta(days=8)

    server.failures = []  # the network is back: one check and the app runs again
    assert make_client(max_days_offline=7).validate().checked_online


def test_max_days_offline_without_network_access_at_all(
    make_client: MakeClient, clock: Clock
) -> None:
    make_client().activate(license_key="KEY-1111")
    clock.advance(days=2)
    assert make_client(max_days_offline=3).validate(online=False).status == "active"
    clock.advance(days=2)
    with pytest.raises(OfflineTooLong):
        make_client(max_days_offline=3).validate(online=False)
    assert make_client(max_days_offline=None).validate(online=False).status == "active"


def test_expiry_offline(make_client: MakeClient, server: FakeLicenseServer, clock: Clock) -> None:
    server.licenses["KEY-1111"].validity_period = clock.now + timedelta(days=3, hours=1)
    server.licenses["KEY-1111"].license_type = "subscription"
    license_ = make_client().activate(license_key="KEY-1111")
    assert license_.days_left == 3
    assert license_.expires_at == clock.now + timedelta(days=3, hours=1)
    network_down(server)
    clock.advance(days=3)
    assert make_client().validate().days_left == 0
    clock.advance(hours=2)
    with pytest.raises(LicenseExpired) as expired:
        make_client().validate()
    assert expired.value.expired_at == server.licenses["KEY-1111"].validity_period


def test_expiry_confirmed_online_and_renewal_picked_up(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    lic = server.licenses["KEY-1111"]
    lic.validity_period = clock.now + timedelta(days=1)
    make_client().activate(license_key="KEY-1111")
    clock.advance(hours=25)
    with pytest.raises(LicenseExpired):
        make_client().validate()
    assert make_client().check().status == "expired"  # check_license answers 200, is_expired
    lic.validity_period = clock.now + timedelta(days=30)  # the customer renewed
    renewed = make_client().validate()
    assert renewed.status == "active" and renewed.checked_online
    assert renewed.days_left == 30


def test_grace_period_is_honoured(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    lic = server.licenses["KEY-1111"]
    lic.license_type = "subscription"
    lic.validity_period = clock.now + timedelta(days=1)
    lic.allow_grace_period = True
    lic.grace_period = 48
    make_client().activate(license_key="KEY-1111")
    network_down(server)
    clock.advance(days=2)
    in_grace = make_client().validate()
    assert in_grace.status == "grace_period"
    assert in_grace.grace_ends_at == lic.validity_period + timedelta(hours=48)
    assert in_grace.days_left == 1
    clock.advance(days=1, minutes=1)
    with pytest.raises(LicenseExpired):
        make_client().validate()


def test_clock_set_back_is_detected(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    make_client().activate(license_key="KEY-1111")
    clock.advance(days=5)
    network_down(server)
    make_client(max_days_offline=None).validate()  # records that we have seen day 5
    clock.advance(days=-2)
    with pytest.raises(ClockTamperingDetected) as detected:
        make_client(max_days_offline=None).validate()
    assert detected.value.high_water - detected.value.now >= timedelta(days=2)


def test_small_clock_corrections_are_tolerated(make_client: MakeClient, clock: Clock) -> None:
    make_client().activate(license_key="KEY-1111")
    clock.advance(hours=3)
    make_client().validate()
    clock.advance(minutes=-10)
    assert make_client().validate().status == "active"


def test_clock_set_before_the_signed_server_time_is_detected_without_the_clock_file(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    Path(
        client.store.clock_path
    ).unlink()  # deleting the local record does not help: the date is signed
    network_down(server)
    clock.advance(days=-1)
    with pytest.raises(ClockTamperingDetected):
        make_client().validate()


def test_clock_set_back_cannot_revive_an_expired_license(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    server.licenses["KEY-1111"].validity_period = clock.now + timedelta(days=1)
    make_client().activate(license_key="KEY-1111")
    network_down(server)
    clock.advance(days=2)
    with pytest.raises(LicenseExpired):
        make_client().validate()
    clock.advance(days=-2)
    with pytest.raises((ClockTamperingDetected, LicenseExpired)):
        make_client().validate()


def test_a_clock_that_was_ahead_recovers_with_a_fresh_server_time(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    real = clock.now
    server.now = lambda: real + timedelta(minutes=1)
    make_client().activate(license_key="KEY-1111")
    clock.advance(days=30)  # the computer's clock was wrong (far ahead) for one start
    make_client(max_days_offline=None, check_interval=None).validate(online=False)
    clock.now = real + timedelta(minutes=5)  # corrected
    with pytest.raises(ClockTamperingDetected):
        make_client().validate(online=False)
    server.now = lambda: real + timedelta(minutes=5)
    assert make_client().validate().checked_online  # signed server time confirms the clock


def test_server_verdict_during_check_removes_the_license(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    make_client().activate(license_key="KEY-1111")
    server.licenses["KEY-1111"].devices[HARDWARE_ID] = False  # deactivated by the vendor
    clock.advance(days=2)
    with pytest.raises(LicenseRefused) as refused:
        make_client().validate()
    assert refused.value.code == "device_not_found"
    with pytest.raises(NotActivated):
        make_client().validate()


def test_refusal_of_the_request_itself_is_not_a_verdict(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    make_client().activate(license_key="KEY-1111")
    server.api_key = "rotated"  # the vendor rotated the API key: requests are refused
    clock.advance(days=2)
    license_ = make_client().validate()
    assert license_.status == "active"
    assert license_.offline_reason and "invalid_api_key" in license_.offline_reason


def test_license_disabled_on_the_server_is_a_verdict(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    make_client().activate(license_key="KEY-1111")
    server.licenses["KEY-1111"].enabled = False
    clock.advance(days=2)
    with pytest.raises(LicenseRefused) as refused:
        make_client().validate()
    assert refused.value.code == "license_not_enabled"
    with pytest.raises(NotActivated):
        make_client().validate()


def test_replayed_old_answer_is_not_believed(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    clock.advance(days=2)
    client.check()
    stale = server.requests[-1]
    assert stale.path.endswith("check_license")
    old_answer = server.handle(
        "GET", "/api/v4/check_license", stale.params, b"", dict(stale.headers)
    )
    clock.advance(days=1)
    client.check()  # a newer answer is stored
    clock.advance(days=2)
    server.rewrite = lambda path, answer: old_answer
    license_ = make_client().validate()
    assert not license_.checked_online
    assert license_.offline_reason and "older" in license_.offline_reason


def test_copied_to_another_computer_is_refused(
    make_client: MakeClient, tmp_path: Path, server: FakeLicenseServer
) -> None:
    make_client().activate(license_key="KEY-1111")
    shutil.copytree(tmp_path / "store", tmp_path / "elsewhere")
    other = make_client(storage_dir=tmp_path / "elsewhere", hardware_id="b" * 64)
    with pytest.raises(WrongComputer):
        other.validate()


def test_features_and_custom_fields(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    lic = server.licenses["KEY-1111"]
    lic.features = [
        {"code": "export", "name": "Export", "expiry_date": None},
        {"code": "beta", "name": "Beta", "expiry_date": "2026-03-02T12:00:00.000Z"},
    ]
    lic.custom_fields = [{"name": "seats", "data_type": None, "value": "5"}]
    make_client().activate(license_key="KEY-1111")
    license_ = make_client().validate()
    assert license_.has_feature("export") and license_.has_feature("beta")
    assert license_.custom_fields == {"seats": "5"}
    network_down(server)
    clock.advance(days=1, hours=1)
    later = make_client().validate()
    assert later.has_feature("export")
    assert not later.has_feature("beta")  # a cached answer still re-checks feature expiry


def test_tampered_clock_record_is_detected(make_client: MakeClient) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    data = Path(client.store.clock_path).read_bytes()
    Path(client.store.clock_path).write_bytes(data.replace(b"2026-03-01", b"2026-02-01"))
    with pytest.raises(TamperedLicense):
        make_client().validate()


def test_signed_answer_saying_disabled_raises_license_disabled(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    original = server.license_body

    def disabled(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = original(*args, **kwargs)
        body["license_enabled"] = False  # outside what license_signature covers; header re-signed
        return body

    server.license_body = disabled  # type: ignore[method-assign]
    client = make_client()
    with pytest.raises(LicenseDisabled):
        client.activate(license_key="KEY-1111")
    assert not Path(client.store.license_path).exists()
