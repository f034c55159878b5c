"""Activating and deactivating a computer that has no internet: request files out, license
files in (License API v4 §3.5-3.6; ``licensor.protocol.offline`` holds the formats).

The request file is signed with the application's credentials (shared key, or OAuth client
secret) and carries a fresh ``date`` and ``request_id``: the server takes it once, within its
date window. The license file is verified as thoroughly as an online answer -- its
``license_signature_v2`` over the whole license object (a file has no signature header), its
``license_signature``, its ``offline_signature`` (made with this application's credentials)
and its hardware id -- and then stored exactly as an online activation, so that the same
``validate()`` runs at start-up.
"""

from __future__ import annotations

import hmac
import json
import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from licensor.client._auth import Credentials, HmacCredentials
from licensor.client._errors import InvalidLicenseFile, UntrustedResponse, WrongComputer
from licensor.client._verify import BodySignature, VerifiedAnswer, verify_body
from licensor.protocol.auth import http_date, offline_signature
from licensor.protocol.offline import OfflineFileError, read_license_file, write_request
from licensor.protocol.signing import PublicKeySet, algorithm_of

SCHEMA_VERSION = 2  # the whole file's HMAC (v4 §2.5): no field can be changed unseen


def request_file(
    credentials: Credentials,
    fields: Mapping[str, Any],
    *,
    request: str,
    now: datetime,
) -> bytes:
    """A signed request file of ``fields`` (identity, hardware id, product, device facts)."""
    body: dict[str, Any] = {}
    secret: str
    if isinstance(credentials, HmacCredentials):
        body["api_key"], secret, credential_field = (
            credentials.api_key,
            credentials.shared_key,
            "api_key",
        )
    else:
        body["client_id"], secret = credentials.client_id, credentials.client_secret
        credential_field = "client_id"
    body.update(
        {
            "date": http_date(now),
            "request": request,
            "request_id": str(uuid.uuid4()),
            # Licensor's extension: sign the license file with Ed25519 (as online answers)
            "accept_signature": "ed25519",
        }
    )
    body.update(fields)
    return write_request(
        body, secret, credential_field=credential_field, schema_version=SCHEMA_VERSION
    )


def write_new_file(path: str | os.PathLike[str], content: bytes) -> None:
    """Write ``content`` to ``path`` and make it durable (fsync) before returning."""
    from licensor.client._store import write_atomically

    write_atomically(path, content)


def read_license(
    keys: PublicKeySet,
    credentials: Credentials,
    content: bytes,
    *,
    hardware_id: str,
) -> tuple[VerifiedAnswer, dict[str, Any]]:
    """The verified answer in a license file and the identity it is for
    (``license_key`` or ``username``); raises ``InvalidLicenseFile`` or ``WrongComputer``."""
    try:
        raw = read_license_file(content)
        body = json.loads(raw)
    except (OfflineFileError, ValueError, UnicodeDecodeError):
        raise InvalidLicenseFile("this is not a license file") from None
    if not isinstance(body, dict):
        raise InvalidLicenseFile("this is not a license file")
    if isinstance(body.get("code"), str) and isinstance(body.get("message"), str):
        raise InvalidLicenseFile(f"the server refused the request: {body['message']}")
    v2 = body.get("license_signature_v2")
    if not isinstance(v2, str):
        raise InvalidLicenseFile("this is not a license file (it carries no signature)")
    signature = _file_signature(keys, raw, v2)
    answer = VerifiedAnswer(200, raw, body, signature)
    identity = {
        "license_key": body.get("license_key")
        if isinstance(body.get("license_key"), str)
        else None,
        "username": body.get("username") if isinstance(body.get("username"), str) else None,
    }
    key_or_user = identity["license_key"] or identity["username"]
    if key_or_user is None:
        raise InvalidLicenseFile("the license file names no license key or user")
    if body.get("hardware_id") != hardware_id:
        raise WrongComputer("the license file is for another computer")
    if isinstance(credentials, HmacCredentials):
        secret, credential_id = credentials.shared_key, credentials.api_key
    else:
        secret, credential_id = credentials.client_secret, credentials.client_id
    date = body.get("date")
    sent = body.get("offline_signature")
    if not (isinstance(date, str) and isinstance(sent, str)) or not hmac.compare_digest(
        offline_signature(secret, date, key_or_user, hardware_id, credential_id).encode(),
        sent.encode(),
    ):
        raise InvalidLicenseFile("the license file was made for another application's credentials")
    return answer, identity


def _file_signature(keys: PublicKeySet, raw: bytes, v2: str) -> BodySignature:
    """How the file is signed (``license_signature_v2`` with a key of ``keys``), or
    ``InvalidLicenseFile``."""
    for algorithm in ("ed25519", "rsa-sha256"):
        if not any(algorithm_of(key) == algorithm for key in keys.keys.values()):
            continue
        candidate = BodySignature(algorithm, None, v2, covers="v2")
        try:
            kid = verify_body(keys, raw, candidate)
        except UntrustedResponse:
            continue
        return BodySignature(algorithm, kid, v2, covers="v2")
    raise InvalidLicenseFile(
        "the license file does not verify: it was edited, or signed by another server"
    )
