"""Computer Keys: round trip, typing tolerance, tampering of any character, key rotation, DVC."""

from __future__ import annotations

import base64
import random
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from licensor.protocol.computer_key import (
    PREFIX,
    ComputerKey,
    ComputerKeyError,
    LicenseModel,
    computer_id_hash,
    deactivation_code,
    decode_computer_key,
    encode_computer_key,
    feature_bit,
    features_text,
    parse_features,
    read_computer_key,
    verify_deactivation_code,
)
from licensor.protocol.signing import PublicKeySet, key_id

PRIVATE = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
KID = key_id(PRIVATE.public_key())
KEYS = PublicKeySet({KID: PRIVATE.public_key()})
COMPUTER = "9f2c4e0d5b7a1c3e"
CLAIMS = ComputerKey(
    license_id=4242,
    product="photo-pro",
    computer_hash=computer_id_hash(COMPUTER),
    license_model=LicenseModel.SUBSCRIPTION,
    license_type="subscription",
    features=feature_bit(0, 1) | feature_bit(0, 4) | feature_bit(3, 128),
    issued_at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),
    expires_at=datetime(2027, 3, 1, tzinfo=UTC),
    kid=KID,
)


def make(claims: ComputerKey = CLAIMS) -> str:
    return encode_computer_key(claims, PRIVATE)


def test_round_trip_carries_every_field() -> None:
    text = make()
    assert text.startswith(PREFIX + "-")
    assert all(len(group) <= 5 for group in text.split("-")[1:])
    decoded = decode_computer_key(text, KEYS)
    assert replace(decoded, text="") == CLAIMS
    assert decoded.text == text
    assert decoded.is_bound_to(COMPUTER)
    assert not decoded.is_bound_to(COMPUTER + "x")
    assert decoded.feature_enabled(0, 4) and decoded.feature_enabled(3, 128)
    assert not decoded.feature_enabled(1, 1)
    assert decoded.features_text == "0:5;1:0;2:0;3:128;"
    assert not decoded.is_expired(datetime(2027, 3, 1, tzinfo=UTC))
    assert decoded.is_expired(datetime(2027, 3, 1, 0, 0, 1, tzinfo=UTC))


def test_never_expiring_key_and_non_ascii_product() -> None:
    claims = replace(CLAIMS, expires_at=None, product="фото-プロ", license_type="perpetual")
    decoded = decode_computer_key(make(claims), KEYS)
    assert decoded.expires_at is None
    assert decoded.product == "фото-プロ"
    assert not decoded.is_expired(datetime(2100, 1, 1, tzinfo=UTC))


def test_typed_by_a_person_case_spaces_dashes_and_confusables() -> None:
    text = make()
    body = text[len(PREFIX) + 1 :].replace("-", "")
    typed = "lk1 " + " ".join(body[i : i + 4] for i in range(0, len(body), 4)).lower()
    assert decode_computer_key(typed, KEYS).license_id == 4242
    assert decode_computer_key("\n" + text.lower() + "\n", KEYS).license_id == 4242
    # 0, 1 and 8 are no base32 digits: a person who types them meant O, I and B.
    confused = PREFIX + "-" + body.replace("O", "0").replace("I", "1").replace("B", "8")
    assert decode_computer_key(confused, KEYS).text == text


def test_tampering_with_any_character_is_detected() -> None:
    text = make()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    for index, char in enumerate(text):
        if char == "-":
            continue
        for replacement in {alphabet[(alphabet.find(char) + 1) % 32], "Z" if char != "Z" else "A"}:
            tampered = text[:index] + replacement + text[index + 1 :]
            with pytest.raises(ComputerKeyError):
                decode_computer_key(tampered, KEYS)


