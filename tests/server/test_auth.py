"""Authentication of License API calls (License API v4 §1, DECISIONS §1): the HMAC Date
signature with its documented test vector, OAuth 2.0 client credentials, API key flags and
tenancy. On SQLite and PostgreSQL wherever the database is involved."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from licensor.protocol import hmac_signature, http_date, request_signing_string
from licensor.services import catalogue
from licensor.services.auth import SHARED_KEY_CONTEXT, TOKEN_ISSUER
from licensor.store import repository
from tests.server.support import (
    Api,
    Server,
    error_of,
    shared_keys_dir,
    start_server,
    verify_response,
)

HW = "a53f-0cbc-15fc-ec01"
VECTOR_SHARED_KEY = "kw4qSnpSwXzgiv5yxYpZZmFEd9QAeiKTQ6OuyMja"
VECTOR_DATE = "Tue, 07 Jun 2011 20:51:35 GMT"
VECTOR_SIGNATURE = "UDysfR6MndUZReo07Y9r+vErn8vSxrnQ5ulit18iJ/Q="
TOKEN_PATH = "/api/v4/oauth/token"


Shared = tuple[Server, str]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One SQLite-backed server with an activated license, for the tests of the HTTP front that
    change nothing (header parsing, the Date window): starting a server per case is slow."""
    base = tmp_path_factory.mktemp("auth-shared")
    for server in start_server(
        f"sqlite:///{base / 'licensor.db'}",
        base / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
    ):
        yield server, activated_license(server)


# -- helpers ---------------------------------------------------------------------------------


def key_of(server: Server, product: str = "app", **fields: Any) -> str:
    license_ = server.license(product=product, **fields)
    assert license_.license_key
    return license_.license_key


def activated_license(server: Server, hardware_id: str = HW) -> str:
    server.product()
    key = key_of(server, max_activations=5)
    response = server.api.activate(product="app", license_key=key, hardware_id=hardware_id)
    assert response.status_code == 200, response.text
    return key


def check_with(api: Api, headers: dict[str, str], key: str) -> Any:
    """A check_license call with exactly ``headers`` (no helper-made authentication)."""
    return api.call(
        "GET",
        "/api/v4/check_license",
        auth=False,
        headers=headers,
        params={"product": "app", "license_key": key, "hardware_id": HW},
    )


def hmac_header(api_key: str, signature: str, *, order: tuple[str, ...], sep: str = ", ") -> str:
    values = {
        "algorithm": "hmac-sha256",
        "headers": "date",
        "signature": signature,
        "apikey": api_key,
    }
    names = {"apiKey": "apikey", "APIKEY": "apikey"}
    return sep.join(f'{name}="{values[names.get(name, name)]}"' for name in order)


def signed_headers(api: Api, date: str | None = None) -> dict[str, str]:
    return api.headers(date)


