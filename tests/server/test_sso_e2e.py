"""Single sign-on end to end: a real ``licensor serve`` process against a real OIDC provider
process (tests/server/oidc_provider.py run with ``python -m``) on loopback, SQLite and PostgreSQL.

The customer account is created with the ``licensor customer-account create`` CLI; every License
API call is HMAC-signed and every answer's signature verified. Covered: ``sso_url``, the
authorization-code grant, a check and a deactivation, the implicit grant with an ``id_token``, a key
rotation in the provider picked up by the running server, and the provider killed (503).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from licensor.services import catalogue
from tests.server.oidc_provider import SigningKey
from tests.server.processes import Deployment, free_port, prepare, serve
from tests.server.support import Api, error_of

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "acme-corp"
EMAIL = "alice@customer.example"
CLIENT_ID = "licensor-e2e"
CLIENT_SECRET = "e2e-s3cret"
STARTUP_SECONDS = 60


@dataclass
class ProviderProcess:
    """The OIDC provider running as its own process, driven through its admin API."""

    process: subprocess.Popen[bytes]
    issuer: str
    admin_token: str

    def admin(self, method: str, path: str, **body: Any) -> dict[str, Any]:
        response = httpx.request(
            method,
            self.issuer + path,
            json=body if method == "POST" else None,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def issue(self, **claims: Any) -> str:
        return str(self.admin("POST", "/admin/issue", **claims)["id_token"])

    def rotate(self) -> str:
        return str(self.admin("POST", "/admin/rotate")["kid"])

    def requests(self) -> list[str]:
        return list(self.admin("GET", "/admin/requests")["requests"])

    def kill(self) -> None:
        """The whole process group, at once (SIGKILL: no graceful shutdown)."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@contextmanager
