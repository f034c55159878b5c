"""The templates of the pages, and the answers every page shares (security headers, CSRF)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from licensor import __version__
from licensor.api.state import AppState
from licensor.core.errors import LicensorError
from licensor.services import rate_limit, seats

templates = Environment(
    loader=PackageLoader("licensor.api.pages", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Nothing but this server's own page: no script runs, no frame holds it, forms post here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# the forms' paths: the section they belong to, and the page that holds them
PAGE_OF_FORM = dict.fromkeys(
    ("/offline", "/offline/computer-key", "/offline/release"),
    ("Activate without internet", "/offline"),
)
T = TypeVar("T")
CSRF_COOKIE = "licensor_csrf"
CSRF_FIELD = "csrf_token"


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(version=__version__, **context)
    return HTMLResponse(html, status, headers=SECURITY_HEADERS)


def too_large(path: str, limit: int) -> tuple[bytes, dict[str, str]]:
    """The page that refuses a form body over ``limit`` bytes (``api/middleware.LimitBody``,
    before any handler runs), with its headers."""
    message = f"The request body is larger than {limit} bytes"
    section, home = PAGE_OF_FORM.get(path, ("", "/"))
    html = templates.get_template("too_large.html").render(
        version=__version__, message=message, path=home, section=section
    )
    return html.encode(), {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS}


def with_csrf(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """``page`` with a form token: the page's hidden field and a cookie hold the same random
    value (double submit); a form posted from another site has no such cookie (SameSite)."""
    token = request.cookies.get(CSRF_COOKIE) or ""
    if len(token) != 43:  # (secrets.token_urlsafe(32))
        token = secrets.token_urlsafe(32)
    response = page(name, status, csrf_token=token, **context)
    response.set_cookie(
        CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def csrf_ok(request: Request, submitted: object) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return (
        isinstance(submitted, str)
        and bool(cookie)
        and hmac.compare_digest(cookie.encode(), submitted.encode())
    )


def limited_attempt(
    state: AppState, request: Request, scope: str, identity: str | None, work: Callable[[], T]
) -> T:
    """A sign-in attempt (``work``, in this thread) under the rate limits of wrong guesses:
    per client address, and per ``identity`` in ``scope`` when given. Over them:
    ``RateLimited`` before ``work`` runs; a refusal of ``work`` is counted."""
    policy = rate_limit.Policy.of(state.settings)
    host = request.client.host if request.client else None
    limits = seats.RateLimits(policy, rate_limit.buckets(policy, host, 0, scope, identity))
    now = datetime.now(UTC)
    if limits.buckets:
        with state.db.transaction() as session:
            rate_limit.ensure_allowed(session, policy, limits.buckets, now)
    try:
        return work()
    except LicensorError as exc:
        limits.count(state.db, now, exc.code)
        raise
