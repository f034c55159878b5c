"""Offline activation and deactivation: a request file in, a license file (or a freed seat)
out -- License API v4 §3.5-3.6, the one implementation behind every way a file arrives (the
v4 endpoints, the ``/offline`` upload page, the management API and the CLI).

A request file (``protocol/offline.py``) names its caller itself: an ``api_key`` (signed with
its shared key) or an OAuth ``client_id`` (signed with the client secret). Its ``date`` is
checked like a ``Date`` header, so an old file cannot be replayed; its ``request_id`` is taken
once per license (``offline_requests``), so the same file sent twice changes nothing the second
time (``offline_request_replayed``). The activation itself is ``activation.activate`` with
``offline=True`` -- every rule of an online activation, and the offline switch and license
types on top -- and the answer is the license object with ``date``, ``offline_signature``,
``license_signature`` and ``license_signature_v2`` (``payload.license_body``).
"""

from __future__ import annotations

import hmac
from datetime import datetime

from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.protocol.offline import OfflineFileError, RequestFile, read_request
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import activation
from licensor.services.auth import (
    OAUTH_SECRET_CONTEXT,
    SHARED_KEY_CONTEXT,
    check_date,
    in_overlap,
    storable,
)
from licensor.services.check import Checked, device_in_session
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import DeviceInfo, LicenseRef
from licensor.services.seats import NO_LIMITS, RateLimits, Transaction, transaction_of
from licensor.store import activation as statements

ACCEPTED_ALGORITHMS: dict[str, SignatureAlgorithm] = {
    "rsa-sha256": "rsa-sha256",
    "ed25519": "ed25519",
}


def read(content: bytes, request: str | None = None) -> RequestFile:
    """The request file of ``content`` for ``request`` ("activation" or "deactivation"; any of
    the two when ``None``), or the refusal naming what is wrong with it."""
    try:
        found = read_request(content)
    except OfflineFileError as exc:
        raise LicensorError(exc.code, exc.message) from None
    kind = found.fields.get("request", request or "activation")
    if request is None and kind in ("activation", "deactivation"):
        return found
    if kind != request:
        raise LicensorError(
            "validation_error",
            f"request: this is an offline {kind} file, not an {request} file"
            if isinstance(kind, str) and request is not None
            else 'request: "activation" or "deactivation"',
        )
    return found


def kind_of(found: RequestFile) -> str:
    """What a file ``read`` took asks: "activation" or "deactivation"."""
    return "deactivation" if found.fields.get("request") == "deactivation" else "activation"


def algorithm_of(found: RequestFile) -> SignatureAlgorithm:
    """The algorithm the license file is signed with: the file's ``accept_signature`` (a
    Licensor extension: "ed25519"), else RSA as documented."""
    asked = found.fields.get("accept_signature")
    if asked is None:
        return "rsa-sha256"
    if not isinstance(asked, str) or asked.lower() not in ACCEPTED_ALGORITHMS:
        raise LicensorError("validation_error", "accept_signature: rsa-sha256 or ed25519")
    return ACCEPTED_ALGORITHMS[asked.lower()]


