"""Consumption over the License API (v4 §3.9, §5.7), on SQLite and PostgreSQL: reports counted
up to the license's limits and no further, overages, refunds, periodic resets judged when read,
an Idempotency-Key that makes a retry count once, every bad report refused with its code and
nothing written, and a limit that holds under concurrent reports from several workers."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.processes import issue, prepare, serve
from tests.server.support import Api, Server, error_of

HW = "consumer-1"


def consume(
    api: Api, key: str, *, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    fields = {"product": "app", "license_key": key, "hardware_id": HW, **body}
    return api.call("POST", "/api/v4/add_consumption", json=fields, headers=headers)


def totals(server: Server) -> tuple[int, int]:
    """The license's total and the number of reports recorded."""
    total = server.sql("SELECT total_consumptions FROM licenses")[0][0]
    events = server.sql("SELECT count(*) FROM consumption_events")[0][0]
    return int(total), int(events)


@pytest.fixture
def key(server: Server) -> str:
    server.product("app")
    key = server.license(license_type="consumption", max_consumptions=10).license_key or ""
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    return key


def test_reports_count_up_to_the_maximum(server: Server, key: str) -> None:
    first = consume(server.api, key, consumptions=4)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["total_consumptions"] == 4
    assert body["max_consumptions"] == 10
    assert set(body) == {
        "id",
        "max_consumptions",
        "total_consumptions",
        "allow_unlimited_consumptions",
        "allow_negative_consumptions",
        "allow_overages",
        "max_overages",
        "reset_consumption",
        "consumption_period",
        "company",
    }
    assert body["company"] == {"id": server.company_id}
    assert consume(server.api, key).json()["total_consumptions"] == 5  # (1 by default)
    assert consume(server.api, key, consumptions=5).json()["total_consumptions"] == 10
    assert error_of(consume(server.api, key)) == (400, "license_not_enough_consumptions")
    assert totals(server) == (10, 3)
    # the license object tells the total too
    checked = server.api.check(product="app", license_key=key, hardware_id=HW).json()
    assert checked["total_consumptions"] == 10 and checked["max_consumptions"] == 10
    history = server.sql(
        "SELECT event, consumptions, total_after, hardware_id FROM consumption_events ORDER BY id"
    )
    assert [tuple(row) for row in history] == [
        ("consumption_add", 4, 4, HW),
        ("consumption_add", 1, 5, HW),
        ("consumption_add", 5, 10, HW),
    ]


def test_bad_reports_are_refused_with_their_codes_and_change_nothing(
    server: Server, key: str
) -> None:
    server.license(license_type="perpetual", license_key="PLAIN-KEY")
    server.api.activate(product="app", license_key="PLAIN-KEY", hardware_id=HW)
    consume(server.api, key, consumptions=3)
    before = totals(server)
    cases: list[tuple[dict[str, Any], tuple[int, str]]] = [
        ({"consumptions": -1}, (400, "negative_consumptions_not_allowed")),
        ({"consumptions": 1.5}, (400, "validation_error")),
        ({"consumptions": "2"}, (400, "validation_error")),
        ({"consumptions": 10**12}, (400, "validation_error")),
        ({"consumptions": 8}, (400, "license_not_enough_consumptions")),
        (
            {"event": ["consumption_add", "offline_floating_consumptions_sync"]},
            (400, "validation_error"),
        ),
        ({"event": []}, (400, "validation_error")),
        ({"event": ["bought_more"]}, (400, "validation_error")),
        ({"max_overages": -1}, (400, "validation_error")),
        ({"hardware_id": "not-activated"}, (400, "device_not_found")),
        ({"license_key": "NO-SUCH-KEY"}, (400, "license_not_found")),
        ({"license_key": "PLAIN-KEY"}, (400, "license_not_consumption")),
        ({"product": "nope"}, (400, "unknown_product")),
    ]
    for body, expected in cases:
        assert error_of(consume(server.api, key, **body)) == expected, body
    assert error_of(server.api.call("POST", "/api/v4/add_consumption", content=b"{nope")) == (
        400,
        "invalid_json",
    )
    assert totals(server) == before
    server.sql("UPDATE licenses SET enabled = false WHERE license_key = :k", k=key)
    assert error_of(consume(server.api, key)) == (400, "license_not_enabled")
    assert totals(server) == before


def test_overages_refunds_and_unlimited(server: Server, key: str) -> None:
    server.sql(
        "UPDATE licenses SET allow_overages = true, max_overages = 2, "
        "allow_negative_consumptions = true WHERE license_key = :k",
        k=key,
    )
    assert consume(server.api, key, consumptions=12).json()["total_consumptions"] == 12
    assert error_of(consume(server.api, key)) == (400, "license_not_enough_consumptions")
    # a client may ask for fewer overages than the license allows, never for more
    assert consume(server.api, key, consumptions=-3).json()["total_consumptions"] == 9
    assert error_of(consume(server.api, key, consumptions=2, allow_overages=False)) == (
        400,
        "license_not_enough_consumptions",
    )
    assert error_of(consume(server.api, key, consumptions=4, max_overages=100)) == (
        400,
        "license_not_enough_consumptions",
    )
    assert error_of(consume(server.api, key, consumptions=-10)) == (
        400,
        "negative_consumptions_not_allowed",
    )
    server.sql(
        "UPDATE licenses SET allow_unlimited_consumptions = true WHERE license_key = :k", k=key
    )
    assert consume(server.api, key, consumptions=1000).json()["total_consumptions"] == 1009


