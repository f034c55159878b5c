"""``/portal``: the customers' self-service page -- sign in with the license key and the
e-mail the license was sold to, see the license and its computers, free one they no longer
have (``services/portal.py``). Server-rendered, no script, CSRF-safe (double-submit token);
sign-ins rate-limited as wrong license keys are. The session is a cookie the server signed
(the license and an end, a keyed MAC): HttpOnly, SameSite=Lax, Secure over TLS, one hour.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from licensor.api.pages.render import CSRF_FIELD, csrf_ok, limited_attempt, with_csrf
from licensor.api.state import AppState, app_state
from licensor.core.errors import LicensorError, RateLimited
from licensor.services import portal

router = APIRouter(prefix="/portal", tags=["Portal"], include_in_schema=False)
COOKIE = "licensor_portal"
SESSION_SECONDS = 3600
HOME = "/portal"


def _mac(state: AppState, license_id: int, ends: int) -> str:
    return state.keys.master_key.hash_secret(f"licensor-portal\0{license_id}\0{ends}")


def _cookie(state: AppState, license_id: int, now: datetime) -> str:
    ends = int(now.timestamp()) + SESSION_SECONDS
    return f"{license_id}.{ends}.{_mac(state, license_id, ends)}"


def _license_of(state: AppState, request: Request) -> int | None:
    """The license the session's cookie names, if it is the server's and has not ended."""
    value = request.cookies.get(COOKIE, "")
    parts = value.split(".")
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()) or len(value) > 200:
        return None
    license_id, ends = int(parts[0]), int(parts[1])
    expected = _mac(state, license_id, ends)
    if not hmac.compare_digest(expected.encode(), parts[2].encode()):
        return None
    if ends <= datetime.now(UTC).timestamp():
        return None
    return license_id


def _login(request: Request, status: int = 200, error: str = "") -> Response:
    return with_csrf(request, "portal/login.html", status, error=error)


@router.get("")
async def home(request: Request) -> Response:
    state = app_state(request)
    license_id = _license_of(state, request)
    if license_id is None:
        return _login(request)

    def read() -> dict[str, Any]:
        with state.db.transaction() as session:
            return portal.overview(session, license_id)

    try:
        found = await run_in_threadpool(read)
    except LicensorError:
        return _login(request)
    notice = request.query_params.get("done", "")
    return with_csrf(request, "portal/license.html", notice=notice == "deactivated", **found)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    state = app_state(request)
    key, email = form.get("license_key"), form.get("email")
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return _login(request, 403, "The page was open too long: try again.")
    if not (isinstance(key, str) and isinstance(email, str) and key.strip() and email.strip()):
        return _login(request, 400, "Enter your license key and your e-mail.")
    if len(key) > 200 or len(email) > 320:
        return _login(request, 400, "This license key or e-mail is too long.")

    def sign_in() -> int:
        def attempt() -> int:
            with state.db.transaction() as session:
                return portal.sign_in(session, key, email)

        return limited_attempt(state, request, "portal", None, attempt)

    try:
        license_id = await run_in_threadpool(sign_in)
    except RateLimited:
        return _login(request, 429, "Too many attempts from this address: wait a little.")
    except LicensorError as exc:
        if exc.code == "license_key_ambiguous":
            return _login(request, 400, "Two vendors issued this key: ask your vendor.")
        return _login(request, 400, "No license has this key and e-mail.")
    response = RedirectResponse(HOME, status_code=303)
    response.set_cookie(
        COOKIE,
        _cookie(state, license_id, datetime.now(UTC)),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=HOME,
    )
    return response


@router.post("/devices/{device_id}/deactivate")
async def deactivate(request: Request, device_id: int) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    state = app_state(request)
    license_id = _license_of(state, request)
    if license_id is None:
        return RedirectResponse(HOME, status_code=303)
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return with_csrf(request, "portal/error.html", 403, message="The page was open too long.")

    def free() -> None:
        with state.db.transaction(write=True) as session:
            portal.deactivate(session, license_id, device_id, now=datetime.now(UTC))

    try:
        await run_in_threadpool(free)
    except LicensorError as exc:
        return with_csrf(request, "portal/error.html", 400, message=exc.message, code=exc.code)
    return RedirectResponse(HOME + "?done=deactivated", status_code=303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    if not csrf_ok(request, form.get(CSRF_FIELD)):  # (another site cannot sign one out)
        return with_csrf(request, "portal/error.html", 403, message="The page was open too long.")
    response = RedirectResponse(HOME, status_code=303)
    response.delete_cookie(COOKIE, path=HOME)
    return response