def run_provider(directory: Path) -> Iterator[ProviderProcess]:
    directory.mkdir(parents=True, exist_ok=True)
    state_file = directory / "provider.json"
    log_path = directory / "provider.log"
    command = [
        sys.executable, "-m", "tests.server.oidc_provider", "--port", "0",
        "--state-file", str(state_file), "--client-id", CLIENT_ID,
        "--client-secret", CLIENT_SECRET, "--login-email", EMAIL,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        provider: ProviderProcess | None = None
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not state_file.exists():
                if process.poll() is not None:
                    raise RuntimeError("OIDC provider exited early:\n" + log_path.read_text())
                if time.monotonic() > deadline:
                    raise RuntimeError("OIDC provider did not start:\n" + log_path.read_text())
                time.sleep(0.1)
            state = json.loads(state_file.read_text())
            assert state["pid"] == process.pid
            provider = ProviderProcess(process, state["issuer"], state["admin_token"])
            discovery = httpx.get(provider.issuer + "/.well-known/openid-configuration", timeout=30)
            assert discovery.json()["issuer"] == provider.issuer
            yield provider
        finally:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    with suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[ProviderProcess]:
    with run_provider(tmp_path / "provider") as running:
        yield running


def create_account(deployment: Deployment, issuer: str) -> dict[str, Any]:
    """What a vendor runs: ``licensor customer-account create`` in its own process."""
    command = [
        sys.executable, "-m", "licensor.cli.main", "customer-account", "create", ACCOUNT,
        "--issuer", issuer, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
        "--redirect-uri", "http://127.0.0.1", "--json",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env=deployment.env,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert CLIENT_SECRET.encode() not in result.stdout
    created: dict[str, Any] = json.loads(result.stdout)
    return created


@pytest.fixture
def deployment(database_url: str, tmp_path: Path, provider: ProviderProcess) -> Deployment:
    prepared = prepare(database_url, tmp_path / "data")
    with prepared.db.transaction(write=True) as session:
        catalogue.create_product(
            session,
            prepared.company_id,
            catalogue.ProductSpec("sso", "Sso", authorization_method="user"),
        )
        catalogue.create_license(
            session,
            prepared.company_id,
            "sso",
            catalogue.LicenseSpec(user_email=EMAIL, user_password="pw-123456", max_activations=3),
            now=datetime.now(UTC),
        )
    created = create_account(prepared, provider.issuer)
    assert created["issuer"] == provider.issuer and created["client_id"] == CLIENT_ID
    return prepared


def login(
    api: Api, response_type: str, redirect_uri: str, issuer: str
) -> tuple[dict[str, str], str]:
    """``GET /api/v4/sso_url``, then "log in" at the provider process: its redirect's parameters."""
    answer = api.call(
        "GET",
        "/api/v4/sso_url",
        params={
            "product": "sso",
            "customer_account_code": ACCOUNT,
            "response_type": response_type,
            "redirect_uri": redirect_uri,
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["url"].startswith(issuer + "/authorize?")
    assert body["openid_configuration"]["token_endpoint"] == issuer + "/token"
    assert CLIENT_SECRET not in answer.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(body["url"]).query).items()}
    assert query["client_id"] == CLIENT_ID and query["redirect_uri"] == redirect_uri
    redirect = httpx.get(body["url"], follow_redirects=False, timeout=30)
    assert redirect.status_code == 302, redirect.text
    location = redirect.headers["Location"]
    assert location.startswith(redirect_uri)
    parts = urlsplit(location)
    params = {k: v[0] for k, v in parse_qs(parts.fragment or parts.query).items()}
    assert params["state"] == body["state"]
    return params, body["nonce"]


def test_sso_against_provider_process(deployment: Deployment, provider: ProviderProcess) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    with serve(deployment) as base, httpx.Client(base_url=base, timeout=60) as http:
        api = Api(http, deployment.public_keys, deployment.api_key, deployment.shared_key)

        # -- authorization-code grant: the server exchanges the code at the provider process
        params, _nonce = login(api, "code", redirect_uri, provider.issuer)
        by_code = {
            "customer_account_code": ACCOUNT,
            "code": params["code"],
            "redirect_uri": redirect_uri,
        }
        activated = api.activate(hardware_id="pc-code", product="sso", **by_code)
        assert activated.status_code == 200, activated.text
        assert activated.json()["user"]["email"] == EMAIL
        assert "/token" in provider.requests()
        reused = api.activate(hardware_id="pc-other", product="sso", **by_code)
        assert error_of(reused) == (400, "sso_code_invalid")
        checked = api.check(hardware_id="pc-code", product="sso", username=EMAIL)
        assert checked.status_code == 200, checked.text
        params, _nonce = login(api, "code", redirect_uri, provider.issuer)
        gone = api.deactivate(
            hardware_id="pc-code", product="sso", **dict(by_code, code=params["code"])
        )
        assert gone.status_code == 200, gone.text
        assert gone.json() == "license_deactivated"

        # -- implicit grant: the id_token from the provider's redirect fragment
        params, nonce = login(api, "token", redirect_uri, provider.issuer)
        implicit = {
            "customer_account_code": ACCOUNT,
            "id_token": params["id_token"],
            "nonce": nonce,
        }
        activated = api.activate(hardware_id="pc-implicit", product="sso", **implicit)
        assert activated.status_code == 200, activated.text
        assert activated.json()["user"]["email"] == EMAIL
        checked = api.check(hardware_id="pc-implicit", product="sso", **implicit)
        assert checked.status_code == 200, checked.text
        stranger = api.activate(
            hardware_id="pc-bob",
            product="sso",
            customer_account_code=ACCOUNT,
            id_token=provider.issue(email="bob@other.example"),
        )
        assert error_of(stranger) == (400, "license_not_found")
        gone = api.deactivate(hardware_id="pc-implicit", product="sso", **implicit)
        assert gone.status_code == 200, gone.text

        # -- key rotation in the provider process: the server refetches the JWKS for the new kid
        base_ref = {"customer_account_code": ACCOUNT, "product": "sso", "hardware_id": "pc-r"}
        old = provider.issue()
        assert api.activate(id_token=old, **base_ref).status_code == 200
        jwks_before = provider.requests().count("/jwks")
        assert jwks_before >= 1
        new_kid = provider.rotate()
        time.sleep(1.2)  # the server refetches a JWKS at most once a second
        rotated = provider.issue()
        assert jwt.get_unverified_header(rotated)["kid"] == new_kid
        checked = api.check(id_token=rotated, **base_ref)
        assert checked.status_code == 200, checked.text
        assert provider.requests().count("/jwks") == jwks_before + 1
        again = api.check(id_token=provider.issue(), **base_ref)
        assert again.status_code == 200, again.text
        assert provider.requests().count("/jwks") == jwks_before + 1  # cached
        stale = api.check(id_token=old, **base_ref)  # the retired key is no longer published
        assert error_of(stale) == (400, "sso_token_invalid")

        # -- the provider process killed: 503, never 500
        params, _nonce = login(api, "code", redirect_uri, provider.issuer)
        provider.kill()
        down = api.activate(
            hardware_id="pc-down",
            product="sso",
            customer_account_code=ACCOUNT,
            code=params["code"],
            redirect_uri=redirect_uri,
        )
        assert error_of(down) == (503, "sso_provider_unavailable")
        assert down.headers.get("Retry-After")
        time.sleep(1.2)
        unknown_kid = jwt.encode(
            {"iss": provider.issuer, "aud": CLIENT_ID, "sub": "x", "email": EMAIL,
             "iat": int(time.time()), "exp": int(time.time()) + 300},
            SigningKey("key-unpublished").private,
            algorithm="RS256",
            headers={"kid": "key-unpublished"},
        )  # fmt: skip
        down = api.check(id_token=unknown_kid, **base_ref)  # the JWKS refetch fails
        assert error_of(down) == (503, "sso_provider_unavailable")
        # A token signed with a key the server still holds needs no provider.
        assert api.check(id_token=rotated, **base_ref).status_code == 200
