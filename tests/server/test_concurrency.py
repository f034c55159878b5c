"""Seat limits hold under concurrency: many simultaneous activations against a multi-process
server, on SQLite and on PostgreSQL; the database agrees afterwards."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.harness.postgres import PostgresServer
from tests.server.processes import Deployment, issue, prepare, serve
from tests.server.support import Api

pytestmark = pytest.mark.slow


def fire(
    base: str,
    deployment: Deployment,
    bodies: list[dict[str, object]],
    headers: list[dict[str, str]] | None = None,
) -> list[httpx.Response]:
    """Send every body at once (a barrier releases all threads together)."""
    barrier = threading.Barrier(len(bodies))
    results: list[httpx.Response | None] = [None] * len(bodies)

    def worker(index: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
            barrier.wait()
            results[index] = api.call(
                "POST",
                "/api/v4/activate_license",
                json=bodies[index],
                headers=(headers or [{}] * len(bodies))[index],
            )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def seats(deployment: Deployment, key: str) -> tuple[int, int]:
    with deployment.db.transaction() as session:
        row = session.execute(
            text(
                "select l.times_activated, (select count(*) from devices d where "
                "d.license_id = l.id and d.active) from licenses l where l.license_key = :k"
            ),
            {"k": key},
        ).one()
    return int(row[0]), int(row[1])


def test_concurrent_activations_never_exceed_the_limit(database_url: str, tmp_path: Path) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    key = issue(deployment, max_activations=3)
    bodies: list[dict[str, object]] = [
        {"product": "app", "license_key": key, "hardware_id": f"device-{i}"} for i in range(60)
    ]
    with serve(deployment, workers=3) as base:
        responses = fire(base, deployment, bodies)
    outcomes = Counter(
        r.status_code if r.status_code == 200 else r.json()["code"] for r in responses
    )
    assert outcomes == {200: 3, "license_activated_max_times": 57}, outcomes
    assert seats(deployment, key) == (3, 3)
    deployment.db.dispose()


def test_concurrent_retries_with_one_idempotency_key_take_one_seat(
    database_url: str, tmp_path: Path
) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    key = issue(deployment, max_activations=5)
    body: dict[str, object] = {"product": "app", "license_key": key, "hardware_id": "laptop"}
    with serve(deployment, workers=2) as base:
        responses = fire(base, deployment, [body] * 12, [{"Idempotency-Key": "k-1"}] * 12)
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    assert len({r.json()["device_id"] for r in responses}) == 1
    assert seats(deployment, key) == (1, 1)
    deployment.db.dispose()


def _waiting_on_a_lock(deployment: Deployment) -> int:
    with deployment.db.transaction() as session:
        return int(
            session.execute(
                text(
                    "select count(*) from pg_stat_activity "
                    "where wait_event_type = 'Lock' and datname = current_database()"
                )
            ).scalar_one()
        )


def _while_the_license_is_locked(
    deployment: Deployment,
    key: str,
    bases: list[str],
    requests: list[tuple[str, dict[str, object]]],
) -> list[httpx.Response]:
    """Send ``requests`` (path, body), each to a server of its own (a server's process takes
    its writes in turn), while the test holds the license's row lock; release it once every
    request waits for it. Each request's statement then began before the one that ran first
    committed: what it reads beside the license must still be current."""
    results: list[httpx.Response | None] = [None] * len(requests)

    def worker(index: int) -> None:
        path, body = requests[index]
        with httpx.Client(base_url=bases[index], timeout=60) as client:
            api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
            headers = {"Idempotency-Key": "k-1"} if path.endswith("activate_license") else {}
            results[index] = api.call("POST", path, json=body, headers=headers)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    with deployment.db.transaction(write=True) as holder:
        holder.execute(
            text("select id from licenses where license_key = :k for update"), {"k": key}
        )
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while _waiting_on_a_lock(deployment) < len(requests):
            assert time.monotonic() < deadline, "the requests never waited for the lock"
            time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


@pytest.fixture
def postgresql_url(postgres: PostgresServer) -> Iterator[str]:
    name = "t_" + uuid.uuid4().hex[:12]
    yield postgres.create_database(name)
    postgres.drop_database(name)


def test_requests_that_waited_for_the_license_see_what_the_first_one_wrote(
    postgresql_url: str, tmp_path: Path
) -> None:
    """PostgreSQL (read committed): a statement that waits for a row lock sees the locked row
    as it is now but the other rows as they were when it began; retries, double clicks and
    two deactivations of one device must still get their right answers, never a conflict."""
    # (row locks are PostgreSQL's: SQLite's writers take turns)
    deployment = prepare(postgresql_url, tmp_path / "data")
    key = issue(deployment, max_activations=5)
    body: dict[str, object] = {"product": "app", "license_key": key, "hardware_id": "laptop"}
    with serve(deployment) as one, serve(deployment) as other:
        retries = _while_the_license_is_locked(
            deployment, key, [one, other], [("/api/v4/activate_license", body)] * 2
        )
        assert [r.status_code for r in retries] == [200] * 2, [r.text for r in retries]
        assert len({r.json()["device_id"] for r in retries}) == 1
        replayed = sorted(r.headers.get("Idempotent-Replayed", "") for r in retries)
        assert replayed == ["", "true"]
        assert seats(deployment, key) == (1, 1)
        twice = _while_the_license_is_locked(
            deployment, key, [one, other], [("/api/v4/deactivate_license", body)] * 2
        )
    outcomes = Counter(r.status_code if r.status_code == 200 else r.json()["code"] for r in twice)
    # (as a second deactivation in turn: the device is no longer active)
    assert outcomes == {200: 1, "license_not_active": 1}, [r.text for r in twice]
    assert seats(deployment, key) == (0, 0)
    deployment.db.dispose()
