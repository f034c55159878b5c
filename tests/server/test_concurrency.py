"""Seat limits hold under concurrency: many simultaneous activations against a multi-process
server, on SQLite and on PostgreSQL; the database agrees afterwards."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

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