def token_for(server: Server, client_id: str, client_secret: str) -> str:
    response = server.api.call(
        "POST",
        TOKEN_PATH,
        auth=False,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def oauth_client(server: Server, company_id: int | None = None, **options: Any) -> Any:
    with server.db.transaction(write=True) as session:
        return catalogue.create_oauth_client(
            session, server.master_key, company_id or server.company_id, **options
        )


def bearer_api(server: Server, company_id: int | None = None, **options: Any) -> Api:
    client = oauth_client(server, company_id, **options)
    api = Api(server.client, server.public_keys, "", "")
    api.bearer = token_for(server, client.client_id, client.client_secret)
    return api


# -- the documented HMAC test vector ---------------------------------------------------------


def test_documented_vector_through_protocol() -> None:
    assert request_signing_string({"date": VECTOR_DATE}) == f"licenseSpring\ndate: {VECTOR_DATE}"
    assert hmac_signature(VECTOR_SHARED_KEY, VECTOR_DATE) == VECTOR_SIGNATURE


def test_documented_shared_key_is_accepted_end_to_end(server: Server) -> None:
    key = activated_license(server)
    vector_api = server.api_key()
    with server.db.transaction(write=True) as session:
        row = repository.api_key_by_key(session, vector_api.api_key)
        assert row is not None
        row.shared_key_encrypted = server.master_key.encrypt(
            VECTOR_SHARED_KEY, context=SHARED_KEY_CONTEXT
        )
    vector_api.shared_key = VECTOR_SHARED_KEY
    date = http_date()
    headers = {
        "Date": date,
        "Authorization": (
            f'algorithm="hmac-sha256", headers="date", '
            f'signature="{hmac_signature(VECTOR_SHARED_KEY, date)}", apikey="{vector_api.api_key}"'
        ),
    }
    response = check_with(vector_api, headers, key)
    assert response.status_code == 200, response.text
    # the documented date itself is years outside the window
    stale = {
        "Date": VECTOR_DATE,
        "Authorization": (
            f'algorithm="hmac-sha256", headers="date", signature="{VECTOR_SIGNATURE}", '
            f'apikey="{vector_api.api_key}"'
        ),
    }
    assert error_of(check_with(vector_api, stale, key)) == (400, "date_header_diff")


# -- header variants -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "sep"),
    [
        (("algorithm", "headers", "signature", "apikey"), ", "),
        (("algorithm", "headers", "signature", "apikey"), ","),
        (("apikey", "signature", "headers", "algorithm"), ", "),
        (("signature", "apiKey", "algorithm", "headers"), ","),
        (("headers", "APIKEY", "algorithm", "signature"), " , "),
    ],
)
def test_authorization_header_variants_are_accepted(
    shared: Shared, order: tuple[str, ...], sep: str
) -> None:
    server, key = shared
    date = http_date()
    signature = hmac_signature(server.api.shared_key, date)
    headers = {
        "Date": date,
        "Authorization": hmac_header(server.api.api_key, signature, order=order, sep=sep),
    }
    response = check_with(server.api, headers, key)
    assert response.status_code == 200, response.text


# -- malformed authentication ----------------------------------------------------------------


def test_missing_headers(shared: Shared) -> None:
    server, key = shared
    headers = signed_headers(server.api)
    for drop in ("Date", "Authorization"):
        partial = {k: v for k, v in headers.items() if k != drop}
        assert error_of(check_with(server.api, partial, key)) == (400, "missing_headers"), drop
    assert error_of(check_with(server.api, {}, key)) == (400, "missing_headers")
    empty_date = dict(headers, Date="")
    assert error_of(check_with(server.api, empty_date, key)) == (400, "missing_headers")
    # POST endpoints too, before the body is even looked at
    response = server.api.call("POST", "/api/v4/activate_license", auth=False, content=b"{not json")
    assert error_of(response) == (400, "missing_headers")


@pytest.mark.parametrize(
    "authorization",
    [
        "garbage",
        "Basic dXNlcjpwYXNzd29yZA==",
        "algorithm=hmac-sha256, headers=date, signature=abc, apikey=k",
        'algorithm="hmac-sha256" headers="date" signature="abc" apikey="k"',
        'algorithm="hmac-sha256", headers="date", signature="abc", apikey="k", apikey="k"',
        'algorithm="hmac-sha256", headers="date host", signature="abc", apikey="{key}"',
        'algorithm="hmac-sha256", headers="host", signature="abc", apikey="{key}"',
        '"""',
        "=",
    ],
)
def test_garbage_authorization_is_invalid_headers(shared: Shared, authorization: str) -> None:
    server, key = shared
    headers = {
        "Date": http_date(),
        "Authorization": authorization.replace("{key}", server.api.api_key),
    }
    response = check_with(server.api, headers, key)
    assert error_of(response) == (400, "authorization_invalid_headers")


def test_non_ascii_authorization_is_invalid_headers(shared: Shared) -> None:
    server, key = shared
    for raw in ("\u00e9\u00e8\u00ea".encode(), b"\xff\xfe", 'apikey="\u00e9"'.encode()):
        response = server.api.call(
            "GET",
            "/api/v4/check_license",
            auth=False,
            headers={"Date": http_date(), "Authorization": raw},  # type: ignore[dict-item]
            params={"product": "app", "license_key": key, "hardware_id": HW},
        )
        status, code = error_of(response)
        assert status == 400
        assert code in ("authorization_invalid_headers", "authorization_missing_params"), raw