def test_a_total_starts_again_at_each_period(server: Server, key: str) -> None:
    server.sql("UPDATE licenses SET consumption_period = 'daily' WHERE license_key = :k", k=key)
    assert consume(server.api, key, consumptions=10).json()["total_consumptions"] == 10
    checked = server.api.check(product="app", license_key=key, hardware_id=HW).json()
    assert (checked["reset_consumption"], checked["consumption_period"]) == (True, "daily")
    assert error_of(consume(server.api, key)) == (400, "license_not_enough_consumptions")
    # counted yesterday (the clock of the rows moved back a day): the total is 0 today
    yesterday = datetime.now(UTC) - timedelta(days=1)
    server.sql(
        "UPDATE licenses SET consumption_counted_at = :t WHERE license_key = :k", t=yesterday, k=key
    )
    checked = server.api.check(product="app", license_key=key, hardware_id=HW).json()
    assert checked["total_consumptions"] == 0
    assert consume(server.api, key, consumptions=7).json()["total_consumptions"] == 7


def test_a_retried_report_counts_once(server: Server, key: str) -> None:
    headers = {"Idempotency-Key": "report-1"}
    first = consume(server.api, key, consumptions=3, headers=headers)
    again = consume(server.api, key, consumptions=3, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.content == first.content
    assert totals(server) == (3, 1)
    # the same key with another report: refused, not counted
    assert error_of(consume(server.api, key, consumptions=4, headers=headers)) == (
        422,
        "idempotency_key_reused",
    )
    assert totals(server) == (3, 1)


def test_a_read_only_key_cannot_report(server: Server, key: str) -> None:
    reader = server.api_key(read_only=True)
    assert error_of(consume(reader, key)) == (400, "read_only_api_key")


@pytest.mark.slow
def test_concurrent_reports_never_pass_the_maximum(database_url: str, tmp_path: Path) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    key = issue(deployment, license_type="consumption", max_consumptions=50)
    barrier = threading.Barrier(60)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    with serve(deployment, workers=2) as base:
        with httpx.Client(base_url=base, timeout=60) as client:
            api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
            assert api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200

        def report() -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
                barrier.wait()
                response = consume(api, key)
                outcome = "ok" if response.status_code == 200 else response.json()["code"]
                with lock:
                    outcomes[outcome] += 1

        threads = [threading.Thread(target=report) for _ in range(60)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes == {"ok": 50, "license_not_enough_consumptions": 10}, outcomes
    with deployment.db.transaction() as session:
        from sqlalchemy import text

        total = session.execute(text("SELECT total_consumptions FROM licenses")).scalar()
        events = session.execute(text("SELECT count(*) FROM consumption_events")).scalar()
    assert (total, events) == (50, 50)
    deployment.db.dispose()


def test_a_deactivation_counts_the_consumptions_it_carries(server: Server, key: str) -> None:
    identity = {"product": "app", "license_key": key, "hardware_id": HW}
    consume(server.api, key, consumptions=4)
    # more than is left: the deactivation is refused, the seat kept
    assert error_of(server.api.deactivate(**identity, consumptions=7)) == (
        400,
        "license_not_enough_consumptions",
    )
    assert server.sql("SELECT active FROM devices")[0][0]
    assert server.api.deactivate(**identity, consumptions=6).json() == "license_deactivated"
    assert totals(server) == (10, 2)
    assert server.sql("SELECT event, consumptions FROM consumption_events ORDER BY id")[-1] == (
        "deactivation",
        6,
    )


def test_an_offline_deactivation_file_counts_its_consumptions(server: Server, key: str) -> None:
    from tests.server.test_offline import post, request_file

    content = request_file(server.api, key, request="deactivation", hardware_id=HW, consumptions=2)
    response = post(server.api, "deactivate", content)
    assert response.status_code == 200, response.text
    assert totals(server) == (2, 1)
    assert tuple(server.sql("SELECT event, consumptions FROM consumption_events")[0]) == (
        "offline_deactivation",
        2,
    )


def test_vendors_set_the_terms_and_read_the_history(server: Server) -> None:
    from tests.server.test_management_api import mgmt

    server.product("app")
    admin = mgmt(server)
    issued = admin.ok(
        admin.post(
            "/licenses",
            {
                "product": "app",
                "license_type": "consumption",
                "max_consumptions": 3,
                "allow_overages": True,
                "max_overages": 1,
                "consumption_period": "monthly",
            },
        ),
        201,
    )["items"][0]
    assert (issued["max_consumptions"], issued["max_overages"], issued["consumption_period"]) == (
        3,
        1,
        "monthly",
    )
    key = issued["license_key"]
    server.api.activate(product="app", license_key=key, hardware_id=HW)
    for count in (1, 2, 1):
        assert consume(server.api, key, consumptions=count).status_code == 200
    assert error_of(consume(server.api, key)) == (400, "license_not_enough_consumptions")
    # the vendor sells more: the report goes through
    changed = admin.ok(admin.patch(f"/licenses/{issued['id']}", {"max_consumptions": 10}))
    assert changed["max_consumptions"] == 10 and changed["total_consumptions"] == 4
    assert consume(server.api, key).json()["total_consumptions"] == 5
    first = admin.ok(admin.get(f"/licenses/{issued['id']}/consumptions", limit=3))
    assert first["total_consumptions"] == 5
    assert [i["consumptions"] for i in first["items"]] == [1, 1, 2]
    assert first["items"][0]["hardware_id"] == HW
    rest = admin.ok(
        admin.get(f"/licenses/{issued['id']}/consumptions", before=first["next_before"])
    )
    assert [i["consumptions"] for i in rest["items"]] == [1] and rest["next_before"] is None
    # out of range terms are refused
    assert error_of(admin.patch(f"/licenses/{issued['id']}", {"consumption_period": "hourly"})) == (
        400,
        "validation_error",
    )
    assert (
        admin.ok(admin.patch(f"/licenses/{issued['id']}", {"reset_consumption": False}))[
            "consumption_period"
        ]
        is None
    )
