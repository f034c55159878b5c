"""product_details, trial_key, device variables, public_keys and the signed fields of a check
answer (License API v4 §2, §3.14-3.16; DECISIONS §2), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from licensor.protocol import (
    PublicKeySet,
    SignatureError,
    http_date,
    key_id,
    license_signing_string,
    offline_signature,
    parse_http_date,
    parse_iso_datetime,
    parse_licensor_signature,
    v2_signing_bytes,
)
from licensor.services import catalogue, policies
from licensor.services.management import Admin
from licensor.services.payload import answer_date
from licensor.store import repository
from tests.server.support import Server, error_of, verify_response

HW = "a53f-0cbc-15fc-ec01"
ED25519 = {"Licensor-Accept-Signature": "ed25519"}
PRODUCT_DETAILS_FIELDS = [
    "product_id",
    "product_name",
    "short_code",
    "authorization_method",
    "floating_timeout",
    "max_overages",
    "trial_days",
    "allow_overages",
    "allow_trial",
    "prevent_vm",
    "metadata",
]
LATEST_VERSION_FIELDS = {
    "id",
    "product_id",
    "version",
    "environment",
    "hash_md5",
    "eula_link",
    "release_notes_link",
    "size",
    "requires_version",
    "channel",
    "release_date",
    "enabled",
    "full_link",
    "filename",
    "created_at",
    "updated_at",
}


def details(server: Server, **params: Any) -> httpx.Response:
    return server.api.call("GET", "/api/v4/product_details", params=params)


def trial(server: Server, **params: Any) -> httpx.Response:
    return server.api.call("GET", "/api/v4/trial_key", params=params)


def product_id(server: Server, code: str) -> int:
    with server.db.transaction() as session:
        product = repository.product_by_code(session, server.company_id, code)
        assert product is not None
        return product.id


# -- product_details -------------------------------------------------------------------------


def test_product_details_fields(server: Server) -> None:
    server.product(
        "app",
        allow_trial=True,
        trial_days=14,
        prevent_vm=True,
        metadata={"tier": "gold", "n": 3},
        custom_fields=[
            {"name": "color", "default_value": "red"},
            {"name": "seats", "default_value": "5"},
        ],
    )
    server.product("team", authorization_method="user")
    response = details(server, product="app")
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == PRODUCT_DETAILS_FIELDS
    assert body["product_id"] == product_id(server, "app")
    assert body["product_name"] == "App"
    assert body["short_code"] == "app"
    assert body["authorization_method"] == "license-key"
    assert body["trial_days"] == 14
    assert body["allow_trial"] is True
    assert body["prevent_vm"] is True
    assert body["allow_overages"] is False
    assert isinstance(body["max_overages"], int) and isinstance(body["floating_timeout"], int)
    assert body["metadata"] == {"tier": "gold", "n": 3}

    team = details(server, product="team").json()
    assert team["authorization_method"] == "user"
    assert team["allow_trial"] is False and team["prevent_vm"] is False

    # explicitly false flags change nothing
    same = details(server, product="app", include_custom_fields="false").json()
    assert same == body


def test_product_details_custom_fields(server: Server) -> None:
    server.product(
        "app",
        custom_fields=[
            {"name": "color", "default_value": "red"},
            {"name": "seats", "default_value": "5"},
        ],
    )
    server.product("bare")
    body = details(server, product="app", include_custom_fields="true").json()
    assert body["custom_fields"] == [
        {"id": 1, "name": "color", "default_value": "red"},
        {"id": 2, "name": "seats", "default_value": "5"},
    ]
    assert "latest_version" not in body
    assert (
        details(server, product="bare", include_custom_fields="true").json()["custom_fields"] == []
    )


def test_product_details_latest_version(server: Server) -> None:
    server.product("app")
    none_yet = details(server, product="app", include_latest_version="true").json()
    assert none_yet["latest_version"] is None
    assert "custom_fields" not in none_yet

    with server.db.transaction(write=True) as session:
        product = repository.product_by_code(session, server.company_id, "app")
        assert product is not None
        catalogue.add_release(session, product, "1.5", datetime(2024, 3, 1, tzinfo=UTC))
        catalogue.add_release(
            session,
            product,
            "2.0",
            datetime(2025, 1, 15, 12, 30, tzinfo=UTC),
            full_link="https://dl.example.com/app/app-2.0.tar.gz",
            hash_md5="0" * 32,
            channel="stable",
            environment="linux",
        )
        catalogue.add_release(
            session, product, "3.0-beta", datetime(2026, 1, 1, tzinfo=UTC), enabled=False
        )
    body = details(
        server, product="app", include_latest_version="true", include_custom_fields="true"
    ).json()
    latest = body["latest_version"]
    assert set(latest) == LATEST_VERSION_FIELDS
    assert latest["version"] == "2.0"
    assert latest["product_id"] == body["product_id"]
    assert latest["release_date"] == "2025-01-15T12:30:00.000Z"
    assert latest["full_link"] == "https://dl.example.com/app/app-2.0.tar.gz"
    assert latest["filename"] == "app-2.0.tar.gz"
    assert latest["hash_md5"] == "0" * 32
    assert latest["channel"] == "stable" and latest["environment"] == "linux"
    assert latest["enabled"] is True
    assert body["custom_fields"] == []


def test_product_details_errors(server: Server) -> None:
    server.product("app")
    response = details(server, product="nope")
    assert error_of(response) == (400, "unknown_product")
    assert "nope" in response.json()["message"]
    assert error_of(details(server)) == (400, "missing_parameters")
    assert error_of(details(server, product="app", include_latest_version="maybe")) == (
        400,
        "validation_error",
    )
    server.sql("update products set archived = :yes where short_code = 'app'", yes=True)
    assert error_of(details(server, product="app")) == (400, "archived_product")


# -- trial_key -------------------------------------------------------------------------------


def test_trial_key_for_a_key_based_product(server: Server) -> None:
    server.product("app", allow_trial=True, trial_days=14)
    first = trial(server, product="app", hardware_id=HW)
    assert first.status_code == 200, first.text
    body = first.json()
    key = body["license_key"]
    assert isinstance(key, str) and len(key.replace("-", "")) >= 20
    assert body["newly_created"] is True
    assert body["is_trial"] is True
    assert body["trial_days"] == 14
    assert body["product_id"] == product_id(server, "app")
    assert body["times_activated"] == 0 and body["active"] is False
    assert body["validity_period"] is None
    assert isinstance(body["created_at"], int)
    assert abs(body["created_at"] / 1000 - datetime.now(UTC).timestamp()) < 60
    assert "user" not in body

    again = trial(server, product="app", hardware_id=HW).json()
    assert again["license_key"] == key
    assert again["id"] == body["id"]
    assert again["newly_created"] is False

    other = trial(server, product="app", hardware_id="another-device").json()
    assert other["license_key"] != key and other["newly_created"] is True

    activated = server.api.activate(product="app", license_key=key, hardware_id=HW)
    assert activated.status_code == 200, activated.text
    assert activated.json()["is_trial"] is True
    until = parse_iso_datetime(activated.json()["validity_period"])
    assert timedelta(days=13, hours=23) < until - datetime.now(UTC) <= timedelta(days=14)

    after = trial(server, product="app", hardware_id=HW).json()
    assert after["license_key"] == key and after["newly_created"] is False
    assert after["times_activated"] == 1 and after["active"] is True
    assert after["validity_period"] == activated.json()["validity_period"]
    assert server.sql("select count(*) from licenses where is_trial = :yes", yes=True)[0][0] == 2


def test_trial_key_errors(server: Server) -> None:
    server.product("app")
    server.product("trials", allow_trial=True, trial_days=7)
    assert error_of(trial(server, product="app", hardware_id=HW)) == (400, "trial_not_allowed")
    assert error_of(trial(server, product="nope", hardware_id=HW)) == (400, "unknown_product")
    assert error_of(trial(server, product="trials")) == (400, "missing_hardware_id")
    assert error_of(trial(server, hardware_id=HW)) == (400, "missing_parameters")
    assert server.sql("select count(*) from licenses")[0][0] == 0


def test_user_based_trial(server: Server) -> None:
    server.product("team", authorization_method="user", allow_trial=True, trial_days=30)
    assert error_of(trial(server, product="team", hardware_id=HW)) == (400, "email_missing")
    assert error_of(trial(server, product="team", hardware_id=HW, email="")) == (
        400,
        "email_missing",
    )

    response = trial(
        server,
        product="team",
        hardware_id=HW,
        email="Ann@Example.com",
        first_name="Ann",
        last_name="Lee",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["newly_created"] is True and body["is_trial"] is True
    assert "license_key" not in body
    user = body["user"]
    assert user["email"] == "ann@example.com"
    assert user["first_name"] == "Ann" and user["last_name"] == "Lee"
    assert user["is_initial_password"] is True
    password = user["initial_password"]
    assert isinstance(password, str) and len(password) >= 12

    activated = server.api.activate(
        product="team", username="ann@example.com", password=password, hardware_id=HW
    )
    assert activated.status_code == 200, activated.text
    assert activated.json()["is_trial"] is True
    assert activated.json()["user"]["email"] == "ann@example.com"
    wrong = server.api.activate(
        product="team", username="ann@example.com", password=password + "x", hardware_id="d2"
    )
    assert error_of(wrong) == (400, "invalid_credentials")

    # the same device again: the same trial, and the password is not shown twice
    again = trial(server, product="team", hardware_id=HW, email="ann@example.com").json()
    assert again["id"] == body["id"] and again["newly_created"] is False
    assert "initial_password" not in again["user"]

    # a password chosen by the user is used, not echoed
    chosen = trial(
        server, product="team", hardware_id="d3", email="bob@example.com", password="bob-pw-123"
    ).json()
    assert "initial_password" not in chosen["user"]
    ok = server.api.activate(
        product="team", username="bob@example.com", password="bob-pw-123", hardware_id="d3"
    )
    assert ok.status_code == 200, ok.text


# -- device variables ------------------------------------------------------------------------


def test_device_variables_shape_and_overwrite(server: Server) -> None:
    server.product()
    license_ = server.license(max_activations=2)
    key = license_.license_key
    assert key
    activated = server.api.activate(product="app", license_key=key, hardware_id=HW)
    device_id = activated.json()["device_id"]
    identity = {"product": "app", "license_key": key, "hardware_id": HW}

    def track(variables: dict[str, Any]) -> httpx.Response:
        return server.api.call(
            "POST", "/api/v4/track_device_variables", json={**identity, "variables": variables}
        )

    first = track({"plan": "pro", "seats": 3, "beta": False, "ratio": 0.5})
    assert first.status_code == 200, first.text
    rows = first.json()
    assert all(set(r) == {"variable", "value", "device_id", "created_at"} for r in rows)
    assert all(r["device_id"] == device_id for r in rows)
    assert all(isinstance(r["created_at"], int) and r["created_at"] > 10**12 for r in rows)
    assert {r["variable"]: r["value"] for r in rows} == {
        "plan": "pro",
        "seats": "3",
        "beta": "false",
        "ratio": "0.5",
    }
    assert track({"plan": "enterprise"}).status_code == 200
    got = server.api.call("GET", "/api/v4/get_device_variables", params=identity).json()
    values = {r["variable"]: r["value"] for r in got}
    assert values["plan"] == "enterprise"
    assert len(got) == 4  # overwritten, not duplicated

    other_device = dict(identity, hardware_id="never-activated")
    assert error_of(
        server.api.call("GET", "/api/v4/get_device_variables", params=other_device)
    ) == (400, "device_not_found")
    assert error_of(
        server.api.call(
            "POST",
            "/api/v4/track_device_variables",
            json={**other_device, "variables": {"a": "b"}},
        )
    ) == (400, "device_not_found")
    assert error_of(
        server.api.call(
            "GET", "/api/v4/get_device_variables", params=dict(identity, license_key="NOPE")
        )
    ) == (400, "license_not_found")


# -- public keys and the signatures they verify ----------------------------------------------


def test_public_keys_verify_what_the_server_sends(server: Server) -> None:
    server.product()
    license_ = server.license(max_activations=2)
    key = license_.license_key
    assert key
    response = server.api.call("GET", "/api/v4/public_keys", auth=False)
    assert response.status_code == 200, response.text
    listed = response.json()["keys"]
    active = {k["algorithm"]: k for k in listed if k["active"]}
    assert set(active) == {"rsa-sha256", "ed25519"}
    published = PublicKeySet.from_pem([k["public_key"] for k in listed])
    for entry in listed:
        assert set(entry) == {"kid", "algorithm", "public_key", "active"}
        assert key_id(published.keys[entry["kid"]]) == entry["kid"]
    assert active["rsa-sha256"]["kid"] == server.keyring.rsa.kid
    assert active["ed25519"]["kid"] == server.keyring.ed25519.kid
    # the listing is itself signed
    assert verify_response(response, published) == "rsa-sha256"

    rsa = server.api.activate(product="app", license_key=key, hardware_id=HW)
    assert rsa.status_code == 200
    assert verify_response(rsa, published) == "rsa-sha256"
    assert (
        published.verify(rsa.content, rsa.headers["LicenseSignature"], algorithm="rsa-sha256")
        == active["rsa-sha256"]["kid"]
    )
    signing = license_signing_string(HW, key, rsa.json()["validity_period"]).encode()
    published.verify(signing, rsa.json()["license_signature"], algorithm="rsa-sha256")

    ed = server.api.call(
        "GET",
        "/api/v4/check_license",
        params={"product": "app", "license_key": key, "hardware_id": HW},
        headers=ED25519,
    )
    assert ed.status_code == 200, ed.text
    assert verify_response(ed, published) == "ed25519"
    pairs = parse_licensor_signature(ed.headers["Licensor-Signature"])
    assert pairs["kid"] == active["ed25519"]["kid"]
    published.verify(signing, ed.json()["license_signature"], kid=pairs["kid"], algorithm="ed25519")
    published.verify(
        v2_signing_bytes(ed.json()), ed.json()["license_signature_v2"], algorithm="ed25519"
    )

    # an error answer verifies with the published keys too
    refused = server.api.check(product="nope", license_key=key, hardware_id=HW)
    assert verify_response(refused, published) == "rsa-sha256"


# -- the signed fields of a check answer -----------------------------------------------------


def test_check_answer_date_and_offline_signature(server: Server) -> None:
    server.product()
    license_ = server.license(max_activations=2)
    key = license_.license_key
    assert key
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    before = datetime.now(UTC).replace(microsecond=0)
    response = server.api.check(product="app", license_key=key.lower(), hardware_id=HW)
    assert response.status_code == 200, response.text
    body = response.json()
    date = body["date"]
    sent = parse_http_date(date)
    assert date == http_date(sent)  # RFC 7231 IMF-fixdate, GMT
    # dated to the device's step of LICENSOR_ANSWER_DATE_STEP_SECONDS (60 s): never in the
    # future, at most one step old, and the same for the whole step
    step = server.settings.answer_date_step_seconds
    assert step == 60
    assert before - timedelta(seconds=step) < sent <= datetime.now(UTC)
    assert sent == answer_date(before, HW, step) or sent == answer_date(datetime.now(UTC), HW, step)
    assert body["offline_signature"] == offline_signature(
        server.api.shared_key, date, key, HW, server.api.api_key
    )
    assert body["license_signature_v2"]
    server.public_keys.verify(
        v2_signing_bytes(body), body["license_signature_v2"], algorithm="rsa-sha256"
    )
    signing = license_signing_string(HW, key, body["validity_period"]).encode()
    server.public_keys.verify(signing, body["license_signature"], algorithm="rsa-sha256")
    assert list(body)[-2:] == ["license_signature", "license_signature_v2"]


def test_check_answer_signatures_for_a_user_license_with_validity(server: Server) -> None:
    server.product("team", authorization_method="user")
    until = datetime(2099, 6, 15, tzinfo=UTC)
    server.license(
        product="team",
        license_type="time-limited",
        validity_period=until,
        max_activations=2,
        user_email="Ann@Example.com",
        user_password="s3cret-pass",
    )
    activated = server.api.activate(
        product="team", username="ann@example.com", password="s3cret-pass", hardware_id=HW
    )
    assert activated.status_code == 200, activated.text
    response = server.api.check(product="team", username="ann@example.com", hardware_id=HW)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["validity_period"] == "2099-06-15T00:00:00.000Z"
    assert body["offline_signature"] == offline_signature(
        server.api.shared_key, body["date"], "ann@example.com", HW, server.api.api_key
    )
    signing = license_signing_string(HW, "ann@example.com", body["validity_period"])
    assert signing == f"{HW}#ann@example.com#2099-06-15t00:00:00.000z"
    server.public_keys.verify(signing.encode(), body["license_signature"], algorithm="rsa-sha256")
    server.public_keys.verify(
        v2_signing_bytes(body), body["license_signature_v2"], algorithm="rsa-sha256"
    )
    # any change to the body breaks the v2 signature
    tampered = dict(body, validity_period="2199-06-15T00:00:00.000Z")
    with pytest.raises(SignatureError):
        server.public_keys.verify(
            v2_signing_bytes(tampered), body["license_signature_v2"], algorithm="rsa-sha256"
        )


def _trial_policy(server: Server, code: str, *, default: bool, **settings: Any) -> None:
    with server.db.transaction(write=True) as session:
        policies.create_policy(
            session,
            Admin(server.company_id, "test", "admin"),
            "app",
            policy_code=code,
            is_default=default,
            settings=settings,
            now=datetime.now(UTC),
        )


def test_trial_key_takes_its_terms_from_a_trial_policy(server: Server) -> None:
    server.product(
        "app",
        allow_trial=True,
        trial_days=14,
        custom_fields=[{"name": "edition", "default_value": "basic"}],
    )
    # a default policy for paid licenses does not shape trials
    _trial_policy(server, "paid", default=True, max_activations=5)
    plain = trial(server, product="app", hardware_id="device-1").json()
    assert plain["trial_days"] == 14 and plain["max_activations"] == 1

    _trial_policy(
        server,
        "eval",
        default=False,
        is_trial=True,
        trial_days=30,
        max_activations=2,
        custom_fields={"edition": "pro"},
        metadata={"campaign": "autumn"},
    )
    named = trial(server, product="app", hardware_id="device-2", license_policy="eval")
    assert named.status_code == 200, named.text
    body = named.json()
    assert body["is_trial"] is True and body["trial_days"] == 30 and body["max_activations"] == 2
    activated = server.api.activate(
        product="app", license_key=body["license_key"], hardware_id="device-2"
    ).json()
    assert activated["metadata"] == {"campaign": "autumn"}
    assert {f["name"]: f["value"] for f in activated["custom_fields"]} == {"edition": "pro"}
    until = parse_iso_datetime(activated["validity_period"])
    assert timedelta(days=29, hours=23) < until - datetime.now(UTC) <= timedelta(days=30)

    # the product's default policy, when it is a trial policy, applies without naming it
    _trial_policy(server, "default-eval", default=True, is_trial=True, trial_days=3)
    defaulted = trial(server, product="app", hardware_id="device-3").json()
    assert defaulted["trial_days"] == 3

    assert error_of(
        trial(server, product="app", hardware_id="device-4", license_policy="nope")
    ) == (400, "unknown_policy")
    assert (
        server.sql("select count(*) from licenses where trial_hardware_id = :hw", hw="device-4")[0][
            0
        ]
        == 0
    )
