"""Response signatures: ``license_signature``, ``LicenseSignature``, ``license_signature_v2`` and
Licensor's Ed25519 ``Licensor-Signature`` header (License API v4 §2, DECISIONS §2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

# ``cryptography.hazmat.primitives.serialization`` is imported only where needed: it is the
# slowest part of ``cryptography`` to import, and an application validating its license at start
# does not need it (trusted keys are read from their SubjectPublicKeyInfo directly, below).

SignatureAlgorithm = Literal["rsa-sha256", "ed25519"]
SIGNATURE_ALGORITHMS: tuple[SignatureAlgorithm, ...] = ("rsa-sha256", "ed25519")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

SIGNATURE_FIELDS = ("license_signature", "license_signature_v2")


class SignatureError(ValueError):
    """A signature is missing, malformed, made with an unknown key, or does not verify."""


def compact_json(value: Any) -> bytes:
    """The exact bytes Licensor sends and signs: compact, insertion-ordered, raw UTF-8.

    Equivalent to JavaScript's ``JSON.stringify`` for plain data, so clients that re-serialise a
    parsed body get the same bytes.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def v2_signing_bytes(body: Mapping[str, Any]) -> bytes:
    """What ``license_signature_v2`` covers: the body without both signature fields."""
    return compact_json({k: v for k, v in body.items() if k not in SIGNATURE_FIELDS})


def iso_ms_z(moment: datetime) -> str:
    """``2019-06-15T00:00:00.000Z``: UTC, milliseconds, ``Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso_datetime(value: str) -> datetime:
    """Parse ISO-8601 (``Z`` or offset; a bare date is midnight UTC). Naive values are UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def license_signing_string(
    hardware_id: str, key_or_username: str, validity_period: str | None
) -> str:
    """``lower(HARDWARE_ID#LICENSE_KEY_OR_USERNAME#VALIDITY_PERIOD)``.

    For user-based licenses only the part of the username before the first ``|`` is signed.
    """
    middle = key_or_username.split("|", 1)[0]
    return f"{hardware_id}#{middle}#{validity_period or ''}".lower()


def key_id(public_key: PublicKey) -> str:
    """A stable identifier of a public key: the first 16 hex digits of SHA-256 of its SPKI DER."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _spki_key_id(der)


def _spki_key_id(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()[:16]


def algorithm_of(key: PrivateKey | PublicKey) -> SignatureAlgorithm:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa-sha256"
    return "ed25519"


def sign_bytes(private_key: PrivateKey, data: bytes) -> str:
    """Base64 signature: RSASSA-PKCS1-v1_5 + SHA-256 for RSA keys, plain Ed25519 otherwise."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        raw = private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = private_key.sign(data)
    return base64.b64encode(raw).decode()


def verify_bytes(public_key: PublicKey, data: bytes, signature_b64: str) -> bool:
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            public_key.verify(raw, data)
    except InvalidSignature:
        return False
    return True


_HEADER_PAIR = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*(?:,|$)')


def format_licensor_signature(kid: str, signature_b64: str) -> str:
    return f'kid="{kid}", algorithm="ed25519", signature="{signature_b64}"'


def parse_licensor_signature(value: str) -> dict[str, str]:
    pairs = dict(_HEADER_PAIR.findall(value))
    if not {"kid", "algorithm", "signature"} <= pairs.keys():
        raise SignatureError("Licensor-Signature header is malformed")
    return pairs


class PublicKeySet:
    """The public keys an application trusts, by key id (several, so keys can rotate).

    Immutable; equal when the key ids are equal.
    """

    __slots__ = ("keys",)
    keys: Mapping[str, PublicKey]

    def __init__(self, keys: Mapping[str, PublicKey]) -> None:
        object.__setattr__(self, "keys", MappingProxyType(dict(keys)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PublicKeySet is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKeySet):
            return NotImplemented
        return set(self.keys) == set(other.keys)

    def __hash__(self) -> int:
        return hash(frozenset(self.keys))

    def __repr__(self) -> str:
        return f"PublicKeySet(kids={sorted(self.keys)!r})"

    @classmethod
    def from_pem(cls, pems: Iterable[str | bytes]) -> PublicKeySet:
        keys: dict[str, PublicKey] = {}
        for pem in pems:
            data = pem.encode() if isinstance(pem, str) else pem
            for block in _split_pem(data):
                try:
                    der = base64.b64decode(b"".join(block.splitlines()[1:-1]), validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise SignatureError("a PEM public key is not valid base64") from exc
                keys[_spki_key_id(der)] = _load_spki(der)
        if not keys:
            raise SignatureError("no public key given")
        return cls(keys)

    def verify(
        self,
        data: bytes,
        signature_b64: str,
        *,
        kid: str | None = None,
        algorithm: SignatureAlgorithm | None = None,
    ) -> str:
        """Return the kid of the key that verifies ``data``; raise ``SignatureError`` otherwise."""
        candidates: list[tuple[str, PublicKey]]
        if kid is not None:
            key = self.keys.get(kid)
            if key is None:
                raise SignatureError(f"signed with unknown key {kid!r}")
            candidates = [(kid, key)]
        else:
            candidates = list(self.keys.items())
        for candidate_kid, key in candidates:
            if algorithm is not None and algorithm_of(key) != algorithm:
                continue
            if verify_bytes(key, data, signature_b64):
                return candidate_kid
        raise SignatureError("signature does not verify with any trusted key")


def _split_pem(data: bytes) -> list[bytes]:
    blocks = re.findall(
        rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", data, flags=re.DOTALL
    )
    return [bytes(b) for b in blocks]


_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_RSA_ALGORITHM_IDENTIFIER = bytes.fromhex("300d06092a864886f70d0101010500")


def _der_item(data: bytes, offset: int, tag: int) -> tuple[bytes, int]:
    """The contents of the DER item of ``tag`` at ``offset``, and the offset after it."""
    if offset + 2 > len(data) or data[offset] != tag:
        raise ValueError("unexpected DER")
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or offset + count > len(data):
            raise ValueError("unexpected DER length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    if offset + length > len(data):
        raise ValueError("truncated DER")
    return data[offset : offset + length], offset + length


def _rsa_from_spki(der: bytes) -> rsa.RSAPublicKey:
    spki, end = _der_item(der, 0, 0x30)
    if end != len(der) or not spki.startswith(_RSA_ALGORITHM_IDENTIFIER):
        raise ValueError("not an RSA SubjectPublicKeyInfo")
    bits, end = _der_item(spki, len(_RSA_ALGORITHM_IDENTIFIER), 0x03)
    if end != len(spki) or not bits or bits[0] != 0:
        raise ValueError("unexpected RSA key bits")
    sequence, end = _der_item(bits, 1, 0x30)
    modulus, after = _der_item(sequence, 0, 0x02)
    exponent, end = _der_item(sequence, after, 0x02)
    if end != len(sequence):
        raise ValueError("unexpected RSA key")
    n, e = int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def _load_spki(der: bytes) -> PublicKey:
    """A public key from its SubjectPublicKeyInfo DER (Ed25519 and RSA read directly)."""
    if len(der) == 44 and der.startswith(_ED25519_SPKI_PREFIX):
        return ed25519.Ed25519PublicKey.from_public_bytes(der[12:])
    try:
        return _rsa_from_spki(der)
    except ValueError:
        pass
    from cryptography.hazmat.primitives import serialization

    try:
        loaded = serialization.load_der_public_key(der)
    except ValueError as exc:
        raise SignatureError(f"not a public key: {exc}") from exc
    if not isinstance(loaded, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise SignatureError("only RSA and Ed25519 public keys are supported")
    return loaded
