"""Backup while serving, restore into a fresh place, on SQLite and PostgreSQL: ``licensor
backup`` runs while activations go on; restored (with the same signing keys and master key),
every activation acknowledged before the backup began is there, and the restored server's
answers verify with the same public keys."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.harness.postgres import PostgresServer
from tests.server.processes import Deployment, issue, prepare, serve
from tests.server.support import Api


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "licensor.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fresh_database(request: pytest.FixtureRequest, database_url: str, root: Path) -> str:
    if database_url.startswith("sqlite"):
        return f"sqlite:///{root / 'restored' / 'licensor.db'}"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.create_database("restored_" + uuid.uuid4().hex[:10])


def test_a_backup_taken_while_serving_restores_every_acknowledged_activation(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    key = issue(deployment, allow_unlimited_activations=True)
    acknowledged: list[tuple[float, str]] = []
    stop = threading.Event()
    backup_file = tmp_path / "licensor.backup"
    with serve(deployment) as base:
        api = Api(httpx.Client(base_url=base, timeout=30), deployment.public_keys,
                  deployment.api_key, deployment.shared_key)  # fmt: skip

        def activate() -> None:
            n = 0
            while not stop.is_set():
                hw = f"device-{n}"
                n += 1
                if api.activate(product="app", license_key=key, hardware_id=hw).status_code == 200:
                    acknowledged.append((time.monotonic(), hw))

        workers = [threading.Thread(target=activate) for _ in range(3)]
        for worker in workers:
            worker.start()
        while len(acknowledged) < 30:
            stop.wait(0.05)
        started = time.monotonic()
        made = cli(deployment.env, "backup", str(backup_file))
        stop.set()
        for worker in workers:
            worker.join()
    assert made.returncode == 0, made.stdout + made.stderr
    assert "signing keys" in made.stdout  # (named as kept apart)
    before = {hw for when, hw in acknowledged if when < started}
    assert len(before) >= 30

    # a fresh place: the same keys and master key, an empty database
    target_url = fresh_database(request, database_url, tmp_path)
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir(exist_ok=True)
    shutil.copytree(tmp_path / "data" / "keys", restored_dir / "keys")
    env = {**deployment.env, "LICENSOR_DATA_DIR": str(restored_dir),
           "LICENSOR_DATABASE_URL": target_url}  # fmt: skip
    done = cli(env, "restore", str(backup_file))
    assert done.returncode == 0, done.stdout + done.stderr
    again = cli(env, "restore", str(backup_file))
    assert again.returncode != 0  # (never over a database that is there, without --force)
    assert cli(env, "migrate").returncode == 0
    restored = Deployment(
        env,
        deployment.db.__class__(target_url),
        deployment.master_key,
        deployment.company_id,
        deployment.api_key,
        deployment.shared_key,
        deployment.public_keys,
    )
    try:
        with restored.db.transaction() as session:
            from sqlalchemy import text

            devices = set(session.execute(text("SELECT hardware_id FROM devices")).scalars())
        assert before <= devices
        with serve(restored) as base:
            api = Api(httpx.Client(base_url=base, timeout=30), deployment.public_keys,
                      deployment.api_key, deployment.shared_key)  # fmt: skip
            hw = sorted(before)[0]
            checked = api.check(product="app", license_key=key, hardware_id=hw)  # (verified)
            assert checked.status_code == 200, checked.text
    finally:
        restored.db.dispose()
        deployment.db.dispose()


def test_a_file_that_is_no_backup_is_refused(tmp_path: Path) -> None:
    deployment = prepare(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "data")
    deployment.db.dispose()
    bogus = tmp_path / "bogus.backup"
    bogus.write_bytes(b"not a database")
    env = {**deployment.env, "LICENSOR_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}"}
    refused = cli(env, "restore", str(bogus))
    assert refused.returncode != 0 and "not a SQLite backup" in refused.stdout + refused.stderr
    assert not (tmp_path / "b.db").exists()
