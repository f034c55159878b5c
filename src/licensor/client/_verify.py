"""Believe nothing unsigned: verify a License API answer before any of it is used."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from licensor.client._errors import LicenseRefused, ServerUnreachable, UntrustedResponse
from licensor.protocol.signing import (
    SIGNATURE_ALGORITHMS,
    PublicKeySet,
    SignatureAlgorithm,
    SignatureError,
    iso_ms_z,
    license_signing_string,
    parse_iso_datetime,
    parse_licensor_signature,
    v2_signing_bytes,
)

ED25519_HEADER = "Licensor-Signature"
RSA_HEADER = "LicenseSignature"
RSA_KID_HEADER = "Licensor-Key-Id"


class BodySignature(NamedTuple):
    """How an answer's body was signed: enough to re-verify the stored bytes offline.
    ``covers``: "body", the exact bytes (an HTTP answer's header); or "v2", the body without
    its two license signatures (``license_signature_v2``: a license file, which has no
    header)."""

    algorithm: SignatureAlgorithm
    kid: str | None
    signature: str
    covers: str = "body"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "algorithm": self.algorithm,
            "kid": self.kid,
            "signature": self.signature,
        }
        if self.covers != "body":
            data["covers"] = self.covers
        return data

    @classmethod
    def from_json(cls, data: Any) -> BodySignature:
        names = {"algorithm", "kid", "signature"}
        if not isinstance(data, dict) or set(data) not in (names, names | {"covers"}):
            raise ValueError("not a body signature")
        algorithm, kid, signature = data["algorithm"], data["kid"], data["signature"]
        if algorithm not in SIGNATURE_ALGORITHMS or not isinstance(signature, str):
            raise ValueError("not a body signature")
        if kid is not None and not isinstance(kid, str):
            raise ValueError("not a body signature")
        covers = data.get("covers", "body")
        if covers not in ("body", "v2"):
            raise ValueError("not a body signature")
        return cls(algorithm, kid, signature, covers)


class VerifiedAnswer(NamedTuple):
    """A 2xx answer whose body signature verified: the exact bytes, parsed, and how they were signed."""

    status: int
    content: bytes
    data: Any
    signature: BodySignature


def _canonical_base64(value: str) -> bool:
    """Reject base64 variants that decode to the same bytes (so no stored byte can change unseen)."""
    try:
        return base64.b64encode(base64.b64decode(value, validate=True)).decode() == value
    except (binascii.Error, ValueError):
        return False


def body_signature_from_headers(headers: Mapping[str, str]) -> BodySignature:
    """Read the body signature from ``Licensor-Signature`` (Ed25519) or ``LicenseSignature`` (RSA)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    ed25519_value = lowered.get(ED25519_HEADER.lower())
    if ed25519_value is not None:
        try:
            pairs = parse_licensor_signature(ed25519_value)
        except SignatureError as exc:
            raise UntrustedResponse(str(exc)) from exc
        algorithm = pairs["algorithm"]
        if algorithm not in SIGNATURE_ALGORITHMS:
            raise UntrustedResponse(f"unsupported signature algorithm {algorithm!r}")
        return BodySignature(algorithm, pairs["kid"], pairs["signature"])
    rsa_value = lowered.get(RSA_HEADER.lower())
    if rsa_value is not None:
        return BodySignature("rsa-sha256", lowered.get(RSA_KID_HEADER.lower()), rsa_value.strip())
    raise UntrustedResponse("the answer is not signed")


def verify_body(keys: PublicKeySet, content: bytes, signature: BodySignature) -> str:
    """Verify the exact body bytes; return the kid of the key that signed them."""
    if not _canonical_base64(signature.signature):
        raise UntrustedResponse("the body signature is not valid base64")
    signed = content
    if signature.covers == "v2":
        try:
            body = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UntrustedResponse("the signed body is not JSON") from exc
        if not isinstance(body, dict) or body.get("license_signature_v2") != signature.signature:
            raise UntrustedResponse("the license file's signature is not its own")
        signed = v2_signing_bytes(body)
    try:
        return keys.verify(
            signed, signature.signature, kid=signature.kid, algorithm=signature.algorithm
        )
    except SignatureError as exc:
        raise UntrustedResponse(f"body signature rejected: {exc}") from exc


def interpret(
    keys: PublicKeySet, status: int, headers: Mapping[str, str], content: bytes
) -> VerifiedAnswer:
    """Turn an HTTP answer into a verified value, a ``LicenseRefused`` or a ``NoTrustedAnswer``.

    A 5xx or 429 is "unreachable" whatever it says: nothing from it is believed, and an attacker
    who could forge one could as well drop the packets.
    """
    if status >= 500 or status == 429:
        raise ServerUnreachable(f"the server answered HTTP {status}", status=status)
    if not (200 <= status < 300 or 400 <= status < 500):
        raise ServerUnreachable(f"unexpected HTTP status {status}", status=status)
    signature = body_signature_from_headers(headers)
    kid = verify_body(keys, content, signature)
    signature = BodySignature(signature.algorithm, kid, signature.signature)
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UntrustedResponse("the signed body is not JSON") from exc
    if status >= 400:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("code"), str)
            or not isinstance(data.get("message"), str)
        ):
            raise UntrustedResponse(f"HTTP {status} without a License API error body")
        wire_status = data.get("status")
        raise LicenseRefused(
            data["code"], data["message"], wire_status if isinstance(wire_status, int) else status
        )
    return VerifiedAnswer(status, content, data, signature)


