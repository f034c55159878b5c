"""Check answers served again from memory (api/v4/check.py): byte for byte while nothing
they are made of changes, never once something has -- in this process, in another worker or
another process -- nor past an expiry, nor to a request that does not authenticate."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.services import catalogue
from licensor.store import activation as statements
from tests.harness.postgres import PostgresServer
from tests.server import processes
from tests.server.support import Api, Server, error_of, shared_keys_dir, start_server

HW = "c" * 64


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One item per check statement run (the cache is measured by what it spares)."""
    counted: list[str] = []
    original = statements.seat_rows

    def counting(*args: Any, **kwargs: Any) -> Any:
        if kwargs["use"] == "check":
            counted.append(kwargs["hardware_id"])
        return original(*args, **kwargs)

    monkeypatch.setattr(statements, "seat_rows", counting)
    return counted


def steady(server: Server, **license_fields: Any) -> tuple[str, dict[str, str]]:
    """An activated device past its first check (whose "last seen" write changes the data)."""
    server.product()
    license_ = server.license(max_activations=3, **license_fields)
    key = license_.license_key
    assert key
    assert server.api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
    params = {"product": "app", "license_key": key, "hardware_id": HW}
    assert server.api.check(**params).status_code == 200
    deadline = time.monotonic() + 10
    while not server.sql("SELECT last_check_at FROM devices WHERE hardware_id = :h", h=HW)[0][0]:
        assert time.monotonic() < deadline, "last seen was not recorded"
        time.sleep(0.05)
    return key, params


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519"])
def test_an_unchanged_answer_is_served_again_byte_for_byte(
    server: Server, reads: list[str], algorithm: str
) -> None:
    _, params = steady(server)
    headers = {"Licensor-Accept-Signature": "ed25519"} if algorithm == "ed25519" else {}
    first = server.api.call("GET", "/api/v4/check_license", params=params, headers=headers)
    assert first.status_code == 200
    reads.clear()
    again = [
        server.api.call("GET", "/api/v4/check_license", params=params, headers=headers)
        for _ in range(5)
    ]
    assert reads == []  # nothing read, nothing signed
    for answer in again:
        assert answer.content == first.content
        assert answer.headers.get("LicenseSignature") == first.headers.get("LicenseSignature")
        assert answer.headers.get("Licensor-Signature") == first.headers.get("Licensor-Signature")
    sent = datetime.strptime(first.json()["date"], "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert datetime.now(UTC) - timedelta(seconds=61) < sent <= datetime.now(UTC)


CHANGES: list[
    tuple[str, str, dict[str, Any], tuple[int, str] | Callable[[dict[str, Any]], bool]]
] = [
    ("license disabled", "UPDATE licenses SET enabled = false", {}, (400, "license_not_enabled")),
    ("device deactivated", "UPDATE devices SET active = false", {}, (400, "device_not_found")),
    ("API key revoked", "UPDATE api_keys SET revoked = true", {}, (400, "revoked_api_key")),
    ("product disabled", "UPDATE products SET enabled = false", {}, (400, "disabled_product")),
    (
        "seats raised",
        "UPDATE licenses SET max_activations = 9",
        {},
        lambda body: body["max_activations"] == 9,
    ),
    (
        "customer renamed",
        "UPDATE customers SET company_name = 'Renamed Ltd'",
        {},
        lambda body: body["customer"]["company_name"] == "Renamed Ltd",
    ),
]


@pytest.mark.parametrize(("what", "statement", "sql_params", "expected"), CHANGES)
def test_a_change_is_answered_at_once(
    server: Server,
    what: str,
    statement: str,
    sql_params: dict[str, Any],
    expected: tuple[int, str] | Callable[[dict[str, Any]], bool],
) -> None:
    _, params = steady(server, customer_email="buyer@example.com")
    before = server.api.check(**params)
    assert before.status_code == 200
    assert server.api.check(**params).content == before.content  # (kept)
    server.sql(statement, **sql_params)  # another connection, as the console or the CLI
    after = server.api.check(**params)
    if isinstance(expected, tuple):
        assert error_of(after) == expected, what
    else:
        assert after.status_code == 200, after.text
        assert expected(after.json()), what


def test_a_new_release_is_answered_at_once(server: Server) -> None:
    _, params = steady(server)
    assert server.api.check(**params).json()["version"] == ""
    with server.db.transaction(write=True) as session:
        from licensor.store import repository

        product = repository.product_by_code(session, server.company_id, "app")
        assert product is not None
        catalogue.add_release(session, product, "2.0.0", datetime.now(UTC) - timedelta(hours=1))
    assert server.api.check(**params).json()["version"] == "2.0.0"


def test_a_kept_answer_ends_when_the_license_expires(server: Server, reads: list[str]) -> None:
    ends = datetime.now(UTC) + timedelta(seconds=3)
    _, params = steady(server, license_type="subscription", validity_period=ends)
    first = server.api.check(**params)
    assert first.status_code == 200 and first.json()["is_expired"] is False
    reads.clear()
    assert server.api.check(**params).content == first.content
    assert reads == []  # kept until the expiry...
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.2)
    late = server.api.check(**params)
    assert late.status_code == 200 and late.json()["is_expired"] is True  # ...not after it
    assert reads == [HW]