@pytest.mark.parametrize("missing", ["algorithm", "headers", "signature", "apikey"])
def test_missing_pair(shared: Shared, missing: str) -> None:
    server, key = shared
    date = http_date()
    order = tuple(n for n in ("algorithm", "headers", "signature", "apikey") if n != missing)
    headers = {
        "Date": date,
        "Authorization": hmac_header(
            server.api.api_key, hmac_signature(server.api.shared_key, date), order=order
        ),
    }
    response = check_with(server.api, headers, key)
    assert error_of(response) == (400, "authorization_missing_params")
    assert missing in response.json()["message"]


@pytest.mark.parametrize("algorithm", ["hmac-sha1", "rsa-sha256", "HMAC-SHA512", "none"])
def test_other_algorithm_is_hmac_required(shared: Shared, algorithm: str) -> None:
    server, key = shared
    date = http_date()
    signature = hmac_signature(server.api.shared_key, date)
    headers = {
        "Date": date,
        "Authorization": (
            f'algorithm="{algorithm}", headers="date", signature="{signature}", '
            f'apikey="{server.api.api_key}"'
        ),
    }
    assert error_of(check_with(server.api, headers, key)) == (400, "hmac_required")


def test_algorithm_name_is_case_insensitive(shared: Shared) -> None:
    server, key = shared
    date = http_date()
    headers = {
        "Date": date,
        "Authorization": (
            f'algorithm="HMAC-SHA256", headers="Date", '
            f'signature="{hmac_signature(server.api.shared_key, date)}", '
            f'apikey="{server.api.api_key}"'
        ),
    }
    assert check_with(server.api, headers, key).status_code == 200


def test_unknown_and_revoked_api_keys(server: Server) -> None:
    key = activated_license(server)
    unknown = Api(server.client, server.public_keys, "00000000-0000-0000-0000-000000000000", "x")
    assert error_of(unknown.check(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "invalid_api_key",
    )
    revoked = server.api_key()
    assert revoked.check(product="app", license_key=key, hardware_id=HW).status_code == 200
    server.sql("update api_keys set revoked = :yes where api_key = :k", yes=True, k=revoked.api_key)
    assert error_of(revoked.check(product="app", license_key=key, hardware_id=HW)) == (
        400,
        "revoked_api_key",
    )
    # the other keys of the company keep working
    assert server.api.check(product="app", license_key=key, hardware_id=HW).status_code == 200


def test_api_key_with_nul_or_oversized_value_is_not_a_server_error(server: Server) -> None:
    key = activated_license(server)
    for api_key in ("k\x00ey", "k" * 5000, "\u00e9t\u00e9"):
        date = http_date()
        headers = {
            "Date": date,
            "Authorization": (
                f'algorithm="hmac-sha256", headers="date", '
                f'signature="{hmac_signature("x", date)}", apikey="{api_key}"'
            ),
        }
        response = server.api.call(
            "GET",
            "/api/v4/check_license",
            auth=False,
            headers={k: v.encode("utf-8") for k, v in headers.items()},  # type: ignore[misc]
            params={"product": "app", "license_key": key, "hardware_id": HW},
        )
        assert error_of(response) == (400, "invalid_api_key"), api_key


# -- the Date window -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset_minutes", "accepted"),
    [(-16, False), (16, False), (-14, True), (14, True), (0, True), (-60 * 24, False)],
)
def test_date_window(shared: Shared, offset_minutes: int, accepted: bool) -> None:
    server, key = shared
    date = http_date(datetime.now(UTC) + timedelta(minutes=offset_minutes))
    response = check_with(server.api, signed_headers(server.api, date), key)
    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert error_of(response) == (400, "date_header_diff")


