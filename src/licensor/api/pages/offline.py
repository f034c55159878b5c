"""``/offline``: the public page where a request file of a computer without internet is handed
in from any computer that has a browser -- the license file comes back as a download (or the
deactivation is confirmed). The file takes ``take_file``, the one path of every request file
(``api/v4/offline.py``): the same rules, rate limits, replay refusal and audit as the API.

Works without JavaScript (a plain multipart form), CSRF-safe (double-submit token, SameSite
cookie), files over 64 KiB refused with a page that says so."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from licensor.api.pages.render import CSRF_FIELD, csrf_ok, with_csrf
from licensor.api.qlm.endpoints import LIMITS as QLM_LIMITS
from licensor.api.state import AppState, app_state
from licensor.api.v4.offline import take_file
from licensor.core.errors import LicensorError
from licensor.protocol.offline import MAX_FILE_BYTES, license_file
from licensor.services import qlm, rate_limit, seats

router = APIRouter(tags=["Pages"], include_in_schema=False)
# The largest form body taken in (files over MAX_FILE_BYTES are refused by the handler, with
# this page: a browser whose body is cut off shows a connection error, not the answer).
PAGE_BODY_LIMITS = {
    "/offline": 1024 * 1024,
    "/offline/computer-key": 16384,
    "/offline/release": 16384,
}
LICENSE_FILE_NAME = "ls_license.lic"
# the longest value of each field of the QLM forms: those of QLM's own arguments
FIELD_LIMITS = {
    "license_key": QLM_LIMITS["is_avkey"],
    "computer_id": QLM_LIMITS["is_pcid"],
    "computer_name": QLM_LIMITS["is_computer_name"],
    "deactivation_code": QLM_LIMITS["is_deactivation_code"],
}

# What the person at the page reads for each refusal (the code is shown beside it).
PLAIN_WORDS = {
    "missing_content": "The file is empty.",
    "authorization_missing_params": "This is not a request file written by the application.",
    "invalid_json": "This is not a request file written by the application.",
    "validation_error": "This request file is not complete or not valid.",
    "signature_mismatch": "The request file was changed after the application wrote it "
    "(or it was signed for another server). Ask the application for a new one.",
    "date_header_diff": "The request file is too old (or the clock of its computer is wrong). "
    "Ask the application for a new one.",
    "invalid_api_key": "The request file was made for another licensing server.",
    "revoked_api_key": "The request file was made for a key this vendor no longer uses.",
    "offline_request_replayed": "This request file was used already. If you need the license "
    "file again, ask the application for a new request file.",
    "offline_activation_not_allowed": "This license cannot be activated without internet: "
    "activate it online, or ask the vendor.",
    "payload_too_large": f"The file is larger than {MAX_FILE_BYTES // 1024} KiB: it is not a "
    "request file.",
    "forbidden": "The page was open too long (or the form came from another site).",
    "missing_parameters": "No file was chosen.",
    "too_many_requests": "Too many failed attempts from this address. Wait a little and try again.",
    "license_not_found": "No license has this Activation Key. Check it letter by letter.",
    "license_key_ambiguous": "More than one vendor on this server issued this key: ask your "
    "vendor to activate the computer.",
    "license_activated_max_times": "The license is already active on as many computers as it "
    "allows. Release one first.",
    "wrong_deactivation_verification_code": "This deactivation code is not the one the "
    "application showed for this computer.",
    "license_not_active": "This computer holds no seat of this license.",
    "license_expired": "The license has expired.",
    "license_not_enabled": "The license is disabled: ask the vendor.",
}


def _error_page(request: Request, exc: LicensorError) -> Response:
    return with_csrf(
        request,
        "offline.html",
        exc.status,
        error={
            "code": exc.code,
            "title": PLAIN_WORDS.get(exc.code, "The request file was refused."),
            "detail": exc.message,
        },
    )


def _check_csrf(request: Request, submitted: object) -> None:
    if not csrf_ok(request, submitted):
        raise LicensorError(
            "forbidden",
            "The page was open too long or the form came from another site: fill it in again "
            "on this page.",
        )


async def _uploaded(request: Request) -> bytes:
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=1024)
    except LicensorError:
        raise
    except Exception as exc:  # (python-multipart: a form that does not parse)
        raise LicensorError(
            "validation_error", f"The form does not parse: {type(exc).__name__}"
        ) from None
    _check_csrf(request, form.get(CSRF_FIELD))
    part = form.get("file")
    if not isinstance(part, UploadFile) or not part.filename:
        raise LicensorError("missing_parameters", "Choose the request file first.")
    content = await part.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise LicensorError(
            "payload_too_large", f"{part.filename}: larger than {MAX_FILE_BYTES} bytes", status=413
        )
    return content


def _activated(answer: bytes) -> dict[str, Any]:
    found = json.loads(answer)
    product = found.get("product_details") or {}
    file_text = license_file(answer)
    return {
        "product": product.get("product_name") or product.get("short_code") or "",
        "license_key": found.get("license_key") or found.get("user", {}).get("email") or "",
        "hardware_id": found.get("hardware_id", ""),
        "expires": found.get("validity_period"),
        "file_name": LICENSE_FILE_NAME,
        "file_text": file_text.decode(),
        "download": "data:application/octet-stream;base64," + base64.b64encode(file_text).decode(),
    }


async def _form(
    request: Request, fields: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, str]:
    """A plain form's ``fields`` and ``optional`` ones (CSRF checked), stripped; too long,
    NUL or a missing one of ``fields``: refused."""
    try:
        form = await request.form(max_files=0, max_fields=8, max_part_size=1024)
    except Exception as exc:  # (python-multipart: a form that does not parse)
        raise LicensorError(
            "validation_error", f"The form does not parse: {type(exc).__name__}"
        ) from None
    _check_csrf(request, form.get(CSRF_FIELD))
    found: dict[str, str] = {}
    for name in fields + optional:
        value = form.get(name)
        text = value.strip() if isinstance(value, str) else ""
        if "\x00" in text or len(text) > FIELD_LIMITS[name]:
            raise LicensorError(
                "validation_error", f"{name}: at most {FIELD_LIMITS[name]} characters"
            )
        found[name] = text
    missing = [name for name in fields if not found[name]]
    if missing:
        raise LicensorError(
            "missing_parameters", "Fill in: " + ", ".join(m.replace("_", " ") for m in missing)
        )
    return found


@contextmanager
def _address_limited(
    state: AppState, host: str | None, now: datetime
) -> Iterator[seats.RateLimits]:
    """The QLM forms' rate limits: per client address, as activations are (a client over its
    limit is refused first; a refusal that reveals a wrong key is counted)."""
    policy = rate_limit.Policy.of(state.settings)
    limits = seats.RateLimits(policy, rate_limit.buckets(policy, host, 0, "", None))
    with state.db.transaction() as session:
        rate_limit.ensure_allowed(session, policy, limits.buckets, now)
    try:
        yield limits
    except LicensorError as exc:
        limits.count(state.db, now, exc.code)
        raise


def _computer_key(state: AppState, host: str | None, fields: dict[str, str]) -> dict[str, Any]:
    """QLM's activation of a computer without internet (``qlm.activate_computer``): what the
    page shows of its Computer Key."""
    now = datetime.now(UTC)
    with (
        _address_limited(state, host, now) as limits,
        state.db.transaction(write=True) as session,
    ):
        grant = qlm.activate_computer(session, state.keys, **fields, limits=limits, now=now)
        return {
            "product": grant.product.name or grant.product.short_code,
            "license_key": grant.license.license_key,
            "computer_id": grant.device.hardware_id,
            "expires": grant.expires_at.isoformat() if grant.expires_at else None,
            "text": grant.computer_key,
        }


def _release(state: AppState, host: str | None, fields: dict[str, str]) -> None:
    """QLM's release of a computer with its Deactivation Verification Code."""
    now = datetime.now(UTC)
    with (
        _address_limited(state, host, now) as limits,
        state.db.transaction(write=True) as session,
    ):
        qlm.release_computer(session, **fields, limits=limits, now=now)


