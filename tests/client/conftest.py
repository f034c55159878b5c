from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:  # the package may not be installed in the test environment
    sys.path.insert(0, str(SRC))

from _display import start_display  # noqa: E402
from _fake_license_server import FakeLicenseServer, public_pem  # noqa: E402

from licensor.client import HmacCredentials, LicenseClient  # noqa: E402

HARDWARE_ID = "a" * 64


class Clock:
    """An injectable clock the tests move by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session")
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def server(
    ed25519_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> FakeLicenseServer:
    fake = FakeLicenseServer(ed25519_key, rsa_key)
    fake.now = clock
    fake.add_license("KEY-1111", product="app")
    return fake


@pytest.fixture
def public_keys(ed25519_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey) -> list[str]:
    return [public_pem(ed25519_key), public_pem(rsa_key)]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(
    server: FakeLicenseServer,
    public_keys: list[str],
    tmp_path: Path,
    clock: Clock,
    sleeps: list[float],
) -> Iterator[Callable[..., LicenseClient]]:
    made: list[LicenseClient] = []

    def factory(**options: Any) -> LicenseClient:
        settings: dict[str, Any] = {
            "hardware_id": HARDWARE_ID,
            "storage_dir": tmp_path / "store",
            "clock": clock,
            "transport": server.transport(),
            "sleep": sleeps.append,
            "send_device_facts": False,
        }
        settings.update(options)
        keys = settings.pop("public_keys", public_keys)
        credentials = settings.pop("credentials", HmacCredentials("api-key-1", "shared-secret"))
        client = LicenseClient("https://licensing.test", "app", keys, credentials, **settings)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def _xvfb() -> Iterator[str]:
    # One per process, not per test: Tk keeps its connection to every display it has used open
    # until the process ends, and a later Tk window's event loop dies on a display that is gone
    # (``XIO: fatal IO error``), killing the test process.
    yield from start_display()


@pytest.fixture
def display(_xvfb: str) -> Iterator[str]:
    """DISPLAY of a private Xvfb (skipped when Xvfb is not installed) for a test's Tk windows."""
    yield _xvfb
    # The test's Tk interpreter is freed here, in the thread that made it. tkinter's widgets hold
    # reference cycles, and a later collection in another thread (a test server's, at start-up)
    # made Tcl abort the whole test process ("Tcl_AsyncDelete: ... wrong thread").
    gc.collect()