@pytest.mark.parametrize(
    "render",
    [
        lambda now: now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        lambda now: now.isoformat(),
        lambda now: str(int(now.timestamp())),
        lambda now: "yesterday",
        lambda now: "Tue, 99 Foo 2011 25:61:61 GMT",
        lambda now: now.strftime("%a, %d %b %Y %H:%M:%S +0000"),
        lambda now: (now + timedelta(hours=2)).strftime("%a, %d %b %Y %H:%M:%S +0200"),
        lambda now: now.strftime("%a, %d %b %Y %H:%M:%S"),
        lambda now: now.strftime("%a, %d %b %Y %H:%M:%S UTC"),
        lambda now: now.strftime("%d %b %Y %H:%M:%S GMT"),
    ],
)
def test_date_not_rfc7231_is_refused(shared: Shared, render: Any) -> None:
    """DECISIONS §1 / v4 §1.1: an RFC 7231 date, always GMT, even when otherwise current."""
    server, key = shared
    date = render(datetime.now(UTC))
    response = check_with(server.api, signed_headers(server.api, date), key)
    assert error_of(response) == (400, "date_header_diff"), date


@pytest.mark.parametrize(
    "render",
    [
        # IMF-fixdate, and the two obsolete forms every HTTP recipient must accept
        lambda now: now.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        lambda now: now.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
        lambda now: now.strftime("%a %b ") + f"{now.day:>2}" + now.strftime(" %H:%M:%S %Y"),
    ],
)
def test_http_date_forms_are_accepted(shared: Shared, render: Any) -> None:
    server, key = shared
    date = render(datetime.now(UTC))
    response = check_with(server.api, signed_headers(server.api, date), key)
    assert response.status_code == 200, (date, response.text)


# -- signature -------------------------------------------------------------------------------


def test_wrong_signature_is_401(server: Server) -> None:
    key = activated_license(server)
    date = http_date()
    cases = [
        hmac_signature("not-the-shared-key", date),
        hmac_signature(server.api.shared_key, http_date(datetime.now(UTC) - timedelta(seconds=5))),
        base64.b64encode(b"\0" * 32).decode(),
        "not base64 at all",
        hmac_signature(server.api.shared_key, date).lower(),
    ]
    for signature in cases:
        headers = {
            "Date": date,
            "Authorization": (
                f'algorithm="hmac-sha256", headers="date", signature="{signature}", '
                f'apikey="{server.api.api_key}"'
            ),
        }
        assert error_of(check_with(server.api, headers, key)) == (401, "signature_mismatch")
    # another company's valid signature does not open this company's key
    _other_id, other = server.new_company("Other")
    headers = {
        "Date": date,
        "Authorization": (
            f'algorithm="hmac-sha256", headers="date", '
            f'signature="{hmac_signature(other.shared_key, date)}", apikey="{server.api.api_key}"'
        ),
    }
    assert error_of(check_with(server.api, headers, key)) == (401, "signature_mismatch")


# -- API key flags ---------------------------------------------------------------------------


def test_read_only_key(server: Server) -> None:
    server.product("trials", allow_trial=True, trial_days=7)
    key = activated_license(server)
    reader = server.api_key(read_only=True)
    check = reader.check(product="app", license_key=key, hardware_id=HW)
    assert check.status_code == 200, check.text
    got = reader.call(
        "GET",
        "/api/v4/get_device_variables",
        params={"product": "app", "license_key": key, "hardware_id": HW},
    )
    assert got.status_code == 200, got.text
    details = reader.call("GET", "/api/v4/product_details", params={"product": "app"})
    assert details.status_code == 200, details.text

    refused = [
        reader.activate(product="app", license_key=key, hardware_id="other-device"),
        reader.deactivate(product="app", license_key=key, hardware_id=HW),
        reader.call(
            "POST",
            "/api/v4/track_device_variables",
            json={
                "product": "app",
                "license_key": key,
                "hardware_id": HW,
                "variables": {"a": "b"},
            },
        ),
        reader.call(
            "GET", "/api/v4/trial_key", params={"product": "trials", "hardware_id": "t-device"}
        ),
    ]
    for response in refused:
        assert error_of(response) == (400, "read_only_api_key")
    # nothing changed
    assert (
        server.sql(
            "select times_activated from licenses where key_lookup = :k", k=key.replace("-", "")
        )[0][0]
        == 1
    )
    assert server.sql("select count(*) from device_variables")[0][0] == 0
    assert server.sql("select count(*) from licenses where is_trial = :yes", yes=True)[0][0] == 0