def file_caller(
    tx: Transaction,
    keys: ServerKeys,
    found: RequestFile,
    *,
    now: datetime,
    company_id: int | None = None,
    known: Caller | None = None,
) -> Caller:
    """The caller the file names, once its signature and date check out; ``company_id``: the
    company of whoever hands the file in (an HMAC caller, a vendor), which must be the file's.
    ``known``: the caller of the request's own headers, just authenticated -- when the file is
    signed by the same API key's same shared key, that caller (its row is not read again).
    Refusals: ``invalid_api_key`` (unknown, or another company's), ``revoked_api_key``,
    ``signature_mismatch``, ``date_header_diff``, ``offline_secret_unavailable``."""
    credential_id = found.credential_id
    if not storable(credential_id):
        raise LicensorError("invalid_api_key")
    if (
        known is not None
        and not found.oauth
        and known.api_key is not None
        and known.shared_key
        and hmac.compare_digest(known.api_key, credential_id)
        and (company_id is None or known.company_id == company_id)
        and found.signed_by(known.shared_key)
    ):
        _check_file_date(found, keys, now)
        return known
    if found.oauth:
        return _client_caller(tx, keys, found, credential_id, now, company_id)
    credential = statements.credential(tx.connection, tx.dialect, credential_id)
    key = credential.api_key if credential is not None else None
    if key is None or (company_id is not None and key.company_id != company_id):
        raise LicensorError("invalid_api_key")
    if key.revoked:
        raise LicensorError("revoked_api_key")
    secrets = [keys.master_key.decrypt(key.shared_key_encrypted, context=SHARED_KEY_CONTEXT)]
    if key.previous_shared_key_encrypted is not None and in_overlap(key.previous_valid_until, now):
        secrets.append(
            keys.master_key.decrypt(key.previous_shared_key_encrypted, context=SHARED_KEY_CONTEXT)
        )
    shared_key = _signer(found, secrets)
    _check_file_date(found, keys, now)
    allowed = (
        frozenset(int(i) for i in key.allowed_product_ids)
        if key.allowed_product_ids is not None
        else None
    )
    return Caller(
        company_id=key.company_id,
        read_only=key.read_only,
        allowed_product_ids=allowed,
        api_key=key.api_key,
        shared_key=shared_key,
    )


def _client_caller(
    tx: Transaction,
    keys: ServerKeys,
    found: RequestFile,
    client_id: str,
    now: datetime,
    company_id: int | None,
) -> Caller:
    client = statements.oauth_client(tx.connection, tx.dialect, client_id)
    if (
        client is None
        or client.revoked
        or (company_id is not None and client.company_id != company_id)
    ):
        raise LicensorError("invalid_api_key", "Invalid API key or OAuth client")
    if client.secret_encrypted is None:
        raise LicensorError("offline_secret_unavailable")
    secrets = [keys.master_key.decrypt(client.secret_encrypted, context=OAUTH_SECRET_CONTEXT)]
    if client.previous_secret_encrypted is not None and in_overlap(
        client.previous_valid_until, now
    ):
        secrets.append(
            keys.master_key.decrypt(client.previous_secret_encrypted, context=OAUTH_SECRET_CONTEXT)
        )
    secret = _signer(found, secrets)
    _check_file_date(found, keys, now)
    scope = client.scope
    return Caller(
        company_id=client.company_id,
        scope=scope,  # type: ignore[arg-type]
        scope_customer_id=client.customer_id if scope == "customer" else None,
        scope_license_id=client.license_id if scope == "license" else None,
        client_id=client.client_id,
        shared_key=secret,
    )


def _signer(found: RequestFile, secrets: list[str]) -> str:
    for secret in secrets:
        if found.signed_by(secret):
            return secret
    raise LicensorError("signature_mismatch", "The offline request's signature does not match")


def _check_file_date(found: RequestFile, keys: ServerKeys, now: datetime) -> None:
    date = found.fields.get("date")
    try:
        check_date(date if isinstance(date, str) else None, now, keys.settings.date_window_seconds)
    except LicensorError as exc:
        raise LicensorError(
            "date_header_diff",
            exc.message.replace("The Date header", "The offline request's date")
            + ": make a new request file",
        ) from None


def request_id_of(found: RequestFile) -> str | None:
    value = found.fields.get("request_id")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 100 or not value.isprintable():
        raise LicensorError("validation_error", "request_id: 1-100 printable characters")
    return value


def activate(
    tx: Transaction,
    keys: ServerKeys,
    found: RequestFile,
    caller: Caller,
    ref: LicenseRef,
    info: DeviceInfo,
    variables: dict[str, str] | None,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
) -> activation.Activated:
    """Activate the file's device (inside the write transaction ``tx``: a refusal leaves
    nothing written once the caller rolls back); ``answer_file`` renders the answer after the
    commit (its signatures made outside the write lock)."""
    request_id = request_id_of(found)
    algorithm = algorithm_of(found)
    try:
        done = activation.activate(
            tx,
            keys,
            caller,
            ref,
            info,
            limits,
            now=now,
            variables=variables,
            algorithm=algorithm,
            offline=True,
        )
    except LicensorError:
        _replayed_meanwhile(tx, caller, found, ref.hardware_id)
        raise
    _take_request_id(tx, done.license.id, request_id, "activation", ref.hardware_id, now)
    return done


