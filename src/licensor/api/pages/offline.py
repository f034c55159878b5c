"""``/offline``: the public page where a request file of a computer without internet is handed
in from any computer that has a browser -- the license file comes back as a download (or the
deactivation is confirmed). The file takes ``take_file``, the one path of every request file
(``api/v4/offline.py``): the same rules, rate limits, replay refusal and audit as the API.

Works without JavaScript (a plain multipart form), CSRF-safe (double-submit token, SameSite
cookie), files over 64 KiB refused with a page that says so."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from licensor.api.pages.render import CSRF_FIELD, csrf_ok, with_csrf
from licensor.api.state import app_state
from licensor.api.v4.offline import take_file
from licensor.core.errors import LicensorError
from licensor.protocol.offline import MAX_FILE_BYTES, license_file

router = APIRouter(tags=["Pages"], include_in_schema=False)
# The largest form body taken in (files over MAX_FILE_BYTES are refused by the handler, with
# this page: a browser whose body is cut off shows a connection error, not the answer).
PAGE_BODY_LIMITS = {"/offline": 1024 * 1024}
LICENSE_FILE_NAME = "ls_license.lic"

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


async def _uploaded(request: Request) -> bytes:
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=1024)
    except LicensorError:
        raise
    except Exception as exc:  # (python-multipart: a form that does not parse)
        raise LicensorError(
            "validation_error", f"The form does not parse: {type(exc).__name__}"
        ) from None
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        raise LicensorError(
            "forbidden",
            "The page was open too long or the form came from another site: choose the file "
            "again and upload it from this page.",
        )
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
