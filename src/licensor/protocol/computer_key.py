"""Computer Keys (DECISIONS §5): a license bound to one ComputerID, verifiable offline.

Text form: ``LK1-`` then unpadded RFC 4648 base32 of ``payload || Ed25519 signature``, in groups
of five characters separated by dashes. The signature covers ``b"LK1" + payload``. Payload,
version 1 (all integers big-endian)::

    version        u8      1
    license id     u64
    license model  u8      QLM's ELicenseModel value (permanent 1, trial 2, subscription 3, ...)
    license type   u8      index in LICENSE_TYPES
    features       u32     4 feature sets x 8 flags, set s flag f = bit 8*s + log2(f)
    issued at      u32     Unix seconds
    expires at     u32     Unix seconds, 0 = never
    key id         8 bytes the signing key's kid (16 hex digits)
    computer hash  32 bytes SHA-256 of the UTF-8 ComputerID (``hardware_id``)
    product        u8 length + UTF-8 product code

People may type a key: case, spaces, dashes and line breaks are ignored, and ``0``/``1``/``8``
read as ``O``/``I``/``B`` (none of them is a base32 digit). Any other change makes the key fail:
the decoder also refuses non-canonical base32 (spare bits set), so every character matters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric import ed25519

from licensor.protocol.signing import PublicKeySet, SignatureError

PREFIX = "LK1"
VERSION = 1
GROUP = 5
SIGNATURE_BYTES = 64
LICENSE_TYPES = ("perpetual", "time-limited", "subscription", "consumption")
MAX_PRODUCT_BYTES = 255
MAX_TEXT_LENGTH = 2000  # a version-1 key is at most ~600 characters; refuse absurd input early

_HEADER = struct.Struct(">BQBBIII8s32s")
_TYPING_FOLDS = str.maketrans({"0": "O", "1": "I", "8": "B"})
_IGNORED = str.maketrans("", "", " -\t\r\n")
_MAX_U32 = 2**32 - 1


class LicenseModel(IntEnum):
    """QLM's ``ELicenseModel`` (the first letter of a QLM key encodes it)."""

    NONE = 0
    PERMANENT = 1
    TRIAL = 2
    SUBSCRIPTION = 3
    PERMANENT_FLOATING = 4
    TRIAL_FLOATING = 5
    SUBSCRIPTION_FLOATING = 6
    PERMANENT_CLOUD = 7
    TRIAL_CLOUD = 8
    SUBSCRIPTION_CLOUD = 9

    @property
    def wire_name(self) -> str:
        """``permanent``, ``trial_floating``... as QLM's ``licenseModel`` element spells it."""
        return self.name.lower()


class ComputerKeyError(ValueError):
    """The text is not a Computer Key, or its signature does not verify with a trusted key."""


def computer_id_hash(computer_id: str) -> bytes:
    return hashlib.sha256(computer_id.encode("utf-8")).digest()


def feature_bit(feature_set: int, feature_id: int) -> int:
    """The bit of QLM feature ``feature_id`` (1, 2, 4, ... 128) in set ``feature_set`` (0-3)."""
    if not 0 <= feature_set <= 3 or feature_id not in (1, 2, 4, 8, 16, 32, 64, 128):
        raise ValueError("features are 4 sets (0-3) of 8 flags (1, 2, 4, ... 128)")
    return feature_id << (8 * feature_set)


def features_text(features: int) -> str:
    """QLM's string form, e.g. ``0:7;1:0;2:0;3:0;``."""
    return "".join(f"{s}:{(features >> (8 * s)) & 0xFF};" for s in range(4))


