"""Licensing rules as pure functions: no database, an explicit ``now``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from licensor.core.errors import LicensorError
from licensor.core.keys import KEY_ALPHABET, generate_license_key, normalize_license_key
from licensor.core.licensing import (
    DeviceFacts,
    LicenseTerms,
    LicenseType,
    UserTerms,
    decide_activation,
    decide_device_access,
    expires_at,
    version_supported,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TERMS = LicenseTerms(
    license_type=LicenseType.PERPETUAL,
    enabled=True,
    is_trial=False,
    trial_days=None,
    validity_period=None,
    validity_days=None,
    start_date=None,
    allow_grace_period=False,
    grace_period_hours=0,
    maintenance_period=None,
    max_activations=1,
    allow_unlimited_activations=False,
    times_activated=0,
    max_transfers=0,
    transfer_count=0,
    last_deactivated_hardware_id=None,
    prevent_vm=False,
    version_spec=None,
)
DEVICE = DeviceFacts(hardware_id="B", is_vm=False, app_ver=None, app_release_date=None)


def decide(
    terms: LicenseTerms = TERMS,
    device: DeviceFacts = DEVICE,
    *,
    active: bool = False,
    blacklisted: bool = False,
    user: UserTerms | None = None,
) -> str:
    try:
        decision = decide_activation(
            terms, device=device, device_active=active, blacklisted=blacklisted, user=user, now=NOW
        )
    except LicensorError as exc:
        return exc.code
    return "transfer" if decision.counts_transfer else "ok"


def test_evaluation_order_puts_enabled_and_blacklist_first() -> None:
    everything_wrong = replace(TERMS, enabled=False, prevent_vm=True, times_activated=1)
    vm = replace(DEVICE, is_vm=True)
    assert decide(everything_wrong, vm, blacklisted=True) == "license_not_enabled"
    assert decide(replace(everything_wrong, enabled=True), vm, blacklisted=True) == "blacklisted"
    assert decide(replace(everything_wrong, enabled=True), vm) == "vm_not_allowed"


def test_transfer_rule() -> None:
    after_a = replace(TERMS, last_deactivated_hardware_id="A")
    assert decide(after_a) == "transfer"
    assert decide(after_a, replace(DEVICE, hardware_id="A")) == "ok"
    assert decide(replace(after_a, max_transfers=-1)) == "license_transferred_max_times"
    assert decide(replace(after_a, max_transfers=2, transfer_count=2)) == (
        "license_transferred_max_times"
    )
    assert decide(replace(after_a, max_transfers=2, transfer_count=1)) == "transfer"
    assert decide(replace(after_a, max_transfers=0, transfer_count=99)) == "transfer"


def test_seats_and_user_seats() -> None:
    assert decide(replace(TERMS, times_activated=1)) == "license_activated_max_times"
    assert decide(replace(TERMS, times_activated=1, allow_unlimited_activations=True)) == "ok"
    assert decide(user=UserTerms(1, False, 1)) == "license_user_activated_max_times"
    assert decide(user=UserTerms(1, True, 5)) == "ok"
    assert decide(active=True) == "license_device_exists"


def test_dates() -> None:
    assert decide(replace(TERMS, start_date=NOW + timedelta(seconds=1))) == (
        "license_start_date_error"
    )
    ended = replace(
        TERMS, license_type=LicenseType.TIME_LIMITED, validity_period=NOW - timedelta(hours=1)
    )
    assert decide(ended) == "license_expired"
    assert decide(replace(ended, is_trial=True)) == "trial_expired"
    assert decide(replace(ended, allow_grace_period=True, grace_period_hours=2)) == "ok"
    # perpetual licenses never expire, whatever validity they carry
    assert expires_at(replace(TERMS, validity_period=NOW), NOW) is None


def test_versions() -> None:
    assert version_supported(">=1.0,<3", None, "2.9.1", None)
    assert not version_supported(">=1.0,<3", None, "3.0", None)
    assert not version_supported(">=1.0", None, "garbage", None)
    assert version_supported(None, NOW, "9.0", NOW - timedelta(days=1))
    assert not version_supported(None, NOW, "9.0", NOW + timedelta(days=1))
    assert version_supported(">=1", None, None, None)


@pytest.mark.parametrize(
    ("active", "activated", "code"),
    [
        (False, 0, "license_not_active"),
        (False, 1, "device_not_found"),
        (True, 1, None),
    ],
)
def test_device_access(active: bool, activated: int, code: str | None) -> None:
    terms = replace(TERMS, times_activated=activated)
    if code is None:
        decide_device_access(terms, device_active=active, blacklisted=False)
        return
    with pytest.raises(LicensorError) as raised:
        decide_device_access(terms, device_active=active, blacklisted=False)
    assert raised.value.code == code


def test_license_keys_have_100_bits_and_normalise() -> None:
    keys = {generate_license_key() for _ in range(2000)}
    assert len(keys) == 2000
    key = next(iter(keys))
    groups = key.split("-")
    assert len(groups) == 5
    assert all(len(g) == 4 and set(g) <= set(KEY_ALPHABET) for g in groups)
    assert len(KEY_ALPHABET) ** 20 >= 2**100
    assert not set("ILOU") & set(KEY_ALPHABET)
    assert normalize_license_key(key.lower()) == normalize_license_key(key)
    assert normalize_license_key("abco-1234") == normalize_license_key("ABC0-1234")
