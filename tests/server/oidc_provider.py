"""A small but real OpenID Connect provider on 127.0.0.1 for the SSO tests.

It serves discovery, a JWKS (keys can be rotated), an authorization endpoint that logs in a
configured user at once (code or implicit grant) and a token endpoint (client_secret_basic), over
real HTTP in a thread. Tests also mint tokens with it directly, well-formed or deliberately bad.

It also runs as its own process for the end-to-end tests::

    python -m tests.server.oidc_provider --port 0 --state-file provider.json

prints its issuer URL and writes ``{"issuer", "admin_token", "pid", "client_id"}`` to the state
file once it listens. The same loopback server then offers a small admin API (``Authorization:
Bearer <admin_token>``): ``POST /admin/issue`` (JSON ``email``, ``nonce``, ``expires_in``,
``issued_ago``, ``audience``: an ``id_token``), ``POST /admin/rotate`` (a new signing key replaces
the current one), ``POST /admin/login`` (JSON ``email``, ``email_verified``: who the authorization
endpoint logs in) and ``GET /admin/requests`` (the paths served so far, admin calls excluded).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig", alg="RS256")
        return data


class OidcProvider:
    def __init__(
        self,
        client_id: str = "licensor",
        client_secret: str = "s3cret",
        *,
        port: int = 0,
        admin_token: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        # The admin API is only served when a token is given (the provider as its own process).
        self.admin_token = admin_token
        self.keys = [SigningKey("key-1")]
        self.login_email = "alice@customer.example"
        self.email_verified = True
        self.codes: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        # While set, the token endpoint waits until it is released (a slow provider).
        self.token_gate: threading.Event | None = None
        self.token_waiting = threading.Event()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _admin(self, method: str) -> bool:
                """Serve an admin call when this is one (and the admin API is on)."""
                path = urlsplit(self.path).path
                if provider.admin_token is None or not path.startswith("/admin/"):
                    return False
                body: dict[str, Any] = {}
                if method == "POST":
                    length = int(self.headers.get("Content-Length", "0"))
                    raw = self.rfile.read(length) if length else b""
                    try:
                        body = json.loads(raw) if raw else {}
                    except ValueError:
                        self._send(400, {"error": "invalid_json"})
                        return True
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given, f"Bearer {provider.admin_token}"):
                    self._send(401, {"error": "unauthorized"})
                    return True
                status, answer = provider.admin(method, path, body)
                self._send(status, answer)
                return True

            def do_GET(self) -> None:
                if self._admin("GET"):
                    return
                url = urlsplit(self.path)
                provider.requests.append(url.path)
                if url.path == "/.well-known/openid-configuration":
                    self._send(200, provider.discovery())
                elif url.path == "/jwks":
                    self._send(200, {"keys": [k.jwk() for k in provider.keys]})
                elif url.path == "/authorize":
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    self._send(302, None, {"Location": provider.authorize(query)})
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                if self._admin("POST"):
                    return
                provider.requests.append(self.path)
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                gate = provider.token_gate
                if gate is not None:
                    provider.token_waiting.set()
                    gate.wait(60)
                status, body = provider.token(self.headers.get("Authorization", ""), form)
                self._send(status, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> OidcProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- protocol --------------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "end_session_endpoint": self.issuer + "/logout",
            "response_types_supported": ["code", "id_token token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The user is logged in at once: redirect back with a code or tokens."""
        assert query["client_id"] == self.client_id
        redirect = query["redirect_uri"]
        nonce = query.get("nonce")
        if query["response_type"] == "code":
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"redirect_uri": redirect, "nonce": nonce}
            return redirect + "?" + urlencode({"code": code, "state": query.get("state", "")})
        token = self.issue(nonce=nonce)
        fragment = {
            "id_token": token,
            "access_token": secrets.token_urlsafe(16),
            "token_type": "Bearer",
            "expires_in": "300",
            "state": query.get("state", ""),
        }
        return redirect + "#" + urlencode(fragment)

    def token(self, authorization: str, form: dict[str, str]) -> tuple[int, Any]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return 400, {"error": "invalid_grant"}
        if grant["redirect_uri"] != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri"}
        return 200, {
            "id_token": self.issue(nonce=grant["nonce"]),
            "access_token": secrets.token_urlsafe(16),
            "token_type": "Bearer",
            "expires_in": 300,
        }

    def admin(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """The admin API of the provider process (see the module docstring)."""
        if method == "POST" and path == "/admin/issue":
            options = {
                name: body[name]
                for name in ("email", "nonce", "audience", "expires_in", "issued_ago")
                if body.get(name) is not None
            }
            token = self.issue(**options)
            return 200, {"id_token": token, "kid": jwt.get_unverified_header(token)["kid"]}
        if method == "POST" and path == "/admin/rotate":
            return 200, {"kid": self.rotate().kid}
        if method == "POST" and path == "/admin/login":
            if body.get("email"):
                self.login_email = str(body["email"])
            self.email_verified = bool(body.get("email_verified", True))
            return 200, {"email": self.login_email, "email_verified": self.email_verified}
        if method == "GET" and path == "/admin/requests":
            return 200, {"requests": list(self.requests)}
        return 404, {"error": "not_found"}

    # -- tokens ----------------------------------------------------------------------------------

    def rotate(self) -> SigningKey:
        """A new signing key replaces the current one in the JWKS."""
        new = SigningKey(f"key-{len(self.keys) + 1}-{secrets.token_hex(2)}")
        self.keys = [new]
        return new

    def issue(
        self,
        *,
        email: str | None = None,
        nonce: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        expires_in: int = 300,
        issued_ago: int = 0,
        key: SigningKey | None = None,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "sub": "user-" + (email or self.login_email),
            "aud": audience or self.client_id,
            "iat": now - issued_ago,
            "exp": now - issued_ago + expires_in,
            "email": email or self.login_email,
            "email_verified": self.email_verified,
            **extra,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        signer = key or self.keys[-1]
        return jwt.encode(claims, signer.private, algorithm="RS256", headers={"kid": signer.kid})

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "email": self.login_email,
            **overrides,
        }


# -- as its own process ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--state-file", help="JSON written once listening (issuer, admin_token)")
    parser.add_argument("--client-id", default="licensor")
    parser.add_argument("--client-secret", default="s3cret")
    parser.add_argument("--login-email", default=None, help="who /authorize logs in")
    args = parser.parse_args(argv)
    provider = OidcProvider(
        args.client_id,
        args.client_secret,
        port=args.port,
        admin_token=secrets.token_urlsafe(24),
    )
    if args.login_email:
        provider.login_email = args.login_email
    state = {
        "issuer": provider.issuer,
        "admin_token": provider.admin_token,
        "pid": os.getpid(),
        "client_id": provider.client_id,
    }
    if args.state_file:
        partial = args.state_file + ".tmp"
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(partial, args.state_file)  # readers never see half a file
    print(provider.issuer, flush=True)
    try:
        provider.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        provider.httpd.server_close()


if __name__ == "__main__":
    main()