def parse_features(text: str) -> int:
    """``0:3;1:2`` (QLM's ``is_features`` syntax) → the 32-bit mask; raises ``ValueError``."""
    mask = 0
    for part in text.replace(",", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        set_text, _, value_text = part.partition(":")
        feature_set, value = int(set_text), int(value_text)
        if not 0 <= feature_set <= 3 or not 0 <= value <= 255:
            raise ValueError(f"feature {part!r}: set 0-3, value 0-255")
        mask |= value << (8 * feature_set)
    return mask


@dataclass(frozen=True, slots=True)
class ComputerKey:
    """What a Computer Key says. ``text`` is the canonical form (``LK1-XXXXX-...``)."""

    license_id: int
    product: str
    computer_hash: bytes
    license_model: LicenseModel
    license_type: str
    features: int
    issued_at: datetime
    expires_at: datetime | None
    kid: str
    text: str = ""

    def is_bound_to(self, computer_id: str) -> bool:
        return hmac.compare_digest(self.computer_hash, computer_id_hash(computer_id))

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now > self.expires_at

    def feature_enabled(self, feature_set: int, feature_id: int) -> bool:
        return bool(self.features & feature_bit(feature_set, feature_id))

    @property
    def features_text(self) -> str:
        return features_text(self.features)


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    value = int(moment.timestamp())
    if not 0 < value <= _MAX_U32:
        raise ValueError(f"{moment.isoformat()} is outside what a Computer Key can carry")
    return value


def _payload(key: ComputerKey) -> bytes:
    product = key.product.encode("utf-8")
    if not 0 < len(product) <= MAX_PRODUCT_BYTES:
        raise ValueError("product code: 1-255 UTF-8 bytes")
    if len(key.computer_hash) != 32:
        raise ValueError("computer hash: SHA-256 (32 bytes)")
    if not 0 <= key.license_id < 2**64 or not 0 <= key.features <= _MAX_U32:
        raise ValueError("license id or features out of range")
    try:
        kid = bytes.fromhex(key.kid)
    except ValueError:
        raise ValueError("kid: 16 hex digits") from None
    if len(kid) != 8:
        raise ValueError("kid: 16 hex digits")
    return (
        _HEADER.pack(
            VERSION,
            key.license_id,
            int(key.license_model),
            LICENSE_TYPES.index(key.license_type),
            key.features,
            _seconds(key.issued_at),
            _seconds(key.expires_at) if key.expires_at is not None else 0,
            kid,
            key.computer_hash,
        )
        + bytes([len(product)])
        + product
    )


def _group(body: str) -> str:
    return "-".join([PREFIX] + [body[i : i + GROUP] for i in range(0, len(body), GROUP)])


def encode_computer_key(key: ComputerKey, private_key: ed25519.Ed25519PrivateKey) -> str:
    """Sign ``key`` (server side) and return its text form."""
    payload = _payload(key)
    signature = private_key.sign(PREFIX.encode() + payload)
    return _group(base64.b32encode(payload + signature).decode().rstrip("="))


def normalize_computer_key(text: str) -> str:
    """The base32 body of a typed key: prefix removed, case, spaces and dashes ignored."""
    if len(text) > MAX_TEXT_LENGTH:
        raise ComputerKeyError("not a Computer Key: too long")
    cleaned = text.translate(_IGNORED).upper()
    if not cleaned.startswith(PREFIX):
        raise ComputerKeyError(f"not a Computer Key: it must start with {PREFIX}-")
    return cleaned[len(PREFIX) :].translate(_TYPING_FOLDS)


def read_computer_key(text: str) -> tuple[ComputerKey, bytes, bytes]:
    """Parse without verifying: the claims, the signed bytes and the signature."""
    body = normalize_computer_key(text)
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise ComputerKeyError("not a Computer Key: not base32") from None
    if base64.b32encode(raw).decode().rstrip("=") != body:
        raise ComputerKeyError("not a Computer Key: not canonical base32")
    if len(raw) < _HEADER.size + 1 + SIGNATURE_BYTES:
        raise ComputerKeyError("not a Computer Key: too short")
    payload, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
    (version, license_id, model, type_index, features, issued, expires, kid, computer_hash) = (
        _HEADER.unpack_from(payload)
    )
    if version != VERSION:
        raise ComputerKeyError(f"unsupported Computer Key version {version}")
    length = payload[_HEADER.size]
    product_bytes = payload[_HEADER.size + 1 :]
    if len(product_bytes) != length or length == 0:
        raise ComputerKeyError("not a Computer Key: bad product length")
    try:
        product = product_bytes.decode("utf-8")
        license_model = LicenseModel(model)
        license_type = LICENSE_TYPES[type_index]
    except (UnicodeDecodeError, ValueError, IndexError):
        raise ComputerKeyError("not a Computer Key: bad field") from None
    claims = ComputerKey(
        license_id=license_id,
        product=product,
        computer_hash=computer_hash,
        license_model=license_model,
        license_type=license_type,
        features=features,
        issued_at=datetime.fromtimestamp(issued, UTC),
        expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
        kid=kid.hex(),
        text=_group(body),
    )
    return claims, PREFIX.encode() + payload, signature


def decode_computer_key(text: str, keys: PublicKeySet) -> ComputerKey:
    """Parse and verify with the trusted key named inside; raises ``ComputerKeyError``."""
    claims, signed, signature = read_computer_key(text)
    try:
        keys.verify(
            signed,
            base64.b64encode(signature).decode(),
            kid=claims.kid,
            algorithm="ed25519",
        )
    except SignatureError as exc:
        raise ComputerKeyError(f"the Computer Key's signature does not verify: {exc}") from None
    return claims


# -- Deactivation Verification Code -------------------------------------------------------------

DVC_LENGTH = 16  # base32 characters: 80 bits
DVC_VALID_DAYS = 2  # the day it was made (UTC) and the next, so midnight does not void it


def deactivation_code(computer_key: str, computer_id: str, day: date) -> str:
    """The Deactivation Verification Code a client shows after deleting its Computer Key offline.

    HMAC-SHA256 keyed with the SHA-256 of the canonical Computer Key over the ComputerID and the
    UTC day: only a holder of that computer's key can make it, and the server, which keeps the
    last key it issued to each computer, checks it. Dash-grouped base32, 16 characters.
    """
    canonical = normalize_computer_key(computer_key)
    mac = hmac.new(
        hashlib.sha256(canonical.encode()).digest(),
        f"LK1-DVC|{computer_id}|{day.isoformat()}".encode(),
        hashlib.sha256,
    ).digest()
    code = base64.b32encode(mac[:10]).decode()
    return "-".join(code[i : i + 4] for i in range(0, DVC_LENGTH, 4))


def verify_deactivation_code(code: str, computer_key: str, computer_id: str, today: date) -> bool:
    """Constant-time check of a DVC made today or yesterday (UTC)."""
    typed = code.translate(_IGNORED).upper().translate(_TYPING_FOLDS).encode()
    matched = False
    for offset in range(DVC_VALID_DAYS):
        day = today - timedelta(days=offset)
        expected = deactivation_code(computer_key, computer_id, day).replace("-", "").encode()
        matched |= hmac.compare_digest(expected, typed)
    return matched
