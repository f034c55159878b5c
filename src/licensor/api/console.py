"""``/console``: the vendor's web console -- server-rendered pages (Jinja2, plain forms, no
script) over the management use cases (``services/management.py``, as the management API
calls them: the same roles, rules and audit log), signed in with a console user's e-mail and
password (``services/console.py``).

Every page needs a session: without one it answers a redirect to ``/console/login`` (a fixed
path: never a redirect to somewhere a request named). The session cookie is HttpOnly,
SameSite=Lax and Secure over TLS; every form carries the session's form token; a POST without
it is refused (403). Logins are rate-limited as the License API's wrong guesses are.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from licensor.api.pages.render import CSRF_FIELD, csrf_ok, limited_attempt, page, with_csrf
from licensor.api.state import AppState, app_state
from licensor.core.errors import LicensorError, RateLimited
from licensor.services import catalogue, console, credentials, features, management, policies
from licensor.services.console import SignedIn

router = APIRouter(prefix="/console", tags=["Console"], include_in_schema=False)
COOKIE = "licensor_console"
LOGIN = "/console/login"
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _to_login() -> Response:
    return RedirectResponse(LOGIN, status_code=303)


def _signed_in(state: AppState, request: Request) -> SignedIn | None:
    with state.db.transaction() as session:
        return console.session_of(
            session, state.keys.master_key, request.cookies.get(COOKIE), now=_now()
        )


def _form_ok(user: SignedIn, form: FormData) -> bool:
    submitted = form.get(CSRF_FIELD)
    return isinstance(submitted, str) and hmac.compare_digest(
        submitted.encode(), user.csrf_token.encode()
    )


def _render(user: SignedIn, name: str, status: int = 200, **context: Any) -> Response:
    return page(name, status, user=user, csrf_token=user.csrf_token, **context)


def _refused(user: SignedIn, error: LicensorError) -> Response:
    status = {"forbidden": 403, "not_found": 404}.get(error.code, 400)
    return _render(user, "console/error.html", status, error=error)


async def _run(
    request: Request,
    work: Callable[[Session, SignedIn, AppState], T],
    *,
    write: bool = False,
) -> tuple[SignedIn | None, T | LicensorError | None]:
    """``work`` in a transaction for the signed-in user (``None`` first: no session)."""
    state = app_state(request)

    def run() -> tuple[SignedIn | None, T | LicensorError | None]:
        user = _signed_in(state, request)
        if user is None:
            return None, None
        try:
            with state.db.transaction(write=write) as session:
                return user, work(session, user, state)
        except LicensorError as exc:
            return user, exc

    return await run_in_threadpool(run)


async def _page(
    request: Request, name: str, work: Callable[[Session, SignedIn, AppState], dict[str, Any]]
) -> Response:
    user, found = await _run(request, work)
    if user is None:
        return _to_login()
    if isinstance(found, LicensorError):
        return _refused(user, found)
    assert found is not None
    return _render(user, name, **found)


async def _checked_form(request: Request) -> tuple[SignedIn, FormData] | Response:
    """A form's POST: its session and form token, or the answer that refuses it (the login
    page without a session; 403 without the token)."""
    form = await request.form(max_files=0, max_fields=50)
    user = await run_in_threadpool(_signed_in, app_state(request), request)
    if user is None:
        return _to_login()
    if not _form_ok(user, form):
        error = LicensorError("forbidden", "The form is missing its token (or the page is old).")
        return _render(user, "console/error.html", 403, error=error)
    return user, form


async def _action(
    request: Request,
    work: Callable[[Session, SignedIn, AppState, FormData], Any],
    then: Callable[[Any], str],
) -> Response:
    """A form's POST (``_checked_form``): ``work`` in a write transaction, then a redirect
    (303) to ``then(result)``; a refusal is a page that says why."""
    checked = await _checked_form(request)
    if isinstance(checked, Response):
        return checked
    user, form = checked
    _, done = await _run(request, lambda s, u, st: work(s, u, st, form), write=True)
    if isinstance(done, LicensorError):
        return _refused(user, done)
    return RedirectResponse(then(done), status_code=303)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _number(form: FormData, name: str, default: int | None = None) -> int | None:
    text = _text(form, name)
    if not text:
        return default
    if not text.lstrip("-").isdigit() or len(text) > 12:
        raise LicensorError("validation_error", f"{name}: a whole number")
    return int(text)


# -- signing in and out -----------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> Response:
    return with_csrf(request, "console/login.html")


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    state = app_state(request)
    email, password = _text(form, "email").lower(), form.get("password")
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return with_csrf(request, "console/login.html", 403, error="The page was open too long.")
    if not isinstance(password, str) or not email or len(email) > 320 or len(password) > 1024:
        return with_csrf(
            request, "console/login.html", 400, error="Enter your e-mail and password."
        )

    def sign_in() -> tuple[str, SignedIn]:
        def attempt() -> tuple[str, SignedIn]:
            with state.db.transaction(write=True) as session:
                return console.sign_in(session, state.keys.master_key, email, password, now=_now())

        return limited_attempt(state, request, "console", email, attempt)

    try:
        token, _ = await run_in_threadpool(sign_in)
    except RateLimited as exc:
        wait = exc.retry_after
        return with_csrf(
            request, "console/login.html", 429, error=f"Too many attempts: wait {wait} s."
        )
    except LicensorError:
        return with_csrf(
            request, "console/login.html", 400, error="This e-mail and password do not match."
        )
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=console.SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/console",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    state = app_state(request)
    user = await run_in_threadpool(_signed_in, state, request)
    if user is not None and _form_ok(user, form):

        def forget() -> None:
            with state.db.transaction(write=True) as session:
                console.sign_out(session, state.keys.master_key, request.cookies.get(COOKIE))

        await run_in_threadpool(forget)
    response = _to_login()
    response.delete_cookie(COOKIE, path="/console")
    return response


# -- pages -------------------------------------------------------------------------------------


@router.get("")
async def dashboard(request: Request) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        now = _now()
        company = user.admin.company_id
        per_day = console.activations_per_day(session, company, now)
        return {
            "states": console.license_states(session, company, now),
            "chart": console.chart_svg(per_day),
            "activations": sum(count for _, count in per_day),
            "audit": console.recent_audit(session, company),
        }

    return await _page(request, "console/dashboard.html", work)


@router.get("/licenses")
async def licenses(request: Request) -> Response:
    query = request.query_params.get("q", "")[:320]
    before_text = request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None

    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        user.admin.require("read")
        items, more = console.find_licenses(session, user.admin.company_id, query, before=before)
        products = management.list_products(session, user.admin)
        return {"items": items, "more": more, "q": query, "products": products}

    return await _page(request, "console/licenses.html", work)


@router.post("/licenses")
async def create_license(request: Request) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState, form: FormData) -> Any:
        fields: dict[str, Any] = {
            "max_activations": _number(form, "max_activations", 1),
            "customer_email": _text(form, "customer_email") or None,
            "order_store_id": _text(form, "order_id")[:200],
            "metadata": {"note": _text(form, "note")[:2000]} if _text(form, "note") else {},
        }
        issued = management.issue_licenses(
            session,
            user.admin,
            _text(form, "product"),
            catalogue.LicenseSpec(**fields),
            count=1,
            now=_now(),
        )
        return issued[0]["id"]

    return await _action(request, work, lambda made: f"/console/licenses/{made}")


@router.get("/licenses/{license_id}")
async def license_page(request: Request, license_id: int) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        found = management.get_license(session, user.admin, license_id)
        return {
            "license": found,
            "devices": management.list_devices(session, user.admin, license_id),
            "seats": management.floating_slots(session, user.admin, license_id, now=_now()),
        }

    return await _page(request, "console/license.html", work)


def _license_action(name: str) -> Callable[[Session, SignedIn, AppState, FormData, int], Any]:
    def work(
        session: Session, user: SignedIn, _s: AppState, form: FormData, license_id: int
    ) -> Any:
        now = _now()
        if name in ("enable", "disable"):
            return management.set_enabled(
                session, user.admin, license_id, name == "enable", now=now
            )
        if name == "extend":
            days = _number(form, "days")
            return management.extend_license(session, user.admin, license_id, days=days, now=now)
        return management.reset_license(session, user.admin, license_id, now=now)

    return work


@router.post("/licenses/{license_id}/{action}")
async def license_action(request: Request, license_id: int, action: str) -> Response:
    if action not in ("enable", "disable", "extend", "reset"):
        return Response(status_code=404)
    work = _license_action(action)
    return await _action(
        request,
        lambda s, u, st, f: work(s, u, st, f, license_id),
        lambda _: f"/console/licenses/{license_id}",
    )


@router.post("/devices/{device_id}/deactivate")
async def deactivate_device(request: Request, device_id: int) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState, form: FormData) -> Any:
        management.deactivate_device(session, user.admin, device_id, now=_now())
        return _number(form, "license_id")

    return await _action(
        request, work, lambda back: f"/console/licenses/{back}" if back else "/console/licenses"
    )


@router.get("/products")
async def products(request: Request) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        return {"products": management.list_products(session, user.admin)}

    return await _page(request, "console/products.html", work)


@router.get("/products/{code}")
async def product_page(request: Request, code: str) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        product = next(
            (p for p in management.list_products(session, user.admin) if p["short_code"] == code),
            None,
        )
        if product is None:
            raise management.not_found("product", repr(code))
        return {
            "product": product,
            "features": features.list_features(session, user.admin, code),
            "custom_fields": features.list_custom_fields(session, user.admin, code),
            "policies": policies.list_policies(session, user.admin, code),
            "releases": management.list_releases(session, user.admin, code),
        }

    return await _page(request, "console/product.html", work)


@router.post("/products")
async def create_product(request: Request) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState, form: FormData) -> Any:
        method = _text(form, "authorization_method") or "license-key"
        spec = catalogue.ProductSpec(
            short_code=_text(form, "short_code"),
            name=_text(form, "name")[:200],
            authorization_method=method,
        )
        return management.create_product(session, user.admin, spec, now=_now())

    return await _action(request, work, lambda _: "/console/products")


@router.get("/audit")
async def audit(request: Request) -> Response:
    action = request.query_params.get("action", "")[:100]
    before_text = request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None

    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        user.admin.require("read")
        rows = console.recent_audit(
            session, user.admin.company_id, limit=console.PAGE + 1, action=action, before=before
        )
        more = rows[console.PAGE - 1].id if len(rows) > console.PAGE else None
        return {"audit": rows[: console.PAGE], "more": more, "action": action}

    return await _page(request, "console/audit.html", work)


@router.get("/customers")
async def customers(request: Request) -> Response:
    search = request.query_params.get("q", "")[:320]
    page_text = request.query_params.get("page", "1")
    number = int(page_text) if page_text.isdigit() and 0 < len(page_text) < 9 else 1

    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        found = management.list_customers(
            session, user.admin, search=search or None, page=max(number, 1), per_page=console.PAGE
        )
        more = found["page"] * found["per_page"] < found["total"]
        return {**found, "q": search, "more": more}

    return await _page(request, "console/customers.html", work)


@router.get("/blacklist")
async def blacklist(request: Request) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        return {
            "entries": management.list_blacklist(session, user.admin),
            "products": management.list_products(session, user.admin),
        }

    return await _page(request, "console/blacklist.html", work)


@router.post("/blacklist")
async def blacklist_add(request: Request) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState, form: FormData) -> Any:
        return management.blacklist_add(
            session,
            user.admin,
            _text(form, "hardware_id"),
            product=_text(form, "product") or None,
            reason=_text(form, "reason")[:500],
            now=_now(),
        )

    return await _action(request, work, lambda _: "/console/blacklist")


@router.post("/blacklist/{entry_id}/remove")
async def blacklist_remove(request: Request, entry_id: int) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState, _form: FormData) -> Any:
        management.blacklist_remove(session, user.admin, entry_id, now=_now())

    return await _action(request, work, lambda _: "/console/blacklist")


@router.get("/credentials")
async def credentials_page(request: Request) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState) -> dict[str, Any]:
        return credentials.list_credentials(session, user.admin)

    return await _page(request, "console/credentials.html", work)


async def _secret_page(
    request: Request, work: Callable[[Session, SignedIn, AppState, FormData], dict[str, Any]]
) -> Response:
    """A form's POST whose answer holds a secret: shown on this page, once (not stored, not
    in a redirect; the page is not cached)."""
    checked = await _checked_form(request)
    if isinstance(checked, Response):
        return checked
    user, form = checked
    _, done = await _run(request, lambda s, u, st: work(s, u, st, form), write=True)
    if isinstance(done, LicensorError):
        return _refused(user, done)
    assert done is not None
    return _render(user, "console/secret.html", made=done)


@router.post("/credentials/api-keys")
async def create_api_key(request: Request) -> Response:
    def work(session: Session, user: SignedIn, state: AppState, form: FormData) -> dict[str, Any]:
        made = credentials.create_api_key(
            session,
            state.keys.master_key,
            user.admin,
            read_only=_text(form, "read_only") == "on",
            products=None,
            label=_text(form, "label")[:200],
            now=_now(),
        )
        return {"what": "API key", "id": made["api_key"], "secret": made["shared_key"]}

    return await _secret_page(request, work)


@router.post("/credentials/api-keys/{key_id}/{action}")
async def api_key_action(request: Request, key_id: int, action: str) -> Response:
    if action == "revoke":

        def revoke(session: Session, user: SignedIn, _state: AppState, _form: FormData) -> Any:
            return credentials.revoke_api_key(session, user.admin, key_id, now=_now())

        return await _action(request, revoke, lambda _: "/console/credentials")
    if action != "rotate":
        return Response(status_code=404)

    def rotate(session: Session, user: SignedIn, state: AppState, form: FormData) -> dict[str, Any]:
        made = credentials.rotate_api_key(
            session,
            state.keys.master_key,
            user.admin,
            key_id,
            overlap_seconds=_number(form, "overlap", 0) or 0,
            now=_now(),
        )
        return {"what": "API key", "id": made["api_key"], "secret": made["shared_key"]}

    return await _secret_page(request, rotate)


@router.post("/credentials/oauth-clients")
async def create_oauth_client(request: Request) -> Response:
    def work(session: Session, user: SignedIn, state: AppState, _form: FormData) -> dict[str, Any]:
        made = credentials.create_oauth_client(
            session, state.keys.master_key, user.admin, scope="company", now=_now()
        )
        return {"what": "OAuth client", "id": made["client_id"], "secret": made["client_secret"]}

    return await _secret_page(request, work)


@router.post("/credentials/oauth-clients/{client_id}/revoke")
async def revoke_oauth_client(request: Request, client_id: int) -> Response:
    def work(session: Session, user: SignedIn, _state: AppState, _form: FormData) -> Any:
        return credentials.revoke_oauth_client(session, user.admin, client_id, now=_now())

    return await _action(request, work, lambda _: "/console/credentials")
