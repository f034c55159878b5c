"""Response signatures: ``license_signature``, ``LicenseSignature``, ``license_signature_v2`` and
Licensor's Ed25519 ``Licensor-Signature`` header (License API v4 §2, DECISIONS §2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

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
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
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


@dataclass(frozen=True)
class PublicKeySet:
    """The public keys an application trusts, by key id (several, so keys can rotate)."""

    keys: Mapping[str, PublicKey]

    @classmethod
    def from_pem(cls, pems: Iterable[str | bytes]) -> PublicKeySet:
        keys: dict[str, PublicKey] = {}
        for pem in pems:
            data = pem.encode() if isinstance(pem, str) else pem
            for block in _split_pem(data):
                loaded = serialization.load_pem_public_key(block)
                if not isinstance(loaded, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
                    raise SignatureError("only RSA and Ed25519 public keys are supported")
                keys[key_id(loaded)] = loaded
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
