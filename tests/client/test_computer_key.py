"""licensor.client with Computer Keys, offline: verify, manual activation, validate from the key
alone, offline deactivation with a Deactivation Verification Code."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from licensor.client import (
    ClockTamperingDetected,
    ComputerKeyClient,
    LicenseExpired,
    LicenseNotValid,
    NotActivated,
    TamperedLicense,
    WrongComputer,
    verify_computer_key,
)
from licensor.protocol.computer_key import (
    ComputerKey,
    LicenseModel,
    computer_id_hash,
    encode_computer_key,
    feature_bit,
    verify_deactivation_code,
)
from licensor.protocol.signing import PublicKeySet, key_id

SIGNER = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
KID = key_id(SIGNER.public_key())
KEYS = PublicKeySet({KID: SIGNER.public_key()})
HW = "a1b2c3-this-computer"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CLAIMS = ComputerKey(
    license_id=9,
    product="photo",
    computer_hash=computer_id_hash(HW),
    license_model=LicenseModel.SUBSCRIPTION,
    license_type="subscription",
    features=feature_bit(0, 2),
    issued_at=NOW - timedelta(days=1),
    expires_at=NOW + timedelta(days=30),
    kid=KID,
)


def vendor_key(claims: ComputerKey = CLAIMS) -> str:
    """What the vendor generates for the customer's ComputerID and sends by mail."""
    return encode_computer_key(claims, SIGNER)


def client(tmp_path: Path, hw: str = HW, now: datetime = NOW) -> ComputerKeyClient:
    return ComputerKeyClient(
        "photo", KEYS, hardware_id=hw, storage_dir=tmp_path / "store", clock=lambda: now
    )


def test_verify_offline() -> None:
    verified = verify_computer_key(vendor_key(), KEYS, hardware_id=HW, product="photo", now=NOW)
    assert verified.license_id == 9
    assert verified.license_model == "subscription"
    assert verified.feature_enabled(0, 2) and not verified.feature_enabled(0, 1)
    assert verified.features_text == "0:2;1:0;2:0;3:0;"
    assert verified.expires_at == NOW + timedelta(days=30)
    with pytest.raises(WrongComputer):
        verify_computer_key(vendor_key(), KEYS, hardware_id="another", now=NOW)
    with pytest.raises(LicenseNotValid, match="product"):
        verify_computer_key(vendor_key(), KEYS, hardware_id=HW, product="video", now=NOW)
    with pytest.raises(LicenseExpired) as expired:
        verify_computer_key(vendor_key(), KEYS, hardware_id=HW, now=NOW + timedelta(days=31))
    assert expired.value.expired_at == NOW + timedelta(days=30)
    tampered = vendor_key()[:-1] + ("A" if not vendor_key().endswith("A") else "B")
    with pytest.raises(TamperedLicense):
        verify_computer_key(tampered, KEYS, hardware_id=HW, now=NOW)
    forger = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(TamperedLicense):
        verify_computer_key(encode_computer_key(CLAIMS, forger), KEYS, hardware_id=HW, now=NOW)


def test_manual_activation_then_validation_from_the_key_alone(tmp_path: Path) -> None:
    app = client(tmp_path)
    with pytest.raises(NotActivated):
        app.validate()
    typed = vendor_key().lower().replace("-", " ")  # as a person might type it
    installed = app.install(typed)
    assert installed.computer_key == vendor_key()
    assert stat.S_IMODE(os.stat(app.path).st_mode) == 0o600
    # a fresh process: nothing but the stored key and the public keys
    assert client(tmp_path).validate() == installed
    assert client(tmp_path, now=NOW + timedelta(days=40)).stored_computer_key() == vendor_key()
    with pytest.raises(LicenseExpired):
        client(tmp_path, now=NOW + timedelta(days=40)).validate()
    with pytest.raises(WrongComputer):
        client(tmp_path, hw="copied-to-another-computer").validate()


def test_a_clock_set_back_does_not_bring_an_expired_key_back(tmp_path: Path) -> None:
    client(tmp_path).install(vendor_key())
    assert client(tmp_path, now=NOW + timedelta(days=29)).validate().license_id == 9
    with pytest.raises(LicenseExpired):  # a launch after the expiry: the time is remembered
        client(tmp_path, now=NOW + timedelta(days=40)).validate()
    with pytest.raises(ClockTamperingDetected) as set_back:
        client(tmp_path, now=NOW + timedelta(days=10)).validate()
    assert set_back.value.high_water == NOW + timedelta(days=40)
    # clocks drift: within the tolerance (15 minutes) of the mark it is not tampering
    with pytest.raises(LicenseExpired):
        client(tmp_path, now=NOW + timedelta(days=40, minutes=-10)).validate()
    # the time record is MAC'd: editing it is detected, deleting it only forgets the mark
    record = tmp_path / "store" / "photo.computer-key.clock.json"
    record.write_text(record.read_text().replace('"high_water":"2026', '"high_water":"2025'))
    with pytest.raises(TamperedLicense):
        client(tmp_path, now=NOW + timedelta(days=10)).validate()
    # forgetting the key keeps the mark: installing the old key again with the clock set back
    # is still refused
    record.unlink()
    with pytest.raises(LicenseExpired):
        client(tmp_path, now=NOW + timedelta(days=40)).validate()
    client(tmp_path).forget()
    with pytest.raises(ClockTamperingDetected):
        client(tmp_path, now=NOW + timedelta(days=10)).install(vendor_key())


def test_a_clock_earlier_than_the_key_was_issued_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClockTamperingDetected) as early:
        client(tmp_path, now=CLAIMS.issued_at - timedelta(hours=1)).install(vendor_key())
    assert early.value.high_water == CLAIMS.issued_at
    assert client(tmp_path).stored_computer_key() is None


def test_a_clock_once_set_ahead_recovers_with_a_freshly_issued_key(tmp_path: Path) -> None:
    client(tmp_path).install(vendor_key())
    with pytest.raises(LicenseExpired):
        client(tmp_path, now=NOW + timedelta(days=100)).validate()  # the clock was set ahead
    corrected = NOW + timedelta(days=2)
    with pytest.raises(ClockTamperingDetected):
        client(tmp_path, now=corrected).validate()
    reissued = vendor_key(replace(CLAIMS, issued_at=corrected - timedelta(minutes=1)))
    assert client(tmp_path, now=corrected).install(reissued).license_id == 9
    assert client(tmp_path, now=corrected + timedelta(hours=1)).validate().license_id == 9


def test_install_refuses_a_key_for_another_computer(tmp_path: Path) -> None:
    other = vendor_key(replace(CLAIMS, computer_hash=computer_id_hash("someone else")))
    with pytest.raises(WrongComputer):
        client(tmp_path).install(other)
    assert client(tmp_path).stored_computer_key() is None


def test_edited_store_is_refused(tmp_path: Path) -> None:
    app = client(tmp_path)
    app.install(vendor_key())
    text = Path(app.path).read_text()
    Path(app.path).write_text(text.replace(text[10], "Z" if text[10] != "Z" else "Y", 1))
    with pytest.raises(TamperedLicense):
        app.validate()


def test_offline_deactivation_gives_a_verification_code(tmp_path: Path) -> None:
    app = client(tmp_path)
    app.install(vendor_key())
    code = app.deactivate_offline()
    assert app.stored_computer_key() is None
    with pytest.raises(NotActivated):
        app.validate()
    assert verify_deactivation_code(code, vendor_key(), HW, NOW.date())
    with pytest.raises(NotActivated):
        app.deactivate_offline()


def test_online_calls_need_a_server(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="server"):
        client(tmp_path).activate("KEY")