def test_key_limited_to_a_product(server: Server) -> None:
    server.product("app")
    server.product("other")
    app_key = key_of(server, "app")
    other_key = key_of(server, "other")
    limited = server.api_key(product_codes=["app"])
    ok = limited.activate(product="app", license_key=app_key, hardware_id=HW)
    assert ok.status_code == 200, ok.text
    assert error_of(limited.activate(product="other", license_key=other_key, hardware_id=HW)) == (
        400,
        "api_key_product_not_allowed",
    )
    assert error_of(
        limited.call("GET", "/api/v4/product_details", params={"product": "other"})
    ) == (400, "api_key_product_not_allowed")
    assert error_of(limited.check(product="other", license_key=other_key, hardware_id=HW)) == (
        400,
        "api_key_product_not_allowed",
    )


def test_company_requiring_oauth_refuses_hmac(server: Server) -> None:
    key = activated_license(server)
    server.sql(
        "update companies set oauth_required = :yes where id = :id", yes=True, id=server.company_id
    )
    response = server.api.check(product="app", license_key=key, hardware_id=HW)
    status, code = error_of(response)
    assert status == 400
    assert code == "oauth_required"
    bearer = bearer_api(server)
    assert bearer.check(product="app", license_key=key, hardware_id=HW).status_code == 200


# -- OAuth token endpoint --------------------------------------------------------------------


