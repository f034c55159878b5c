"""Real server processes for end-to-end tests: ``licensor serve`` in a subprocess."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from licensor.keyring import Keyring
from licensor.protocol.signing import PublicKeySet
from licensor.secrets_at_rest import MasterKey
from licensor.services import catalogue, credentials
from licensor.settings import Settings
from licensor.store import migrate
from licensor.store.db import Database

# Generous: a loaded 2-core machine can take a while to import and fork the workers.
STARTUP_SECONDS = 180
MASTER_KEY = base64.b64encode(b"e2e-master-key-for-tests-only!!!").decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Deployment:
    """A data directory + database prepared for ``licensor serve``, with one company's key."""

    env: dict[str, str]
    db: Database
    master_key: MasterKey
    company_id: int
    api_key: str
    shared_key: str
    public_keys: PublicKeySet


def prepare(database_url: str, data_dir: Path) -> Deployment:
    env = {
        **os.environ,
        "LICENSOR_DATA_DIR": str(data_dir),
        "LICENSOR_DATABASE_URL": database_url,
        "LICENSOR_MASTER_KEY": MASTER_KEY,
    }
    settings = Settings(data_dir=data_dir, database_url=database_url, master_key=MASTER_KEY)
    migrate.upgrade(database_url)
    keyring = Keyring.load_or_create(settings.resolved_keys_dir)
    db = Database(database_url)
    master = MasterKey.from_base64(MASTER_KEY)
    with db.transaction(write=True) as session:
        company = catalogue.create_company(session, "E2E")
        key = catalogue.create_api_key(session, master, company.id)
    keys = PublicKeySet.from_pem([k["public_key"] for k in keyring.public_keys()])
    return Deployment(env, db, master, company.id, key.api_key, key.shared_key, keys)


def start(
    deployment: Deployment, port: int, log_path: Path, *, workers: int = 1
) -> subprocess.Popen[bytes]:
    """``licensor serve`` on ``port`` in a session of its own, its output in ``log_path``."""
    with log_path.open("wb") as log_file:  # (the child keeps its own copy of the descriptor)
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "licensor.cli.main", "serve", "--port", str(port)),
                *("--workers", str(workers), "--log-level", "warning"),
            ],
            env=deployment.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's whole session (supervisor and workers), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def serve(deployment: Deployment, *, workers: int = 1) -> Iterator[str]:
    """Start ``licensor serve`` and yield its base URL once it answers ``/health``."""
    port = free_port()
    log_path = Path(deployment.env["LICENSOR_DATA_DIR"]) / f"serve-{port}.log"
    process = start(deployment, port, log_path, workers=workers)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base, log_path)
        yield base
    finally:
        stop(process)


def wait_healthy(process: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    """Until the server at ``base`` answers ``/health``; its log in the error if it never does."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            output = log_path.read_text(errors="replace")
            raise RuntimeError(f"licensor serve exited early:\n{output}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"licensor serve not healthy in {STARTUP_SECONDS} s:\n"
                + log_path.read_text(errors="replace")[-2000:]
            )
        time.sleep(0.2)


def admin_token(deployment: Deployment, name: str = "admin") -> str:
    """A management API bearer token with the admin role, made as at the server's terminal."""
    with deployment.db.transaction(write=True) as session:
        made = credentials.bootstrap_token(
            session,
            deployment.master_key,
            deployment.company_id,
            name=name,
            role="admin",
            now=datetime.now(UTC),
        )
    token: str = made["token"]
    return token


def issue_licenses(deployment: Deployment, count: int, **fields: object) -> list[str]:
    """``count`` licenses of product "app" (created on first use) with ``fields``; their keys."""
    keys = []
    with deployment.db.transaction(write=True) as session:
        if not session.execute(text("select 1 from products where short_code='app'")).first():
            catalogue.create_product(
                session, deployment.company_id, catalogue.ProductSpec("app", "App")
            )
        for _ in range(count):
            license_ = catalogue.create_license(
                session,
                deployment.company_id,
                "app",
                catalogue.LicenseSpec(**fields),  # type: ignore[arg-type]
                now=datetime.now(UTC),
            )
            assert license_.license_key
            keys.append(license_.license_key)
    return keys


def issue(deployment: Deployment, **fields: object) -> str:
    """A license of product "app" (created on first use) with ``fields``; its key."""
    return issue_licenses(deployment, 1, **fields)[0]
