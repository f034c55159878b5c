"""Several Licensor servers on one PostgreSQL, as behind a load balancer: two ``licensor
serve`` processes (two workers each) on different ports over one database. A change made
through one -- a license disabled, a device deactivated, an API key revoked -- is answered by
the other at once (no stale kept check); a 60-way activation race split across both takes
exactly the seat limit."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from licensor.services import catalogue
from tests.harness.postgres import PostgresServer
from tests.server.processes import Deployment, admin_token, issue, prepare, serve
from tests.server.support import Api, error_of


@pytest.fixture
def pair(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[Deployment, Api, Api]]:
    url = postgres.create_database("pair_" + uuid.uuid4().hex[:12])
    deployment = prepare(url, tmp_path / "data")
    with serve(deployment, workers=2) as first, serve(deployment, workers=2) as second:
        apis = [
            Api(
                httpx.Client(base_url=base, timeout=30),
                deployment.public_keys,
                deployment.api_key,
                deployment.shared_key,
            )
            for base in (first, second)
        ]
        yield deployment, apis[0], apis[1]
    deployment.db.dispose()


def ident(key: str, hw: str) -> dict[str, str]:
    return {"product": "app", "license_key": key, "hardware_id": hw}


def checked_everywhere(api: Api, key: str, hw: str, times: int = 6) -> list[int]:
    """Check several times (each of the server's workers, its kept answers)."""
    return [api.check(**ident(key, hw)).status_code for _ in range(times)]


def test_a_change_through_one_server_is_answered_by_the_other_at_once(
    pair: tuple[Deployment, Api, Api],
) -> None:
    deployment, a, b = pair
    key = issue(deployment, max_activations=3)
    assert a.activate(**ident(key, "pc-1")).status_code == 200
    assert a.activate(**ident(key, "pc-2")).status_code == 200
    assert checked_everywhere(b, key, "pc-1") == [200] * 6  # (kept by B's workers now)
    # deactivated through A: B's next checks say so
    assert a.deactivate(**ident(key, "pc-1")).status_code == 200
    assert {error_of(b.check(**ident(key, "pc-1")))[1] for _ in range(6)} == {"device_not_found"}
    # disabled through A's management API: B refuses at once
    admin = httpx.Client(
        base_url=str(a.client.base_url) + "/api/management/v1",  # type: ignore[union-attr]
        headers={"Authorization": f"Bearer {admin_token(deployment)}"},
    )
    license_id = admin.get(f"/licenses/by-key/{key}").json()["id"]
    assert admin.post(f"/licenses/{license_id}/disable").status_code == 200
    assert {error_of(b.check(**ident(key, "pc-2")))[1] for _ in range(6)} == {"license_not_enabled"}
    # a key revoked through A no longer opens B
    with deployment.db.transaction(write=True) as session:
        made = catalogue.create_api_key(session, deployment.master_key, deployment.company_id)
    other = Api(b.client, deployment.public_keys, made.api_key, made.shared_key)
    key2 = issue(deployment, max_activations=1)
    assert other.activate(**ident(key2, "pc-9")).status_code == 200
    assert checked_everywhere(other, key2, "pc-9") == [200] * 6
    found = admin.get("/credentials").json()["api_keys"]
    key_id = next(k["id"] for k in found if k["api_key"] == made.api_key)
    assert admin.delete(f"/api-keys/{key_id}").status_code == 200
    assert {error_of(other.check(**ident(key2, "pc-9")))[1] for _ in range(6)} == {
        "revoked_api_key"
    }


def test_sixty_devices_racing_through_two_servers_take_exactly_the_seats(
    pair: tuple[Deployment, Api, Api],
) -> None:
    deployment, a, b = pair
    key = issue(deployment, max_activations=7)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    gate = threading.Barrier(60)

    def activate(n: int) -> None:
        api = a if n % 2 else b
        gate.wait()
        answer = api.activate(**ident(key, f"racer-{n}"))
        code = "ok" if answer.status_code == 200 else answer.json()["code"]
        with lock:
            outcomes[code] += 1

    threads = [threading.Thread(target=activate, args=(n,)) for n in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == Counter({"ok": 7, "license_activated_max_times": 53})
    with deployment.db.transaction() as session:
        from sqlalchemy import text

        active = session.execute(text("SELECT count(*) FROM devices WHERE active")).scalar_one()
        taken = session.execute(text("SELECT times_activated FROM licenses")).scalar_one()
    assert (active, taken) == (7, 7)