def test_token_endpoint_answers_the_documented_shape(server: Server) -> None:
    client = oauth_client(server)
    assert client.client_id.startswith("auth-company-")
    response = server.api.call(
        "POST",
        TOKEN_PATH,
        auth=False,
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert list(body) == [
        "access_token",
        "expires_in",
        "refresh_expires_in",
        "token_type",
        "not-before-policy",
        "scope",
    ]
    assert body["expires_in"] == 480
    assert body["token_type"] == "Bearer"
    assert body["refresh_expires_in"] == 0
    assert body["not-before-policy"] == 0
    assert body["scope"] == "profile email"
    assert isinstance(body["access_token"], str) and body["access_token"].count(".") == 2
    # the trailing-slash form answers too
    again = server.api.call(
        "POST",
        TOKEN_PATH + "/",
        auth=False,
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    assert again.status_code == 200, again.text


def test_token_endpoint_errors_use_the_oauth_shape(server: Server) -> None:
    client = oauth_client(server)

    def ask(form: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return server.api.call("POST", TOKEN_PATH, auth=False, data=form, **kwargs)

    good = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
    }
    for form in (
        dict(good, client_secret="wrong"),
        dict(good, client_secret=""),
        dict(good, client_id="auth-company-999999-deadbeef"),
        dict(good, client_id="x\x00y"),
        dict(good, client_secret="s\x00"),
        dict(good, client_id="c" * 10_000),
        {k: v for k, v in good.items() if k != "client_secret"},
        {k: v for k, v in good.items() if k != "client_id"},
    ):
        response = ask(form)
        assert response.status_code == 401, (form, response.text)
        body = response.json()
        assert body["error"] == "invalid_client"
        assert body["error_description"]
        assert "access_token" not in body

    for form in (
        dict(good, grant_type="password"),
        {k: v for k, v in good.items() if k != "grant_type"},
    ):
        response = ask(form)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "unsupported_grant_type"

    for raw in (b"", b"\xff\xfe\x00", b"grant_type=client_credentials&&&==&%zz"):
        response = ask(content=raw, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()

    # a revoked client gets no token
    server.sql(
        "update oauth_clients set revoked = :yes where client_id = :c", yes=True, c=client.client_id
    )
    response = ask(good)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_bearer_token_activates_and_checks(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=3)
    api = bearer_api(server)
    activated = api.activate(product="app", license_key=key, hardware_id=HW)
    assert activated.status_code == 200, activated.text
    assert api.check(product="app", license_key=key, hardware_id=HW).status_code == 200
    # the scheme name is case-insensitive
    response = api.call(
        "GET",
        "/api/v4/check_license",
        auth=False,
        headers={"Date": http_date(), "Authorization": f"bearer {api.bearer}"},
        params={"product": "app", "license_key": key, "hardware_id": HW},
    )
    assert response.status_code == 200, response.text
    assert api.deactivate(product="app", license_key=key, hardware_id=HW).status_code == 200


def test_bearer_needs_a_current_date(server: Server) -> None:
    key = activated_license(server)
    api = bearer_api(server)
    no_date = {"Authorization": f"Bearer {api.bearer}"}
    assert error_of(check_with(api, no_date, key)) == (400, "missing_headers")
    stale = {
        "Date": http_date(datetime.now(UTC) - timedelta(minutes=16)),
        "Authorization": f"Bearer {api.bearer}",
    }
    assert error_of(check_with(api, stale, key)) == (400, "date_header_diff")


def test_expired_token(server: Server) -> None:
    key = activated_license(server)
    client = oauth_client(server)
    past = datetime.now(UTC) - timedelta(minutes=10)
    claims = {
        "iss": TOKEN_ISSUER,
        "sub": client.client_id,
        "company": server.company_id,
        "scope": "company",
        "iat": int(past.timestamp()),
        "exp": int((past + timedelta(seconds=480)).timestamp()),
    }
    expired = jwt.encode(claims, server.master_key.token_key, algorithm="HS256")
    api = Api(server.client, server.public_keys, "", "")
    api.bearer = expired
    assert error_of(api.check(product="app", license_key=key, hardware_id=HW)) == (
        401,
        "oauth_token_expired",
    )


def test_token_ttl_comes_from_settings(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    servers = start_server(
        f"sqlite:///{tmp_path / 'licensor.db'}",
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        oauth_token_ttl_seconds=1,
    )
    server = next(servers)
    try:
        key = activated_license(server)
        client = oauth_client(server)
        response = server.api.call(
            "POST",
            TOKEN_PATH,
            auth=False,
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            },
        )
        assert response.json()["expires_in"] == 1
        api = Api(server.client, server.public_keys, "", "")
        api.bearer = response.json()["access_token"]
        exp = jwt.decode(api.bearer, options={"verify_signature": False})["exp"]
        time.sleep(max(0.0, exp - time.time()) + 0.05)
        assert error_of(api.check(product="app", license_key=key, hardware_id=HW)) == (
            401,
            "oauth_token_expired",
        )
    finally:
        servers.close()


def _tampered(token: str) -> list[str]:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["company"] = 999_999
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return [
        f"{header}.{payload}.{flipped}",
        f"{header}.{forged_payload}.{signature}",
        f"{none_header}.{payload}.",
        f"{header}.{payload}",
        jwt.encode(claims, b"another-key-of-32-bytes-length!!", algorithm="HS256"),
        "garbage",
        "",
        "a.b.c",
    ]


def test_tampered_token_is_malformed(server: Server) -> None:
    key = activated_license(server)
    api = bearer_api(server)
    assert api.bearer is not None
    for token in _tampered(api.bearer):
        forged = Api(server.client, server.public_keys, "", "")
        forged.bearer = token
        response = forged.call(
            "GET",
            "/api/v4/check_license",
            auth=False,
            headers={"Date": http_date(), "Authorization": f"Bearer {token}".strip()},
            params={"product": "app", "license_key": key, "hardware_id": HW},
        )
        assert error_of(response) == (401, "oauth_token_malformed"), token


def test_token_of_a_revoked_client_stops_working(server: Server) -> None:
    key = activated_license(server)
    client = oauth_client(server)
    api = Api(server.client, server.public_keys, "", "")
    api.bearer = token_for(server, client.client_id, client.client_secret)
    assert api.check(product="app", license_key=key, hardware_id=HW).status_code == 200
    server.sql(
        "update oauth_clients set revoked = :yes where client_id = :c", yes=True, c=client.client_id
    )
    status, _code = error_of(api.check(product="app", license_key=key, hardware_id=HW))
    assert status == 401


def test_license_scoped_client_sees_only_its_license(server: Server) -> None:
    server.product()
    mine = server.license(max_activations=3)
    other = server.license(max_activations=3)
    assert mine.license_key and other.license_key
    api = bearer_api(server, scope="license", license_id=mine.id)
    assert (
        api.activate(product="app", license_key=mine.license_key, hardware_id=HW).status_code == 200
    )
    assert api.check(product="app", license_key=mine.license_key, hardware_id=HW).status_code == 200
    assert (
        server.api.activate(
            product="app", license_key=other.license_key, hardware_id=HW
        ).status_code
        == 200
    )
    for response in (
        api.activate(product="app", license_key=other.license_key, hardware_id="d2"),
        api.check(product="app", license_key=other.license_key, hardware_id=HW),
        api.check(
            product="app", license_key=other.license_key, hardware_id=HW, license_id=other.id
        ),
        api.deactivate(product="app", license_key=other.license_key, hardware_id=HW),
    ):
        assert error_of(response) == (400, "license_not_found")
    # the other license is untouched
    assert (
        server.api.check(product="app", license_key=other.license_key, hardware_id=HW).status_code
        == 200
    )


def test_customer_scoped_client_sees_only_its_customers_licenses(server: Server) -> None:
    server.product()
    server.product("team", authorization_method="user")
    ann = server.license(max_activations=3, customer_email="ann@example.com")
    ann2 = server.license(max_activations=3, customer_email="ann@example.com")
    bob = server.license(max_activations=3, customer_email="bob@example.com")
    nobody = server.license(max_activations=3)
    bob_user = server.license(
        product="team",
        customer_email="bob@example.com",
        user_email="carl@example.com",
        user_password="pw-carl-123",
    )
    assert ann.customer_id is not None and ann.customer_id == ann2.customer_id
    api = bearer_api(server, scope="customer", customer_id=ann.customer_id)
    for license_ in (ann, ann2):
        assert license_.license_key
        response = api.activate(product="app", license_key=license_.license_key, hardware_id=HW)
        assert response.status_code == 200, response.text
    for license_ in (bob, nobody):
        assert license_.license_key
        assert error_of(
            api.activate(product="app", license_key=license_.license_key, hardware_id=HW)
        ) == (400, "license_not_found")
        assert error_of(
            api.check(product="app", license_key=license_.license_key, hardware_id=HW)
        ) == (400, "license_not_found")
    assert error_of(
        api.activate(
            product="team", username="carl@example.com", password="pw-carl-123", hardware_id=HW
        )
    ) == (400, "license_not_found")
    assert bob_user.id


# -- discovery -------------------------------------------------------------------------------


def test_oauth_url_and_openid_configuration(server: Server) -> None:
    response = server.api.call(
        "GET", "/api/v4/oauth_url", auth=False, params={"login_type": "client_credentials"}
    )
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    assert list(response.json()) == ["url"]
    assert url.startswith(("http://", "https://"))
    assert url.endswith(TOKEN_PATH)
    assert url == str(server.client.base_url).rstrip("/") + TOKEN_PATH

    discovery = server.api.call("GET", "/.well-known/openid-configuration", auth=False)
    assert discovery.status_code == 200, discovery.text
    assert discovery.json()["token_endpoint"] == url
    assert "client_credentials" in discovery.json()["grant_types_supported"]

    # the advertised URL is the one that issues tokens
    client = oauth_client(server)
    issued = server.api.call(
        "POST",
        url,
        auth=False,
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    assert issued.status_code == 200, issued.text

    unsupported = server.api.call(
        "GET", "/api/v4/oauth_url", auth=False, params={"login_type": "implicit"}
    )
    assert error_of(unsupported) == (400, "validation_error")


def test_public_url_setting_names_the_token_endpoint(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    servers = start_server(
        f"sqlite:///{tmp_path / 'licensor.db'}",
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        public_url="https://licensing.example.com/",
    )
    server = next(servers)
    try:
        url = server.api.call("GET", "/api/v4/oauth_url", auth=False).json()["url"]
        assert url == "https://licensing.example.com/api/v4/oauth/token"
        discovery = server.api.call("GET", "/.well-known/openid-configuration", auth=False)
        assert discovery.json()["token_endpoint"] == url
    finally:
        servers.close()


# -- tenancy ---------------------------------------------------------------------------------


def test_other_company_cannot_reach_a_product_or_license(server: Server) -> None:
    key = activated_license(server)
    license_id = server.sql(
        "select id from licenses where key_lookup = :k", k=key.replace("-", "")
    )[0][0]
    other_company, other = server.new_company("Beta")
    other_bearer = bearer_api(server, other_company)
    for api in (other, other_bearer):
        assert error_of(api.check(product="app", license_key=key, hardware_id=HW)) == (
            400,
            "unknown_product",
        )
        assert error_of(api.deactivate(product="app", license_key=key, hardware_id=HW)) == (
            400,
            "unknown_product",
        )
        assert error_of(api.call("GET", "/api/v4/product_details", params={"product": "app"})) == (
            400,
            "unknown_product",
        )
    # even with a product of the same short code, A's license stays out of reach
    with server.db.transaction(write=True) as session:
        catalogue.create_product(session, other_company, catalogue.ProductSpec("app", "Beta app"))
    for api in (other, other_bearer):
        for response in (
            api.check(product="app", license_key=key, hardware_id=HW),
            api.check(product="app", license_key=key, hardware_id=HW, license_id=license_id),
            api.deactivate(product="app", license_key=key, hardware_id=HW),
            api.deactivate(product="app", license_key=key, hardware_id=HW, license_id=license_id),
            api.activate(product="app", license_key=key, hardware_id="b-device"),
            api.activate(
                product="app", license_key=key, hardware_id="b-device", license_id=license_id
            ),
            api.call(
                "GET",
                "/api/v4/get_device_variables",
                params={"product": "app", "license_key": key, "hardware_id": HW},
            ),
        ):
            assert error_of(response) == (400, "license_not_found")
    # A's license is exactly as it was
    assert server.api.check(product="app", license_key=key, hardware_id=HW).status_code == 200
    assert server.sql("select times_activated from licenses where id = :i", i=license_id)[0][0] == 1
    assert server.sql("select count(*) from devices where license_id = :i", i=license_id)[0][0] == 1


def test_every_answer_is_signed(shared: Shared) -> None:
    """Auth failures are License API answers too: signed over their exact bytes."""
    server, key = shared
    response = check_with(server.api, {"Authorization": "garbage"}, key)
    assert verify_response(response, server.public_keys) == "rsa-sha256"
    response = server.api.call(
        "GET",
        "/api/v4/check_license",
        auth=False,
        headers={"Authorization": "garbage", "Licensor-Accept-Signature": "ed25519"},
    )
    assert verify_response(response, server.public_keys) == "ed25519"


def test_license_scoped_client_cannot_reach_trials_of_other_devices(server: Server) -> None:
    server.product("app", allow_trial=True, trial_days=7)
    victim = server.api.call(
        "GET", "/api/v4/trial_key", params={"product": "app", "hardware_id": "victim"}
    ).json()
    mine = server.license(product="app")
    api = bearer_api(server, scope="license", license_id=mine.id)
    licenses_before = server.sql("select count(*) from licenses")[0][0]
    for hardware_id in ("victim", "new-device"):
        response = api.call(
            "GET", "/api/v4/trial_key", params={"product": "app", "hardware_id": hardware_id}
        )
        assert victim["license_key"] not in response.text
        status, _code = error_of(response)
        assert status == 400
    assert server.sql("select count(*) from licenses")[0][0] == licenses_before
