"""Failed attempts are rate limited per client address and per license, across processes:
429 ``too_many_requests`` with ``Retry-After``, signed like every answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from licensor.core.errors import RateLimited
from licensor.services import catalogue, rate_limit
from licensor.settings import Settings
from tests.server.processes import Deployment, prepare, serve
from tests.server.support import Api, Server, error_of, shared_keys_dir, start_server

pytestmark = pytest.mark.slow


def api_from(deployment: Deployment, base: str, address: str) -> Api:
    """A caller seen by the server as ``address`` (uvicorn trusts X-Forwarded-For from
    127.0.0.1), on a fresh connection per request so both worker processes take turns."""

    class FreshConnections(httpx.Client):
        def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
            with httpx.Client(base_url=base, headers={"X-Forwarded-For": address}) as client:
                return client.request(*args, **kwargs)

    return Api(
        FreshConnections(base_url=base),
        deployment.public_keys,
        deployment.api_key,
        deployment.shared_key,
    )


def issue(deployment: Deployment, product: str, **fields: Any) -> str:
    with deployment.db.transaction(write=True) as session:
        license_ = catalogue.create_license(
            session,
            deployment.company_id,
            product,
            catalogue.LicenseSpec(**fields),
            now=datetime.now(UTC),
        )
        return license_.license_key or ""


def test_failures_are_limited_per_client_and_per_license_across_processes(
    database_url: str, tmp_path: Path
) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    deployment.env.update(
        LICENSOR_RATE_LIMIT_CLIENT_FAILURES="5",
        LICENSOR_RATE_LIMIT_LICENSE_FAILURES="3",
        LICENSOR_RATE_LIMIT_WINDOW_SECONDS="3600",
    )
    with deployment.db.transaction(write=True) as session:
        for code, method in (("app", "license-key"), ("team", "user")):
            catalogue.create_product(
                session,
                deployment.company_id,
                catalogue.ProductSpec(code, code.title(), authorization_method=method),
            )
    key = issue(deployment, "app", max_activations=5)
    issue(deployment, "team", user_email="ann@example.com", user_password="right-horse-9")
    issue(deployment, "team", user_email="bob@example.com", user_password="battery-staple-7")
    with serve(deployment, workers=2) as base:
        guesser = api_from(deployment, base, "203.0.113.7")
        for i in range(5):
            wrong = guesser.activate(
                product="app", license_key=f"GUESS-{i:04d}-XXXX", hardware_id="g"
            )
            assert error_of(wrong) == (400, "license_not_found")
        # over the limit: refused even with a right key, until the window ends
        refused = guesser.activate(product="app", license_key=key, hardware_id="g")
        assert error_of(refused) == (429, "too_many_requests")
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 3600
        assert error_of(guesser.check(product="app", license_key=key, hardware_id="g")) == (
            429,
            "too_many_requests",
        )
        # another address is not affected, and its request succeeds
        honest = api_from(deployment, base, "198.51.100.20")
        assert honest.activate(product="app", license_key=key, hardware_id="h").status_code == 200

        # wrong passwords count against the license user, whoever sends them
        for i, address in enumerate(("192.0.2.1", "192.0.2.2", "192.0.2.3")):
            attempt = api_from(deployment, base, address).activate(
                product="team", username="ann@example.com", password=f"nope-{i}", hardware_id="x"
            )
            assert error_of(attempt) == (400, "invalid_credentials")
        locked = api_from(deployment, base, "192.0.2.4").activate(
            product="team", username="ann@example.com", password="right-horse-9", hardware_id="x"
        )
        assert error_of(locked) == (429, "too_many_requests")
        other_user = api_from(deployment, base, "192.0.2.4").activate(
            product="team", username="bob@example.com", password="battery-staple-7", hardware_id="x"
        )
        assert other_user.status_code == 200, other_user.text
    # the counters hold no license key or username in clear
    with deployment.db.transaction() as session:
        buckets = list(session.scalars(text("select bucket from rate_limit_counters")))
    assert "client:203.0.113.7" in buckets
    assert not any("ann@" in b or "GUESS" in b for b in buckets)


def test_a_new_window_starts_over(server: Server) -> None:
    policy = rate_limit.Policy.of(
        Settings(rate_limit_window_seconds=60, rate_limit_client_failures=2)
    )
    start = policy.window_start(datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC))
    assert start == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert policy.window_start(start + timedelta(seconds=59)) == start
    found = rate_limit.buckets(policy, "203.0.113.9", 1, "app", "KEY")
    assert found[0][0] == "client:203.0.113.9"
    assert rate_limit.buckets(rate_limit.Policy(60, 0, 0), "203.0.113.9", 1, "app", "KEY") == []

    def allowed(at: datetime) -> int | None:
        """None if allowed, else the Retry-After seconds."""
        try:
            with server.db.transaction() as session:
                rate_limit.ensure_allowed(session, policy, found, at)
        except RateLimited as exc:
            return exc.retry_after
        return None

    for seconds in (1, 2):
        assert allowed(start + timedelta(seconds=seconds)) is None
        with server.db.transaction(write=True) as session:
            rate_limit.record_failure(
                session, policy, found, start + timedelta(seconds=seconds), "license_not_found"
            )
    with server.db.transaction(write=True) as session:  # not a guess: not counted
        rate_limit.record_failure(session, policy, found, start, "license_expired")
    assert allowed(start + timedelta(seconds=50)) == 10
    assert allowed(start + timedelta(seconds=60)) is None  # the next window starts over
    with server.db.transaction(write=True) as session:
        rate_limit.record_failure(
            session, policy, found, start + timedelta(seconds=61), "license_not_found"
        )
    assert allowed(start + timedelta(seconds=62)) is None  # one failure in the new window


def test_computer_key_endpoints_and_the_qlm_front_count_wrong_keys_too(
    database_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    servers = start_server(
        database_url,
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        rate_limit_client_failures=3,
    )
    server = next(servers)
    try:
        server.product("app")
        key = server.license().license_key

        def by_key(license_key: str | None) -> httpx.Response:
            return server.api.call(
                "POST",
                "/api/v4/activate_license_by_key",
                json={"product": "app", "license_key": license_key, "hardware_id": "pc-1"},
            )

        for i in range(2):
            assert error_of(by_key(f"WRONG-{i}")) == (400, "license_not_found")
        # the QLM front counts for the same address
        wrong = server.api.call(
            "GET",
            "/qlmservice.asmx/ValidateLicenseHttp",
            params={"is_avkey": "NOPE-NOPE", "is_pcid": "pc-1"},
        )
        assert "<error>" in wrong.text and wrong.status_code == 400
        assert error_of(by_key(key)) == (429, "too_many_requests")
        blocked = server.api.call(
            "GET",
            "/qlmservice.asmx/ValidateLicenseHttp",
            params={"is_avkey": key, "is_pcid": "pc-1"},
        )
        assert blocked.status_code == 429 and "<error>" in blocked.text
        assert int(blocked.headers["Retry-After"]) >= 1
        assert error_of(server.api.check(product="app", license_key=key, hardware_id="pc-1")) == (
            429,
            "too_many_requests",
        )
    finally:
        servers.close()