@router.post("/offline/computer-key")
async def computer_key(request: Request) -> Response:
    state = app_state(request)
    host = request.client.host if request.client else None
    try:
        fields = await _form(request, ("license_key", "computer_id"), ("computer_name",))
        grant = await run_in_threadpool(_computer_key, state, host, fields)
    except LicensorError as exc:
        return _error_page(request, exc)
    return with_csrf(request, "offline.html", computer_key=grant)


@router.post("/offline/release")
async def release(request: Request) -> Response:
    state = app_state(request)
    host = request.client.host if request.client else None
    try:
        fields = await _form(request, ("license_key", "computer_id", "deactivation_code"))
        await run_in_threadpool(_release, state, host, fields)
    except LicensorError as exc:
        return _error_page(request, exc)
    released = {"license_key": fields["license_key"], "computer_id": fields["computer_id"]}
    return with_csrf(request, "offline.html", released=released)


@router.get("/offline")
def offline_page(request: Request) -> Response:
    return with_csrf(request, "offline.html")


@router.post("/offline")
async def offline_upload(request: Request) -> Response:
    state = app_state(request)
    host = request.client.host if request.client else None
    try:
        content = await _uploaded(request)
        taken = await run_in_threadpool(
            take_file, state, content, None, host=host, now=datetime.now(UTC)
        )
    except LicensorError as exc:
        return _error_page(request, exc)
    fields = taken.fields
    if taken.kind == "deactivation":
        return with_csrf(
            request,
            "offline.html",
            deactivated={
                "license_key": str(fields.get("license_key") or fields.get("username") or ""),
                "hardware_id": str(fields.get("hardware_id") or ""),
            },
        )
    return with_csrf(request, "offline.html", activated=_activated(taken.body))
