"""Product features, custom fields and license policies through the management API, and what the
License API answers with them, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from licensor.protocol.signing import parse_iso_datetime
from licensor.store import migrate
from licensor.store.db import Database
from tests.server.processes import admin_token, prepare, serve
from tests.server.support import Server, error_of
from tests.server.test_management_api import BASE, Mgmt, activated, count_rows, make_token, mgmt

FEATURE_FIELDS = {
    "id",
    "code",
    "name",
    "feature_type",
    "expiry_date",
    "metadata",
    "max_consumption",
    "total_consumptions",
    "allow_unlimited_consumptions",
    "allow_negative_consumptions",
    "allow_overages",
    "max_overages",
    "reset_consumption",
    "consumption_period",
    "is_floating",
    "is_floating_cloud",
    "floating_users",
    "floating_timeout",
}


@pytest.fixture
def admin(server: Server) -> Mgmt:
    server.product()
    return mgmt(server)


def check(server: Server, key: str, hw: str) -> dict[str, Any]:
    response = server.api.check(product="app", license_key=key, hardware_id=hw)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [f["code"] for f in body["product_features"]]


# -- features ----------------------------------------------------------------------------------


def test_features_are_defined_attached_overridden_and_answered(server: Server, admin: Mgmt) -> None:
    export = admin.ok(
        admin.post("/products/app/features", {"code": "export", "name": "Export"}), 201
    )
    assert (export["code"], export["name"], export["feature_type"], export["product"]) == (
        "export",
        "Export",
        "activation",
        "app",
    )
    credits = admin.ok(
        admin.post(
            "/products/app/features",
            {
                "code": "credits",
                "feature_type": "consumption",
                "max_consumption": 100,
                "metadata": {"unit": "page"},
            },
        ),
        201,
    )
    assert credits["name"] == "credits"  # defaults to the code
    old = admin.ok(
        admin.post("/products/app/features", {"code": "old", "expiry_date": "2020-01-01"}), 201
    )
    assert old["expiry_date"] == "2020-01-01T00:00:00.000Z"
    listed = admin.ok(admin.get("/products/app/features"))["items"]
    assert [f["code"] for f in listed] == ["export", "credits", "old"]
    assert len({f["id"] for f in listed}) == 3

    issued = admin.issue(features={"export": None, "credits": {"max_consumption": 5}, "old": {}})
    assert set(issued["features"]) == {"export", "credits", "old"}
    body = activated(server, issued["license_key"], "hw-1")
    assert codes(body) == ["export", "credits"]  # the expired one is left out
    by_code = {f["code"]: f for f in body["product_features"]}
    assert all(set(f) == FEATURE_FIELDS for f in body["product_features"])
    assert (by_code["credits"]["max_consumption"], by_code["credits"]["metadata"]) == (
        5,
        {"unit": "page"},
    )
    assert (by_code["export"]["feature_type"], by_code["export"]["expiry_date"]) == (
        "activation",
        None,
    )
    assert codes(check(server, issued["license_key"], "hw-1")) == ["export", "credits"]

    # a license's own expiry hides the feature from this license only; null brings it back
    path = f"/licenses/{issued['id']}/features"
    past = admin.ok(admin.patch(f"{path}/export", {"expiry_date": "2021-05-01"}))
    assert past["features"]["export"] == {"expiry_date": "2021-05-01T00:00:00.000Z"}
    assert codes(check(server, issued["license_key"], "hw-1")) == ["credits"]
    other = admin.issue(features={"export": {}})
    assert codes(activated(server, other["license_key"], "hw-2")) == ["export"]
    admin.ok(admin.patch(f"{path}/export", {"expiry_date": None}))
    future = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    admin.ok(admin.patch(f"{path}/old", {"expiry_date": future}))
    assert codes(check(server, issued["license_key"], "hw-1")) == ["export", "credits", "old"]

    # the product's definition changes show at once; detach and delete take the feature away
    admin.ok(admin.patch("/products/app/features/credits", {"name": "Print credits"}))
    credits_now = check(server, issued["license_key"], "hw-1")["product_features"][1]
    assert (credits_now["name"], credits_now["max_consumption"]) == ("Print credits", 5)
    detached = admin.ok(admin.delete(f"{path}/credits"))
    assert set(detached["features"]) == {"export", "old"}
    assert admin.delete("/products/app/features/export").status_code == 204
    assert admin.ok(admin.get(f"/licenses/{issued['id']}"))["features"] == {
        "old": {"expiry_date": future + "T00:00:00.000Z"}
    }
    assert admin.ok(admin.get(f"/licenses/{other['id']}"))["features"] == {}
    assert codes(check(server, issued["license_key"], "hw-1")) == ["old"]
    assert [f["code"] for f in admin.ok(admin.get("/products/app/features"))["items"]] == [
        "credits",
        "old",
    ]
    actions = [e["action"] for e in admin.ok(admin.get("/audit", per_page=100))["items"]]
    for action in ("feature.create", "feature.update", "feature.delete"):
        assert action in actions
    for action in ("license.feature_update", "license.feature_detach"):
        assert action in actions


def test_feature_mistakes_are_refused_naming_the_field(server: Server, admin: Mgmt) -> None:
    admin.ok(admin.post("/products/app/features", {"code": "export"}), 201)
    issued = admin.issue()
    path = f"/licenses/{issued['id']}/features"
    cases = [
        (admin.post("/products/app/features", {"code": "export"}), 409, "code"),
        (admin.post("/products/app/features", {"code": "a b"}), 400, "code"),
        (
            admin.post("/products/app/features", {"code": "x", "feature_type": "floating"}),
            400,
            "feature_type",
        ),
        (
            admin.post("/products/app/features", {"code": "x", "max_consumption": 3}),
            400,
            "max_consumption",
        ),
        (
            admin.post("/products/app/features", {"code": "x", "expiry_date": "soon"}),
            400,
            "expiry_date",
        ),
        (
            admin.post("/products/app/features", {"code": "x", "max_consumption": -1}),
            400,
            "max_consumption",
        ),
        (admin.patch("/products/app/features/export", {"name": ""}), 400, "name"),
        (admin.patch("/products/app/features/nope", {"name": "x"}), 404, "nope"),
        (admin.delete("/products/app/features/nope"), 404, "nope"),
        (admin.get("/products/nope/features"), 404, "nope"),
        (admin.post(path, {"code": "nope"}), 400, "nope"),
        (admin.post(path, {"code": "export", "max_consumption": 3}), 400, "max_consumption"),
        (admin.post(path, {"code": "export", "expiry_date": "never"}), 400, "expiry_date"),
        (admin.post(path, {"code": "export", "colour": "red"}), 400, "colour"),
        (admin.patch(f"{path}/export", {"expiry_date": "2030-01-01"}), 404, "export"),
        (admin.delete(f"{path}/export"), 404, "export"),
        (admin.post("/licenses/999999/features", {"code": "export"}), 404, "999999"),
        (admin.post("/licenses", {"product": "app", "features": {"nope": {}}}), 400, "nope"),
    ]
    for response, status, named in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert named in response.json()["message"], response.text
    assert error_of(admin.post(path, {"code": "nope"})) == (400, "unknown_feature")
    admin.ok(admin.post(path, {"code": "export"}), 201)
    assert error_of(admin.post(path, {"code": "export"})) == (409, "validation_error")
    assert admin.ok(admin.get("/licenses"))["total"] == 1


@contextmanager
def sql_statements() -> Iterator[list[str]]:
    """Every SQL statement any engine of this process sends while the block runs."""
    statements: list[str] = []

    def on_execute(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(Engine, "before_cursor_execute", on_execute)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", on_execute)


def test_features_add_no_query_to_checks_and_activations(server: Server, admin: Mgmt) -> None:
    plain = admin.issue()
    for code in ("a", "b", "c"):
        admin.ok(admin.post("/products/app/features", {"code": code}), 201)
    rich = admin.issue(features={"a": {}, "b": {"expiry_date": "2099-01-01"}, "c": {}})

    with sql_statements() as seen:

        def statements(call: Any) -> list[str]:
            start = len(seen)
            call()
            return seen[start:]

        without = statements(lambda: activated(server, plain["license_key"], "hw-1"))
        with_features = statements(lambda: activated(server, rich["license_key"], "hw-1"))
        assert len(with_features) == len(without), (without, with_features)
        # a check writes only when the last one is old: compare two that both only read
        for key in (plain["license_key"], rich["license_key"]):
            check(server, key, "hw-1")
        checks = [
            statements(lambda key=key: check(server, key, "hw-1"))
            for key in (plain["license_key"], rich["license_key"])
        ]
        assert len(checks[0]) == len(checks[1]), (checks[0], checks[1])
    assert codes(check(server, rich["license_key"], "hw-1")) == ["a", "b", "c"]


# -- custom fields -----------------------------------------------------------------------------


def test_custom_fields_are_defined_set_cleared_and_answered(server: Server, admin: Mgmt) -> None:
    seat = admin.ok(
        admin.post("/products/app/custom-fields", {"name": "seat", "default_value": "A"}), 201
    )
    assert seat == {"name": "seat", "default_value": "A", "product": "app"}
    admin.ok(admin.post("/products/app/custom-fields", {"name": "tier", "default_value": 3}), 201)
    listed = admin.ok(admin.get("/products/app/custom-fields"))["items"]
    assert [(f["name"], f["default_value"]) for f in listed] == [("seat", "A"), ("tier", "3")]

    issued = admin.issue(custom_fields={"seat": "B"})
    assert issued["custom_fields"] == {"seat": "B"}
    fields = {
        f["name"]: f["value"]
        for f in activated(server, issued["license_key"], "hw-1")["custom_fields"]
    }
    assert fields == {"seat": "B", "tier": "3"}

    # PATCH merges; null falls back on the product's default
    changed = admin.ok(admin.patch(f"/licenses/{issued['id']}", {"custom_fields": {"tier": True}}))
    assert changed["custom_fields"] == {"seat": "B", "tier": "true"}
    cleared = admin.ok(admin.patch(f"/licenses/{issued['id']}", {"custom_fields": {"seat": None}}))
    assert cleared["custom_fields"] == {"tier": "true"}
    admin.ok(admin.patch("/products/app/custom-fields/seat", {"default_value": "Z"}))
    answered = check(server, issued["license_key"], "hw-1")["custom_fields"]
    assert [(f["name"], f["value"]) for f in answered] == [("seat", "Z"), ("tier", "true")]

    # deleting a field removes every license's value for it
    assert admin.delete("/products/app/custom-fields/tier").status_code == 204
    assert admin.ok(admin.get(f"/licenses/{issued['id']}"))["custom_fields"] == {}
    answered = check(server, issued["license_key"], "hw-1")["custom_fields"]
    assert [(f["name"], f["value"]) for f in answered] == [("seat", "Z")]
    details = server.api.call(
        "GET", "/api/v4/product_details", params={"product": "app", "include_custom_fields": "true"}
    ).json()["custom_fields"]
    assert [(f["name"], f["default_value"]) for f in details] == [("seat", "Z")]


def test_custom_field_mistakes_are_refused_naming_the_field(server: Server, admin: Mgmt) -> None:
    admin.ok(admin.post("/products/app/custom-fields", {"name": "seat"}), 201)
    issued = admin.issue()
    before = admin.ok(admin.get(f"/licenses/{issued['id']}"))
    cases = [
        (
            admin.post("/products/app/custom-fields", {"name": "seat"}),
            409,
            "validation_error",
            "seat",
        ),
        (admin.post("/products/app/custom-fields", {"name": ""}), 400, "validation_error", "name"),
        (
            admin.post("/products/app/custom-fields", {"name": "x", "default_value": [1]}),
            400,
            "validation_error",
            "default_value",
        ),
        (
            admin.post("/products/app/custom-fields", {"name": "x", "default_value": "v" * 1001}),
            400,
            "validation_error",
            "default_value",
        ),
        (
            admin.patch("/products/app/custom-fields/nope", {"default_value": "x"}),
            404,
            "not_found",
            "nope",
        ),
        (admin.delete("/products/app/custom-fields/nope"), 404, "not_found", "nope"),
        (
            admin.patch(f"/licenses/{issued['id']}", {"custom_fields": {"colour": "red"}}),
            400,
            "unknown_custom_field",
            "colour",
        ),
        (
            admin.patch(
                f"/licenses/{issued['id']}",
                {"max_activations": 7, "custom_fields": {"seat": "a", "colour": "red"}},
            ),
            400,
            "unknown_custom_field",
            "colour",
        ),
        (
            admin.patch(f"/licenses/{issued['id']}", {"custom_fields": {"seat": {"a": 1}}}),
            400,
            "validation_error",
            "seat",
        ),
        (
            admin.post(
                "/licenses", {"product": "app", "count": 3, "custom_fields": {"colour": "red"}}
            ),
            400,
            "unknown_custom_field",
            "colour",
        ),
    ]
    for response, status, code, named in cases:
        assert error_of(response) == (status, code), (response.request.url, response.text)
        assert named in response.json()["message"], response.text
    assert admin.ok(admin.get(f"/licenses/{issued['id']}")) == before
    assert admin.ok(admin.get("/licenses"))["total"] == 1


# -- policies ----------------------------------------------------------------------------------


def test_licenses_are_issued_from_a_policy_the_request_overriding_it(
    server: Server, admin: Mgmt
) -> None:
    admin.ok(admin.post("/products/app/features", {"code": "export"}), 201)
    admin.ok(admin.post("/products/app/custom-fields", {"name": "seat", "default_value": "-"}), 201)
    annual = admin.ok(
        admin.post(
            "/products/app/policies",
            {
                "code": "annual",
                "name": "Annual subscription",
                "license_type": "subscription",
                "validity_period": "2031-01-01",
                "max_activations": 3,
                "max_transfers": 2,
                "grace_period": 24,
                "prevent_vm": True,
                "maintenance_days": 30,
                "custom_fields": {"seat": "team"},
                "features": {"export": {"expiry_date": "2030-06-01"}},
                "metadata": {"plan": "annual"},
            },
        ),
        201,
    )
    assert (annual["code"], annual["name"], annual["is_default"]) == (
        "annual",
        "Annual subscription",
        False,
    )
    assert admin.ok(admin.get("/products/app/policies/annual")) == annual

    many = admin.ok(
        admin.post(
            "/licenses",
            {"product": "app", "policy": "annual", "count": 3, "metadata": {"shop": "x"}},
        ),
        201,
    )["items"]
    assert len(many) == 3
    for item in many:
        assert (item["license_type"], item["max_activations"], item["max_transfers"]) == (
            "subscription",
            3,
            2,
        )
        assert (item["grace_period"], item["allow_grace_period"], item["prevent_vm"]) == (
            24,
            True,
            True,
        )
        assert item["validity_period"] == "2031-01-01T00:00:00.000Z"
        assert item["custom_fields"] == {"seat": "team"}
        assert item["features"] == {"export": {"expiry_date": "2030-06-01T00:00:00.000Z"}}
        assert item["metadata"] == {"plan": "annual", "shop": "x"}
        assert item["policy_id"] == annual["id"]
        maintenance = parse_iso_datetime(item["maintenance_period"])
        assert abs(maintenance - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)

    # explicit fields win over the policy's
    own = admin.issue(
        policy="annual",
        max_activations=5,
        prevent_vm=False,
        license_type="perpetual",
        custom_fields={"seat": "solo"},
        features={"export": {}},
    )
    assert (own["max_activations"], own["prevent_vm"], own["license_type"]) == (
        5,
        False,
        "perpetual",
    )
    assert (own["custom_fields"], own["features"]) == ({"seat": "solo"}, {"export": {}})
    assert own["max_transfers"] == 2
    body = activated(server, own["license_key"], "hw-1")
    assert codes(body) == ["export"]
    assert [(f["name"], f["value"]) for f in body["custom_fields"]] == [("seat", "solo")]

    # without a policy: none, until the product has a default one
    bare = admin.issue()
    assert (bare["license_type"], bare["max_activations"], bare["policy_id"]) == (
        "perpetual",
        1,
        None,
    )
    trial = admin.ok(
        admin.post(
            "/products/app/policies",
            {
                "code": "trial",
                "is_trial": True,
                "trial_days": 14,
                "max_activations": 1,
                "is_default": True,
            },
        ),
        201,
    )
    defaulted = admin.issue()
    assert (defaulted["is_trial"], defaulted["trial_days"], defaulted["policy_id"]) == (
        True,
        14,
        trial["id"],
    )
    made_default = admin.ok(admin.patch("/products/app/policies/annual", {"is_default": True}))
    assert made_default["is_default"] is True
    defaults = [
        p["code"] for p in admin.ok(admin.get("/products/app/policies"))["items"] if p["is_default"]
    ]
    assert defaults == ["annual"]
    assert admin.issue()["license_type"] == "subscription"

    # changing or deleting a policy leaves issued licenses as they are
    changed = admin.ok(
        admin.patch("/products/app/policies/annual", {"max_activations": 9, "name": "Yearly"})
    )
    assert (changed["max_activations"], changed["name"]) == (9, "Yearly")
    assert admin.ok(admin.get(f"/licenses/{many[0]['id']}"))["max_activations"] == 3
    assert admin.delete("/products/app/policies/annual").status_code == 204
    kept = admin.ok(admin.get(f"/licenses/{many[0]['id']}"))
    assert (kept["max_activations"], kept["policy_id"]) == (3, None)
    assert error_of(admin.get("/products/app/policies/annual")) == (404, "not_found")
    assert admin.issue()["license_type"] == "perpetual"  # no default any more
    actions = [e["action"] for e in admin.ok(admin.get("/audit", per_page=200))["items"]]
    for action in ("policy.create", "policy.update", "policy.delete"):
        assert action in actions


def test_policy_mistakes_are_refused_naming_the_field(server: Server, admin: Mgmt) -> None:
    admin.ok(admin.post("/products/app/policies", {"code": "std"}), 201)
    cases = [
        ({"code": "std"}, 409, "validation_error", "std"),
        ({"code": "a b"}, 400, "validation_error", "code"),
        ({"code": "x", "license_type": "time-limited"}, 400, "validation_error", "validity_period"),
        (
            {"code": "x", "validity_days": 3, "validity_period": "2030-01-01"},
            400,
            "validation_error",
            "validity_days",
        ),
        ({"code": "x", "max_activations": -1}, 400, "validation_error", "max_activations"),
        ({"code": "x", "trial_days": 0}, 400, "validation_error", "trial_days"),
        ({"code": "x", "features": {"nope": {}}}, 400, "unknown_feature", "nope"),
        ({"code": "x", "custom_fields": {"nope": "1"}}, 400, "unknown_custom_field", "nope"),
        ({"code": "x", "colour": "red"}, 400, "validation_error", "colour"),
        ({"code": "x", "max_activations": None}, 400, "validation_error", "max_activations"),
    ]
    for body, status, code, named in cases:
        response = admin.post("/products/app/policies", body)
        assert error_of(response) == (status, code), (body, response.text)
        assert named in response.json()["message"], (body, response.text)
    assert (
        error_of(admin.patch("/products/app/policies/std", {"license_type": "subscription"}))[0]
        == 400
    )
    assert error_of(admin.patch("/products/app/policies/nope", {"name": "x"})) == (404, "not_found")
    assert error_of(admin.delete("/products/app/policies/nope")) == (404, "not_found")
    assert error_of(admin.post("/products/nope/policies", {"code": "x"})) == (404, "not_found")
    refused = admin.post("/licenses", {"product": "app", "policy": "nope"})
    assert error_of(refused) == (400, "unknown_policy")
    assert "nope" in refused.json()["message"]
    assert [p["code"] for p in admin.ok(admin.get("/products/app/policies"))["items"]] == ["std"]


def test_a_failed_issue_from_a_policy_leaves_nothing(server: Server, admin: Mgmt) -> None:
    admin.ok(admin.post("/products/app/custom-fields", {"name": "seat"}), 201)
    admin.ok(
        admin.post(
            "/products/app/policies", {"code": "std", "max_activations": 2, "is_default": True}
        ),
        201,
    )
    taken = admin.issue(license_key="TAKEN-KEY-1")
    state = (count_rows(server, "licenses"), count_rows(server, "customers"))
    audit_total = admin.ok(admin.get("/audit"))["total"]
    for body in (
        {
            "product": "app",
            "policy": "std",
            "count": 5,
            "customer_email": "new@example.com",
            "custom_fields": {"colour": "x"},
        },
        {
            "product": "app",
            "count": 5,
            "customer_email": "new@example.com",
            "features": {"nope": {}},
        },
        # fails after the new customer is written: the customer goes too
        {
            "product": "app",
            "policy": "std",
            "customer_email": "new@example.com",
            "license_key": taken["license_key"],
        },
        {
            "product": "app",
            "policy": "std",
            "count": 2,
            "license_type": "time-limited",
            "customer_email": "new@example.com",
        },
    ):
        response = admin.post("/licenses", body)
        assert response.status_code in (400, 409), response.text
    assert (count_rows(server, "licenses"), count_rows(server, "customers")) == state
    assert admin.ok(admin.get("/audit"))["total"] == audit_total


# -- company-wide blacklist entries under concurrency ------------------------------------------


def test_racing_company_wide_blacklist_adds_store_one_entry(
    database_url: str, tmp_path: Path
) -> None:
    """Identical company-wide adds, released together against a real server with two worker
    processes: one 201, the others the same 409 as a late add, and one row."""
    deployment = prepare(database_url, tmp_path / "data")
    token = admin_token(deployment, "t")
    with serve(deployment, workers=2) as url:
        clients = [httpx.Client(base_url=url, timeout=60) for _ in range(8)]
        try:
            for round_ in range(6):
                barrier = threading.Barrier(len(clients))
                answers: list[httpx.Response] = []

                def add(
                    client: httpx.Client,
                    barrier: threading.Barrier = barrier,
                    answers: list[httpx.Response] = answers,
                    hw: str = f"hw-{round_}",
                ) -> None:
                    barrier.wait()
                    answers.append(
                        client.post(
                            BASE + "/blacklist",
                            json={"hardware_id": hw, "reason": "race"},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    )

                threads = [threading.Thread(target=add, args=(c,)) for c in clients]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                statuses = sorted(a.status_code for a in answers)
                assert statuses == [201] + [409] * (len(clients) - 1), [a.text for a in answers]
                for answer in answers:
                    if answer.status_code == 409:
                        assert answer.json()["code"] == "validation_error"
                        assert "already blacklisted" in answer.json()["message"]
        finally:
            for client in clients:
                client.close()
    with deployment.db.transaction() as session:
        rows = session.execute(
            text("select hardware_id, count(*) from blacklist group by hardware_id")
        ).all()
    assert sorted(rows) == [(f"hw-{n}", 1) for n in range(6)]
    deployment.db.dispose()


def test_migration_0006_keeps_one_of_existing_duplicate_entries(database_url: str) -> None:
    migrate.upgrade(database_url, "0005")
    db = Database(database_url)
    with db.transaction(write=True) as session:
        session.execute(
            text(
                "insert into companies (name, oauth_required, created_at) values ('C', false, '2026-01-01')"
            )
        )
        company = session.execute(text("select id from companies")).scalar_one()
        for hw in ("dup", "dup", "dup", "one"):
            session.execute(
                text(
                    "insert into blacklist (company_id, hardware_id, product_id, reason, created_at)"
                    " values (:c, :hw, null, '', '2026-01-01')"
                ),
                {"c": company, "hw": hw},
            )
    migrate.upgrade(database_url)
    with db.transaction() as session:
        rows = session.execute(text("select id, hardware_id from blacklist order by id")).all()
    assert [hw for _, hw in rows] == ["dup", "one"]
    assert rows[0][0] == 1
    db.dispose()


def test_a_token_sees_only_its_company_when_listing(server: Server, admin: Mgmt) -> None:
    admin.ok(admin.post("/products/app/features", {"code": "export"}), 201)
    other_company, _ = server.new_company("Other")
    other = Mgmt(server, make_token(server, "read-only", other_company))
    for kind in ("features", "custom-fields", "policies"):
        assert error_of(other.get(f"/products/app/{kind}")) == (404, "not_found")