def test_dropped_or_added_characters_are_refused() -> None:
    text = make()
    with pytest.raises(ComputerKeyError):
        decode_computer_key(text[:-1], KEYS)
    with pytest.raises(ComputerKeyError):
        decode_computer_key(text + "A", KEYS)
    with pytest.raises(ComputerKeyError):
        decode_computer_key(text.replace(PREFIX, "LK2", 1), KEYS)
    for garbage in ["", "LK1-", "LK1-!!!!", "hello", "LK1-" + "A" * 3000]:
        with pytest.raises(ComputerKeyError):
            decode_computer_key(garbage, KEYS)


def test_a_forged_payload_signed_by_another_key_is_refused() -> None:
    other = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
    forged = encode_computer_key(CLAIMS, other)  # claims the trusted kid, wrong signature
    with pytest.raises(ComputerKeyError, match="does not verify"):
        decode_computer_key(forged, KEYS)
    unknown = encode_computer_key(replace(CLAIMS, kid=key_id(other.public_key())), other)
    with pytest.raises(ComputerKeyError, match="unknown key"):
        decode_computer_key(unknown, KEYS)


def test_rotation_old_keys_keep_verifying() -> None:
    new = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x03" * 32)
    new_kid = key_id(new.public_key())
    both = PublicKeySet({KID: PRIVATE.public_key(), new_kid: new.public_key()})
    assert decode_computer_key(make(), both).kid == KID
    assert decode_computer_key(encode_computer_key(replace(CLAIMS, kid=new_kid), new), both)


def test_random_keys_round_trip() -> None:
    rng = random.Random(5)
    for _ in range(200):
        claims = replace(
            CLAIMS,
            license_id=rng.randrange(2**63),
            product="".join(rng.choice("abcdefghijklmnopqrstuvwxyz-_0123456789") for _ in "x" * rng.randint(1, 60)),
            features=rng.randrange(2**32),
            license_model=rng.choice(list(LicenseModel)),
            expires_at=None if rng.random() < 0.3 else datetime.fromtimestamp(rng.randrange(1, 2**32), UTC),
        )  # fmt: skip
        assert replace(decode_computer_key(make(claims), KEYS), text="") == claims


def test_unverified_read_exposes_the_signed_bytes() -> None:
    claims, signed, signature = read_computer_key(make())
    assert claims.license_id == 4242
    KEYS.verify(signed, base64.b64encode(signature).decode(), kid=KID)


def test_encoding_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError, match="product code"):
        make(replace(CLAIMS, product=""))
    with pytest.raises(ValueError, match="kid"):
        make(replace(CLAIMS, kid="xyz"))
    with pytest.raises(ValueError, match="outside"):
        make(replace(CLAIMS, expires_at=datetime(2200, 1, 1, tzinfo=UTC)))


def test_feature_strings() -> None:
    assert parse_features("0:3;1:2;2:7;3:25") == 3 | 2 << 8 | 7 << 16 | 25 << 24
    assert features_text(parse_features("0:7;")) == "0:7;1:0;2:0;3:0;"
    with pytest.raises(ValueError, match="set 0-3"):
        parse_features("4:1")
    with pytest.raises(ValueError, match="4 sets"):
        feature_bit(0, 3)


def test_deactivation_verification_code() -> None:
    key = make()
    day = date(2026, 5, 4)
    code = deactivation_code(key, COMPUTER, day)
    assert len(code.replace("-", "")) == 16
    assert verify_deactivation_code(code, key, COMPUTER, day)
    assert verify_deactivation_code(code.lower().replace("-", " "), key, COMPUTER, day)
    assert verify_deactivation_code(code, key, COMPUTER, date(2026, 5, 5))  # across midnight
    assert not verify_deactivation_code(code, key, COMPUTER, date(2026, 5, 6))  # expired
    assert not verify_deactivation_code(code, key, "another computer", day)
    other_key = make(replace(CLAIMS, license_id=1))
    assert not verify_deactivation_code(code, other_key, COMPUTER, day)
    # the typed form of the key gives the same code
    assert deactivation_code(key.lower().replace("-", ""), COMPUTER, day) == code
