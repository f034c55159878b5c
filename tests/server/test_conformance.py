"""The whole License API index (v4 §3.1) against a running ``licensor serve``, on SQLite and
PostgreSQL: each of the 27 paths answers a well-formed request with success, every answer is
signed over its exact bytes (``LicenseSignature`` / ``Licensor-Signature``), and the license
objects carry their ``license_signature`` (offline ones ``offline_signature`` and
``license_signature_v2`` too, a bundle's license file ``bundle_signature_v2``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from licensor.protocol.signing import compact_json, license_signing_string
from licensor.services import sso
from tests.server.oidc_provider import OidcProvider
from tests.server.processes import Deployment, admin_token, prepare, serve
from tests.server.support import Api
from tests.server.test_offline import request_file

# v4 §3.1, in its order: (number, method, path)
INDEX = [
    (1, "POST", "/api/v4/activate_license"),
    (2, "POST", "/api/v4/deactivate_license"),
    (3, "GET", "/api/v4/check_license"),
    (4, "POST", "/api/v4/activate_offline"),
    (5, "POST", "/api/v4/deactivate_offline"),
    (6, "POST", "/api/v4/activate_bundle"),
    (7, "POST", "/api/v4/deactivate_bundle"),
    (8, "GET", "/api/v4/check_bundle"),
    (9, "POST", "/api/v4/activate_bundle_offline"),
    (10, "POST", "/api/v4/deactivate_bundle_offline"),
    (11, "GET", "/api/v4/check_license_feature"),
    (12, "POST", "/api/v4/add_consumption"),
    (13, "POST", "/api/v4/add_feature_consumption"),
    (14, "POST", "/api/v4/floating/release"),
    (15, "POST", "/api/v4/floating/borrow"),
    (16, "POST", "/api/v4/floating/feature_release"),
    (17, "POST", "/api/v4/floating/feature_borrow"),
    (18, "GET", "/api/v4/trial_key"),
    (19, "GET", "/api/v4/product_details"),
    (20, "POST", "/api/v4/track_device_variables"),
    (21, "GET", "/api/v4/get_device_variables"),
    (22, "POST", "/api/v4/change_password"),
    (23, "GET", "/api/v4/versions"),
    (24, "GET", "/api/v4/installation_file"),
    (25, "GET", "/api/v4/customer_license_users"),
    (26, "GET", "/api/v4/user_licenses"),
    (27, "GET", "/api/v4/sso_url"),
]
HW = "conformance-device"
USER, CUSTOMER = "uma@customer.example", "buyer@customer.example"


@pytest.fixture
def running(database_url: str, tmp_path: Path) -> Iterator[tuple[Deployment, str, OidcProvider]]:
    deployment = prepare(database_url, tmp_path / "data")
    with OidcProvider() as provider, serve(deployment) as base:
        yield deployment, base, provider


def setup_catalogue(deployment: Deployment, base: str, provider: OidcProvider) -> dict[str, str]:
    """Products, features, a release, licenses and a customer account, through the running
    server's management API; the keys by name."""
    headers = {"Authorization": f"Bearer {admin_token(deployment)}"}
    admin = httpx.Client(base_url=base + "/api/management/v1", headers=headers, timeout=30)

    def made(path: str, body: dict[str, Any]) -> Any:
        answer = admin.post(path, json=body)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    made("/products", {"short_code": "app", "name": "App", "allow_trial": True, "trial_days": 7})
    for feature in (
        {"code": "render", "name": "Render", "is_floating_cloud": True, "floating_users": 2,
         "can_borrow": True, "max_borrow_time": 8},
        {"code": "pages", "name": "Pages", "feature_type": "consumption", "max_consumption": 10},
    ):  # fmt: skip
        made("/products/app/features", feature)
    made("/products/app/releases", {"version": "1.0", "release_date": "2024-01-01T00:00:00Z"})
    made("/products", {"short_code": "float", "name": "Float", "is_floating_cloud": True,
                       "floating_users": 2, "can_borrow": True, "max_borrow_time": 8})  # fmt: skip
    made("/products", {"short_code": "team", "name": "Team", "authorization_method": "user"})
    for code in ("editor", "viewer"):
        made("/products", {"short_code": code, "name": code.title()})
    made("/products", {"short_code": "suite", "name": "Suite", "bundle": ["editor", "viewer"]})

    def key(body: dict[str, Any]) -> str:
        return str(made("/licenses", body)["items"][0]["license_key"])

    keys = {
        "app": key({"product": "app", "license_type": "consumption", "max_consumptions": 10,
                    "max_activations": 3, "features": {"render": {}, "pages": {}}}),
        "float": key({"product": "float", "max_activations": 3}),
        "suite": key({"product": "suite", "max_activations": 2}),
    }  # fmt: skip
    made("/licenses", {"product": "team", "user_email": USER, "user_password": "initial-pw-1",
                       "customer_email": CUSTOMER})  # fmt: skip
    oidc = sso.OidcSettings(provider.issuer, "licensor", "s3cret", ("http://127.0.0.1",))
    with deployment.db.transaction(write=True) as session:
        sso.create_customer_account(
            session, deployment.master_key, deployment.company_id, "acme", oidc=oidc
        )
    return keys


