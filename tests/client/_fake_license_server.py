"""A small in-memory License API v4 server for client tests: the other side of the wire.

It signs every answer exactly as DECISIONS §2 says (Ed25519 when asked, RSA otherwise; errors
too) so the client's verification runs against real signatures. Serve it through
``httpx.MockTransport`` (``transport()``) or over real HTTP (``serve()``) for subprocess tests.
The real server replaces it in ``test_e2e.py``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from licensor.protocol.auth import http_date, parse_authorization
from licensor.protocol.signing import (
    compact_json,
    format_licensor_signature,
    iso_ms_z,
    key_id,
    license_signing_string,
    sign_bytes,
    v2_signing_bytes,
)


def public_pem(private_key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class FakeLicense:
    key: str
    product: str = "app"
    license_type: str = "perpetual"
    validity_period: datetime | None = None
    allow_grace_period: bool = False
    grace_period: int = 0
    max_activations: int = 2
    enabled: bool = True
    is_trial: bool = False
    features: list[dict[str, Any]] = field(default_factory=list)
    custom_fields: list[dict[str, Any]] = field(default_factory=list)
    username: str | None = None
    password: str | None = None
    devices: dict[str, bool] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    headers: dict[str, str]


Answer = tuple[int, dict[str, str], bytes]


class FakeLicenseServer:
    def __init__(
        self,
        ed25519_key: ed25519.Ed25519PrivateKey | None,
        rsa_key: rsa.RSAPrivateKey | None,
        *,
        api_key: str = "api-key-1",
        shared_key: str = "shared-secret",
    ) -> None:
        self.ed25519_key = ed25519_key
        self.rsa_key = rsa_key
        self.api_key = api_key
        self.shared_key = shared_key
        self.licenses: dict[str, FakeLicense] = {}
        self.requests: list[Recorded] = []
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        # Hooks for tests: a queue of forced failures and an answer rewriter (a man in the middle).
        self.failures: list[int | type[Exception]] = []
        self.rewrite: Callable[[str, Answer], Answer] | None = None
        self.idempotent: dict[str, Answer] = {}
        self.tokens: dict[str, datetime] = {}
        self.oauth_clients = {"client-1": "client-secret"}
        self._lock = threading.Lock()
        self._next_device = 1000

    # ------------------------------------------------------------------ setup helpers

    def add_license(self, key: str, **fields: Any) -> FakeLicense:
        self.licenses[key] = FakeLicense(key=key, **fields)
        return self.licenses[key]

    # ------------------------------------------------------------------ signing

    def sign(self, value: Any, headers: dict[str, str], *, status: int = 200) -> Answer:
        content = compact_json(value)
        return status, self._signature_headers(content, headers), content

    def _signature_headers(self, content: bytes, request_headers: dict[str, str]) -> dict[str, str]:
        wants_ed25519 = request_headers.get("licensor-accept-signature", "").lower() == "ed25519"
        out = {"Content-Type": "application/json"}
        if wants_ed25519 and self.ed25519_key is not None:
            kid = key_id(self.ed25519_key.public_key())
            out["Licensor-Signature"] = format_licensor_signature(
                kid, sign_bytes(self.ed25519_key, content)
            )
        else:
            assert self.rsa_key is not None
            out["LicenseSignature"] = sign_bytes(self.rsa_key, content)
            out["Licensor-Key-Id"] = key_id(self.rsa_key.public_key())
        return out

    def _signing_key(
        self, request_headers: dict[str, str]
    ) -> ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey:
        wants_ed25519 = request_headers.get("licensor-accept-signature", "").lower() == "ed25519"
        if wants_ed25519 and self.ed25519_key is not None:
            return self.ed25519_key
        assert self.rsa_key is not None
        return self.rsa_key

    def error(self, code: str, message: str, headers: dict[str, str], status: int = 400) -> Answer:
        return self.sign(
            {"status": status, "code": code, "message": message}, headers, status=status
        )

    # ------------------------------------------------------------------ dispatch

    def handle(
        self, method: str, path: str, params: dict[str, str], body: bytes, headers: dict[str, str]
    ) -> Answer:
        headers = {k.lower(): v for k, v in headers.items()}
        parsed: Any = None
        if body:
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                parsed = dict(parse_qsl(body.decode()))
            else:
                parsed = json.loads(body)
        with self._lock:
            self.requests.append(Recorded(method, path, params, parsed, headers))
            failure = self.failures.pop(0) if self.failures else None
            if failure is None:
                answer = self._route(method, path.rstrip("/"), params, parsed, headers)
            elif isinstance(failure, int):
                answer = self.error("service_unavailable", "down", headers, status=failure)
            else:
                raise failure("injected failure")
        if self.rewrite is not None:
            answer = self.rewrite(path, answer)
        return answer

    def _route(
        self, method: str, path: str, params: dict[str, str], body: Any, headers: dict[str, str]
    ) -> Answer:
        if path == "/api/v4/oauth/token":
            return self._token(body)
        problem = self._authenticate(headers)
        if problem is not None:
            return problem
        routes = {
            ("POST", "/api/v4/activate_license"): lambda: self._activate(body, headers),
            ("GET", "/api/v4/check_license"): lambda: self._check(params, headers),
            ("POST", "/api/v4/deactivate_license"): lambda: self._deactivate(body, headers),
            ("GET", "/api/v4/trial_key"): lambda: self._trial(params, headers),
            ("GET", "/api/v4/product_details"): lambda: self._product(params, headers),
            ("POST", "/api/v4/track_device_variables"): lambda: self._track(body, headers),
            ("GET", "/api/v4/get_device_variables"): lambda: self._variables(params, headers),
        }
        route = routes.get((method, path))
        if route is None:
            return self.error("not_found", "not found", headers, status=404)
        return route()

    def _token(self, form: Any) -> Answer:
        if not isinstance(form, dict) or self.oauth_clients.get(form.get("client_id")) != form.get(
            "client_secret"
        ):
            content = compact_json({"error": "invalid_client", "error_description": "bad client"})
            return 401, {"Content-Type": "application/json"}, content
        token = uuid.uuid4().hex
        self.tokens[token] = self.now() + timedelta(seconds=480)
        content = compact_json({"access_token": token, "expires_in": 480, "token_type": "Bearer"})
        return 200, {"Content-Type": "application/json"}, content

    def _authenticate(self, headers: dict[str, str]) -> Answer | None:
        authorization = headers.get("authorization")
        if "date" not in headers or authorization is None:
            return self.error("missing_headers", "Required headers are missing", headers)
        if authorization.startswith("Bearer "):
            expires = self.tokens.get(authorization[7:])
            if expires is None:
                return self.error("oauth_token_malformed", "bad token", headers, status=401)
            if expires <= self.now():
                return self.error("oauth_token_expired", "expired", headers, status=401)
            return None
        from licensor.protocol.auth import hmac_signature

        pairs = parse_authorization(authorization)
        if pairs.get("apikey") != self.api_key:
            return self.error("invalid_api_key", "Invalid API key", headers)
        if pairs.get("signature") != hmac_signature(self.shared_key, headers["date"]):
            return self.error("signature_mismatch", "mismatch", headers, status=401)
        return None

    def _find(self, data: dict[str, Any], headers: dict[str, str]) -> FakeLicense | Answer:
        key = data.get("license_key")
        username = data.get("username")
        for lic in self.licenses.values():
            if lic.product != data.get("product"):
                continue
            if key is not None and lic.key == key:
                return lic
            if username is not None and lic.username == username:
                return lic
        if not any(lic.product == data.get("product") for lic in self.licenses.values()):
            return self.error("unknown_product", "Provided product was not found", headers)
        return self.error("license_not_found", "License not found", headers)

    def license_body(
        self, lic: FakeLicense, hardware_id: str, headers: dict[str, str], *, check: bool = False
    ) -> dict[str, Any]:
        validity = iso_ms_z(lic.validity_period) if lic.validity_period else None
        now = self.now()
        body: dict[str, Any] = {
            "id": 1,
            "license_active": True,
            "license_enabled": lic.enabled,
            "license_type": lic.license_type,
        }
        if lic.username is None:
            body["license_key"] = lic.key
        else:
            body["user"] = {"id": 7, "email": lic.username}
        body.update(
            {
                "is_trial": lic.is_trial,
                "validity_period": validity,
                "is_expired": lic.validity_period is not None and lic.validity_period <= now,
                "allow_grace_period": lic.allow_grace_period,
                "grace_period": lic.grace_period,
                "max_activations": lic.max_activations,
                "times_activated": sum(lic.devices.values()),
                "product_features": lic.features,
                "custom_fields": lic.custom_fields,
                "metadata": {"tier": "pro"},
                "hardware_id": hardware_id,
                "device_id": self._next_device,
                "date": http_date(now),
            }
        )
        key = self._signing_key(headers)
        identity = lic.key if lic.username is None else lic.username
        body["license_signature"] = sign_bytes(
            key, license_signing_string(hardware_id, identity, validity).encode()
        )
        if check:
            body["license_signature_v2"] = sign_bytes(key, v2_signing_bytes(body))
        return body

    def _activate(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        idempotency_key = headers.get("idempotency-key")
        if idempotency_key and idempotency_key in self.idempotent:
            return self.idempotent[idempotency_key]
        found = self._find(body, headers)
        if not isinstance(found, FakeLicense):
            return found
        lic = found
        if lic.username is not None and body.get("password") != lic.password:
            return self.error("invalid_credentials", "wrong password", headers)
        if not lic.enabled:
            return self.error("license_not_enabled", "disabled", headers)
        if lic.validity_period is not None and lic.validity_period <= self.now():
            return self.error("license_expired", "License validity period has expired", headers)
        hardware_id = body["hardware_id"]
        if lic.devices.get(hardware_id):
            return self.error("license_device_exists", "exists", headers, status=409)
        if sum(lic.devices.values()) >= lic.max_activations:
            return self.error("license_activated_max_times", "max", headers)
        lic.devices[hardware_id] = True
        self._next_device += 1
        for name, value in (body.get("variables") or {}).items():
            lic.variables[name] = {"variable": name, "value": str(value)}
        answer = self.sign(self.license_body(lic, hardware_id, headers), headers)
        if idempotency_key:
            self.idempotent[idempotency_key] = answer
        return answer

    def _device(self, data: dict[str, Any], headers: dict[str, str]) -> FakeLicense | Answer:
        found = self._find(data, headers)
        if not isinstance(found, FakeLicense):
            return found
        if not found.enabled:
            return self.error("license_not_enabled", "disabled", headers)
        if not found.devices.get(data.get("hardware_id", "")):
            return self.error("device_not_found", "Device not found on the license", headers)
        return found

    def _check(self, params: dict[str, str], headers: dict[str, str]) -> Answer:
        found = self._device(params, headers)
        if not isinstance(found, FakeLicense):
            return found
        body = self.license_body(found, params["hardware_id"], headers, check=True)
        return self.sign(body, headers)

    def _deactivate(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        found = self._device(body, headers)
        if not isinstance(found, FakeLicense):
            return found
        found.devices[body["hardware_id"]] = False
        return self.sign("license_deactivated", headers)

    def _trial(self, params: dict[str, str], headers: dict[str, str]) -> Answer:
        key = f"TRIAL-{params['hardware_id'][:8].upper()}"
        if key not in self.licenses:
            self.add_license(
                key,
                product=params["product"],
                is_trial=True,
                license_type="time-limited",
                validity_period=self.now() + timedelta(days=14),
            )
        return self.sign({"license_key": key, "is_trial": True, "trial_days": 14}, headers)

    def _product(self, params: dict[str, str], headers: dict[str, str]) -> Answer:
        products = {lic.product: lic for lic in self.licenses.values()}
        lic = products.get(params.get("product", ""))
        if lic is None:
            return self.error("unknown_product", "Provided product was not found", headers)
        body = {
            "product_id": 1,
            "product_name": lic.product.title(),
            "short_code": lic.product,
            "authorization_method": "user" if lic.username else "license-key",
            "allow_trial": True,
            "trial_days": 14,
        }
        return self.sign(body, headers)

    def _track(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        found = self._device(body, headers)
        if not isinstance(found, FakeLicense):
            return found
        for name, value in body["variables"].items():
            found.variables[name] = {"variable": name, "value": str(value)}
        return self._variable_list(found, headers)

    def _variables(self, params: dict[str, str], headers: dict[str, str]) -> Answer:
        found = self._device(params, headers)
        if not isinstance(found, FakeLicense):
            return found
        return self._variable_list(found, headers)

    def _variable_list(self, lic: FakeLicense, headers: dict[str, str]) -> Answer:
        items = [
            {**item, "device_id": 1000, "created_at": 1698667364802}
            for item in lic.variables.values()
        ]
        return self.sign(items, headers)

    # ------------------------------------------------------------------ transports

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            url = urlsplit(str(request.url))
            params = dict(parse_qsl(url.query))
            try:
                status, headers, content = self.handle(
                    request.method, url.path, params, request.content, dict(request.headers)
                )
            except httpx.TransportError as exc:
                raise type(exc)(str(exc), request=request) from None
            return httpx.Response(status, headers=headers, content=content)

        return httpx.MockTransport(handler)

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        """Serve over real HTTP on a free local port; returns the server and its base URL."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, headers, content = fake.handle(
                        self.command, url.path, dict(parse_qsl(url.query)), body, dict(self.headers)
                    )
                except Exception:
                    self.close_connection = True
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = _answer  # noqa: N815 - the name http.server dispatches to
            do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"