def verify_license(
    keys: PublicKeySet,
    answer: VerifiedAnswer,
    *,
    hardware_id: str,
    license_key: str | None,
    username: str | None,
) -> dict[str, Any]:
    """Check a license answer is for this device and identity and its ``license_signature`` holds."""
    body = answer.data
    if not isinstance(body, dict):
        raise UntrustedResponse("the license answer is not an object")
    identity = license_key if license_key is not None else username
    if identity is None:
        raise UntrustedResponse("no license key or username to verify the answer against")
    body_hardware_id = body.get("hardware_id")
    if body_hardware_id is not None and body_hardware_id != hardware_id:
        raise UntrustedResponse("the answer is for another computer")
    body_key = body.get("license_key")
    if (
        license_key is not None
        and isinstance(body_key, str)
        and body_key.lower() != identity.lower()
    ):
        raise UntrustedResponse("the answer is for another license key")
    validity = body.get("validity_period")
    if validity is not None:
        if not isinstance(validity, str):
            raise UntrustedResponse("validity_period is not a timestamp")
        try:
            validity = iso_ms_z(parse_iso_datetime(validity))
        except ValueError as exc:
            raise UntrustedResponse("validity_period is not a timestamp") from exc
    license_signature = body.get("license_signature")
    if not isinstance(license_signature, str) or not _canonical_base64(license_signature):
        raise UntrustedResponse("the answer carries no valid license_signature")
    message = license_signing_string(hardware_id, identity, validity).encode()
    signature = answer.signature
    try:
        keys.verify(message, license_signature, kid=signature.kid, algorithm=signature.algorithm)
    except SignatureError as exc:
        raise UntrustedResponse(f"license_signature rejected: {exc}") from exc
    v2 = body.get("license_signature_v2")
    if v2 is not None:
        if not isinstance(v2, str) or not _canonical_base64(v2):
            raise UntrustedResponse("license_signature_v2 is not valid base64")
        try:
            keys.verify(
                v2_signing_bytes(body), v2, kid=signature.kid, algorithm=signature.algorithm
            )
        except SignatureError as exc:
            raise UntrustedResponse(f"license_signature_v2 rejected: {exc}") from exc
    if not isinstance(body.get("date"), str):
        raise UntrustedResponse("the license answer carries no signed server date")
    return body
