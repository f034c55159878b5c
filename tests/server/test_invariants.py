"""Invariants under load and crashes, with real server processes on SQLite and PostgreSQL:
seats never exceed the limit, counters match the recorded history, idempotent retries never
double-count, and every activation a client saw succeed survives a kill -9."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.server.processes import (
    STARTUP_SECONDS,
    Deployment,
    free_port,
    issue_licenses,
    prepare,
    serve,
    start,
    wait_healthy,
)
from tests.server.support import Api

pytestmark = pytest.mark.slow


def assert_invariants(deployment: Deployment) -> None:
    with deployment.db.transaction() as session:
        rows = session.execute(
            text("""
            select l.id, l.times_activated, l.max_activations, l.allow_unlimited_activations,
                   l.transfer_count,
                   (select count(*) from devices d where d.license_id = l.id and d.active),
                   (select count(*) from license_events e
                     where e.license_id = l.id and e.event = 'activation'),
                   (select count(*) from license_events e
                     where e.license_id = l.id and e.event = 'deactivation'),
                   (select count(*) from license_events e
                     where e.license_id = l.id and e.event = 'transfer')
            from licenses l""")
        ).all()
    for lid, times, max_act, unlimited, transfers, active, acts, deacts, transfer_events in rows:
        assert times == active, f"license {lid}: times_activated {times} != active {active}"
        assert unlimited or times <= max_act, f"license {lid}: {times} > {max_act}"
        assert acts - deacts == active, f"license {lid}: history {acts}-{deacts} != {active}"
        assert transfers == transfer_events, f"license {lid}: transfers {transfers}"


def test_storm_of_activations_deactivations_and_checks(database_url: str, tmp_path: Path) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    keys = issue_licenses(deployment, 3, max_activations=2, max_transfers=0)
    keys += issue_licenses(deployment, 1, max_activations=2, max_transfers=3)
    devices = [f"dev-{i}" for i in range(6)]
    failures: list[str] = []
    with serve(deployment, workers=2) as base:

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base, timeout=60) as client:
                api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
                for step in range(30):
                    body = {
                        "product": "app",
                        "license_key": rng.choice(keys),
                        "hardware_id": rng.choice(devices),
                    }
                    action = rng.random()
                    if action < 0.45:
                        headers = {"Idempotency-Key": f"w{seed}-{step}"}
                        first = api.call(
                            "POST", "/api/v4/activate_license", json=body, headers=headers
                        )
                        if rng.random() < 0.5:  # a client retry of the same request
                            again = api.call(
                                "POST", "/api/v4/activate_license", json=body, headers=headers
                            )
                            if first.status_code == 200 and again.json() != first.json():
                                failures.append("retry changed the answer")
                        response = first
                    elif action < 0.85:
                        response = api.call("POST", "/api/v4/deactivate_license", json=body)
                    else:
                        response = api.call("GET", "/api/v4/check_license", params=body)
                    if response.status_code >= 500:
                        failures.append(f"{response.status_code} {response.text[:100]}")

        # "never exceeded": the seats are watched while the storm runs, not only afterwards
        storming = threading.Event()
        samples: list[int] = []

        def watch() -> None:
            while storming.is_set():
                with deployment.db.transaction() as session:
                    over = session.execute(
                        text("""
                        select l.id, l.times_activated, l.max_activations,
                               (select count(*) from devices d
                                 where d.license_id = l.id and d.active)
                        from licenses l
                        where l.times_activated > l.max_activations
                           or (select count(*) from devices d
                                where d.license_id = l.id and d.active) > l.max_activations""")
                    ).all()
                samples.append(len(over))
                if over:
                    failures.append(f"seats over the limit during the storm: {over}")
                time.sleep(0.01)

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
        storming.set()
        watcher = threading.Thread(target=watch)
        watcher.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        storming.clear()
        watcher.join()
    assert not failures, failures[:5]
    assert len(samples) >= 10, "the seats were hardly watched during the storm"
    assert_invariants(deployment)
    deployment.db.dispose()


def test_kill_9_during_an_activation_storm_loses_nothing_acknowledged(
    database_url: str, tmp_path: Path
) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    keys = issue_licenses(deployment, 4, max_activations=0, allow_unlimited_activations=True)
    port = free_port()
    process = start(deployment, port, tmp_path / "serve.log", workers=2)
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        wait_healthy(process, base, tmp_path / "serve.log")

        def worker(seed: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
                for step in range(500):
                    if stop.is_set():
                        return
                    key = keys[step % len(keys)]
                    hardware_id = f"w{seed}-{step}"
                    try:
                        response = api.call(
                            "POST",
                            "/api/v4/activate_license",
                            json={"product": "app", "license_key": key, "hardware_id": hardware_id},
                        )
                    except (httpx.HTTPError, AssertionError):
                        return  # the server died under us: nothing was acknowledged
                    if response.status_code == 200:
                        with lock:
                            acknowledged.append((key, hardware_id))

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        # Kill once the storm is well under way (time-bounded: loaded machines are slow).
        started = time.monotonic()
        while len(acknowledged) < 20 and time.monotonic() - started < STARTUP_SECONDS:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert len(acknowledged) > 10, "the storm did not get going before the kill"
    with serve(deployment, workers=1) as restarted:
        api = Api(
            httpx.Client(base_url=restarted, timeout=30),
            deployment.public_keys,
            deployment.api_key,
            deployment.shared_key,
        )
        for key, hardware_id in acknowledged:
            check = api.check(product="app", license_key=key, hardware_id=hardware_id)
            assert check.status_code == 200, (hardware_id, check.text)
    assert_invariants(deployment)
    deployment.db.dispose()
