"""The wire format, with the documented test vectors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from licensor.protocol import (
    AuthorizationFormatError,
    PublicKeySet,
    SignatureError,
    compact_json,
    format_authorization,
    hmac_signature,
    iso_ms_z,
    license_signing_string,
    offline_signature,
    parse_authorization,
    parse_http_date,
    sign_bytes,
)


def test_documented_hmac_vector() -> None:
    assert (
        hmac_signature("kw4qSnpSwXzgiv5yxYpZZmFEd9QAeiKTQ6OuyMja", "Tue, 07 Jun 2011 20:51:35 GMT")
        == "UDysfR6MndUZReo07Y9r+vErn8vSxrnQ5ulit18iJ/Q="
    )


def test_offline_signature_vector() -> None:
    assert (
        offline_signature(
            "kw4qSnpSwXzgiv5yxYpZZmFEd9QAeiKTQ6OuyMja",
            "Tue, 14 May 2019 14:26:07 GMT",
            "FUH3-4E7A-LZJL-7JTP",
            "A53F-0CBC",
            "11abafc3-10b2-474a-b818-aaaf97c7512e",
        )
        == "U/SfBeCGxQsks2S30asfNpnrSkvW0jwUbkfYxkMhDbA="
    )


@pytest.mark.parametrize(
    "header",
    [
        'algorithm="hmac-sha256", headers="date", signature="c2ln", apikey="k"',
        'algorithm="hmac-sha256",headers="date",signature="c2ln",apikey="k"',
        'apiKey="k", signature="c2ln", headers="date", algorithm="hmac-sha256"',
    ],
)
def test_authorization_header_variants(header: str) -> None:
    assert parse_authorization(header) == {
        "algorithm": "hmac-sha256",
        "headers": "date",
        "signature": "c2ln",
        "apikey": "k",
    }


@pytest.mark.parametrize("header", ["garbage", 'a="1" b="2"', 'a="1",,b="2"', 'a="1", a="2"', ""])
def test_malformed_authorization(header: str) -> None:
    with pytest.raises(AuthorizationFormatError):
        parse_authorization(header)


def test_format_round_trip() -> None:
    assert parse_authorization(format_authorization("key", "sig="))["signature"] == "sig="


def test_license_signing_string_matches_the_documented_example() -> None:
    validity = iso_ms_z(datetime(2019, 6, 15, tzinfo=UTC))
    assert validity == "2019-06-15T00:00:00.000Z"
    assert (
        license_signing_string("A53F-0CBC-EC01", "FUH3-4E7A-LZJL-7JTP", validity)
        == "a53f-0cbc-ec01#fuh3-4e7a-lzjl-7jtp#2019-06-15t00:00:00.000z"
    )
    assert license_signing_string("H", "user@x.com|tn", None) == "h#user@x.com#"


def test_http_date_parsing() -> None:
    assert parse_http_date("Tue, 07 Jun 2011 20:51:35 GMT") == datetime(
        2011, 6, 7, 20, 51, 35, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="RFC 7231"):
        parse_http_date("2011-06-07T20:51:35Z")


def test_compact_json_is_javascript_compatible() -> None:
    assert (
        compact_json({"b": 1, "a": "é", "c": [True, None]})
        == '{"b":1,"a":"é","c":[true,null]}'.encode()
    )


def test_public_key_set_verifies_by_key_and_rejects_forgery() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    other = ed25519.Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    pems = [
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for k in (rsa_key, ed_key)
    ]
    keys = PublicKeySet.from_pem(pems)
    data = b'{"a":1}'
    assert keys.verify(data, sign_bytes(rsa_key, data), algorithm="rsa-sha256")
    assert keys.verify(data, sign_bytes(ed_key, data), algorithm="ed25519")
    with pytest.raises(SignatureError):
        keys.verify(b'{"a":2}', sign_bytes(ed_key, data))
    with pytest.raises(SignatureError):
        keys.verify(data, sign_bytes(other, data))
    with pytest.raises(SignatureError):
        keys.verify(data, "not base64!")
