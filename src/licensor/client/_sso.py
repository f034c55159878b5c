"""Single sign-on activation: log in at the customer's identity provider in the browser.

The login URL comes from the server (``LicenseClient.sso_url``); the provider redirects the browser
to a one-shot HTTP listener on a random 127.0.0.1 port (RFC 8252), which hands the ``code`` (or,
for the implicit grant, the ``id_token`` from the URL fragment) to ``LicenseClient.activate_sso``.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from licensor.client._client import LicenseClient
    from licensor.client._license import License

_FRAGMENT_PAGE = b"""<!doctype html><meta charset="utf-8"><title>Signing in</title>
<script>location.replace("/?" + location.hash.substring(1));</script>
<noscript>JavaScript is needed to finish signing in.</noscript>"""
_DONE_PAGE = b"""<!doctype html><meta charset="utf-8"><title>Signed in</title>
<p>You are signed in. You can close this window and return to the application.</p>"""


class SsoLoginFailed(Exception):
    """The browser login did not finish (timeout, refusal at the provider, wrong ``state``)."""


def _receive_redirect(
    open_url: Callable[[str], Any],
    login_url: Callable[[str], str],
    timeout: float,
) -> dict[str, str]:
    """Listen on 127.0.0.1 (random port), open the login page, return the redirect's parameters."""
    from http.server import BaseHTTPRequestHandler, HTTPServer  # network code only when used

    received: dict[str, str] = {}
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            finished = bool(query)
            page = _DONE_PAGE if finished else _FRAGMENT_PAGE  # tokens may be in the fragment
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            if finished:
                received.update(query)
                done.set()

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 0.2
    try:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
        opener = threading.Thread(target=open_url, args=(login_url(redirect_uri),), daemon=True)
        opener.start()
        waited = 0.0
        while not done.is_set():
            if waited >= timeout:
                raise SsoLoginFailed("the login did not finish in time")
            server.handle_request()
            waited += server.timeout
    finally:
        server.server_close()
    received["redirect_uri"] = redirect_uri
    return received


def sso_activate(
    client: LicenseClient,
    customer_account_code: str,
    *,
    response_type: Literal["code", "token"] = "code",
    timeout: float = 300.0,
    open_url: Callable[[str], Any] | None = None,
) -> License:
    """Open the customer's login page (``open_url``, default: the web browser), wait for the
    redirect, and activate this computer."""
    if open_url is None:
        import webbrowser

        open_url = webbrowser.open
    answer: dict[str, Any] = {}

    def login_url(redirect_uri: str) -> str:
        answer.update(
            client.sso_url(
                customer_account_code, response_type=response_type, redirect_uri=redirect_uri
            )
        )
        return str(answer["url"])

    params = _receive_redirect(open_url, login_url, timeout)
    if "error" in params:
        raise SsoLoginFailed(
            f"the identity provider refused: {params.get('error_description', params['error'])}"
        )
    if not hmac.compare_digest(params.get("state", ""), str(answer.get("state", ""))):
        raise SsoLoginFailed("the redirect's state does not match this login")
    nonce = answer.get("nonce") if isinstance(answer.get("nonce"), str) else None
    if response_type == "code":
        if "code" not in params:
            raise SsoLoginFailed("the redirect carries no code")
        return client.activate_sso(
            customer_account_code,
            code=params["code"],
            redirect_uri=params["redirect_uri"],
            nonce=nonce,
        )
    if "id_token" not in params:
        raise SsoLoginFailed("the redirect carries no id_token")
    return client.activate_sso(customer_account_code, id_token=params["id_token"], nonce=nonce)