def test_a_kept_answer_still_authenticates_every_request(server: Server) -> None:
    _, params = steady(server)
    assert server.api.check(**params).status_code == 200
    path = "/api/v4/check_license"
    now = http_date()
    wrong = format_authorization(server.api.api_key, hmac_signature("not-the-secret", now))
    assert error_of(
        server.api.call("GET", path, params=params, headers={"Authorization": wrong})
    ) == (401, "signature_mismatch")
    stale = http_date(datetime.now(UTC) - timedelta(minutes=20))
    stale_headers = {
        "Date": stale,
        "Authorization": format_authorization(
            server.api.api_key, hmac_signature(server.api.shared_key, stale)
        ),
    }
    assert error_of(server.api.call("GET", path, params=params, headers=stale_headers)) == (
        400,
        "date_header_diff",
    )
    _, other = server.new_company("Other Co")
    assert error_of(other.check(**params)) == (400, "unknown_product")
    assert server.api.check(**params).status_code == 200


def _other_connection(url: str) -> Any:
    """An autocommit connection of another client than the server (sqlite3 or psycopg)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        import sqlite3

        return sqlite3.connect(str(parsed.database), isolation_level=None)
    conninfo = parsed.set(drivername="postgresql").render_as_string(False)
    return psycopg.connect(conninfo, autocommit=True)


def test_postgresql_listener_lost_means_nothing_is_trusted(
    postgres: PostgresServer,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    reads: list[str],
) -> None:
    name = "t_" + uuid.uuid4().hex[:12]
    url = postgres.create_database(name)
    servers = start_server(
        url,
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        # the answer stays the same bytes for the whole test (with the default step of 60 s,
        # the step of the device's date ended in one slow run while the listener came back)
        answer_date_step_seconds=3600,
    )
    server = next(servers)
    try:
        _, params = steady(server)
        first = server.api.check(**params)
        reads.clear()
        assert server.api.check(**params).content == first.content and reads == []
        # recording "last seen" (from another process) notifies nobody: it is in no answer...
        with _other_connection(url) as other:
            other.execute("UPDATE devices SET last_check_at = now()")
            time.sleep(0.2)
            assert server.api.check(**params).content == first.content and reads == []
            # ...any other change does
            other.execute("UPDATE devices SET hostname = 'renamed'")
            time.sleep(0.2)
        assert server.api.check(**params).status_code == 200
        assert reads == [HW]
        reads.clear()
        killed = server.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = :a AND datname = current_database()",
            a="licensor-changes",
        )
        assert killed and all(row[0] for row in killed)
        time.sleep(0.2)  # (the listener notices at once, reconnects after 0.5 s)
        assert server.api.check(**params).content == first.content
        assert reads == [HW]  # read again: changes may have gone unnoticed meanwhile
        deadline = time.monotonic() + 10
        while True:  # back to serving from memory once it listens again
            reads.clear()
            assert server.api.check(**params).content == first.content
            if not reads:
                break
            assert time.monotonic() < deadline, "the listener did not come back"
            time.sleep(0.2)
    finally:
        servers.close()
        postgres.drop_database(name)


def test_recording_last_seen_is_no_change(
    database_url: str, server: Server, reads: list[str]
) -> None:
    """A device's "last seen" time is in no answer: another client recording it (as every
    worker does every 5 minutes per device) leaves kept answers trusted; any other change
    to the device does not (SQLite: migration 0009's counter; PostgreSQL: 0008's trigger)."""
    _, params = steady(server)
    first = server.api.check(**params)
    reads.clear()
    assert server.api.check(**params).content == first.content and reads == []
    other = _other_connection(database_url)
    try:
        other.execute("UPDATE devices SET last_check_at = CURRENT_TIMESTAMP")
        time.sleep(0.2)  # (PostgreSQL: a notification would take this long at most)
        assert server.api.check(**params).content == first.content
        assert reads == []
        other.execute("UPDATE devices SET os_ver = 'Other OS'")
        time.sleep(0.2)
        assert server.api.check(**params).status_code == 200
        assert reads == [HW]
    finally:
        other.close()


def test_sqlite_device_trigger_compares_every_column_but_last_seen(
    sqlite_server: Server,
) -> None:
    """Migration 0009 names the device columns it compares: a column added to devices later
    must be added to the trigger, or a change of only that column would go unnoticed."""
    from licensor.store.models import Device

    (sql,) = sqlite_server.sql(
        "SELECT sql FROM sqlite_master WHERE name = 'licensor_changes_devices_update'"
    )[0]
    compared = set(re.findall(r'NEW\."(\w+)" IS NOT OLD\."\1"', sql))
    assert compared == {c.name for c in Device.__table__.columns} - {"last_check_at"}


# -- several worker processes, changes from another process ----------------------------------


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[processes.Deployment]:
    deployment = processes.prepare(database_url, tmp_path / "data")
    try:
        yield deployment
    finally:
        deployment.db.dispose()


@pytest.mark.slow
def test_changes_from_another_process_reach_every_worker(
    deployment: processes.Deployment,
) -> None:
    key = processes.issue(deployment, max_activations=2)
    params = {"product": "app", "license_key": key, "hardware_id": HW}
    with processes.serve(deployment, workers=2) as base, httpx.Client(base_url=base) as client:
        api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
        assert api.activate(product="app", license_key=key, hardware_id=HW).status_code == 200
        time.sleep(1.5)  # (the first checks' "last seen" write comes within a second)
        for _ in range(2):
            first = [api.check(**params) for _ in range(30)]  # (both workers keep the answer)
            assert all(r.status_code == 200 for r in first)
            time.sleep(1.5)
        with deployment.db.transaction(write=True) as session:  # as `licensor license disable`
            session.execute(
                text("UPDATE licenses SET enabled = :off WHERE license_key = :k"),
                {"off": False, "k": key},
            )
        time.sleep(0.1)  # (PostgreSQL: the notification's trip to the other processes)
        after = [api.check(**params) for _ in range(30)]
        assert {error_of(r) for r in after} == {(400, "license_not_enabled")}
