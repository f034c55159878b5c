"""Single sign-on (OIDC) end to end: Licensor against a real provider on loopback, both DBs."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from typer.testing import CliRunner

from licensor.cli.main import app
from licensor.client import HmacCredentials, LicenseClient, SsoLoginFailed, sso_activate
from licensor.services import sso
from licensor.store.models import CustomerAccount
from tests.server.oidc_provider import OidcProvider, SigningKey
from tests.server.processes import free_port
from tests.server.support import Server, error_of

ACCOUNT = "acme-corp"
EMAIL = "alice@customer.example"


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with OidcProvider() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_provider_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    sso.providers.clear()
    monkeypatch.setattr(sso.providers, "min_refetch_seconds", 0.0)


def add_account(
    server: Server,
    issuer: str,
    *,
    code: str = ACCOUNT,
    configured: bool = True,
    auto_create_license_id: int | None = None,
    client_id: str = "licensor",
    client_secret: str = "s3cret",
) -> None:
    oidc = sso.OidcSettings(
        issuer,
        client_id,
        client_secret,
        ("http://127.0.0.1",),
        auto_create_license_id=auto_create_license_id,
    )
    with server.db.transaction(write=True) as session:
        sso.create_customer_account(
            session,
            server.master_key,
            server.company_id,
            code,
            oidc=oidc if configured else None,
        )


@pytest.fixture
def sso_server(server: Server, provider: OidcProvider) -> Server:
    server.product("sso", authorization_method="user")
    server.license("sso", user_email=EMAIL, user_password="pw-123456", max_activations=3)
    add_account(server, provider.issuer)
    return server


def login(server: Server, response_type: str, redirect_uri: str) -> tuple[dict[str, Any], str]:
    """Ask Licensor for the login URL, then "log in" at the provider: its redirect's parameters."""
    answer = server.api.call(
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
    redirect = httpx.get(body["url"], follow_redirects=False).headers["Location"]
    assert redirect.startswith(redirect_uri)
    parts = urlsplit(redirect)
    params = {k: v[0] for k, v in parse_qs(parts.fragment or parts.query).items()}
    assert params["state"] == body["state"]
    return params, body["nonce"]


def test_sso_url_names_provider_with_state_and_nonce(
    sso_server: Server, provider: OidcProvider
) -> None:
    answer = sso_server.api.call(
        "GET", "/api/v4/sso_url", params={"product": "sso", "customer_account_code": ACCOUNT}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    url = urlsplit(body["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert body["url"].startswith(provider.issuer + "/authorize?")
    assert query["response_type"] == "code"
    assert query["client_id"] == provider.client_id
    assert query["redirect_uri"] == "http://127.0.0.1"
    assert query["state"] and query["nonce"] == body["nonce"]
    assert body["openid_configuration"]["issuer"] == provider.issuer
    assert body["openid_configuration"]["token_endpoint"] == provider.issuer + "/token"
    assert "s3cret" not in answer.text


def test_implicit_grant_activates_checks_and_deactivates(
    sso_server: Server, provider: OidcProvider
) -> None:
    params, nonce = login(sso_server, "token", "http://127.0.0.1:8123/callback")
    sso = {"customer_account_code": ACCOUNT, "id_token": params["id_token"], "nonce": nonce}
    activated = sso_server.api.activate(hardware_id="pc-1", product="sso", **sso)
    assert activated.status_code == 200, activated.text
    assert activated.json()["user"]["email"] == EMAIL
    checked = sso_server.api.check(hardware_id="pc-1", product="sso", **sso)
    assert checked.status_code == 200, checked.text
    # Once activated, a check by username works too (the client library checks that way).
    assert (
        sso_server.api.check(hardware_id="pc-1", product="sso", username=EMAIL).status_code == 200
    )
    gone = sso_server.api.deactivate(hardware_id="pc-1", product="sso", **sso)
    assert gone.status_code == 200, gone.text
    assert gone.json() == "license_deactivated"


def test_authorization_code_grant_activates_once_per_code(
    sso_server: Server, provider: OidcProvider
) -> None:
    redirect_uri = "http://127.0.0.1:8124/cb"
    params, _nonce = login(sso_server, "code", redirect_uri)
    sso = {"customer_account_code": ACCOUNT, "code": params["code"], "redirect_uri": redirect_uri}
    activated = sso_server.api.activate(hardware_id="pc-2", product="sso", **sso)
    assert activated.status_code == 200, activated.text
    assert "/token" in provider.requests
    again = sso_server.api.activate(hardware_id="pc-3", product="sso", **sso)
    assert error_of(again) == (400, "sso_code_invalid")
    # A redirect URI that was never registered is refused before the provider is asked.
    params, _nonce = login(sso_server, "code", redirect_uri)
    other = dict(sso, code=params["code"], redirect_uri="https://evil.example/cb")
    refused = sso_server.api.activate(hardware_id="pc-3", product="sso", **other)
    assert error_of(refused) == (400, "sso_redirect_uri_not_allowed")


def test_a_slow_provider_holds_up_no_other_activation(
    sso_server: Server, provider: OidcProvider
) -> None:
    """The provider is asked before the write transaction: while it takes its time over a code,
    other activations (SQLite: one writer at a time) go on."""
    sso_server.product("app")
    other = sso_server.license("app")
    redirect_uri = "http://127.0.0.1:8125/cb"
    params, _nonce = login(sso_server, "code", redirect_uri)
    sso = {"customer_account_code": ACCOUNT, "code": params["code"], "redirect_uri": redirect_uri}
    provider.token_gate = threading.Event()
    answers: dict[str, httpx.Response] = {}

    def sso_activation() -> None:
        answers["sso"] = sso_server.api.activate(hardware_id="pc-slow", product="sso", **sso)

    waiting = threading.Thread(target=sso_activation)
    waiting.start()
    try:
        assert provider.token_waiting.wait(30), "the server never asked the provider"
        # the SSO activation is now waiting on the provider; another one must not wait on it
        plain = sso_server.api.call(
            "POST",
            "/api/v4/activate_license",
            json={"product": "app", "license_key": other.license_key, "hardware_id": "pc-other"},
            timeout=20,  # (SQLite's busy timeout, 30 s, would be reached first if it waited)
        )
        assert plain.status_code == 200, plain.text
        assert waiting.is_alive()  # the provider has not answered yet
    finally:
        provider.token_gate.set()
        waiting.join(60)
    assert answers["sso"].status_code == 200, answers["sso"].text
    assert answers["sso"].json()["user"]["email"] == EMAIL


def test_key_rotation_is_picked_up_and_jwks_is_cached(
    sso_server: Server, provider: OidcProvider
) -> None:
    first = provider.issue()
    base = {"customer_account_code": ACCOUNT, "product": "sso", "hardware_id": "pc-r"}
    assert sso_server.api.activate(id_token=first, **base).status_code == 200
    assert sso_server.api.check(id_token=provider.issue(), **base).status_code == 200
    assert provider.requests.count("/jwks") == 1  # cached
    provider.rotate()
    rotated = provider.issue()
    assert jwt.get_unverified_header(rotated)["kid"] != "key-1"
    checked = sso_server.api.check(id_token=rotated, **base)
    assert checked.status_code == 200, checked.text
    assert provider.requests.count("/jwks") == 2  # unknown kid: fetched again
    # The retired key is gone from the provider's JWKS: its tokens no longer verify.
    stale = sso_server.api.check(id_token=first, **base)
    assert error_of(stale) == (400, "sso_token_invalid")


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return part({"alg": "none", "kid": "key-1", "typ": "JWT"}) + "." + part(claims) + "."


BAD_TOKENS = {
    "expired": ("sso_token_expired", None),
    "bad_signature": ("sso_token_invalid", "bad signature"),
    "wrong_audience": ("sso_token_invalid", "wrong audience"),
    "wrong_issuer": ("sso_token_invalid", "wrong issuer"),
    "alg_none": ("sso_token_invalid", "alg none"),
    "hmac": ("sso_token_invalid", "HMAC"),
    "nonce_mismatch": ("sso_token_invalid", "nonce"),
    "unknown_kid": ("sso_token_invalid", "bad signature"),
    "garbage": ("sso_token_invalid", "malformed"),
}


def make_bad_token(kind: str, provider: OidcProvider) -> str:
    if kind == "expired":
        return provider.issue(issued_ago=3600, expires_in=300)
    if kind == "bad_signature":
        impostor = SigningKey("key-1")  # the provider's kid, another private key
        return provider.issue(key=impostor)
    if kind == "wrong_audience":
        return provider.issue(audience="another-client")
    if kind == "wrong_issuer":
        return provider.issue(issuer="https://idp.evil.example")
    if kind == "alg_none":
        return _unsigned(provider.claims())
    if kind == "hmac":
        return jwt.encode(
            provider.claims(), provider.client_secret, algorithm="HS256", headers={"kid": "key-1"}
        )
    if kind == "nonce_mismatch":
        return provider.issue(nonce="another-login")
    if kind == "unknown_kid":
        return provider.issue(key=SigningKey("never-published"))
    return "not-a-jwt"


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_tokens_are_refused_with_clear_codes(
    sso_server: Server, provider: OidcProvider, kind: str
) -> None:
    code, words = BAD_TOKENS[kind]
    body: dict[str, Any] = {
        "customer_account_code": ACCOUNT,
        "product": "sso",
        "hardware_id": "pc-x",
        "id_token": make_bad_token(kind, provider),
    }
    if kind == "nonce_mismatch":
        body["nonce"] = "this-login"
    refused = sso_server.api.activate(**body)
    assert error_of(refused) == (400, code)
    if words:
        assert words in refused.json()["message"]
    assert sso_server.sql("SELECT count(*) FROM devices")[0][0] == 0


def test_unknown_account_and_unconfigured_account(
    sso_server: Server, provider: OidcProvider
) -> None:
    add_account(sso_server, provider.issuer, code="no-sso", configured=False)
    base = {"product": "sso", "hardware_id": "pc-u", "id_token": provider.issue()}
    unknown = sso_server.api.activate(customer_account_code="nobody", **base)
    assert error_of(unknown) == (400, "customer_account_not_found")
    bare = sso_server.api.activate(customer_account_code="no-sso", **base)
    assert error_of(bare) == (400, "sso_not_configured")
    url = sso_server.api.call(
        "GET", "/api/v4/sso_url", params={"product": "sso", "customer_account_code": "nobody"}
    )
    assert error_of(url) == (400, "customer_account_not_found")
    missing = sso_server.api.activate(**base)
    assert error_of(missing) == (400, "missing_parameters")


def test_provider_down_is_503_not_500(sso_server: Server, provider: OidcProvider) -> None:
    add_account(sso_server, f"http://127.0.0.1:{free_port()}", code="down")
    base = {"product": "sso", "hardware_id": "pc-d", "customer_account_code": "down"}
    answer = sso_server.api.activate(id_token=provider.issue(), **base)
    assert error_of(answer) == (503, "sso_provider_unavailable")
    assert answer.headers.get("Retry-After")
    url = sso_server.api.call(
        "GET", "/api/v4/sso_url", params={"product": "sso", "customer_account_code": "down"}
    )
    assert error_of(url) == (503, "sso_provider_unavailable")


def test_token_endpoint_down_is_503(sso_server: Server, provider: OidcProvider) -> None:
    redirect_uri = "http://127.0.0.1:8125/cb"
    params, _nonce = login(sso_server, "code", redirect_uri)  # discovery now cached
    provider.httpd.shutdown()
    provider.httpd.server_close()
    answer = sso_server.api.activate(
        product="sso",
        hardware_id="pc-t",
        customer_account_code=ACCOUNT,
        code=params["code"],
        redirect_uri=redirect_uri,
    )
    assert error_of(answer) == (503, "sso_provider_unavailable")


def test_users_not_allowed(sso_server: Server, provider: OidcProvider) -> None:
    base = {"product": "sso", "hardware_id": "pc-n", "customer_account_code": ACCOUNT}
    stranger = sso_server.api.activate(id_token=provider.issue(email="bob@other.example"), **base)
    assert error_of(stranger) == (400, "license_not_found")
    provider.email_verified = False
    unverified = sso_server.api.activate(id_token=provider.issue(), **base)
    assert error_of(unverified) == (400, "sso_user_not_allowed")


def test_sso_needs_a_user_based_product(sso_server: Server, provider: OidcProvider) -> None:
    sso_server.product("keyed")
    answer = sso_server.api.activate(
        product="keyed",
        hardware_id="pc-k",
        customer_account_code=ACCOUNT,
        id_token=provider.issue(),
    )
    assert error_of(answer) == (400, "invalid_product_auth_method")


def test_unknown_users_are_created_on_the_configured_license(
    sso_server: Server, provider: OidcProvider
) -> None:
    pool = sso_server.license(
        "sso", user_email="admin@customer.example", user_password="pw-1234", max_activations=5
    )
    add_account(sso_server, provider.issuer, code="auto", auto_create_license_id=pool.id)
    base = {"product": "sso", "customer_account_code": "auto"}
    token = provider.issue(email="Carol@Customer.example")
    answer = sso_server.api.activate(hardware_id="pc-c", id_token=token, **base)
    assert answer.status_code == 200, answer.text
    assert answer.json()["user"]["email"] == "carol@customer.example"
    assert answer.json()["id"] == pool.id
    # Created once; the SSO user has no usable password.
    again = sso_server.api.activate(hardware_id="pc-c2", id_token=token, **base)
    assert again.status_code == 200, again.text
    rows = sso_server.sql(
        "SELECT count(*) FROM license_users WHERE email = 'carol@customer.example'"
    )
    assert rows[0][0] == 1
    by_password = sso_server.api.activate(
        hardware_id="pc-c3", product="sso", username="carol@customer.example", password="!sso"
    )
    assert error_of(by_password) == (400, "invalid_credentials")


def test_client_secret_is_encrypted_at_rest(sso_server: Server) -> None:
    with sso_server.db.transaction() as session:
        account = session.query(CustomerAccount).filter_by(code=ACCOUNT).one()
        assert account.oidc_client_secret_encrypted
        assert b"s3cret" not in account.oidc_client_secret_encrypted


def test_cli_creates_customer_account(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LICENSOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LICENSOR_DATABASE_URL", database_url)
    monkeypatch.delenv("LICENSOR_MASTER_KEY", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["company", "create", "Acme"]).exit_code == 0
    args = [
        "customer-account", "create", "acme-corp", "--issuer", "https://idp.example/realms/acme",
        "--client-id", "licensor", "--client-secret", "s3cret",
        "--redirect-uri", "http://127.0.0.1", "--redirect-uri", "https://app.example/cb",
        "--email-claim", "upn",
    ]  # fmt: skip
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["issuer"] == "https://idp.example/realms/acme"
    assert created["redirect_uris"] == ["http://127.0.0.1", "https://app.example/cb"]
    assert created["email_claim"] == "upn"
    assert "s3cret" not in result.stdout
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.output
    incomplete = runner.invoke(app, ["customer-account", "create", "x", "--issuer", "https://i"])
    assert incomplete.exit_code == 1 and "--client-secret" in incomplete.output


def fake_browser(url: str) -> None:
    """What a browser does: follow the provider's redirect; run the fragment page's script."""
    location = httpx.get(url, follow_redirects=False).headers["Location"]
    parts = urlsplit(location)
    if parts.fragment:
        page = httpx.get(f"{parts.scheme}://{parts.netloc}{parts.path}")
        assert "location.hash" in page.text
        httpx.get(f"{parts.scheme}://{parts.netloc}{parts.path}?{parts.fragment}")
    else:
        httpx.get(location)


@pytest.mark.parametrize("response_type", ["code", "token"])
def test_client_library_sso_flow(
    sso_server: Server, provider: OidcProvider, tmp_path: Path, response_type: str
) -> None:
    keys = [k["public_key"] for k in sso_server.keyring.public_keys()]
    client = LicenseClient(
        "http://testserver",
        "sso",
        keys,
        HmacCredentials(sso_server.api.api_key, sso_server.api.shared_key),
        hardware_id="pc-browser",
        storage_dir=tmp_path / "store",
        transport=sso_server.client._transport,
        send_device_facts=False,
    )
    with client:
        url = client.sso_url(ACCOUNT, response_type=response_type)
        assert url["url"].startswith(provider.issuer)
        activated = sso_activate(
            client, ACCOUNT, response_type=response_type, open_url=fake_browser, timeout=30
        )
        assert activated.username == EMAIL
        assert client.check() is not None  # later checks name the verified user
        client.deactivate()
    with pytest.raises(SsoLoginFailed):
        sso_activate(client, ACCOUNT, open_url=lambda url: None, timeout=0.5)


def test_user_licenses_by_single_sign_on(sso_server: Server, provider: OidcProvider) -> None:
    params, nonce = login(sso_server, "token", "http://127.0.0.1:8123/callback")
    sso = {"customer_account_code": ACCOUNT, "id_token": params["id_token"], "nonce": nonce}
    answer = sso_server.api.call("GET", "/api/v4/user_licenses", params={"product": "sso", **sso})
    assert answer.status_code == 200, answer.text
    (item,) = answer.json()
    assert item["user"]["email"] == EMAIL and item["license"]["username"] == EMAIL
    assert item["license"]["max_activations"] == 3