def test_every_endpoint_of_the_index_answers_signed(
    running: tuple[Deployment, str, OidcProvider],
) -> None:
    deployment, base, provider = running
    keys = setup_catalogue(deployment, base, provider)
    http = httpx.Client(base_url=base, timeout=30)
    api = Api(http, deployment.public_keys, deployment.api_key, deployment.shared_key)
    answered: dict[str, Any] = {}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        answer = api.call(method, path, **kwargs)  # (verifies the answer's signature)
        assert answer.status_code == 200, f"{method} {path}: {answer.text}"
        answered[path] = body = answer.json()
        return body

    def ident(product: str, hw: str = HW, **more: Any) -> dict[str, Any]:
        return {"product": product, "license_key": keys[product], "hardware_id": hw, **more}

    def signed_license(item: dict[str, Any], key: str, hw: str = HW) -> None:
        signed = license_signing_string(hw, key, item["validity_period"]).encode()
        deployment.public_keys.verify(signed, item["license_signature"])

    v4 = "/api/v4/"
    signed_license(call("POST", v4 + "activate_license", json=ident("app")), keys["app"])
    signed_license(call("GET", v4 + "check_license", params=ident("app")), keys["app"])
    call("GET", v4 + "check_license_feature", params=ident("app", feature="render"))
    call("POST", v4 + "floating/feature_borrow", json=ident("app", feature="render",
                                                             borrowed_until=None))  # fmt: skip
    call("POST", v4 + "floating/feature_release", json=ident("app", feature="render"))
    call("POST", v4 + "add_feature_consumption", json=ident("app", feature="pages"))
    call("POST", v4 + "add_consumption", json=ident("app", consumptions=2))
    call("POST", v4 + "track_device_variables", json=ident("app", variables={"seat": "A"}))
    assert call("GET", v4 + "get_device_variables", params=ident("app"))[0]["value"] == "A"
    assert call("GET", v4 + "versions", params=ident("app"))[0]["version"] == "1.0"
    assert call("GET", v4 + "installation_file", params=ident("app"))["version"] == "1.0"
    call("GET", v4 + "product_details", params={"product": "app"})
    call("GET", v4 + "trial_key", params={"product": "app", "hardware_id": "trial-device"})
    assert call("POST", v4 + "deactivate_license", json=ident("app")) == "license_deactivated"

    offline = request_file(api, keys["app"], hardware_id="offline-device")
    license_file = call("POST", v4 + "activate_offline", content=offline)
    signed_license(license_file, keys["app"], "offline-device")
    assert license_file["offline_signature"] and license_file["license_signature_v2"]
    leave = request_file(api, keys["app"], hardware_id="offline-device", request="deactivation")
    assert call("POST", v4 + "deactivate_offline", content=leave) == "license_deactivated"

    call("POST", v4 + "activate_license", json=ident("float"))
    call("GET", v4 + "check_license", params=ident("float"))  # (takes a floating seat)
    call("POST", v4 + "floating/borrow", json=ident("float", borrowed_until=None))
    call("POST", v4 + "floating/release", json=ident("float"))

    for item in call("POST", v4 + "activate_bundle", json=ident("suite")):
        signed_license(item, keys["suite"])
    assert len(call("GET", v4 + "check_bundle", params=ident("suite"))) == 2
    assert call("POST", v4 + "deactivate_bundle", json=ident("suite")) == "license_deactivated"
    bundle_file = call(
        "POST",
        v4 + "activate_bundle_offline",
        content=request_file(api, keys["suite"], product="suite", hardware_id="offline-device"),
    )
    deployment.public_keys.verify(
        compact_json({"licenses": bundle_file["licenses"]}), bundle_file["bundle_signature_v2"]
    )
    leave = request_file(
        api, keys["suite"], product="suite", hardware_id="offline-device", request="deactivation"
    )
    assert call("POST", v4 + "deactivate_bundle_offline", content=leave) == "license_deactivated"

    change = {"username": USER, "password": "initial-pw-1", "new_password": "changed-pw-2"}
    assert call("POST", v4 + "change_password", json=change) == "password_changed"
    users = call("GET", v4 + "customer_license_users", params={"product": "team",
                                                                "customer": CUSTOMER})  # fmt: skip
    assert [u["email"] for u in users["users"]] == [USER]
    mine = {"product": "team", "username": USER, "password": "changed-pw-2"}
    assert len(call("GET", v4 + "user_licenses", params=mine)) == 1
    url = call("GET", v4 + "sso_url", params={"product": "team", "customer_account_code": "acme"})
    assert url["url"].startswith(provider.issuer)

    assert sorted(answered) == sorted(path for _, _, path in INDEX)
    assert len(INDEX) == 27


def test_the_readme_lists_the_27_endpoints() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = [f"| {number} | {method} | `{path}` |" for number, method, path in INDEX]
    assert [row for row in rows if row not in readme] == []
