"""License users through the License API (v4 §3.17, §3.20-3.21), on SQLite and PostgreSQL:
a user changes their password (Argon2id; wrong old passwords refused and rate-limited; a
company may forbid it), a caller lists a customer's license users and a user's licenses, and
every answer keeps to the caller's company (and its OAuth client's customer)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from licensor.protocol.auth import http_date
from licensor.services import catalogue
from tests.server.support import Api, Server, error_of, verify_response
from tests.server.test_management_api import mgmt

EMAIL = "bob@customer.example"
CUSTOMER = "buyer@customer.example"


@pytest.fixture
def team(server: Server) -> Server:
    """A user-based product "team": two licenses of one customer, Bob a user of both (the
    same initial password), Carol of the second."""
    server.product("team", authorization_method="user")
    first = server.license(
        "team", user_email=EMAIL, user_password="initial-1", customer_email=CUSTOMER
    )
    second = server.license(
        "team",
        user_email="carol@customer.example",
        user_password="carol-pw-1",
        customer_email=CUSTOMER,
        max_activations=4,
    )
    admin = mgmt(server)
    added = admin.post(f"/licenses/{second.id}/users", {"email": EMAIL, "password": "initial-1"})
    assert added.status_code == 201, added.text
    assert first.id < second.id
    return server


def change(api: Api, password: str, new: str, username: str = EMAIL) -> httpx.Response:
    body = {"username": username, "password": password, "new_password": new}
    return api.call("POST", "/api/v4/change_password", json=body)


def licenses_of(api: Api, username: str = EMAIL, password: str = "initial-1") -> httpx.Response:
    params = {"product": "team", "username": username, "password": password}
    return api.call("GET", "/api/v4/user_licenses", params=params)


def test_a_user_changes_their_password(team: Server) -> None:
    answer = change(team.api, "initial-1", "a-new-password")
    assert (answer.status_code, answer.json()) == (200, "password_changed")
    verify_response(answer, team.public_keys)
    # the new password activates, the old one no longer does, on both licenses
    activate = {"product": "team", "username": EMAIL, "hardware_id": "pc-1"}
    assert error_of(team.api.activate(**activate, password="initial-1")) == (
        400,
        "invalid_credentials",
    )
    assert team.api.activate(**activate, password="a-new-password").status_code == 200
    assert len(licenses_of(team.api, password="a-new-password").json()) == 2
    stored = team.sql("select password_hash, is_initial_password from license_users")
    assert all(h.startswith("$argon2id$") for h, _ in stored)
    assert sorted(bool(i) for _, i in stored) == [False, False, True]  # (Carol's untouched)
    audit = team.sql("select count(*) from audit_log where action = 'license_user.change_password'")
    assert audit[0][0] == 2


def test_bad_password_changes_are_refused_and_change_nothing(team: Server) -> None:
    before = team.sql("select id, password_hash from license_users order by id")
    assert error_of(change(team.api, "wrong-password", "a-new-password")) == (
        400,
        "invalid_credentials",
    )
    assert error_of(change(team.api, "initial-1", "short")) == (400, "validation_error")
    assert error_of(change(team.api, "initial-1", "x" * 9, username="nobody@x.example")) == (
        400,
        "invalid_credentials",
    )
    missing = team.api.call("POST", "/api/v4/change_password", json={"username": EMAIL})
    assert error_of(missing) == (400, "missing_parameters")
    reader = team.api_key(read_only=True)
    assert error_of(change(reader, "initial-1", "a-new-password")) == (400, "read_only_api_key")
    # another company's key does not reach these users
    _, other = team.new_company("Other")
    assert error_of(change(other, "initial-1", "a-new-password")) == (400, "invalid_credentials")
    assert team.sql("select id, password_hash from license_users order by id") == before


def test_a_company_may_forbid_password_changes(team: Server) -> None:
    admin = mgmt(team)
    assert admin.get("/company").json()["allow_password_change"] is True
    changed = admin.patch("/company", {"allow_password_change": False})
    assert changed.status_code == 200 and changed.json()["allow_password_change"] is False
    assert error_of(change(team.api, "initial-1", "a-new-password")) == (
        400,
        "change_password_not_allowed",
    )
    reader = mgmt(team, "read-only")
    assert reader.patch("/company", {"allow_password_change": True}).status_code == 403


def test_wrong_old_passwords_are_rate_limited(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.settings.rate_limit_license_failures = 3
    server.product("team", authorization_method="user")
    server.license("team", user_email=EMAIL, user_password="initial-1")
    for _ in range(3):
        assert error_of(change(server.api, "guess-guess", "a-new-password"))[1] == (
            "invalid_credentials"
        )
    refused = change(server.api, "initial-1", "a-new-password")  # (even the right one, now)
    assert error_of(refused) == (429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) > 0


def test_user_licenses_are_those_the_password_opens(team: Server) -> None:
    answer = licenses_of(team.api)
    assert answer.status_code == 200, answer.text
    verify_response(answer, team.public_keys)
    items = answer.json()
    assert len(items) == 2
    assert all(item["user"]["email"] == EMAIL for item in items)
    first = items[0]["license"]
    assert first["username"] == EMAIL and first["customer"]["email"] == CUSTOMER
    assert items[1]["license"]["max_activations"] == 4
    for name in ("license_type", "validity_period", "product_features", "custom_fields"):
        assert name in first
    assert "license_signature" not in first and "hardware_id" not in first
    # Carol sees only her own license
    (carol,) = licenses_of(team.api, "carol@customer.example", "carol-pw-1").json()
    assert carol["license"]["id"] == items[1]["license"]["id"]
    assert error_of(licenses_of(team.api, password="nope")) == (400, "invalid_credentials")
    missing = team.api.call(
        "GET", "/api/v4/user_licenses", params={"product": "team", "username": EMAIL}
    )
    assert error_of(missing) == (400, "missing_parameters")
    team.product("keyed")
    keyed = team.api.call(
        "GET",
        "/api/v4/user_licenses",
        params={"product": "keyed", "username": EMAIL, "password": "initial-1"},
    )
    assert error_of(keyed) == (400, "invalid_product_auth_method")
    _, other = team.new_company("Other")
    assert error_of(licenses_of(other)) == (400, "unknown_product")


def test_customer_license_users(team: Server) -> None:
    def users(api: Api, **params: Any) -> httpx.Response:
        query = {"product": "team", "customer": CUSTOMER, **params}
        return api.call("GET", "/api/v4/customer_license_users", params=query)

    answer = users(team.api)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["customer"]["email"] == CUSTOMER
    assert sorted(u["email"] for u in body["users"]) == sorted(
        [EMAIL, EMAIL, "carol@customer.example"]
    )
    one = body["users"][0]
    assert set(one) == {
        "email", "is_active", "first_name", "last_name", "phone_number", "is_initial_password",
        "initial_password", "license_id", "order_id", "order_store_id", "max_activations",
        "total_activations",
    }  # fmt: skip
    assert one["initial_password"] is None  # (only its hash is kept)
    assert "password_hash" not in answer.text and "argon2" not in answer.text
    assert error_of(users(team.api, customer="nobody@x.example")) == (
        400,
        "customer_does_not_exist",
    )
    team.product("keyed")
    assert error_of(users(team.api, product="keyed")) == (400, "invalid_product_auth_method")
    _, other = team.new_company("Other")
    assert error_of(users(other)) == (400, "unknown_product")


def test_an_oauth_client_of_one_customer_sees_only_that_customer(team: Server) -> None:
    with team.db.transaction(write=True) as session:
        someone = catalogue.find_or_create_customer(session, team.company_id, "else@x.example")
        client = catalogue.create_oauth_client(
            session, team.master_key, team.company_id, scope="customer", customer_id=someone.id
        )
    token = team.client.post(
        "/api/v4/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Date": http_date(datetime.now(UTC))}
    refused = team.client.get(
        "/api/v4/customer_license_users",
        params={"product": "team", "customer": CUSTOMER},
        headers=headers,
    )
    assert error_of(refused) == (400, "customer_not_found")
    mine = team.client.get(
        "/api/v4/user_licenses",
        params={"product": "team", "username": EMAIL, "password": "initial-1"},
        headers=headers,
    )
    assert error_of(mine) == (400, "invalid_credentials")  # (not this client's customer's)
