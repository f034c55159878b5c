"""Offline request files (License API v4 §2.4, §2.5, §3.5, §3.6): what the client writes and
the server reads, in one place.

A request file is the base64 of a JSON object: the fields of the request and ``signature``,
the HMAC of ``licenseSpring\\ndate: <date>\\n<license key or username>\\n<hardware id>\\n<api
key or client id>`` with the shared key (or the OAuth client secret), base64 (schema v1); or,
with schema v2, ``{"request": {<those fields, schema_version 2>}, "signature": <hex HMAC-SHA256
of the request object's JSON>}``. The server verifies the v2 HMAC over the exact text of the
``request`` object in the file (the spec leaves the serialization open), which for files made
here is its compact JSON.

A license file (the answer of ``activate_offline``) is the compact JSON of the license object,
base64-encoded; a reader accepts the JSON itself too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from licensor.protocol.auth import offline_signature
from licensor.protocol.signing import compact_json

MAX_FILE_BYTES = 64 * 1024
REQUESTS = ("activation", "deactivation")
_REQUEST_KEY = re.compile(r'"request"\s*:\s*')


class OfflineFileError(ValueError):
    """A file that is not an offline request or license file: ``code`` is the License API's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RequestFile:
    """A request file as read: its fields, and for schema v2 the outer HMAC and the exact
    bytes it covers."""

    fields: dict[str, Any]
    schema_version: int
    outer_signature: str | None = None
    outer_signed: bytes = b""

    @property
    def credential_id(self) -> str:
        """The ``api_key`` (API-key mode) or ``client_id`` (OAuth mode) the file names."""
        value = self.fields.get("api_key") or self.fields.get("client_id")
        return value if isinstance(value, str) else ""

    @property
    def oauth(self) -> bool:
        return not self.fields.get("api_key") and bool(self.fields.get("client_id"))

    def signed_by(self, secret: str) -> bool:
        """Whether ``secret`` made this file's signatures (constant time)."""
        fields = self.fields
        identity = fields.get("license_key") or fields.get("username") or ""
        parts = (fields.get("date"), identity, fields.get("hardware_id"), self.credential_id)
        signature = fields.get("signature")
        if not all(isinstance(p, str) for p in parts) or not isinstance(signature, str):
            return False
        expected = offline_signature(secret, *parts)  # type: ignore[arg-type]
        inner = hmac.compare_digest(expected.encode(), signature.encode())
        if self.schema_version < 2:
            return inner
        if not self.outer_signed:
            return False
        outer = hmac.new(secret.encode(), self.outer_signed, hashlib.sha256).hexdigest()
        return inner and hmac.compare_digest(outer.encode(), (self.outer_signature or "").encode())


def write_request(
    fields: dict[str, Any], secret: str, *, credential_field: str, schema_version: int = 1
) -> bytes:
    """The request file of ``fields`` (with ``date``, ``hardware_id``, ``license_key`` or
    ``username``, and ``api_key`` or ``client_id`` named by ``credential_field``), signed
    with ``secret``."""
    identity = fields.get("license_key") or fields.get("username") or ""
    inner = dict(fields)
    if schema_version >= 2:
        inner["schema_version"] = 2
    inner["signature"] = offline_signature(
        secret, fields["date"], identity, fields["hardware_id"], fields[credential_field]
    )
    if schema_version < 2:
        return base64.b64encode(compact_json(inner))
    signed = compact_json(inner)
    outer = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return base64.b64encode(b'{"request":' + signed + b',"signature":"' + outer.encode() + b'"}')


def read_request(content: bytes) -> RequestFile:
    """The request file in ``content`` (base64, surrounding white space ignored), or
    ``OfflineFileError``: ``missing_content`` (empty), ``authorization_missing_params`` (not
    base64, or no license key / hardware id), ``invalid_json``, ``validation_error``."""
    text = content.strip()
    if not text:
        raise OfflineFileError("missing_content", "The offline request is empty")
    if len(text) > MAX_FILE_BYTES:
        raise OfflineFileError("payload_too_large", "An offline request file is at most 64 KiB")
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise OfflineFileError(
            "authorization_missing_params", "The offline request is not base64"
        ) from None
    try:
        data = json.loads(decoded)
    except ValueError as exc:
        raise OfflineFileError(
            "invalid_json", f"The offline request is not valid JSON: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise OfflineFileError("validation_error", "The offline request must be a JSON object")
    if "request" in data and isinstance(data["request"], dict):  # schema v2
        outer = data.get("signature")
        if not isinstance(outer, str):
            raise OfflineFileError(
                "authorization_missing_params",
                "Some parameters are missing in the authorization: signature",
            )
        raw = _raw_request_object(decoded)
        if not raw or json.loads(raw) != data["request"]:  # (a second "request" key, say)
            raw = b""
        found = RequestFile(data["request"], 2, outer, raw)
    elif "request" in data and not isinstance(data["request"], str):
        raise OfflineFileError("validation_error", "request: must be a JSON object or a string")
    else:
        found = RequestFile(data, 1)
    fields = found.fields
    missing = [
        name
        for name, present in (
            ("license_key or username", fields.get("license_key") or fields.get("username")),
            ("hardware_id", fields.get("hardware_id")),
            ("api_key or client_id", found.credential_id),
            ("signature", fields.get("signature")),
            ("date", fields.get("date")),
        )
        if not present
    ]
    if missing:
        raise OfflineFileError(
            "authorization_missing_params",
            "Some parameters are missing in the authorization: " + ", ".join(missing),
        )
    return found


def _raw_request_object(decoded: str) -> bytes:
    """The exact text of the outer object's ``request`` value (what the v2 HMAC covers)."""
    decoder = json.JSONDecoder()
    for match in _REQUEST_KEY.finditer(decoded):
        try:
            value, end = decoder.raw_decode(decoded, match.end())
        except ValueError:
            continue
        if isinstance(value, dict):
            return decoded[match.end() : end].encode()
    return b""


def license_file(answer: bytes) -> bytes:
    """The license file of an ``activate_offline`` answer (its exact bytes, base64)."""
    return base64.b64encode(answer)


def read_license_file(content: bytes) -> bytes:
    """The answer's bytes in a license file (base64 of them, or the JSON itself)."""
    text = content.strip()
    if text.startswith(b"{"):
        return text
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise OfflineFileError(
            "invalid_license_file", "This is not a license file (neither JSON nor base64)"
        ) from None