def answer_file(done: activation.Activated, keys: ServerKeys, found: RequestFile) -> bytes:
    """The answer to an activation's request file: the license object with ``date``,
    ``offline_signature``, ``license_signature`` and ``license_signature_v2`` (v4 §2.3)."""
    return compact_json(done.body(keys, algorithm_of(found), request="offline_activation"))


def deactivate(
    session: Session,
    keys: ServerKeys,
    found: RequestFile,
    caller: Caller,
    ref: LicenseRef,
    variables: dict[str, str] | None,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
    consumptions: int | None = None,
) -> None:
    """Free the file's device's seat, first recording the device variables and counting the
    consumptions the file carries (the device's last state), inside the session's write
    transaction."""
    request_id = request_id_of(found)
    tx = transaction_of(session)
    try:
        checked = record_variables(session, keys, caller, ref, variables, now=now)
        activation.deactivate(
            tx, keys, caller, ref, limits, now=now, offline=True, consumptions=consumptions
        )
    except LicensorError:
        _replayed_meanwhile(tx, caller, found, ref.hardware_id)
        raise
    _take_request_id(tx, checked.rows.license.id, request_id, "deactivation", ref.hardware_id, now)


def record_variables(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    variables: dict[str, str] | None,
    *,
    now: datetime,
) -> Checked:
    """Record the device variables a deactivation file carries on ``ref``'s device (which
    must hold its seat), before the seat is freed."""
    checked = device_in_session(session, keys, caller, ref, now=now)
    if variables:
        tx = transaction_of(session)
        statements.set_variables(tx.connection, tx.dialect, checked.device.id, variables, now)
    return checked


def take_request_id(
    tx: Transaction,
    license_id: int,
    found: RequestFile,
    request: str,
    ref: LicenseRef,
    now: datetime,
) -> None:
    """Take the file's ``request_id`` on ``license_id`` (a bundle's: its bundle license), or
    ``offline_request_replayed``."""
    _take_request_id(tx, license_id, request_id_of(found), request, ref.hardware_id, now)


def refuse_replay(tx: Transaction, caller: Caller, found: RequestFile, hardware_id: str) -> None:
    """``offline_request_replayed`` when a file with this ``request_id`` for this device was
    taken already, on any of the company's licenses -- asked before the write transaction,
    which keeps it short: a copy of the file taken meanwhile is refused there, by the unique
    index ``_take_request_id`` writes to."""
    request_id = request_id_of(found)
    if request_id is None:
        return
    if statements.offline_request_taken(
        tx.connection, tx.dialect, caller.company_id, request_id, hardware_id
    ):
        raise LicensorError("offline_request_replayed")


def _replayed_meanwhile(
    tx: Transaction, caller: Caller, found: RequestFile, hardware_id: str
) -> None:
    """On a refusal in the write: a copy of this file taken since ``refuse_replay`` was asked
    makes the device or the license look changed; then the refusal says what happened."""
    try:
        refuse_replay(tx, caller, found, hardware_id)
    except LicensorError:
        raise
    except Exception:  # (a transaction the refusal's own error aborted: keep that refusal)
        return


def _take_request_id(
    tx: Transaction,
    license_id: int,
    request_id: str | None,
    request: str,
    hardware_id: str,
    now: datetime,
) -> None:
    """Record the file's ``request_id`` (guarded by its unique index: a concurrent copy of the
    same file gets ``offline_request_replayed`` and its transaction rolls back)."""
    if request_id is None:
        return
    taken = statements.take_offline_request(
        tx.connection,
        tx.dialect,
        {
            "license_id": license_id,
            "request_id": request_id,
            "request": request,
            "hardware_id": hardware_id,
            "created_at": now,
        },
    )
    if not taken:
        raise LicensorError("offline_request_replayed")
