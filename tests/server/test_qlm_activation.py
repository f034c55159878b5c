"""QLM-style activation over /api/v4 (DECISIONS §5), on SQLite and PostgreSQL: by key (Ex options,
for a user), by field, by customer account; re-activation without a seat, maxActivationsPerSystem,
release limits, the Deactivation Verification Code, Computer Key validation and re-issue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from licensor.protocol.computer_key import (
    LicenseModel,
    deactivation_code,
    decode_computer_key,
    feature_bit,
)
from licensor.services import qlm
from tests.server.support import Server, error_of

HW = "7d1c-computer-one"
HW2 = "7d1c-computer-two"


def post(server: Server, endpoint: str, **body: Any) -> httpx.Response:
    return server.api.call("POST", f"/api/v4/{endpoint}", json=body)


def key_of(server: Server, **fields: Any) -> str:
    license_ = server.license(**fields)
    assert license_.license_key
    return license_.license_key


def activate(server: Server, key: str, hw: str = HW, **options: Any) -> httpx.Response:
    return post(server, "activate_license_by_key", product="app", license_key=key, hardware_id=hw, **options)  # fmt: skip


def test_activation_by_key_answers_a_computer_key_that_verifies_offline(server: Server) -> None:
    server.product()
    key = key_of(
        server, license_type="subscription", validity_period=datetime(2030, 1, 1, tzinfo=UTC)
    )
    server.sql("update licenses set feature_flags = :f", f=feature_bit(0, 1) | feature_bit(2, 8))
    response = activate(
        server, key, computer_name="Ann's laptop", user_data="<seat 1>", affiliate_id="reseller-7",
        computer_type="PC",
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    claims = decode_computer_key(body["computer_key"], server.public_keys)
    assert claims.is_bound_to(HW) and not claims.is_bound_to(HW2)
    assert claims.license_id == body["license_id"]
    assert claims.product == "app"
    assert claims.license_model == LicenseModel.SUBSCRIPTION
    assert claims.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert claims.feature_enabled(2, 8) and body["features"] == "0:1;1:0;2:8;3:0;"
    assert body["license_model"] == "subscription"
    assert body["reactivated"] is False and body["activation_count"] == 1
    assert body["times_activated"] == 1
    row = server.sql(
        "select hostname, user_data, affiliate_id, computer_type, computer_key from devices"
    )[0]
    assert tuple(row) == ("Ann's laptop", "<seat 1>", "reseller-7", "PC", body["computer_key"])


def test_same_computer_reactivates_without_a_new_seat(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=1)
    first = activate(server, key).json()
    again = activate(server, key)
    assert again.status_code == 200, again.text
    assert again.json()["reactivated"] is True
    assert again.json()["times_activated"] == 1
    assert again.json()["activation_count"] == 2
    assert (
        decode_computer_key(again.json()["computer_key"], server.public_keys).license_id
        == (first["license_id"])
    )
    assert error_of(activate(server, key, HW2)) == (400, "license_activated_max_times")
    # the License API itself keeps its rule: an active device is a 409
    v4 = server.api.activate(product="app", license_key=key, hardware_id=HW)
    assert error_of(v4) == (409, "license_device_exists")


def test_max_activations_per_system(server: Server) -> None:
    server.product()
    server.sql("update products set max_activations_per_system = 2")
    key = key_of(server)
    assert activate(server, key).status_code == 200
    assert activate(server, key).status_code == 200
    assert error_of(activate(server, key)) == (400, "license_exceeded_max_activations_per_system")
    # a re-activation that does not count is still allowed (QLM's incrementActivationCount)
    assert activate(server, key, increment_activation_count=False).status_code == 200
    # the license may raise its product's limit
    server.sql("update licenses set max_activations_per_system = 3")
    assert activate(server, key).status_code == 200
    assert error_of(activate(server, key)) == (400, "license_exceeded_max_activations_per_system")


def test_max_activations_per_system_only_on_virtual_machines(server: Server) -> None:
    server.product()
    server.sql(
        "update products set max_activations_per_system = 1, "
        "max_activations_per_system_vm_only = :t",
        t=True,
    )
    pc = key_of(server)
    for _ in range(3):
        assert activate(server, pc, computer_type="PC").status_code == 200
    vm = key_of(server)
    assert activate(server, vm, HW2, computer_type="VM").status_code == 200
    assert error_of(activate(server, vm, HW2, computer_type="VM")) == (
        400,
        "license_exceeded_max_activations_per_system",
    )


def test_computer_type_vm_obeys_prevent_vm(server: Server) -> None:
    server.product(prevent_vm=True)
    key = key_of(server)
    assert error_of(activate(server, key, computer_type="VM")) == (400, "vm_not_allowed")
    assert activate(server, key, computer_type="PC").status_code == 200


def test_activation_for_a_user_records_the_customer_and_consent(server: Server) -> None:
    server.product()
    key = key_of(server)
    before = datetime.now(UTC) - timedelta(seconds=1)
    response = activate(
        server,
        key,
        customer={
            "email": "Zoë@Example.com",
            "full_name": "Zoë O'Brien",
            "company": "Ünïcode & Sons <Ltd>",
            "privacy_consent": True,
        },
    )
    assert response.status_code == 200, response.text
    customer = response.json()["customer"]
    assert customer["email"] == "zoë@example.com"
    assert (customer["first_name"], customer["last_name"]) == ("Zoë", "O'Brien")
    assert customer["company_name"] == "Ünïcode & Sons <Ltd>"
    assert customer["privacy_consent"] is True
    assert datetime.fromisoformat(customer["privacy_consent_at"].replace("Z", "+00:00")) >= before
    assert server.sql("select count(*) from licenses where customer_id is not null")[0][0] == 1
    # consent can be withdrawn later, and the time is recorded again
    withdrawn = post(server, "update_privacy_consent", email="zoë@example.com", consent=False)
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["privacy_consent"] is False
    unknown = post(server, "update_privacy_consent", email="nobody@example.com", consent=True)
    assert error_of(unknown) == (400, "customer_not_found")


def test_activation_by_field(server: Server) -> None:
    server.product()
    server.license(customer_email="ann@example.com", order_store_id="ORD-1")
    server.sql("update licenses set receipt_id = 'RCPT-9'")
    by_order = post(
        server, "activate_license_by_field", product="app", field="OrderID", value="ORD-1",
        email="ANN@example.com", hardware_id=HW,
    )  # fmt: skip
    assert by_order.status_code == 200, by_order.text
    assert decode_computer_key(by_order.json()["computer_key"], server.public_keys).is_bound_to(HW)
    by_receipt = post(
        server, "activate_license_by_field", product="app", field="receiptid", value="RCPT-9",
        email="ann@example.com", hardware_id=HW,
    )  # fmt: skip
    assert by_receipt.json()["reactivated"] is True
    wrong_email = post(
        server, "activate_license_by_field", product="app", field="OrderID", value="ORD-1",
        email="eve@example.com", hardware_id=HW2,
    )  # fmt: skip
    assert error_of(wrong_email) == (400, "license_not_found")
    not_allowed = post(
        server, "activate_license_by_field", product="app", field="UserData1", value="x",
        email="ann@example.com", hardware_id=HW2,
    )  # fmt: skip
    assert error_of(not_allowed) == (400, "activation_field_not_allowed")
    server.sql("""update products set activation_lookup_fields = '["OrderID"]'""")
    narrowed = post(
        server, "activate_license_by_field", product="app", field="ReceiptID", value="RCPT-9",
        email="ann@example.com", hardware_id=HW2,
    )  # fmt: skip
    assert error_of(narrowed) == (400, "activation_field_not_allowed")


def test_activation_by_customer_account(server: Server) -> None:
    server.product()
    server.license(customer_email="bob@example.com", max_activations=2)
    with server.db.transaction(write=True) as session:
        qlm.set_customer_password(
            session, server.company_id, "bob@example.com", "correct horse", now=datetime.now(UTC)
        )
    ok = post(
        server, "activate_license_by_credentials", username="Bob@example.com",
        password="correct horse", hardware_id=HW,
    )  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert decode_computer_key(ok.json()["computer_key"], server.public_keys).product == "app"
    for username, password in [("bob@example.com", "wrong"), ("nobody@example.com", "x")]:
        refused = post(
            server, "activate_license_by_credentials", username=username, password=password,
            hardware_id=HW2,
        )  # fmt: skip
        assert error_of(refused) == (400, "invalid_credentials")
    hash_ = server.sql("select password_hash from customers")[0][0]
    assert hash_.startswith("$argon2id$")


def test_release_limits(server: Server) -> None:
    server.product()
    server.sql("update products set max_release_count = 1, max_release_period_days = 30")
    key = key_of(server)
    release = {"product": "app", "license_key": key, "hardware_id": HW}
    assert activate(server, key).status_code == 200
    done = post(server, "release_license", **release)
    assert done.status_code == 200, done.text
    assert done.json() == "license_released"
    assert server.sql("select times_activated from licenses")[0][0] == 0
    assert activate(server, key).status_code == 200
    assert error_of(post(server, "release_license", **release)) == (
        400,
        "license_exceeded_max_releases",
    )
    # the License API's own deactivation obeys the same rule (one rule, one place)
    assert error_of(server.api.deactivate(**release)) == (400, "license_exceeded_max_releases")
    # a release older than the period no longer counts
    server.sql(
        "update license_releases set released_at = :old", old=datetime.now(UTC) - timedelta(days=31)
    )
    assert post(server, "release_license", **release).status_code == 200
    # the license overrides its product: -1 = unlimited
    server.sql("update licenses set max_release_count = -1")
    for _ in range(3):
        assert activate(server, key).status_code == 200
        assert post(server, "release_license", **release).status_code == 200


def test_deactivation_verification_code(server: Server) -> None:
    server.product()
    key = key_of(server)
    computer_key = activate(server, key).json()["computer_key"]
    release = {"product": "app", "license_key": key, "hardware_id": HW}
    today = datetime.now(UTC).date()
    wrong = deactivation_code(computer_key, HW2, today)
    assert error_of(post(server, "release_license", deactivation_code=wrong, **release)) == (
        400,
        "wrong_deactivation_verification_code",
    )
    code = deactivation_code(computer_key, HW, today)
    done = post(server, "release_license", deactivation_code=code.lower(), **release)
    assert done.status_code == 200, done.text
    assert server.sql("select method from license_releases")[0][0] == "deactivation_code"


def test_product_can_require_the_deactivation_code(server: Server) -> None:
    server.product()
    server.sql("update products set release_requires_deactivation_code = :t", t=True)
    key = key_of(server)
    computer_key = activate(server, key).json()["computer_key"]
    release = {"product": "app", "license_key": key, "hardware_id": HW}
    assert error_of(post(server, "release_license", **release)) == (
        400,
        "wrong_deactivation_verification_code",
    )
    code = deactivation_code(computer_key, HW, datetime.now(UTC).date())
    assert post(server, "release_license", deactivation_code=code, **release).status_code == 200


def test_computer_key_is_reissued_with_new_terms_without_counting(server: Server) -> None:
    server.product()
    key = key_of(server)
    first = activate(server, key).json()
    server.sql("update licenses set feature_flags = :f", f=feature_bit(1, 2))
    fresh = post(server, "computer_key", product="app", license_key=key, hardware_id=HW)
    assert fresh.status_code == 200, fresh.text
    claims = decode_computer_key(fresh.json()["computer_key"], server.public_keys)
    assert claims.feature_enabled(1, 2)
    assert fresh.json()["activation_count"] == first["activation_count"]
    other = post(server, "computer_key", product="app", license_key=key, hardware_id=HW2)
    assert error_of(other) == (400, "device_not_found")


def test_validate_computer_key(server: Server) -> None:
    server.product()
    key = key_of(server)
    computer_key = activate(server, key).json()["computer_key"]
    ok = post(server, "validate_computer_key", computer_key=computer_key.lower(), hardware_id=HW)
    assert ok.status_code == 200, ok.text
    assert ok.json()["license_key"] == key
    assert error_of(
        post(server, "validate_computer_key", computer_key=computer_key, hardware_id=HW2)
    ) == (400, "computer_key_mismatch")
    tampered = computer_key[:-3] + ("AAA" if not computer_key.endswith("AAA") else "BBB")
    assert error_of(
        post(server, "validate_computer_key", computer_key=tampered, hardware_id=HW)
    ) == (400, "computer_key_invalid")
    assert error_of(
        post(server, "validate_computer_key", computer_key="hello", hardware_id=HW)
    ) == (400, "computer_key_invalid")
    other_key = key_of(server)
    assert error_of(
        post(
            server, "validate_computer_key", computer_key=computer_key, hardware_id=HW,
            license_key=other_key,
        )
    ) == (400, "computer_key_mismatch")  # fmt: skip
    post(server, "release_license", product="app", license_key=key, hardware_id=HW)
    assert error_of(
        post(server, "validate_computer_key", computer_key=computer_key, hardware_id=HW)
    ) == (400, "license_not_active")
    server.sql("update licenses set enabled = :f", f=False)
    assert error_of(
        post(server, "validate_computer_key", computer_key=computer_key, hardware_id=HW)
    ) == (400, "license_not_enabled")


@pytest.mark.parametrize(
    ("endpoint", "body", "code"),
    [
        ("activate_license_by_key", {"product": "app", "hardware_id": HW}, "missing_parameters"),
        ("activate_license_by_key", {"product": "app", "license_key": "K"}, "missing_hardware_id"),
        (
            "activate_license_by_key",
            {"product": "app", "license_key": "K", "hardware_id": HW, "computer_type": "Mac"},
            "validation_error",
        ),
        ("request_authorization_code", {"email": 5}, "validation_error"),
        ("activate_license_by_field", {"product": "app"}, "missing_parameters"),
        ("release_license", {"product": "app", "license_key": "K"}, "missing_hardware_id"),
        ("update_privacy_consent", {"email": "a@b.c", "consent": "yes"}, "validation_error"),
    ],
)
def test_malformed_requests(
    sqlite_server: Server, endpoint: str, body: dict[str, Any], code: str
) -> None:
    sqlite_server.product()
    assert error_of(post(sqlite_server, endpoint, **body)) == (400, code)


def test_read_only_keys_cannot_activate(sqlite_server: Server) -> None:
    sqlite_server.product()
    key = key_of(sqlite_server)
    read_only = sqlite_server.api_key(read_only=True)
    response = read_only.call(
        "POST",
        "/api/v4/activate_license_by_key",
        json={"product": "app", "license_key": key, "hardware_id": HW},
    )
    assert error_of(response) == (400, "read_only_api_key")


def test_unauthenticated_calls_are_refused(sqlite_server: Server) -> None:
    response = sqlite_server.api.call(
        "POST", "/api/v4/activate_license_by_key", auth=False, json={}
    )
    assert error_of(response) == (400, "missing_headers")
